"""Benchmark: how sklmm's binomial GLMM fit (Laplace) scales with the number of rows.

Data: :func:`bench_glmm.simulate_binary_crossed` (seed 1) with n in 1e4, 1e5, 1e6, 1e7 rows,
n / 100 subjects (100,000 at n = 1e7) and 200 items, each row a random subject and item;
model ``y ~ x + (1 | subj) + (1 | item)`` fitted by ``MixedLogisticRegression`` (sklmm only).
Each size runs in a fresh subprocess that simulates the data and fits once, and reports the
wall time of the fit and its own peak RSS (``ru_maxrss``: interpreter and data included).

Memory guard: before each size the peak memory is extrapolated linearly in n from the two
previous sizes; a size predicted above ``--memory-limit-gb`` (default 16 GiB) is skipped and
reported, and every child runs with its address space capped at that limit plus 4 GiB
(``RLIMIT_AS``), so an underestimate ends in a MemoryError rather than in swapping.

Run ``python benchmarks/bench_glmm_scaling.py`` (``--max-n N`` stops after the sizes up to N;
``--plot FILE`` sets the figure, default ``docs/glmm_scaling.png``; ``--output FILE`` also
writes the table to a file).
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import (  # noqa: E402
    describe_failure,
    fmt,
    git_commit,
    machine_info,
    markdown_table,
    report,
    run_python,
)

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
ROWS_PER_SUBJECT = 100
N_ITEMS = 200
FORMULA = "y ~ x + (1 | subj) + (1 | item)"
MEMORY_LIMIT_GB = 16.0


def _worker(n, address_space_gb=None):
    """Body of the fresh subprocess: cap memory, simulate, fit once, report time and fit."""
    import resource
    import time

    if address_space_gb is not None:
        nbytes = int(address_space_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))

    import pandas as pd
    from _harness import emit_result
    from bench_glmm import simulate_binary_crossed

    from sklmm import MixedLogisticRegression

    t0 = time.perf_counter()
    d = simulate_binary_crossed(n, n // ROWS_PER_SUBJECT, N_ITEMS)
    X, y = d[["x"]], d["y"].to_numpy()
    groups = pd.DataFrame({"subj": d["subj"], "item": d["item"]})
    del d
    t_data = time.perf_counter() - t0
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    est = MixedLogisticRegression().fit(X, y, groups=groups)
    emit_result(time=time.perf_counter() - t0, data_time=t_data, data_peak_mb=rss_data,
                criterion=float(est.criterion_), n_iter=int(est.n_iter_),
                n_passes=int(est.n_passes_), converged=bool(est.converged_),
                sd={f: float(v) for f, v in zip(est.variance_components_["factor"],
                                                est.variance_components_["std_dev"])},
                coef=[float(est.intercept_[0]), float(est.coef_[0, 0])])


def predicted_peak_mb(n, done):
    """Peak memory at n extrapolated linearly from the last two measured sizes (None if < 2)."""
    pts = [(r["n"], r["peak_mb"]) for r in done if r["peak_mb"] is not None][-2:]
    if len(pts) < 2:
        return None
    (n0, m0), (n1, m1) = pts
    return m1 + (m1 - m0) / (n1 - n0) * (n - n1)


def run(sizes, memory_limit_gb=MEMORY_LIMIT_GB, timeout=None, log=print):
    """Fit every size in a fresh subprocess; return one dict per size."""
    rows = []
    for n in sizes:
        row = dict(n=n, time=None, criterion=None, peak_mb=None, n_iter=None, n_passes=None,
                   notes="")
        pred = predicted_peak_mb(n, rows)
        if pred is not None and pred > memory_limit_gb * 1024:
            row["notes"] = (f"skipped: predicted peak {pred / 1024:.1f} GiB "
                            f"> {memory_limit_gb:g} GiB limit")
            log(f"n={n:,}: {row['notes']}")
            rows.append(row)
            continue
        log(f"n={n:,}: sklmm ..." + (f" (predicted peak {pred / 1024:.1f} GiB)" if pred else ""))
        code = (f"import sys; sys.path.insert(0, {HERE!r})\n"
                f"import bench_glmm_scaling\n"
                f"bench_glmm_scaling._worker({n}, {memory_limit_gb + 4.0!r})\n")
        try:
            out = run_python(code, timeout=timeout)
        except (subprocess.TimeoutExpired, RuntimeError) as exc:
            row["notes"] = describe_failure(exc, timeout)
            log(f"n={n:,}: {row['notes']}")
            rows.append(row)
            continue
        row.update(time=out["time"], criterion=out["criterion"], peak_mb=out["peak_mb"],
                   n_iter=out["n_iter"], n_passes=out["n_passes"])
        row["notes"] = (f"data {out['data_time']:.2g} s / {out['data_peak_mb']:.0f} MB; "
                        f"sd subj {out['sd']['subj']:.4f} (true 1), item {out['sd']['item']:.4f}"
                        f" (true 0.5); "
                        f"beta {', '.join(f'{c:.4f}' for c in out['coef'])} (true -0.5, 0.8)"
                        + ("" if out["converged"] else "; NOT converged"))
        log(f"n={n:,}: {out['time']:.3g} s, {out['peak_mb']:.0f} MB")
        rows.append(row)
    return rows


def plot(rows, path):
    """Two log-log panels: fit time and peak memory against n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r["time"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    if pts:
        ns = [r["n"] for r in pts]
        axes[0].plot(ns, [r["time"] for r in pts], marker="o", label="sklmm")
        axes[1].plot(ns, [r["peak_mb"] for r in pts], marker="o", label="sklmm")
        # reference line for the time: linear in n through the largest point
        ref = pts[-1]["time"]
        axes[0].plot(ns, [ref * n / ns[-1] for n in ns], ls="--", color="grey", lw=1,
                     label="linear in n")
    axes[0].set_ylabel("fit time (s)")
    axes[1].set_ylabel("peak memory of the process (MB)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"rows n (n/{ROWS_PER_SUBJECT} subjects, {N_ITEMS} items)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"binomial GLMM {FORMULA}, Laplace: sklmm MixedLogisticRegression")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows):
    """Markdown table of :func:`run`'s rows."""
    return markdown_table([{
        "n": f"{r['n']:,}", "subjects": f"{r['n'] // ROWS_PER_SUBJECT:,}", "items": N_ITEMS,
        "fit time (s)": fmt(r["time"], ".3g"), "-2logL": fmt(r["criterion"], ".10g"),
        "n_iter_": r["n_iter"], "n_passes_": r["n_passes"],
        "peak memory (MB)": fmt(r["peak_mb"], ".0f"),
        "notes": r["notes"].replace("|", "\\|")} for r in rows])


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=float, default=max(SIZES),
                        help="largest n to run (default 1e7)")
    parser.add_argument("--memory-limit-gb", type=float, default=MEMORY_LIMIT_GB,
                        help="skip a size whose extrapolated peak memory exceeds this (GiB)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds before a size's subprocess is killed (default none)")
    parser.add_argument("--plot", default=os.path.join(os.path.dirname(HERE), "docs",
                                                       "glmm_scaling.png"),
                        help="figure path (default docs/glmm_scaling.png; 'none' for no figure)")
    parser.add_argument("--output", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    sizes = [n for n in SIZES if n <= args.max_n]
    commit = git_commit()
    rows = run(sizes, args.memory_limit_gb, args.timeout,
               log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.plot and args.plot.lower() != "none":
        plot(rows, args.plot)
    info = machine_info(r_packages=())
    moved = "" if commit == git_commit() else f" (HEAD moved to {git_commit()} during the run)"
    report(table(rows), info, args.output, commit=commit + moved)


if __name__ == "__main__":
    main()
