"""A grid search of 8 SeqRecommender candidates on ML-100K: one process, loky, dask.

``GridSearchCV`` over ``d_model x dropout x learning_rate_init`` (2 x 2 x 2 candidates, ``cv``
folds of users, a bounded ``max_iter`` without early stopping, fp32, ``random_state=0``; the
default score NDCG@10 from ``leave_last_out_split``), timed side by side in one run:

* ``n_jobs=1``: every fit in this process, with this process's torch threads;
* ``loky n_jobs=2``: joblib's default process backend, 2 workers;
* ``dask 2x1``: ``joblib.parallel_backend("dask")`` on a ``dask.distributed.LocalCluster`` of
  2 worker processes x 1 thread (needs ``pip install "skrec[dask]"``; skipped without it),
  with ``MALLOC_TRIM_THRESHOLD_`` unset in the workers as docs/user_guide/distributed.rst
  recommends; ``--dask-default-malloc`` adds a row with dask's default (65536).

The dask cluster is started and its workers warmed up (torch and skrec imported) before the
clock starts, as a cluster kept running between searches; those start-up times are reported
apart. loky starts its 2 workers inside the timed search, as ``GridSearchCV(n_jobs=2)`` does.
The time of a search includes its final refit on all users, which runs in this process in
every configuration. Each row also gives the CPU seconds of this process and its workers during
the search (``cpu_s``, with psutil), the fit and score seconds of the cross-validation tasks as
timed where they ran (``task_s``; ``task_s / search_s`` is how many ran at once on average),
the torch threads a fit used, the best parameters and whether they match ``n_jobs=1``. On a
machine shared with other jobs the workers get less than their cores: compare ``cpu_s`` and
``task_s`` across rows as well.

Run: ``python benchmarks/grid_search.py [--data PATH] [--max-iter 3] [--cv 3]
[--dask-default-malloc]``; the goal is dask <= 0.6x the time of ``n_jobs=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time

import joblib
import numpy as np
import torch
from sklearn.model_selection import GridSearchCV

from _common import markdown_table, ml100k_path, peak_rss_mb, save_json, timed
from skrec import SeqRecommender
from skrec.datasets import load_movielens
from skrec.model_selection import leave_last_out_split

GRID = {
    "d_model": [32, 64],
    "dropout": [0.2, 0.5],
    "learning_rate_init": [1e-3, 3e-3],
}


def _task_threads() -> int:
    """Torch intra-op threads a fit would use here (skrec's worker rule applied)."""
    import torch

    import skrec.sequential  # noqa: F401  (warms the worker up: torch and skrec imported)
    from skrec._parallel import limit_torch_threads

    with limit_torch_threads():
        return torch.get_num_threads()


def _warm_up(n_workers: int) -> list[int]:
    """Run one small task per worker under the active joblib backend; their threads."""
    return joblib.Parallel(n_jobs=n_workers)(joblib.delayed(_task_threads)()
                                             for _ in range(n_workers))


def _cpu_seconds() -> dict[int, np.ndarray]:
    """(user, system) CPU seconds of this process and of each of its descendants."""
    try:
        import psutil  # installed with dask.distributed
    except ImportError:
        return {}
    me = psutil.Process()
    out = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        out[proc.pid] = np.array([times.user, times.system])
    return out


def _search(X, y, args, n_jobs):
    """The timed grid search; its wall and CPU seconds (this process and its workers)."""
    est = SeqRecommender(max_iter=args.max_iter, early_stopping=False, precision="fp32",
                         random_state=0)
    before = _cpu_seconds()
    search, seconds = timed(GridSearchCV(est, GRID, cv=args.cv, n_jobs=n_jobs).fit, X, y)
    after = _cpu_seconds()
    cpu = np.full(2, np.nan)
    if after:
        cpu = sum(t - before.get(pid, 0.0) for pid, t in after.items())
    return search, seconds, cpu


def _row(name, result, threads, reference=None):
    search, seconds, cpu = result
    res = search.cv_results_
    n_splits = search.n_splits_
    row = {
        "config": name,
        "search_s": seconds,
        # CPU seconds of this process and its worker processes during the search (a worker
        # that ended meanwhile is not counted): about the same in every configuration when
        # the workers cost nothing extra. sys_s is the part spent in the kernel.
        "cpu_s": float(cpu.sum()),
        "sys_s": float(cpu[1]),
        # fit + score seconds of the cross-validation tasks, as timed inside the workers;
        # task_s / search_s is the number of tasks running at once on average.
        "task_s": float(np.sum(res["mean_fit_time"] + res["mean_score_time"]) * n_splits),
        "threads_per_fit": threads,
        "best_params": search.best_params_,
        "best_ndcg@10": float(search.best_score_),
        "mean_test_score": search.cv_results_["mean_test_score"].tolist(),
    }
    if reference is not None:
        row["ratio_to_n_jobs_1"] = seconds / reference["search_s"]
        row["same_best_params"] = search.best_params_ == reference["best_params"]
        row["max_abs_score_diff"] = float(np.max(np.abs(
            np.asarray(row["mean_test_score"]) - reference["mean_test_score"])))
    return row


@contextlib.contextmanager
def _environ_restored(names):
    """Put ``os.environ[name]`` back afterwards: dask's nanny writes its worker variables into
    this process's environment before it spawns them."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _dask_row(X, y, args, ref, startup, default_malloc):
    """The search on a LocalCluster of ``args.workers`` processes x 1 thread.

    dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers, which also turns off
    glibc's adaptive mmap threshold: every tensor above 128 KiB is then mapped and unmapped
    at each use (3x the page faults of a plain process, a third more CPU per fit here). The
    recommended setting unsets it; ``default_malloc`` keeps dask's default.
    """
    import dask
    from dask.distributed import Client, LocalCluster

    key = "distributed.nanny.pre-spawn-environ"
    name = f"dask {args.workers}x1" + (" (dask's MALLOC_TRIM_THRESHOLD_)" if default_malloc
                                       else "")
    config = {} if default_malloc else {f"{key}.MALLOC_TRIM_THRESHOLD_": None}
    with _environ_restored(dask.config.get(key)), dask.config.set(config):
        t0 = time.perf_counter()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as client:
            startup[f"{name}: cluster_s"] = time.perf_counter() - t0
            env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
            with joblib.parallel_backend("dask"):
                threads, startup[f"{name}: warm_up_s"] = timed(_warm_up, args.workers)
                result = _search(X, y, args, -1)
    row = _row(name, result, max(threads), ref)
    row["worker_malloc_trim_threshold"] = sorted(set(map(str, env.values())))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None)
    parser.add_argument("--max-iter", type=int, default=3, help="epochs of every fit")
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="loky n_jobs and dask workers")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--dask-default-malloc", action="store_true",
                        help="also run dask with its default MALLOC_TRIM_THRESHOLD_=65536")
    parser.add_argument("--name", default="grid_search", help="result file name")
    args = parser.parse_args(argv)
    omp_env = os.environ.get("OMP_NUM_THREADS")  # dask's nanny sets it in this process later

    data = load_movielens(ml100k_path(args.data))
    X, y = leave_last_out_split(data.X)
    n_candidates = int(np.prod([len(v) for v in GRID.values()]))
    print(f"ML-100K {X.shape}, {n_candidates} candidates x {args.cv} folds, "
          f"max_iter={args.max_iter}, torch threads here: {torch.get_num_threads()}",
          flush=True)
    rows, startup = [], {}

    rows.append(ref := _row("n_jobs=1", _search(X, y, args, 1), torch.get_num_threads()))
    print(rows[-1], flush=True)

    # loky starts its workers inside the search, as GridSearchCV(n_jobs=2) does on first use
    # (a tiny warm-up task would also set the reference size of loky's memory-leak check
    # too low, and the first real fit, which keeps about 300 MB of allocator memory, would
    # then restart the worker). The threads are read afterwards, from the same workers.
    with joblib.parallel_config(backend="loky"):
        result = _search(X, y, args, args.workers)
        threads = _warm_up(args.workers)
    rows.append(_row(f"loky n_jobs={args.workers}", result, max(threads), ref))
    print(rows[-1], flush=True)

    if not args.no_dask:
        try:
            import dask.distributed  # noqa: F401
        except ImportError:
            print("dask.distributed is not installed (pip install 'skrec[dask]'): skipped")
        else:
            variants = [False] + ([True] if args.dask_default_malloc else [])
            for default_malloc in variants:
                rows.append(_dask_row(X, y, args, ref, startup, default_malloc))
                print(rows[-1], flush=True)

    print(markdown_table(rows, ["config", "search_s", "ratio_to_n_jobs_1", "cpu_s", "sys_s",
                                "task_s", "threads_per_fit",
                                "best_ndcg@10", "same_best_params", "max_abs_score_diff"]))
    print("start-up (not in search_s):", {k: round(v, 2) for k, v in startup.items()})
    save_json(args.name, {
        "rows": rows,
        "startup_s": startup,
        "grid": GRID,
        "n_candidates": n_candidates,
        "cv": args.cv,
        "max_iter": args.max_iter,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads_env": omp_env,
        "cpu_count": os.cpu_count(),
        "peak_rss_mb": peak_rss_mb(),
        "machine": platform.processor() or platform.machine(),
    })


if __name__ == "__main__":
    main()
