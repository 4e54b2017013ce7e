"""Inference speed: batch top-10 users/s and single-user recommend latency (p50/p99).

SeqRecommender (2 layers, 64 dims, 200-long histories) on the ML-100K catalogue, plus a
synthetic 6,000 users x 3,500 items batch. Weights are random (one short epoch): speed does
not depend on what was learned. Run: ``python benchmarks/inference.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import markdown_table, ml100k_path, save_json
from skrec import SeqRecommender
from skrec.baselines import EASERecommender
from skrec.datasets import load_movielens, make_interactions


def latency(est, row, reps: int = 500) -> tuple[float, float]:
    """p50 and p99 (ms) of ``est.recommend(row, k=10)`` after a warm-up."""
    for _ in range(30):
        est.recommend(row, k=10)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        est.recommend(row, k=10)
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def batch_time(est, X, reps: int = 3) -> float:
    """Best-of-``reps`` seconds of ``est.predict(X, k=10)``."""
    est.predict(X[:10])
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        est.predict(X, k=10)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None)
    args = parser.parse_args(argv)
    path = ml100k_path(args.data)
    X = load_movielens(path).X if path.exists() else make_interactions(943, 1682,
                                                                       mean_length=100,
                                                                       random_state=0)
    params = dict(d_model=64, n_layers=2, n_heads=2, max_len=200, max_iter=1,
                  early_stopping=False, random_state=0, device="cpu")
    rows = []
    lengths = np.diff(X.indptr)
    long_user = X[int(np.argmax(lengths >= 200))]
    for name, est in [("seq", SeqRecommender(**params)), ("ease", EASERecommender())]:
        est.fit(X)
        p50, p99 = latency(est, long_user)
        seconds = batch_time(est, X)
        rows.append({"model": name, "data": f"ML-100K {X.shape[0]}x{X.shape[1]}",
                     "batch_s": seconds, "users_per_s": X.shape[0] / seconds,
                     "p50_ms": p50, "p99_ms": p99})
        print(rows[-1], flush=True)
    big = make_interactions(6000, 3500, mean_length=60, random_state=0)
    est = SeqRecommender(**params).fit(big[:500])
    seconds = batch_time(est, big)
    rows.append({"model": "seq", "data": "synthetic 6000x3500", "batch_s": seconds,
                 "users_per_s": big.shape[0] / seconds})
    print(markdown_table(rows, ["model", "data", "batch_s", "users_per_s", "p50_ms", "p99_ms"]))
    print(f"torch threads: {torch.get_num_threads()}")
    save_json("inference", {"rows": rows, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
