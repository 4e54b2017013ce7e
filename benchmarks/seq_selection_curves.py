"""Which epoch early stopping keeps: per-epoch test curves and the stopping rules replayed.

One SeqRecommender fit with early stopping switched off in effect (``n_iter_no_change`` larger
than ``max_iter``) records, after every epoch, the validation values the estimator monitors
(``val_loss``, ``val_ndcg@10``) and the test NDCG@10 of the leave-last-out protocol (full
ranking, seen items excluded). Stopping rules are then replayed on the recorded validation
values: each rule's best epoch, the epoch it would stop at, and the test NDCG@10 of the best
epoch, which is what a fit with that rule would restore (the training up to that epoch is the
same run). This is how ``validation_metric="auto"`` was chosen (see the training guide).

Run: ``python benchmarks/seq_selection_curves.py --data games --seed 0 --set '{"loss": "ce"}'
[--epochs 36]``; every run appends to ``results/seq_selection_curves.json``. ``--replay``
only recomputes the rule table of the stored runs.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from _common import RESULTS, games_path, markdown_table, ml100k_path, save_json
from skrec import SeqRecommender
from skrec.callbacks import Callback
from skrec.datasets import load_movielens, load_sequences
from skrec.metrics import ndcg_at_k
from skrec.model_selection import leave_last_out_split
from skrec.training import EarlyStopping

#: A module without weights: the replay keeps no best state.
_NO_WEIGHTS = torch.nn.Module()

#: name -> (monitored key, higher is better, patience, smoothing weight of the newest epoch)
RULES = {
    "loss, smoothed 0.3, patience 5 (auto below 1,000 validation users)":
        ("val_loss", False, 5, 0.3),
    "loss, smoothed 0.3, patience 10": ("val_loss", False, 10, 0.3),
    "ndcg@10, smoothed 0.3, patience 5 (auto from 1,000 validation users)":
        ("val_ndcg@10", True, 5, 0.3),
    "ndcg@10, smoothed 0.3, patience 10": ("val_ndcg@10", True, 10, 0.3),
    "ndcg@10, raw, patience 10": ("val_ndcg@10", True, 10, 1.0),
}


class TestCurve(Callback):
    """Adds the test NDCG@10 of ``(X, y)`` to every epoch's record."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def on_epoch_end(self, trainer, record):
        t0 = time.perf_counter()
        pred = trainer.estimator.predict(self.X, k=10)
        record["test_ndcg@10"] = float(ndcg_at_k(self.y, pred, k=10))
        record["test_s"] = time.perf_counter() - t0
        trainer.module.train()
        print({k: record[k] for k in ("epoch", "loss", "val_loss", "val_ndcg@10",
                                      "test_ndcg@10", "seconds") if k in record}, flush=True)


def replay(history: list[dict], key: str, higher: bool, patience: int,
           smoothing: float) -> tuple[int, int, bool]:
    """``(best epoch, last epoch, stopped)`` of the early-stopping rule on ``history``: the
    trainer's own :class:`~skrec.training.EarlyStopping`, with SeqRecommender's ``tol``."""
    stopper = EarlyStopping(key, higher_is_better=higher, patience=patience,
                            tol=SeqRecommender().tol, smoothing=smoothing)
    for record in history:
        stopper.update(record["epoch"], record, _NO_WEIGHTS)
        if stopper.should_stop:
            return stopper.best_epoch, record["epoch"], True
    return stopper.best_epoch, history[-1]["epoch"], False


def rule_table(runs: list[dict]) -> list[dict]:
    rows = []
    for run in runs:
        test = {r["epoch"]: r["test_ndcg@10"] for r in run["history"]}
        best_test_epoch = max(test, key=test.get)
        for name, spec in RULES.items():
            best, last, stopped = replay(run["history"], *spec)
            rows.append({"run": run["name"], "rule": name, "best_epoch": best,
                         "stop_epoch": last if stopped else f">{last} (not stopped)",
                         "test_NDCG@10": test[best],
                         "best_test_epoch": f"{best_test_epoch} ({test[best_test_epoch]:.4f})"})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", choices=["ml100k", "games"], default="ml100k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--set", default="{}", help="JSON of SeqRecommender parameters")
    parser.add_argument("--replay", action="store_true", help="only recompute the rule table")
    args = parser.parse_args(argv)
    path = RESULTS / "seq_selection_curves.json"
    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    if not args.replay:
        X = (load_sequences(games_path()).X if args.data == "games"
             else load_movielens(ml100k_path()).X)
        X_train, y_test = leave_last_out_split(X)
        params = {**json.loads(args.set), "max_iter": args.epochs,
                  "n_iter_no_change": args.epochs + 1, "random_state": args.seed}
        est = SeqRecommender(callbacks=[TestCurve(X_train, y_test)], **params)
        est.fit(X_train)
        runs.append({"name": f"{args.data} {json.loads(args.set) or 'default'} seed "
                             f"{args.seed}", "data": args.data, "params": params,
                     "loss_": est.loss_, "batch_size_": est.batch_size_,
                     "precision": est.precision_, "history": est.history_})
    rows = rule_table(runs)
    print(markdown_table(rows, list(rows[0])) if rows else "no runs")
    save_json("seq_selection_curves", {"runs": runs, "rules": rows})


if __name__ == "__main__":
    main()
