"""SeqRecommender against popularity, Markov chain and EASE on ML-100K, leave-last-out.

Full ranking over all items, seen items excluded; order by timestamp, ties by the row order of
``u.data``. Run: ``python benchmarks/seq_ml100k.py [--data PATH] [--seeds N]``; the CPU precision
comparison: ``python benchmarks/seq_ml100k.py --precision fp32 bf16 --max-iter 5 --no-early-stopping
--name seq_ml100k_precision``; the encoders x objectives (GRU4Rec and BERT4Rec next to SASRec, the
settings of ``_common.SEQ_MODEL_SPECS``), 3 seeds, mean ± sd:
``python benchmarks/seq_ml100k.py --models all --seeds 3 --name seq_ml100k_encoders``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from _common import (
    SEQ_MODEL_SPECS,
    markdown_table,
    ml100k_path,
    peak_rss_mb,
    save_json,
    summarize_seeds,
    timed,
)
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
    parser.add_argument("--models", nargs="+", default=None,
                        help=f"'all' or names of {list(SEQ_MODEL_SPECS)}: these settings "
                             "(at the first --precision) in place of the default SeqRecommender")
    parser.add_argument("--specs-json", default=None,
                        help="a JSON file of {name: parameters or null} replacing, adding or "
                             "removing settings")
    args = parser.parse_args(argv)
    specs_by_name = dict(SEQ_MODEL_SPECS)
    if args.specs_json:  # a null setting removes that row
        specs_by_name.update(json.loads(Path(args.specs_json).read_text()))
        specs_by_name = {k: v for k, v in specs_by_name.items() if v is not None}

    data = load_movielens(ml100k_path(args.data))
    X_train, y_test = leave_last_out_split(data.X)
    models = {
        "popularity": PopularityRecommender(),
        "markov": MarkovChainRecommender(),
        "ease(l2=500)": EASERecommender(l2=500.0),
    }
    specs = list(specs_by_name) if args.models == ["all"] else (args.models or [])
    for name in specs:
        for seed in range(args.seeds):
            models[f"{name} [seed={seed}]"] = SeqRecommender(
                **specs_by_name[name], precision=args.precision[0], random_state=seed,
                **({"max_iter": args.max_iter} if args.max_iter else {}),
            )
    for precision in args.precision if not specs else []:
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
            "model": name.split(" [seed=")[0] if specs else name,
            "seed": getattr(est, "random_state", ""),
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
    summary = summarize_seeds(rows, ("NDCG@10", "HR@10", "train_s", "epochs")) if specs else []
    if summary:
        print(markdown_table(summary, ["model", "seeds", "NDCG@10", "HR@10", "train_s",
                                       "epochs"]))
    save_json(
        args.name,
        {
            "rows": rows,
            **({"summary": summary, "specs": {n: specs_by_name[n] for n in specs}}
               if summary else {}),
            "peak_rss_mb": peak_rss_mb(),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
        },
    )


if __name__ == "__main__":
    main()
