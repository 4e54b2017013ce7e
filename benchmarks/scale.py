"""Large catalogues: the sparse training path of the sampled losses against the dense one.

Three parts, every training run in a fresh subprocess so that its peak RSS is its own:

* **speed**: one epoch of ``loss="sampled"`` (1,024 negatives) on a 1M-item catalogue
  (5,000 users, sequences of about 50), with the item table trained by sparse gradients
  (the default: a step updates the rows it touches, and the other rows catch up on the dense
  AdamW steps they skipped when next touched or at the end of the epoch, see
  ``skrec.nn.SparseAdamW``) and with dense gradients (every step updates the whole 1M x 64
  table: the path before sparse training). Whole epochs, nothing extrapolated; the speed-up is
  the ratio of the two epoch times of this run.
* **scaling**: one epoch of the default (sparse) path on catalogues of 10k, 100k and 1M items,
  more users and longer sequences: how the cost grows.
* **quality**: NDCG@10 (leave-last-out, full ranking, seen items excluded) of the two paths
  with the same seeds and a fixed number of epochs, on ML-100K (when present) and on a
  synthetic 10k-item catalogue where a step touches a few percent of the rows (where the
  optimizers of the two paths would differ most). ``--paths sparse dense lazy`` adds the
  ablation "lazy": sparse gradients with purely lazy Adam (untouched rows never catch up, as
  ``torch.optim.SparseAdam``), which trains rare items less.

Synthetic data for speed and scaling: power-law (Zipf) item popularity. Run:
``python benchmarks/scale.py [--quick] [--seeds N] [--parts speed scaling quality]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp

from _common import markdown_table, ml100k_path, peak_rss_mb, save_json

PATHS = ("sparse", "dense", "lazy")


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


def _estimator(path: str, **params):
    """A SeqRecommender training its item table with sparse (default) or dense gradients.

    ``"lazy"`` (an ablation, in this process only) swaps the trainer's optimizer for one whose
    untouched rows never catch up (lazy Adam).
    """
    from skrec import SeqRecommender

    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}; got {path!r}.")
    if path == "lazy":
        import skrec.training.trainer
        from skrec.nn import SparseAdamW

        class LazyAdamW(SparseAdamW):
            def _catch_up(self, *args, **kwargs):  # rows never catch up: lazy Adam
                return None

        skrec.training.trainer.SparseAdamW = LazyAdamW

    class Rec(SeqRecommender):
        _sparse_item_grads = path != "dense"

    return Rec(**params)


def run_speed(n_items: int, n_users: int, max_len: int, path: str) -> dict:
    """One epoch of the sampled softmax, timed by the trainer (``history_[0]["seconds"]``)."""
    import torch

    X = power_law_interactions(n_users, n_items, max_len)
    X.data = np.arange(1, X.nnz + 1, dtype=float)  # any increasing order within rows
    # batch 32: the setting of the 294 s dense epoch this benchmark started from (the
    # default batch_size="auto" would pick 128 for 5,000 users: 4x fewer steps)
    est = _estimator(path, loss="sampled", n_negatives=1024, max_len=max_len, max_iter=1,
                     batch_size=32, early_stopping=False, random_state=0, device="cpu")
    t0 = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - t0
    h = est.history_[0]
    t1 = time.perf_counter()
    est.predict(X[:256], k=10)
    return {"path": path, "n_items": n_items, "n_users": n_users, "max_len": max_len,
            "nnz": int(X.nnz), "steps": h["steps"], "epoch_s": h["seconds"],
            "s_per_step": h["seconds"] / h["steps"], "fit_s": seconds,
            "tokens_per_s": h["targets_per_s"], "predict_256_users_s": time.perf_counter() - t1,
            "precision": est.precision_, "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": peak_rss_mb()}


def _quality_data(name: str):
    from skrec.datasets import load_movielens, make_interactions
    from skrec.model_selection import leave_last_out_split

    if name == "ml-100k":
        return leave_last_out_split(load_movielens(ml100k_path(None)).X)
    if name == "synthetic-10k":
        X = make_interactions(n_users=2000, n_items=10_000, mean_length=20, random_state=0)
        return leave_last_out_split(X)
    raise ValueError(name)


def run_quality(name: str, path: str, seed: int, epochs: int) -> dict:
    """Fit ``epochs`` epochs (no early stopping) and score NDCG@10 / HR@10 leave-last-out."""
    from skrec.metrics import hit_rate_at_k, ndcg_at_k

    X, y = _quality_data(name)
    est = _estimator(path, loss="sampled", max_iter=epochs, early_stopping=False,
                     random_state=seed, device="cpu")
    t0 = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - t0
    pred = est.predict(X, k=10)
    return {"data": name, "n_items": X.shape[1], "path": path, "seed": seed, "epochs": epochs,
            "NDCG@10": float(ndcg_at_k(y, pred, k=10)),
            "HR@10": float(hit_rate_at_k(y, pred, k=10)),
            "train_s": seconds, "final_loss": est.history_[-1]["loss"],
            "peak_rss_mb": peak_rss_mb()}


def _subprocess(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(quality: list[dict]) -> list[dict]:
    """Per data set and path: mean and sd over seeds, and the difference to the dense path
    paired by seed."""
    rows = []
    for name in dict.fromkeys(r["data"] for r in quality):
        runs = {p: sorted((r for r in quality if r["data"] == name and r["path"] == p),
                          key=lambda r: r["seed"]) for p in PATHS}
        dense = np.array([r["NDCG@10"] for r in runs["dense"]])
        for path in PATHS:
            if not runs[path]:
                continue
            nd = np.array([r["NDCG@10"] for r in runs[path]])
            diff = nd - dense if path != "dense" and len(dense) == len(nd) else None
            rows.append({
                "data": name, "path": path, "seeds": len(nd),
                "NDCG@10 mean": nd.mean(), "NDCG@10 sd": nd.std(ddof=1),
                "minus dense, mean": None if diff is None else diff.mean(),
                "minus dense, sd": None if diff is None else diff.std(ddof=1),
                "train_s mean": np.mean([r["train_s"] for r in runs[path]]),
            })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed-one", nargs=4, metavar=("ITEMS", "USERS", "MAXLEN", "PATH"))
    parser.add_argument("--quality-one", nargs=4, metavar=("DATA", "PATH", "SEED", "EPOCHS"))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 100k items, 1 seed, 2 epochs")
    parser.add_argument("--parts", nargs="+", default=["speed", "scaling", "quality"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the quality fits")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS,
                        help="paths compared in the quality part")
    parser.add_argument("--name", default="scale", help="result file name")
    parser.add_argument("--note", default="", help="stored in the result file (how it was run)")
    args = parser.parse_args(argv)
    if args.speed_one:
        items, users, max_len, path = args.speed_one
        print(json.dumps(run_speed(int(items), int(users), int(max_len), path)))
        return
    if args.quality_one:
        name, path, seed, epochs = args.quality_one
        print(json.dumps(run_quality(name, path, int(seed), int(epochs))))
        return

    payload = {"machine": platform.processor() or platform.machine(), "note": args.note}
    speed_cfg = (100_000 if args.quick else 1_000_000, 5_000, 50)
    if "speed" in args.parts:
        rows = []
        for path in ("sparse", "dense"):
            rows.append(_subprocess("--speed-one", *speed_cfg, path))
            print(rows[-1], flush=True)
        by = {r["path"]: r for r in rows}
        payload["speed"] = rows
        payload["speedup_epoch"] = by["dense"]["epoch_s"] / by["sparse"]["epoch_s"]
        print(markdown_table(rows, ["path", "n_items", "steps", "epoch_s", "s_per_step",
                                    "tokens_per_s", "peak_rss_mb", "torch_threads"]))
        print(f"sparse path: {payload['speedup_epoch']:.1f}x faster per epoch", flush=True)
    if "scaling" in args.parts:
        configs = [(10_000, 5_000, 50), (100_000, 5_000, 50), (1_000_000, 5_000, 50),
                   (100_000, 20_000, 50), (100_000, 5_000, 200)]
        if args.quick:
            configs = configs[:2]
        rows = []
        for cfg in configs:
            rows.append(_subprocess("--speed-one", *cfg, "sparse"))
            print(rows[-1], flush=True)
        payload["scaling"] = rows
        print(markdown_table(rows, ["n_items", "n_users", "max_len", "nnz", "epoch_s",
                                    "tokens_per_s", "predict_256_users_s", "peak_rss_mb"]))
    if "quality" in args.parts:
        seeds = 1 if args.quick else args.seeds
        epochs = 2 if args.quick else args.epochs
        rows = []
        for name in ("ml-100k", "synthetic-10k"):
            if name == "ml-100k" and not ml100k_path(None).exists():
                print(f"{name}: data not found, skipped", flush=True)
                continue
            for seed in range(seeds):
                for path in args.paths:
                    rows.append(_subprocess("--quality-one", name, path, seed, epochs))
                    print(rows[-1], flush=True)
        payload["quality"] = rows
        if rows:
            payload["quality_summary"] = _summary(rows) if seeds > 1 else []
            print(markdown_table(rows, ["data", "path", "seed", "epochs", "NDCG@10", "HR@10",
                                        "train_s"]))
            if payload["quality_summary"]:
                print(markdown_table(payload["quality_summary"],
                                     list(payload["quality_summary"][0])))
    save_json(args.name, payload)


if __name__ == "__main__":
    main()
