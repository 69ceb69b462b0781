"""Benchmark: fitting from a Dask DataFrame on a local cluster, 10^7 to 10^9 rows.

Data: the random intercept-and-slope model ``y = 1 + 0.5 x + u0[g] + u1[g] x + e`` with
``sd(u0) = 1``, ``sd(u1) = 0.3``, ``cor(u0, u1) = 0.2``, ``e ~ N(0, 1)`` (as ``bench_mixed``'s
"large" workload), 100,000 groups, each row in a uniformly drawn group. The data are a lazy
``dask.dataframe.from_map`` collection: partition i (``ROWS_PER_PARTITION`` rows) is generated
inside its own task from the seed ``[SEED, i]`` (the group effects from ``SEED``, the same in
every task), so no row is ever built on the client. Model ``y ~ x + (x | g)`` by ML:
``MixedLinearRegressor(random_slopes=["x"], reml=False).fit(ddf[["x"]], ddf["y"], groups=ddf["g"])``.

For each n, one fresh subprocess starts a ``distributed.LocalCluster(n_workers=2,
threads_per_worker=1)`` and fits once: the fit time, the part of it spent forming and reducing
the cross-products (printed by ``verbose=1``), the time to only generate the partitions (a
separate ``map_partitions(len)`` pass), the peak RSS of the client process (which also runs the
scheduler) and of each worker (``ru_maxrss`` read in the workers after the fit), and the
criterion. For ``--compare-max`` rows and below, another fresh subprocess builds the same data
in memory (all partitions concatenated with pandas) and fits it in memory, for the criterion
and the time of the ordinary fit.

Run ``python benchmarks/bench_dask.py`` (about a minute on 2 cores; ``--sizes 1e7 1e8 1e9``,
about 5 minutes, adds 10^9 rows); ``--quick``: 10^6 rows in 4 partitions, for a smoke test;
``--output FILE`` also writes the table to a file.
"""
import argparse
import os
import re
import resource
import sys

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import fmt, git_commit, machine_info, markdown_table, report, run_python  # noqa: E402

SEED = 1
N_GROUPS = 100_000
ROWS_PER_PARTITION = 1_000_000
SIZES = (10_000_000, 100_000_000)
COMPARE_MAX = 10_000_000
TIMEOUT = 3600
_COV = np.array([[1.0, 0.2 * 0.3], [0.2 * 0.3, 0.3**2]])


def make_partition(i, rows, n_groups=N_GROUPS, seed=SEED):
    """Partition i of the data set: ``rows`` rows from the seed ``[seed, i]``.

    Returns
    -------
    DataFrame
        Columns ``y``, ``x`` (float64) and ``g`` (int32 group codes).
    """
    u = np.random.default_rng(seed).multivariate_normal([0.0, 0.0], _COV, size=n_groups)
    rng = np.random.default_rng([seed, i])
    g = rng.integers(0, n_groups, size=rows, dtype=np.int32)
    x = rng.normal(size=rows)
    y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=rows)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def lazy_frame(n, rows_per_partition=ROWS_PER_PARTITION, n_groups=N_GROUPS, seed=SEED):
    """The data set of n rows as a lazy Dask DataFrame, one generating task per partition."""
    import dask.dataframe as dd

    n_parts = -(-n // rows_per_partition)
    sizes = [rows_per_partition] * (n_parts - 1) + [n - rows_per_partition * (n_parts - 1)]
    meta = make_partition(0, 0, n_groups=1, seed=seed)
    return dd.from_map(make_partition, range(n_parts), sizes, n_groups=n_groups, seed=seed,
                       meta=meta, enforce_metadata=False)


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dask_worker(n, rows_per_partition):
    """Body of the fresh subprocess: a LocalCluster, one Dask fit, what it cost."""
    import time

    os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
    from _harness import emit_result
    from distributed import Client, LocalCluster

    from sklmm import MixedLinearRegressor

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        ddf = lazy_frame(n, rows_per_partition)
        t0 = time.perf_counter()
        ddf.map_partitions(len).compute()  # generation alone, for reference
        t_gen = time.perf_counter() - t0
        est = MixedLinearRegressor(random_slopes=["x"], reml=False, verbose=1)
        t0 = time.perf_counter()
        est.fit(ddf[["x"]], ddf["y"], groups=ddf["g"])
        t_fit = time.perf_counter() - t0
        peaks = client.run(_peak_rss_mb)
        emit_result(time=t_fit, generation=t_gen, criterion=est.criterion_, n_iter=int(est.n_iter_),
                    theta=[float(v) for v in est.theta_], partitions=int(ddf.npartitions),
                    n_obs=int(est.n_obs_), n_groups=int(est.n_groups_["g"]),
                    worker_peaks=sorted(peaks.values()), converged=bool(est.converged_))


def _memory_worker(n, rows_per_partition):
    """Body of the fresh subprocess: the same rows built in memory, one in-memory fit."""
    import time

    from _harness import emit_result

    from sklmm import MixedLinearRegressor

    n_parts = -(-n // rows_per_partition)
    sizes = [rows_per_partition] * (n_parts - 1) + [n - rows_per_partition * (n_parts - 1)]
    d = pd.concat([make_partition(i, r) for i, r in enumerate(sizes)], ignore_index=True)
    t0 = time.perf_counter()
    est = MixedLinearRegressor(random_slopes=["x"], reml=False).fit(d[["x"]], d["y"], groups=d["g"])
    emit_result(time=time.perf_counter() - t0, criterion=est.criterion_, n_iter=int(est.n_iter_),
                theta=[float(v) for v in est.theta_], converged=bool(est.converged_))


def run(sizes, rows_per_partition, compare_max, log=print):
    """One Dask fit per size (and an in-memory fit up to ``compare_max``); one dict per fit."""
    rows = []
    for n in sizes:
        log(f"n={n:,}: Dask fit on a LocalCluster ...")
        code = (f"import sys; sys.path.insert(0, {HERE!r})\n"
                f"import bench_dask\nbench_dask._dask_worker({n}, {rows_per_partition})\n")
        out = run_python(code, timeout=TIMEOUT, keep_output=True)
        formed = [re.search(r"formed in ([0-9.e+-]+) s", ln) for ln in out["output"]]
        t_red = next((float(m.group(1)) for m in formed if m), None)
        rows.append(dict(n=n, where="Dask, LocalCluster 2 workers x 1 thread",
                         partitions=out["partitions"], time=out["time"], reduce=t_red,
                         generation=out["generation"], client_mb=out["peak_mb"],
                         worker_mb=max(out["worker_peaks"]), criterion=out["criterion"],
                         notes=f"{out['n_iter']} evals" + ("" if out["converged"] else ", NOT converged")
                               + f"; theta {np.round(out['theta'], 5).tolist()}"))
        if n <= compare_max:
            log(f"n={n:,}: the same rows in memory ...")
            code = (f"import sys; sys.path.insert(0, {HERE!r})\n"
                    f"import bench_dask\nbench_dask._memory_worker({n}, {rows_per_partition})\n")
            mem = run_python(code, timeout=TIMEOUT)
            rows.append(dict(n=n, where="in memory (pandas), one process", partitions=None,
                             time=mem["time"], reduce=None, generation=None,
                             client_mb=mem["peak_mb"], worker_mb=None, criterion=mem["criterion"],
                             notes=f"{mem['n_iter']} evals; theta "
                                   f"{np.round(mem['theta'], 5).tolist()}"))
            rel = (rows[-2]["criterion"] - mem["criterion"]) / abs(mem["criterion"])
            rows[-2]["vs_memory"] = rel
            rows[-1]["vs_memory"] = 0.0
    return rows


def table(rows):
    """Markdown table of :func:`run`'s rows."""
    return markdown_table([{
        "rows": f"{r['n']:,}", "fit": r["where"], "partitions": r["partitions"],
        "fit time (s)": fmt(r["time"], ".3g"),
        "of which cross-products (s)": fmt(r["reduce"], ".3g"),
        "rows/s (cross-products)": None if r["reduce"] is None else f"{r['n'] / r['reduce']:.3g}",
        "generation alone (s)": fmt(r["generation"], ".3g"),
        "client peak (MB)": fmt(r["client_mb"], ".0f"),
        "worker peak (MB)": fmt(r["worker_mb"], ".0f"),
        "criterion (ML deviance)": fmt(r["criterion"], ".12g"),
        "vs in-memory (relative)": fmt(r.get("vs_memory"), "+.1e"),
        "notes": r["notes"]} for r in rows])


def main(argv=None):
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 10^6 rows in 4 partitions, compared in memory")
    parser.add_argument("--sizes", type=float, nargs="+", help="row counts (default 1e7 1e8)")
    parser.add_argument("--compare-max", type=float, default=COMPARE_MAX,
                        help="fit in memory too up to this many rows (default 1e7)")
    parser.add_argument("--output", help="also write the markdown table to this file")
    args = parser.parse_args(argv)
    if args.quick:
        sizes, per_part = [1_000_000], 250_000
    else:
        sizes, per_part = [int(s) for s in (args.sizes or SIZES)], ROWS_PER_PARTITION
    commit = git_commit()
    rows = run(sizes, per_part, args.compare_max, log=lambda m: print(m, file=sys.stderr, flush=True))
    info = machine_info(r_packages=(), python_packages=("dask", "distributed"))
    report(table(rows), info, args.output, commit=commit)


if __name__ == "__main__":
    main()
