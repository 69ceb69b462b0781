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
import signal
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
    return run_python(code, timeout=timeout)["peak_mb"]


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


def _run_killable(cmd, timeout=None, memory_limit_mb=None):
    """Run ``cmd`` in its own process group; on timeout kill the whole group.

    ``subprocess.run(timeout=...)`` kills only the direct child, which would leave an Rscript
    started under ``/usr/bin/time`` running. ``memory_limit_mb`` caps the address space of the
    child (``RLIMIT_AS``).

    Returns
    -------
    CompletedProcess
        With text ``stdout`` and ``stderr``.

    Raises
    ------
    subprocess.TimeoutExpired
        After the process group has been killed.
    """
    def limit():  # runs in the child before exec
        if memory_limit_mb is not None:
            import resource
            nbytes = int(memory_limit_mb * 2**20)
            resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=limit if memory_limit_mb is not None else None)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_r(script_text, data_csv_path, timeout=None, args=(), memory_limit_mb=None):
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
        Passed to the script as its first argument (any path: a file or a directory).
    timeout : float, default=None
        Seconds before Rscript (and its process group) is killed; raises
        ``subprocess.TimeoutExpired``.
    args : sequence of str, default=()
        Further arguments for the script, after the path.
    memory_limit_mb : float, default=None
        Cap on the address space of the R process (``RLIMIT_AS``), so a fit too large for the
        machine fails with R's "cannot allocate vector" instead of exhausting it.

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
        cmd = ["Rscript", script, data_csv_path, *map(str, args)]
        have_time = os.access(_TIME, os.X_OK)
        if have_time:
            cmd = [_TIME, "-f", "%M", "-o", mem] + cmd
        res = _run_killable(cmd, timeout=timeout, memory_limit_mb=memory_limit_mb)
        if res.returncode != 0:
            raise RuntimeError(f"Rscript failed ({res.returncode}):\n{res.stderr}")
        out = json.loads(res.stdout.strip().splitlines()[-1])
        out["peak_mb"] = None
        if have_time:
            with open(mem) as f:
                out["peak_mb"] = int(f.read().split()[-1]) / 1024  # kB
    return out


RESULT_PREFIX = "@@result "


def emit_result(**fields):
    """Print one result line for :func:`run_python` (JSON after ``RESULT_PREFIX``).

    Call it from the code run by :func:`run_python`; several calls are merged in order.
    """
    sys.stdout.write("\n" + RESULT_PREFIX + json.dumps(fields) + "\n")
    sys.stdout.flush()


def run_python(code, timeout=None, keep_output=False):
    """Run ``code`` in a fresh Python process; collect what it reports and its peak memory.

    Like :func:`python_peak_memory_mb`, but the code reports results with
    :func:`emit_result` (importable as ``from _harness import emit_result`` when the
    benchmarks folder is on ``sys.path``), and a timeout kills the whole process group.

    Parameters
    ----------
    code : str
        Python source run by ``python -c`` with the current interpreter.
    timeout : float, default=None
        Seconds before the subprocess is killed; raises ``subprocess.TimeoutExpired``.
    keep_output : bool, default=False
        Also return the other lines the process printed (stdout then stderr) as ``"output"``,
        for messages that libraries print themselves.

    Returns
    -------
    dict
        The merged ``emit_result`` fields, plus ``"peak_mb"``: the peak RSS of the process in
        MB (``ru_maxrss`` of ``RUSAGE_SELF`` read at exit; interpreter and data included).

    Raises
    ------
    RuntimeError
        When the process fails (with the tail of its stderr).
    """
    code += ("\nimport resource, sys\n"
             "sys.stdout.write('\\n%d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    res = _run_killable([sys.executable, "-c", code], timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"python failed ({res.returncode}):\n{res.stderr[-3000:]}")
    out = {}
    lines = res.stdout.strip().splitlines()
    for ln in lines:
        if ln.startswith(RESULT_PREFIX):
            out.update(json.loads(ln[len(RESULT_PREFIX):]))
    out["peak_mb"] = int(lines[-1]) / 1024  # Linux reports kB
    if keep_output:
        out["output"] = ([ln for ln in lines[:-1] if not ln.startswith(RESULT_PREFIX)]
                         + res.stderr.splitlines())
    return out


def git_commit(path=None):
    """Short git commit of the repository holding ``path``, "+dirty" when sklmm/ has changes.

    Parameters
    ----------
    path : str, default=None
        A path inside the repository (default: this file's folder).

    Returns
    -------
    str
        For example ``"ea2200c"`` or ``"ea2200c+dirty"``; "unknown" outside git.
    """
    here = path or os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                             capture_output=True, text=True, check=True).stdout.strip()
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sklmm"], cwd=top,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def fmt(value, spec):
    """``format(value, spec)``, or None for a missing value (an empty cell of a table)."""
    return None if value is None else format(value, spec)


def describe_failure(exc, timeout):
    """One line for a table cell saying why a fit failed: killed at the timeout, out of memory,
    or the last lines of its error."""
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"timeout (killed after {timeout} s)"
    text = str(exc)
    if "cannot allocate" in text or "MemoryError" in text:
        return "out of memory: " + text.strip().splitlines()[-1][:150]
    return "failed: " + " ".join(text.strip().splitlines()[-2:])[:200]


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
    if not rows:
        return "(no rows: every workload was skipped)"
    cols = list(rows[0])
    cells = [["n/a" if r.get(c) is None else str(r[c]) for c in cols] for r in rows]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def machine_info(r_packages=("mgcv",), python_packages=()):
    """Describe the machine and the software versions, for the benchmark page.

    Parameters
    ----------
    r_packages : sequence of str, default=("mgcv",)
        R packages whose versions are reported ("n/a" when not installed).
    python_packages : sequence of str, default=()
        Further Python packages whose ``__version__`` is reported ("n/a" when missing).

    Returns
    -------
    dict
        nproc, CPU model, RAM, and Python / numpy / scipy / sklmm / R / R-package versions
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
            "scipy": scipy.__version__, "sklmm": getattr(sklmm, "__version__", "n/a")}
    for name in python_packages:
        try:
            info[name] = getattr(__import__(name), "__version__", "n/a")
        except ImportError:
            info[name] = "n/a"
    info["R"] = "n/a"
    info.update({pkg: "n/a" for pkg in r_packages})
    if shutil.which("Rscript"):
        versions = ", ".join(f"tryCatch(as.character(packageVersion('{pkg}')), "
                             "error = function(e) 'n/a')" for pkg in r_packages)
        res = subprocess.run(
            ["Rscript", "-e", "cat(paste(R.version$major, R.version$minor, sep = '.')"
             + (", " + versions if versions else "") + ")"],
            capture_output=True, text=True)
        if res.returncode == 0:
            vals = res.stdout.split()
            info["R"] = vals[0]
            info.update(zip(r_packages, vals[1:]))
    return info


def report(table_text, info, output=None, commit=None):
    """Print a benchmark's table with the commit and machine it was measured on; optionally save it.

    Parameters
    ----------
    table_text : str
        The markdown table.
    info : dict
        :func:`machine_info` output.
    output : str, optional
        Markdown file to write the same text to.
    commit : str, optional
        The sklmm commit measured (noted under the table).
    """
    text = table_text
    if commit is not None:
        text += "\n\nsklmm commit: " + commit
    text += "\n\nMachine: " + ", ".join(f"{k} {v}" for k, v in info.items())
    print(text)
    if output:
        with open(output, "w") as f:
            f.write(text + "\n")
    return text


class LoadSampler:
    """Samples the 1-minute load average every ``every`` seconds in a daemon thread (benchmarks
    report it: timings beside other work are not quiet timings)."""

    def __init__(self, every=15.0):
        import threading

        self.samples, self._stop = [os.getloadavg()[0]], threading.Event()
        self._t = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._t.start()

    def _run(self, every):
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self):
        self._stop.set()
        self.samples.append(os.getloadavg()[0])
        s = self.samples
        return (f"1-minute load average over the run: min {min(s):.2f}, median "
                f"{statistics.median(s):.2f}, max {max(s):.2f} ({len(s)} samples; the "
                f"benchmark itself keeps about one core busy)")
