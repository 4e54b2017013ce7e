"""Mult-VAE and Mult-DAE against EASE and popularity on MovieLens-100K.

Two protocols, both with full ranking over all items and the user's known items excluded:

* ``strong``: strong generalization (Liang et al., 2018): 20 % of the users are held out;
  models train on the other users only and rank from 80 % of each held-out user's items
  (fold-in), the other 20 % are the targets (``user_holdout_split``).
* ``random``: every user's items are split at random 80/20 (``random_holdout_split``); models
  train on the 80 % and rank for the same users.

Recall@20 (hits / min(20, |held-out|)) and NDCG@20, mean over ``--seeds`` splits (the model
seeds follow the split seeds). EASE's ``l2`` is tuned per split on a validation split of the
training part only (same protocol, grid ``EASE_GRID``, NDCG@20), then refitted on the whole
training part. The autoencoders use their defaults (``[I-600-200-600-I]``, early stopping on
their own validation users); the ``[I-200-I]`` rows differ only by ``hidden_sizes=()``.
A second table compares fp32 and bf16 training of the Mult-VAE (CPU autocast; bf16 is
emulated on CPUs without AVX-512-BF16/AMX, so it is slower there).

Run: ``python benchmarks/autoencoder_ml100k.py [--data PATH] [--seeds 3] [--bf16-max-iter N]``.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch

from _common import markdown_table, ml100k_path, peak_rss_mb, save_json, timed
from skrec import AERecommender
from skrec.baselines import EASERecommender, PopularityRecommender
from skrec.datasets import load_movielens
from skrec.metrics import ndcg_at_k, recall_at_k
from skrec.model_selection import random_holdout_split, user_holdout_split
from skrec.training import cpu_supports_bf16

K = 20
EASE_GRID = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)


def split(protocol: str, X, seed: int):
    """``(X_fit, X_query, y_target)`` for one protocol and seed."""
    if protocol == "strong":
        return user_holdout_split(X, test_size=0.2, fold_in_size=0.8, random_state=seed)
    X_train, y_test = random_holdout_split(X, test_size=0.2, random_state=seed)
    return X_train, X_train, y_test


def evaluate(est, X_query, y_target) -> dict:
    """Recall@K and NDCG@K of ``est``'s top-K from ``X_query`` against ``y_target``."""
    pred = est.predict(X_query, k=K)
    return {f"Recall@{K}": float(recall_at_k(y_target, pred, k=K)),
            f"NDCG@{K}": float(ndcg_at_k(y_target, pred, k=K))}


def tune_ease(protocol: str, X_fit, seed: int) -> float:
    """Best ``l2`` on a validation split of the training part (never the test targets)."""
    X_tr, X_q, y_val = split(protocol, X_fit, seed + 1000)
    scores = {l2: evaluate(EASERecommender(l2=l2).fit(X_tr), X_q, y_val)[f"NDCG@{K}"]
              for l2 in EASE_GRID}
    return max(scores, key=scores.get)


def run_protocol(protocol: str, X, seeds: int) -> list[dict]:
    """Per-seed results of every model under one protocol."""
    rows = []
    for seed in range(seeds):
        X_fit, X_query, y_target = split(protocol, X, seed)
        l2 = tune_ease(protocol, X_fit, seed)
        models = {
            "popularity": PopularityRecommender(),
            "EASE": EASERecommender(l2=l2),
            "Mult-VAE": AERecommender(variational=True, random_state=seed),
            "Mult-DAE": AERecommender(variational=False, random_state=seed),
            "Mult-VAE [I-200-I]": AERecommender(variational=True, hidden_sizes=(),
                                                random_state=seed),
            "Mult-DAE [I-200-I]": AERecommender(variational=False, hidden_sizes=(),
                                                random_state=seed),
        }
        for name, est in models.items():
            _, seconds = timed(est.fit, X_fit)
            row = {"protocol": protocol, "seed": seed, "model": name,
                   **evaluate(est, X_query, y_target), "train_s": seconds}
            if name == "EASE":
                row["l2"] = l2
            if hasattr(est, "n_iter_"):
                row["epochs"] = est.n_iter_
                row["precision"] = est.precision_
            rows.append(row)
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()},
                  flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean (and std over seeds) per protocol and model, with the gap to EASE."""
    out = []
    keys = dict.fromkeys((r["protocol"], r["model"]) for r in rows)
    for protocol, model in keys:
        sel = [r for r in rows if r["protocol"] == protocol and r["model"] == model]
        ease = [r for r in rows if r["protocol"] == protocol and r["model"] == "EASE"]
        rec = np.array([r[f"Recall@{K}"] for r in sel])
        ndcg = np.array([r[f"NDCG@{K}"] for r in sel])
        ease_ndcg = np.mean([r[f"NDCG@{K}"] for r in ease])
        out.append({
            "protocol": protocol,
            "model": model,
            f"Recall@{K}": f"{rec.mean():.4f} ± {rec.std():.4f}",
            f"NDCG@{K}": f"{ndcg.mean():.4f} ± {ndcg.std():.4f}",
            "NDCG vs EASE": f"{100 * (ndcg.mean() / ease_ndcg - 1):+.1f} %",
            "train_s": float(np.mean([r["train_s"] for r in sel])),
            "epochs": (f"{np.mean([r['epochs'] for r in sel]):.0f}" if "epochs" in sel[0]
                       else ""),
            "l2": "/".join(f"{r['l2']:g}" for r in sel) if model == "EASE" else "",
        })
    return out


def precision_comparison(X, max_iter: int | None) -> list[dict]:
    """Mult-VAE trained in fp32 and in bf16 on the strong protocol (seed 0)."""
    X_fit, X_query, y_target = split("strong", X, 0)
    rows = []
    for precision in ("fp32", "bf16"):
        params = {"precision": precision, "random_state": 0, "device": "cpu"}
        if max_iter:
            params.update(max_iter=max_iter, early_stopping=False)
        est = AERecommender(**params)
        _, seconds = timed(est.fit, X_fit)
        _, predict_s = timed(est.predict, X_query, k=K)
        row = {"precision": precision, **evaluate(est, X_query, y_target),
               "train_s": seconds, "epochs": est.n_iter_,
               "s/epoch": float(np.mean([h["seconds"] for h in est.history_])),
               "predict_s": predict_s}
        rows.append(row)
        print(row, flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="ML-100K folder (default: shared/data)")
    parser.add_argument("--seeds", type=int, default=3, help="splits to average over")
    parser.add_argument("--bf16-max-iter", type=int, default=None,
                        help="fixed epochs (no early stopping) for the fp32/bf16 comparison")
    parser.add_argument("--skip-precision", action="store_true")
    args = parser.parse_args(argv)

    data = load_movielens(ml100k_path(args.data))
    X = data.X
    print(f"ML-100K: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} interactions; "
          f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}", flush=True)
    rows = run_protocol("strong", X, args.seeds) + run_protocol("random", X, args.seeds)
    summary = summarise(rows)
    cols = ["protocol", "model", f"Recall@{K}", f"NDCG@{K}", "NDCG vs EASE", "train_s",
            "epochs", "l2"]
    print(markdown_table(summary, cols))
    precision_rows = []
    if not args.skip_precision:
        precision_rows = precision_comparison(X, args.bf16_max_iter)
        print(markdown_table(precision_rows, ["precision", f"Recall@{K}", f"NDCG@{K}",
                                              "train_s", "epochs", "s/epoch", "predict_s"]))
    path = save_json("autoencoder_ml100k", {
        "summary": summary,
        "rows": rows,
        "precision": precision_rows,
        "precision_setting": ("defaults with early stopping" if not args.bf16_max_iter
                              else f"max_iter={args.bf16_max_iter}, no early stopping"),
        "ease_grid": list(EASE_GRID),
        "seeds": args.seeds,
        "cpu_native_bf16": cpu_supports_bf16(),
        "peak_rss_mb": peak_rss_mb(),
        "torch_threads": torch.get_num_threads(),
        "load_average_end": os.getloadavg()[0],
        "machine": platform.processor() or platform.machine(),
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
