"""CTRClassifier with and without click counts (``click_counts``), side by side in one run.

On Frappe_x1 (train / valid / test of ``load_frappe``; early stopping on ``valid`` given as
``X_val``) and on the synthetic Criteo-like data of ``ctr_search.py --data synthetic`` (the
same rows: ``ctr_peers.synthetic``, 200,000 training rows by default, numeric fields with
``numeric_scaling="log"`` in every setting), each setting for the given seeds: test AUC and
log loss, fit CPU and wall seconds, epochs (one torch thread). Merged into
``benchmarks/results/ctr_counts.json`` (one entry per data set; a run replaces the rows of the
settings it runs and keeps the others).

With ``--serve``: instead, the latency of ``score_candidates`` for 1,000 candidate items of
one Frappe test request (end to end, encoding and count look-up included) of each setting's
seed-0 model, side by side (``serve`` in the results).

Usage::

    python benchmarks/ctr_counts.py --seeds 0 1 2
    python benchmarks/ctr_counts.py --serve --settings "before: ..." "click_counts=3, ..."
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ctr import KEYS, _fit_ours, _latency  # noqa: E402
from ctr_peers import cpu_info, frappe_path, synthetic  # noqa: E402

from _common import RESULTS, save_json, summarize_seeds  # noqa: E402

NAME = "ctr_counts"
#: The settings compared (CTRClassifier parameters on top of the defaults; each names the three
#: parameters it is about, so that a change of the defaults does not change it).
SETTINGS = {
    "before: no counts, wide_crosses=3, numeric_nan=mean": {
        "click_counts": 0, "wide_crosses": 3, "numeric_nan": "mean"},
    "click_counts=3 (crosses kept)": {
        "click_counts": 3, "wide_crosses": 3, "numeric_nan": "mean"},
    "click_counts=3, wide_crosses=0": {
        "click_counts": 3, "wide_crosses": 0, "numeric_nan": "mean"},
    "numeric_nan=indicator": {
        "click_counts": 0, "wide_crosses": 3, "numeric_nan": "indicator"},
    "click_counts=3, wide_crosses=0, numeric_nan=indicator": {
        "click_counts": 3, "wide_crosses": 0, "numeric_nan": "indicator"},
    "click_counts=4, wide_crosses=0, numeric_nan=indicator": {
        "click_counts": 4, "wide_crosses": 0, "numeric_nan": "indicator"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--datasets", nargs="+", default=["frappe", "synthetic"])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("--data", default=None, help="the Frappe folder")
    ap.add_argument("--n-train", type=int, default=200_000,
                    help="training rows of the synthetic data")
    ap.add_argument("--serve", action="store_true",
                    help="time score_candidates on Frappe instead of the quality runs")
    ap.add_argument("--reps", type=int, default=500)
    args = ap.parse_args()

    import torch

    from skrec.datasets import load_frappe

    torch.set_num_threads(1)
    path = RESULTS / f"{NAME}.json"
    out: dict = json.loads(path.read_text()) if path.is_file() else {}
    run = {"cpu": cpu_info(), "threads": 1, "seeds": args.seeds,
           "command": "python benchmarks/ctr_counts.py " + " ".join(sys.argv[1:])}
    for entry in out.values():  # an entry of one run: its run as the first of its runs
        if "command" in entry and "runs" not in entry:
            entry["runs"] = [{k: entry.pop(k) for k in list(run) if k in entry}]
    if args.serve:
        old = out.get("serve", {"runs": [], "rows": []})
        kept = [r for r in old["rows"] if r["model"] not in args.settings]
        out["serve"] = {"runs": [*old["runs"], run] if kept else [run],
                        "rows": kept + serve(args)}
        save_json(NAME, out)
        return
    for dataset in args.datasets:
        if dataset == "frappe":
            data, extra = load_frappe(frappe_path(args.data)), {}
        else:
            data, extra = synthetic(args.n_train, 0), {"numeric_scaling": "log"}
        rows = [r for r in out.get(dataset, {}).get("rows", [])
                if r["model"] not in args.settings]
        for name in args.settings:
            for seed in args.seeds:
                t0 = time.perf_counter()
                _, row = _fit_ours(data, {**SETTINGS[name], **extra}, seed)
                rows.append({"model": name, "params": {**SETTINGS[name], **extra}, **row})
                print(f"{dataset} {name} seed {seed}: test AUC {row['test_auc']:.4f} log "
                      f"loss {row['test_logloss']:.4f}, fit {row['fit_cpu_s']:.1f} s CPU "
                      f"({row['epochs']} epochs; {time.perf_counter() - t0:.0f} s)",
                      flush=True)
                runs = out.get(dataset, {}).get("runs", [])
                if run not in runs:
                    runs = [*runs, run]
                out[dataset] = {"runs": runs, "rows": rows,
                                "summary": summarize_seeds(rows, KEYS)}
                save_json(NAME, out)


def serve(args) -> list[dict]:
    """score_candidates latency of 1,000 Frappe items for one test request, per setting."""
    import numpy as np
    import pandas as pd

    from skrec.datasets import load_frappe

    data = load_frappe(frappe_path(args.data))
    rng = np.random.default_rng(0)
    items = rng.choice(np.unique(data.X_train["item"]), 1000, replace=False)
    context = data.X_test.iloc[0].drop("item").to_dict()
    candidates = pd.DataFrame({"item": items})
    rows = []
    for name in args.settings:
        clf, row = _fit_ours(data, SETTINGS[name], args.seeds[0])
        latency = _latency(lambda clf=clf: clf.score_candidates(context, candidates), args.reps)
        rows.append({"model": name, "params": SETTINGS[name], "seed": args.seeds[0],
                     "candidates": 1000, "score_candidates": latency,
                     "test_auc": row["test_auc"], "test_logloss": row["test_logloss"]})
        print(name, latency, flush=True)
    return rows


if __name__ == "__main__":
    main()
