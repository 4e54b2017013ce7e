"""Tuning of the sequence encoders x objectives on ML-100K, without the test items.

The test protocol of ``seq_ml100k.py`` holds out each user's last item. Here that item is
removed, and the next-to-last one is held out instead (validation): every setting is fitted on
the remaining history (with its own early stopping inside it) and scored by NDCG@10 / HR@10 on
the validation items, full ranking, seen items excluded. Settings are tried one change at a
time from each model's default. Run: ``python benchmarks/seq_tuning_ml100k.py [--only NAME ...]
[--seeds N]``; results are merged into ``benchmarks/results/seq_tuning_ml100k.json``.
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch

from _common import RESULTS, markdown_table, ml100k_path, save_json, timed
from skrec import SeqRecommender
from skrec.datasets import load_movielens
from skrec.metrics import hit_rate_at_k, ndcg_at_k
from skrec.model_selection import leave_last_out_split
from skrec.objectives import OBJECTIVES, register_objective


@register_objective("masked+last")
class _MaskedAndLast(OBJECTIVES["masked"]):
    """The masked objective with only the last item masked in 10 % of the sequences."""

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, "last_item_prob": 0.1})


#: name -> SeqRecommender parameters (besides precision and random_state).
SETTINGS: dict[str, dict] = {
    # GRU4Rec: from the default (2 layers, dropout 0.3, lr 1e-3), one change at a time
    "gru": {"encoder": "gru"},
    "gru n_layers=1": {"encoder": "gru", "n_layers": 1},
    "gru dropout=0.1": {"encoder": "gru", "dropout": 0.1},
    "gru lr=3e-3": {"encoder": "gru", "learning_rate_init": 3e-3},
    "gru patience=15": {"encoder": "gru", "n_iter_no_change": 15},
    "gru n_layers=1 patience=15": {"encoder": "gru", "n_layers": 1, "n_iter_no_change": 15},
    # BERT4Rec: from the default (mask_prob 0.2, dropout 0.3, lr 1e-3, patience 5)
    "masked": {"objective": "masked"},
    "masked patience=15": {"objective": "masked", "n_iter_no_change": 15},
    "masked mask_prob=0.1": {"objective": "masked", "mask_prob": 0.1},
    "masked mask_prob=0.4": {"objective": "masked", "mask_prob": 0.4},
    "masked mask_prob=0.4 patience=15": {"objective": "masked", "mask_prob": 0.4,
                                         "n_iter_no_change": 15},
    "masked dropout=0.1": {"objective": "masked", "dropout": 0.1},
    "masked lr=3e-3": {"objective": "masked", "learning_rate_init": 3e-3},
    "masked last_item_prob=0.1": {"objective": "masked+last"},
    # the causal transformer's default, for reference
    "sasrec": {},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None)
    parser.add_argument("--only", nargs="+", default=None, help="settings to run")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--extra", default=None,
                        help='JSON of extra settings, e.g. \'{"name": {"encoder": "gru"}}\'')
    args = parser.parse_args(argv)
    settings = dict(SETTINGS)
    if args.extra:
        settings.update(json.loads(args.extra))
    names = args.only or list(settings)

    data = load_movielens(ml100k_path(args.data))
    X_train, _ = leave_last_out_split(data.X)  # the test items are never seen here
    X_fit, y_val = leave_last_out_split(X_train)
    path = RESULTS / "seq_tuning_ml100k.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    rows = {(r["setting"], r["seed"]): r for r in old.get("rows", [])}
    curves = old.get("curves", {})  # per epoch, of the internal early-stopping validation
    for name in names:
        for seed in range(args.seeds):
            est = SeqRecommender(**settings[name], precision="fp32", random_state=seed)
            _, seconds = timed(est.fit, X_fit)
            pred = est.predict(X_fit, k=10)
            row = {
                "setting": name,
                "params": json.dumps(settings[name], sort_keys=True),
                "seed": seed,
                "val_NDCG@10": float(ndcg_at_k(y_val, pred, k=10)),
                "val_HR@10": float(hit_rate_at_k(y_val, pred, k=10)),
                "train_s": seconds,
                "epochs": est.n_iter_,
                "best_epoch": est.best_epoch_,
            }
            rows[(name, seed)] = row
            curves[f"{name} [seed={seed}]"] = {
                "val_loss": [round(h["val_loss"], 4) for h in est.history_],
                "val_ndcg@10": [round(h["val_ndcg@10"], 4) for h in est.history_],
            }
            print(row, flush=True)
    out = sorted(rows.values(), key=lambda r: (r["setting"], r["seed"]))
    summary = []
    for name in dict.fromkeys(r["setting"] for r in out):
        rs = [r for r in out if r["setting"] == name]
        summary.append({
            "setting": name,
            "seeds": len(rs),
            "val_NDCG@10": float(np.mean([r["val_NDCG@10"] for r in rs])),
            "val_HR@10": float(np.mean([r["val_HR@10"] for r in rs])),
            "epochs": float(np.mean([r["epochs"] for r in rs])),
            "train_s": float(np.mean([r["train_s"] for r in rs])),
        })
    print(markdown_table(summary, ["setting", "seeds", "val_NDCG@10", "val_HR@10", "epochs",
                                   "train_s"]))
    save_json("seq_tuning_ml100k", {
        "rows": out,
        "summary": summary,
        "curves": curves,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    })


if __name__ == "__main__":
    main()
