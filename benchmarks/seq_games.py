"""SeqRecommender against popularity, Markov chain and EASE on Amazon Games, leave-last-out.

Amazon "Video Games" in the SASRec paper's preprocessing (31,013 users, 23,715 items, 287,107
interactions, 9.3 per user), read with :func:`skrec.datasets.load_sequences`; each user's order
is the file's line order. Protocol: each user's last item is the test target, the model is
fitted on the rest (``leave_last_out_split``), top-10 over the full catalogue with the user's
seen items excluded (users whose only item is the target get the most popular items).

EASE's ``l2`` is tuned on a validation split of the training data only: every user's last
training item is held out, EASE is fitted on the items before it for each ``l2`` of
``--ease-grid``, the ``l2`` with the best validation NDCG@10 is kept and EASE is refitted on the
whole training data. Popularity, Markov and EASE are deterministic (one run each);
SeqRecommender rows are repeated over ``--seeds`` seeds (mean ± sd).

Run: ``python benchmarks/seq_games.py [--data PATH] [--seeds 3]``. Rows for other settings of
SeqRecommender: ``--seq NAME=JSON`` (repeatable), e.g.
``--seq default={} --seq 'batch128={"batch_size": 128}'``; ``--no-baselines`` skips the
baselines; ``--append`` adds the new runs to the existing result file (and recomputes its
table), so rows and seeds can be measured in several sessions (``--first-seed 1 --seeds 2``
adds seeds 1 and 2). Long: a default fit takes about an hour on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from _common import RESULTS, games_path, markdown_table, mean_sd, peak_rss_mb, save_json, timed
from skrec import SeqRecommender
from skrec.baselines import EASERecommender, MarkovChainRecommender, PopularityRecommender
from skrec.datasets import load_sequences
from skrec.metrics import hit_rate_at_k, ndcg_at_k
from skrec.model_selection import leave_last_out_split

#: SeqRecommender rows measured by default: name -> parameters (on top of random_state).
SEQ_ROWS: dict[str, dict] = {"default": {}}


def parse_rows(items: list[str] | None) -> dict[str, dict]:
    """``["name=JSON", ...]`` -> ``{name: params}``; ``None`` gives :data:`SEQ_ROWS`."""
    if not items:
        return dict(SEQ_ROWS)
    rows = {}
    for item in items:
        name, sep, params = item.partition("=")
        if not sep:
            raise SystemExit(f"--seq expects NAME=JSON, got {item!r}")
        rows[name] = json.loads(params or "{}")
    return rows


def evaluate(est, X, y) -> dict:
    pred = est.predict(X, k=10)
    return {"NDCG@10": ndcg_at_k(y, pred, k=10), "HR@10": hit_rate_at_k(y, pred, k=10)}


def tune_ease(X_train, grid) -> tuple[float, list[dict]]:
    """Best ``l2`` by validation NDCG@10 on each user's last training item."""
    X_fit, y_val = leave_last_out_split(X_train)
    trials = []
    for l2 in grid:
        est, seconds = timed(EASERecommender(l2=l2).fit, X_fit)
        trials.append({"l2": l2, "val_NDCG@10": evaluate(est, X_fit, y_val)["NDCG@10"],
                       "fit_s": seconds})
        print("ease validation", trials[-1], flush=True)
        del est
    best = max(trials, key=lambda t: t["val_NDCG@10"])["l2"]
    return best, trials


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None, help="folder or file of the sequences")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--append", action="store_true",
                        help="add the runs to the existing results/<name>.json")
    parser.add_argument("--seq", action="append", help="NAME=JSON SeqRecommender row")
    parser.add_argument("--ease-grid", type=float, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--name", default="seq_games", help="result file name")
    args = parser.parse_args(argv)

    data = load_sequences(games_path(args.data))
    X_train, y_test = leave_last_out_split(data.X)
    runs: list[dict] = []
    ease_trials: list[dict] = []
    if args.append and (RESULTS / f"{args.name}.json").is_file():
        previous = json.loads((RESULTS / f"{args.name}.json").read_text())
        runs, ease_trials = previous["rows"], previous.get("ease_validation", [])
    if not args.no_baselines:
        baselines = {"popularity": PopularityRecommender, "markov": MarkovChainRecommender}
        for name, cls in baselines.items():
            est, seconds = timed(cls().fit, X_train)
            runs.append({"model": name, **evaluate(est, X_train, y_test), "train_s": seconds})
            print(runs[-1], flush=True)
        l2, ease_trials = tune_ease(X_train, args.ease_grid)
        est, seconds = timed(EASERecommender(l2=l2).fit, X_train)
        runs.append({"model": f"ease(l2={l2:g})", **evaluate(est, X_train, y_test),
                     "train_s": seconds})
        print(runs[-1], flush=True)
        del est
    for name, params in parse_rows(args.seq).items():
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            est, seconds = timed(SeqRecommender(random_state=seed, **params).fit, X_train)
            runs.append({
                "model": f"seq[{name}]", "seed": seed, **evaluate(est, X_train, y_test),
                "train_s": seconds, "epochs": est.n_iter_, "best_epoch": est.best_epoch_ or "",
                "precision": est.precision_, "params": params,
                "resolved": {"batch_size_": est.batch_size_, "loss_": est.loss_,
                             "validation_metric_": getattr(est, "validation_metric_", None)},
            })
            print(runs[-1], flush=True)
    threads = torch.get_num_threads()
    for run in runs:
        run.setdefault("threads", threads)
    summary = []
    for model in dict.fromkeys(r["model"] for r in runs):
        group = [r for r in runs if r["model"] == model]
        summary.append({"model": model, **mean_sd(group),
                        "precision": group[0].get("precision", ""),
                        "threads": "/".join(sorted({str(r["threads"]) for r in group}))})
    cols = ["model", "NDCG@10", "HR@10", "train_s", "epochs", "seeds", "precision", "threads"]
    print(markdown_table(summary, cols))
    save_json(args.name, {
        "table": summary,
        "rows": runs,
        "ease_validation": ease_trials,
        "data": data.DESCR.split("\n\n")[1].strip(),
        "peak_rss_mb": peak_rss_mb(),
        "torch_threads": threads,
        "machine": platform.processor() or platform.machine(),
    })


if __name__ == "__main__":
    main()
