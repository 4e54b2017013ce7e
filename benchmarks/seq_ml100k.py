"""SeqRecommender against popularity, Markov chain and EASE on ML-100K, leave-last-out.

Full ranking over all items, seen items excluded; order by timestamp, ties by the row order of
``u.data``. Run: ``python benchmarks/seq_ml100k.py [--data PATH] [--seeds N]``; the CPU precision
comparison: ``python benchmarks/seq_ml100k.py --precision fp32 bf16 --max-iter 5 --no-early-stopping
--name seq_ml100k_precision``.
"""

from __future__ import annotations

import argparse
import platform

import torch

from _common import markdown_table, ml100k_path, peak_rss_mb, save_json, timed
from skrec import SeqRecommender
from skrec.baselines import EASERecommender, MarkovChainRecommender, PopularityRecommender
from skrec.datasets import load_movielens
from skrec.metrics import hit_rate_at_k, ndcg_at_k
from skrec.model_selection import leave_last_out_split


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None)
    parser.add_argument("--precision", nargs="+", default=["fp32"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=None)
    parser.add_argument("--no-early-stopping", action="store_true",
                        help="train exactly --max-iter epochs on all the data")
    parser.add_argument("--name", default="seq_ml100k", help="result file name")
    args = parser.parse_args(argv)

    data = load_movielens(ml100k_path(args.data))
    X_train, y_test = leave_last_out_split(data.X)
    models = {
        "popularity": PopularityRecommender(),
        "markov": MarkovChainRecommender(),
        "ease(l2=500)": EASERecommender(l2=500.0),
    }
    for precision in args.precision:
        for seed in range(args.seeds):
            params = {"precision": precision, "random_state": seed}
            if args.max_iter:
                params["max_iter"] = args.max_iter
            if args.no_early_stopping:
                params["early_stopping"] = False
            models[f"seq[{precision}, seed={seed}]"] = SeqRecommender(**params)
    rows = []
    for name, est in models.items():
        _, seconds = timed(est.fit, X_train)
        pred = est.predict(X_train, k=10)
        row = {
            "model": name,
            "NDCG@10": ndcg_at_k(y_test, pred, k=10),
            "HR@10": hit_rate_at_k(y_test, pred, k=10),
            "train_s": seconds,
            "epochs": getattr(est, "n_iter_", ""),
            "best_epoch": getattr(est, "best_epoch_", "") or "",
            "s/epoch": seconds / est.n_iter_ if hasattr(est, "n_iter_") else "",
        }
        rows.append(row)
        print(row, flush=True)
    table = markdown_table(
        rows, ["model", "NDCG@10", "HR@10", "train_s", "epochs", "best_epoch", "s/epoch"]
    )
    print(table)
    save_json(
        args.name,
        {
            "rows": rows,
            "peak_rss_mb": peak_rss_mb(),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
        },
    )


if __name__ == "__main__":
    main()
