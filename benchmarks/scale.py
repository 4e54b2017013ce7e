"""How training cost grows with catalogue size, users and sequence length.

Synthetic power-law data (Zipf item popularity) with catalogues of 10k, 100k and 1M items,
trained with the sampled softmax (``loss="sampled"``), one epoch each, every configuration in
a fresh subprocess so that its peak RSS is its own. Reports seconds per epoch, tokens/s and
peak RSS. Run: ``python benchmarks/scale.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp

from _common import markdown_table, peak_rss_mb, save_json


def power_law_interactions(n_users: int, n_items: int, mean_len: int, seed: int = 0):
    """Users x items CSR with Zipf popularity and positions 1..len as values (vectorised)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.poisson(mean_len, n_users), 2, None)
    draws = rng.zipf(1.2, size=int(lengths.sum() * 1.3)) - 1
    draws = draws[draws < n_items]
    perm = rng.permutation(n_items)  # popular items scattered over the index range
    items = perm[draws[: lengths.sum()]] if draws.size >= lengths.sum() else perm[
        rng.integers(0, n_items, lengths.sum())]
    rows = np.repeat(np.arange(n_users), lengths)
    values = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1
    X = sp.csr_matrix((values.astype(float), (rows, items)), shape=(n_users, n_items))
    # repeated (user, item) pairs were summed: keep positions unique by re-ranking
    return X


def run_one(n_items: int, n_users: int, max_len: int) -> dict:
    from skrec import SeqRecommender

    X = power_law_interactions(n_users, n_items, max_len)
    X.data = np.arange(1, X.nnz + 1, dtype=float)  # any increasing order within rows
    est = SeqRecommender(loss="sampled", n_negatives=1024, max_len=max_len, max_iter=1,
                         early_stopping=False, random_state=0, device="cpu")
    t0 = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - t0
    h = est.history_[0]
    t1 = time.perf_counter()
    est.predict(X[:256], k=10)
    return {"n_items": n_items, "n_users": n_users, "max_len": max_len, "nnz": int(X.nnz),
            "epoch_s": h["seconds"], "fit_s": seconds, "tokens_per_s": h["targets_per_s"],
            "predict_256_users_s": time.perf_counter() - t1, "peak_rss_mb": peak_rss_mb()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=3, type=int, metavar=("ITEMS", "USERS", "MAXLEN"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    configs = [(10_000, 5_000, 50), (100_000, 5_000, 50), (1_000_000, 5_000, 50),
               (100_000, 20_000, 50), (100_000, 5_000, 200)]
    if args.quick:
        configs = configs[:2]
    rows = []
    for cfg in configs:
        out = subprocess.run([sys.executable, __file__, "--one", *map(str, cfg)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    print(markdown_table(rows, ["n_items", "n_users", "max_len", "nnz", "epoch_s",
                                "tokens_per_s", "predict_256_users_s", "peak_rss_mb"]))
    save_json("scale", {"rows": rows})


if __name__ == "__main__":
    main()
