"""Shared helpers for the sklmm benchmarks: timing, peak memory, running R, markdown tables.

Peak memory is the peak resident set size (``ru_maxrss``) of a fresh process that loads the
data and fits once: for Python a ``python -c`` subprocess reporting its own
``resource.getrusage(RUSAGE_SELF)``, for R the Rscript process measured by ``/usr/bin/time -f
%M``. Both include the interpreter and the data, not only the fit.
"""
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_TIME = "/usr/bin/time"


def median_time(fn, repeats):
    """Median wall-clock time of calling ``fn()`` several times.

    Parameters
    ----------
    fn : callable
        Called with no arguments.
    repeats : int
        Number of calls.

    Returns
    -------
    seconds : float
        Median of the wall-clock times (``time.perf_counter``).
    result : object
        What the last call returned.
    """
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def python_peak_memory_mb(code, timeout=None):
    """Peak RSS of a fresh Python process running ``code``.

    Parameters
    ----------
    code : str
        Python source run by ``python -c`` with the current interpreter.
    timeout : float, default=None
        Seconds before the subprocess is killed.

    Returns
    -------
    float
        Peak resident set size of the subprocess in MB (``ru_maxrss`` of ``RUSAGE_SELF``,
        read by the subprocess itself at exit).
    """
    code += ("\nimport resource, sys\n"
             "sys.stdout.write('\\n%d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=timeout).stdout
    return int(out.strip().splitlines()[-1]) / 1024  # Linux reports kB


def r_available(packages=()):
    """Whether Rscript and the given R packages are installed; print what is missing.

    Parameters
    ----------
    packages : sequence of str
        R packages that must load (``requireNamespace``).

    Returns
    -------
    bool
    """
    if shutil.which("Rscript") is None:
        print("Rscript: not installed")
        return False
    ok = True
    for pkg in ("jsonlite", *packages):
        res = subprocess.run(["Rscript", "-e", f"quit(status = !requireNamespace('{pkg}', "
                              "quietly = TRUE))"], capture_output=True)
        if res.returncode != 0:
            print(f"R package {pkg}: not installed")
            ok = False
    return ok


def run_r(script_text, data_csv_path, timeout=None):
    """Run an R script on a data file and parse the JSON line it prints.

    The script gets the path as ``commandArgs(trailingOnly = TRUE)[1]`` and must print, as
    its last line of output, one JSON object (``cat(jsonlite::toJSON(list(...),
    auto_unbox = TRUE, digits = NA))``) holding its own timing of the fit and what the fit
    reached.

    Parameters
    ----------
    script_text : str
        The R source.
    data_csv_path : str
        Passed to the script as its first argument.
    timeout : float, default=None
        Seconds before Rscript is killed.

    Returns
    -------
    dict
        The parsed JSON, plus ``"peak_mb"``: the peak RSS of the Rscript process in MB
        from ``/usr/bin/time -f %M``, or None when that program is missing.
    """
    with tempfile.TemporaryDirectory() as tmp:
        script, mem = os.path.join(tmp, "bench.R"), os.path.join(tmp, "mem.txt")
        with open(script, "w") as f:
            f.write(script_text)
        cmd = ["Rscript", script, data_csv_path]
        have_time = os.access(_TIME, os.X_OK)
        if have_time:
            cmd = [_TIME, "-f", "%M", "-o", mem] + cmd
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"Rscript failed ({res.returncode}):\n{res.stderr}")
        out = json.loads(res.stdout.strip().splitlines()[-1])
        out["peak_mb"] = None
        if have_time:
            with open(mem) as f:
                out["peak_mb"] = int(f.read().split()[-1]) / 1024  # kB
    return out


def markdown_table(rows):
    """Format rows as a GitHub markdown table.

    Parameters
    ----------
    rows : list of dict
        One dict per row; the keys of the first row are the columns. Values are printed with
        ``str``; None prints as "n/a".

    Returns
    -------
    str
    """
    cols = list(rows[0])
    cells = [["n/a" if r.get(c) is None else str(r[c]) for c in cols] for r in rows]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def machine_info():
    """Describe the machine and the software versions, for the benchmark page.

    Returns
    -------
    dict
        nproc, CPU model, RAM, and Python / numpy / scipy / sklmm / R / mgcv versions
        (R entries are "n/a" without Rscript).
    """
    import numpy
    import scipy

    import sklmm

    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info = {"nproc": os.cpu_count(), "CPU": cpu, "RAM": f"{ram:.1f} GiB",
            "Python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "sklmm": getattr(sklmm, "__version__", "n/a"),
            "R": "n/a", "mgcv": "n/a"}
    if shutil.which("Rscript"):
        res = subprocess.run(
            ["Rscript", "-e", "cat(paste(R.version$major, R.version$minor, sep = '.'), "
             "tryCatch(as.character(packageVersion('mgcv')), error = function(e) 'n/a'))"],
            capture_output=True, text=True)
        if res.returncode == 0:
            info["R"], info["mgcv"] = res.stdout.split()
    return info
