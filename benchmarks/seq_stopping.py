"""Stopping rules replayed on recorded runs: what a fit would have kept under another rule.

A run's trajectory does not depend on its stopping rule (validation draws no random numbers
and changes no weight), so a run recorded with a long patience (``n_iter_no_change=20``) and
its per-epoch test curve (``seq_defaults.py``) tells what every shorter rule would have
given: the epoch it stops at, the epoch whose weights it restores, that epoch's test NDCG@10
and HR@10, and the CPU and wall minutes up to the stop. The rule replayed is
:class:`skrec.training.EarlyStopping`'s: an exponential moving average of the monitored value
(weight ``smoothing`` on the newest epoch), stop after ``patience`` epochs without an
improvement of the average by more than ``tol``, restore the best.

Run: ``python benchmarks/seq_stopping.py [--name seq_ml1m_ablation] [--dataset ml1m]``:
prints, for every recorded run, the rule it ran with and the replayed variants.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from _common import RESULTS, markdown_table


def replay(history: list[dict], monitor: str, higher_is_better: bool, patience: int,
           smoothing: float = 0.3, tol: float = 1e-4) -> dict | None:
    """The epoch a rule stops at and the epoch it keeps, with that epoch's test values.

    Returns ``None`` when the recorded run stopped before this rule would have (the record
    cannot tell what came after).
    """
    best, smoothed, no_improve, best_epoch = -np.inf, None, 0, None
    for h in history:
        if monitor not in h:
            return None
        value = float(h[monitor]) * (1 if higher_is_better else -1)
        if np.isfinite(value):
            smoothed = value if smoothed is None else smoothing * value + (1 - smoothing) * smoothed
        if smoothed is not None and smoothed > best + tol:
            best, no_improve, best_epoch = smoothed, 0, h["epoch"]
        else:
            no_improve += 1
        if no_improve >= patience:
            kept = history[best_epoch - 1]
            return {"stop_epoch": h["epoch"], "best_epoch": best_epoch,
                    "test_ndcg@10": kept.get("test_ndcg@10"),
                    "test_hr@10": kept.get("test_hr@10"),
                    "cpu_min": h.get("cpu_min"), "elapsed_min": h.get("elapsed_min")}
    return None


RULES = {  # name: (monitor, higher_is_better, patience, smoothing)
    "ndcg, patience 5 (default)": ("val_ndcg@10", True, 5, 0.3),
    "ndcg, patience 10": ("val_ndcg@10", True, 10, 0.3),
    "ndcg, patience 20": ("val_ndcg@10", True, 20, 0.3),
    "loss, patience 5": ("val_loss", False, 5, 0.3),
    "loss, patience 10": ("val_loss", False, 10, 0.3),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="seq_ml1m_ablation")
    parser.add_argument("--dataset", default="ml1m")
    args = parser.parse_args(argv)
    rows = json.loads((RESULTS / f"{args.name}.json").read_text())["rows"]
    lines = []
    for run in rows:
        if run["dataset"] != args.dataset:
            continue
        hist = run["history"]
        best = max(hist, key=lambda h: h.get("test_ndcg@10", -1))
        lines.append({"row": run["row"], "rule": "as run", "stop": run["epochs"],
                      "kept": run["best_epoch"], "NDCG@10": f"{run['NDCG@10']:.4f}",
                      "HR@10": f"{run['HR@10']:.4f}", "CPU min": f"{run['fit_cpu_min']:.1f}",
                      "best test epoch": f"{best['epoch']} ({best['test_ndcg@10']:.4f})"})
        for name, (monitor, higher, patience, smoothing) in RULES.items():
            r = replay(hist, monitor, higher, patience, smoothing)
            if r is None:
                continue
            lines.append({"row": run["row"], "rule": name, "stop": r["stop_epoch"],
                          "kept": r["best_epoch"], "NDCG@10": f"{r['test_ndcg@10']:.4f}",
                          "HR@10": f"{r['test_hr@10']:.4f}", "CPU min": f"{r['cpu_min']:.1f}",
                          "best test epoch": ""})
    print(markdown_table(lines, list(lines[0]) if lines else []))


if __name__ == "__main__":
    main()
