"""Benchmark: how the fit of a random intercept and slope model scales with the number of rows.

Data: :func:`bench_mixed.simulate_slopes` (seed 1) with 10 rows per group, n in 1e4, 1e5, 1e6,
1e7; model ``y ~ x + (x | g)`` by ML. For each n: sklmm's fit time (one fit) and peak memory,
both from one fresh subprocess that builds the data and fits; lme4 for n <= 1e6 (timed inside
R around ``lmer``; 600 s timeout). Draws time and memory against n (log-log) to a PNG.

Run ``python benchmarks/bench_scaling.py`` (``--quick`` stops at 1e5; ``--plot FILE`` sets the
figure, default ``docs/scaling.png``; ``--output FILE`` also writes the table to a file).
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import (  # noqa: E402
    describe_failure,
    fmt,
    git_commit,
    machine_info,
    markdown_table,
    r_available,
    report,
    run_python,
)
from bench_mixed import (  # noqa: E402
    TIMEOUT,
    r_messages,
    run_lme4,
    simulate_slopes,
    write_binary_columns,
)

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
ROWS_PER_GROUP = 10
LME4_MAX_N = 1_000_000
FORMULA = "y ~ x + (x | g)"


def _worker(n):
    """Body of the fresh subprocess: simulate, fit once, report the time and the fit."""
    import time

    from _harness import emit_result

    from sklmm import MixedLinearRegressor

    d = simulate_slopes(n, n // ROWS_PER_GROUP)
    t0 = time.perf_counter()
    est = MixedLinearRegressor(random_slopes=["x"], reml=False).fit(d[["x"]], d["y"],
                                                                    groups=d["g"])
    emit_result(time=time.perf_counter() - t0, criterion=est.criterion_,
                n_iter=int(est.n_iter_), solver=est.solver_, converged=bool(est.converged_))


def run(sizes, have_r, log=print):
    """Fit every size with sklmm (and lme4 up to ``LME4_MAX_N``); return one dict per (n, tool)."""
    rows = []
    for n in sizes:
        log(f"n={n:,}: sklmm ...")
        code = (f"import sys; sys.path.insert(0, {HERE!r})\n"
                f"import bench_scaling\nbench_scaling._worker({n})\n")
        try:
            out = run_python(code)
            rows.append(dict(n=n, tool="sklmm", time=out["time"], criterion=out["criterion"],
                             peak_mb=out["peak_mb"],
                             notes=f"solver={out['solver']}, {out['n_iter']} evals"
                                   + ("" if out["converged"] else ", NOT converged")))
        except RuntimeError as exc:
            rows.append(dict(n=n, tool="sklmm", time=None, criterion=None, peak_mb=None,
                             notes=describe_failure(exc, None)))
        if have_r and n <= LME4_MAX_N:
            log(f"n={n:,}: lme4 ...")
            with tempfile.TemporaryDirectory() as tmp:
                write_binary_columns(simulate_slopes(n, n // ROWS_PER_GROUP), tmp)
                try:
                    out = run_lme4("large", tmp, FORMULA, timeout=TIMEOUT)
                    rows.append(dict(n=n, tool="lme4", time=out["time"],
                                     criterion=out["criterion"], peak_mb=out["peak_mb"],
                                     notes=f"{out['feval']} evals" + r_messages(out)))
                except (subprocess.TimeoutExpired, RuntimeError) as exc:
                    rows.append(dict(n=n, tool="lme4", time=None, criterion=None,
                                     peak_mb=None, notes=describe_failure(exc, TIMEOUT)))
    for r in rows:
        ref = next((q["criterion"] for q in rows if q["n"] == r["n"] and q["tool"] == "lme4"),
                   None)
        r["diff"] = (None if ref is None or r["criterion"] is None
                     else (r["criterion"] - ref) / abs(ref))
    return rows


def plot(rows, path):
    """Two log-log panels: fit time and peak memory against n, one line per tool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for tool, marker in (("sklmm", "o"), ("lme4", "s")):
        pts = [r for r in rows if r["tool"] == tool and r["time"] is not None]
        if not pts:
            continue
        ns = [r["n"] for r in pts]
        axes[0].plot(ns, [r["time"] for r in pts], marker=marker, label=tool)
        axes[1].plot(ns, [r["peak_mb"] for r in pts], marker=marker, label=tool)
    axes[0].set_ylabel("fit time (s)")
    axes[1].set_ylabel("peak memory of the process (MB)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows n (10 rows per group)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("y ~ x + (x | g), ML: sklmm vs lme4")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows):
    """Markdown table of :func:`run`'s rows."""
    return markdown_table([{
        "n": f"{r['n']:,}", "groups": f"{r['n'] // ROWS_PER_GROUP:,}", "tool": r["tool"],
        "time (s)": fmt(r["time"], ".3g"), "criterion (ML deviance)": fmt(r["criterion"], ".12g"),
        "vs lme4 (relative)": fmt(r["diff"], "+.1e"), "peak memory (MB)": fmt(r["peak_mb"], ".0f"),
        "notes": r["notes"].replace("|", "\\|")} for r in rows])


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop at n = 1e5")
    parser.add_argument("--no-r", action="store_true", help="skip lme4")
    parser.add_argument("--plot", default=None,
                        help="figure path (default docs/scaling.png; --quick draws none "
                             "unless given)")
    parser.add_argument("--output", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    sizes = [n for n in SIZES if n <= 100_000] if args.quick else list(SIZES)
    have_r = not args.no_r and r_available(["lme4"])
    commit = git_commit()
    rows = run(sizes, have_r, log=lambda m: print(m, file=sys.stderr, flush=True))
    plot_path = args.plot or (None if args.quick else
                              os.path.join(os.path.dirname(HERE), "docs", "scaling.png"))
    if plot_path:
        plot(rows, plot_path)
    info = machine_info(r_packages=("lme4", "Matrix"))
    report(table(rows), info, args.output, commit=commit)


if __name__ == "__main__":
    main()
