"""The defaults table: a default SeqRecommender on ML-100K, Amazon Games and MovieLens-1M.

Every change of a SeqRecommender default lands with this table (and loses no more than 1 % on
any data set). Protocol of the other sequence benchmarks: each user's last item is the test
target, the model is fitted on the rest (``leave_last_out_split``), top-10 over the full
catalogue with the user's seen items excluded. Data: ML-100K through
:func:`skrec.datasets.load_movielens` (order by timestamp, as ``seq_ml100k.py``; 3 seeds by
default), Amazon Games and MovieLens-1M (SASRec preprocessing, whose file lacks each user's
true last item) through :func:`skrec.datasets.load_sequences` (1 seed each).

Each run records NDCG@10 and HR@10, the epochs, the best (restored) epoch, the fit's minutes,
the process's peak RSS, the torch threads and the per-epoch history (training loss, validation
values, seconds). For the **time-to-quality curve** a callback also scores the test users
after every epoch with the weights that validation sees (the weight average, when
``weight_averaging`` is set), out of the timing: ``history[i]["elapsed_min"]`` is the fit's
wall time up to that epoch without that scoring, ``test_ndcg@10`` the test NDCG@10 of those
weights and ``kept_test_ndcg@10`` that of the epoch early stopping would restore if the fit
were stopped there (as Ctrl-C does). ``at_minutes`` reads the latter at 15, 30 and 60 minutes
of wall time, ``at_cpu_minutes`` at 15, 30 and 60 minutes of the process's CPU time
(``cpu_min``; also without the scoring): what a user with that much time gets from the default.
On a shared machine the wall time depends on the other load; the CPU time of a one-thread fit
does not (much), and is what the fit takes on an idle core.

Run: ``python benchmarks/seq_defaults.py [--datasets ml100k games ml1m] [--seeds 3]
[--threads 2] [--set JSON] [--row NAME] [--append]``. ``--set`` overrides parameters (a row
named ``--row``, ``default`` without overrides); ``--append`` merges the runs into the existing
``results/<name>.json`` (a run of the same row, data set and seed replaces the old one), so
that rows and data sets can be measured in separate processes (a default ML-1M fit takes about
an hour). Run one data set per process to get each one's own peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import skrec
from _common import (
    RESULTS,
    games_path,
    markdown_table,
    mean_sd,
    ml1m_path,
    ml100k_path,
    peak_rss_mb,
)
from skrec import SeqRecommender
from skrec.callbacks import Callback
from skrec.datasets import load_movielens, load_sequences
from skrec.metrics import hit_rate_at_k, ndcg_at_k
from skrec.model_selection import leave_last_out_split

DATASETS = ("ml100k", "games", "ml1m")
#: Seeds per data set unless --seeds says otherwise.
DEFAULT_SEEDS = {"ml100k": 3, "games": 1, "ml1m": 1}
#: Minutes at which the table reads the time-to-quality curve.
CURVE_MINUTES = (15, 30, 60)


def load(dataset: str):
    """``(X_train, y_test)`` of a data set, leave-last-out."""
    if dataset == "ml100k":
        X = load_movielens(ml100k_path()).X
    elif dataset == "games":
        X = load_sequences(games_path()).X
    elif dataset == "ml1m":
        X = load_sequences(ml1m_path()).X
    else:
        raise SystemExit(f"unknown data set {dataset!r}; choose from {DATASETS}")
    return leave_last_out_split(X)


class TestCurve(Callback):
    """Score the test users after every epoch, out of the fit's timing.

    Scores the weights that validation and early stopping see: a copy of the trainer's
    weight average (recomputed here the same way: after every epoch the average takes
    ``weight_averaging`` of the new weights), or the latest weights without averaging. The
    training weights are put back before the next epoch, so training is unchanged (inference
    draws no random numbers).
    """

    def __init__(self, X_train, y_test, t_start: float, cpu_start: float):
        self.X_train, self.y_test = X_train, y_test
        self.t_start, self.cpu_start = t_start, cpu_start
        self.scoring_s = self.scoring_cpu_s = 0.0
        self._average: dict | None = None

    def on_epoch_end(self, trainer, record):
        t0, c0 = time.perf_counter(), time.process_time()
        record["elapsed_min"] = (t0 - self.t_start - self.scoring_s) / 60
        record["cpu_min"] = (c0 - self.cpu_start - self.scoring_cpu_s) / 60
        est, module = trainer.estimator, trainer.module
        weight = est.weight_averaging
        state = module.state_dict()
        own = {k: v.detach().clone() for k, v in state.items()}
        if weight is not None and weight < 1:
            if self._average is None:
                self._average = {k: v.clone() for k, v in own.items()}
            else:
                for key, value in own.items():
                    avg = self._average[key]
                    if avg.is_floating_point():
                        avg.lerp_(value.to(avg.dtype), weight)
                    else:
                        avg.copy_(value)
            module.load_state_dict(self._average)
        try:
            pred = est.predict(self.X_train, k=10)
        finally:
            module.load_state_dict(own)
        record["test_ndcg@10"] = float(ndcg_at_k(self.y_test, pred, k=10))
        record["test_hr@10"] = float(hit_rate_at_k(self.y_test, pred, k=10))
        record["kept_epoch"] = trainer.state.best_epoch or record["epoch"]
        print("epoch", json.dumps({k: v for k, v in record.items()
                                   if isinstance(v, int | float | str)}), flush=True)
        self.scoring_s += time.perf_counter() - t0
        self.scoring_cpu_s += time.process_time() - c0


def fit_one(dataset: str, X_train, y_test, params: dict, seed: int, curve: bool,
            save_to: str | None = None) -> dict:
    est = SeqRecommender(random_state=seed, **params)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    callback = TestCurve(X_train, y_test, t_start, cpu_start) if curve else None
    if callback is not None:
        est.set_params(callbacks=[*(params.get("callbacks") or []), callback])
    est.fit(X_train)
    fit_s = time.perf_counter() - t_start - (callback.scoring_s if callback else 0.0)
    fit_cpu_s = time.process_time() - cpu_start - (callback.scoring_cpu_s if callback else 0.0)
    pred = est.predict(X_train, k=10)
    if save_to:
        if callback is not None:
            est.set_params(callbacks=params.get("callbacks"))
        skrec.save(est, f"{save_to}.{dataset}.seed{seed}.skrec")
    keys = ("epoch", "loss", "val_loss", "val_ndcg@10", "seconds", "elapsed_min", "cpu_min",
            "test_ndcg@10", "test_hr@10", "kept_epoch")
    history = [{k: h[k] for k in keys if k in h} for h in est.history_]
    for h in history:
        if "kept_epoch" in h:
            h["kept_test_ndcg@10"] = history[h["kept_epoch"] - 1].get("test_ndcg@10")
    row = {
        "dataset": dataset, "seed": seed,
        "NDCG@10": float(ndcg_at_k(y_test, pred, k=10)),
        "HR@10": float(hit_rate_at_k(y_test, pred, k=10)),
        "epochs": est.n_iter_, "best_epoch": est.best_epoch_,
        "fit_min": fit_s / 60, "fit_cpu_min": fit_cpu_s / 60,
        "s_per_epoch": fit_s / max(est.n_iter_, 1),
        "cpu_s_per_epoch": fit_cpu_s / max(est.n_iter_, 1),
        "peak_rss_mb": peak_rss_mb(),  # of the process so far
        "threads": torch.get_num_threads(),
        "precision": est.precision_, "batch_size_": est.batch_size_, "loss_": est.loss_,
        "validation_metric_": getattr(est, "validation_metric_", None),
        "history": history,
    }
    if curve:
        row["at_minutes"] = {str(m): curve_at_kept(history, m) for m in CURVE_MINUTES}
        row["at_cpu_minutes"] = {str(m): curve_at_kept(history, m, "cpu_min")
                                 for m in CURVE_MINUTES}
    return row


def curve_at_kept(history: list[dict], minutes: float, clock: str = "elapsed_min"
                  ) -> float | None:
    """Test NDCG@10 of the weights a fit interrupted at ``minutes`` keeps: those of the best
    epoch so far (early stopping), of the last finished epoch without it; ``None`` before the
    first epoch ends. A fit that stopped earlier keeps its final model."""
    done = [h for h in history if h[clock] <= minutes]
    if not done:
        return None
    return done[-1].get("kept_test_ndcg@10")


def machine() -> dict:
    """CPU model and the flags that decide the precision, torch version, git commit."""
    flags, model = set(), platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    try:
        root = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    return {"cpu": model, "cpu_flags": sorted(f for f in wanted if f in flags),
            "cpus": os.cpu_count(), "torch": torch.__version__, "commit": commit}


def summarize(runs: list[dict]) -> list[dict]:
    """One line per (row, data set): mean ± sd over seeds."""
    out = []
    for key in dict.fromkeys((r["row"], r["dataset"]) for r in runs):
        group = [r for r in runs if (r["row"], r["dataset"]) == key]
        line = {"row": key[0], "dataset": key[1],
                **mean_sd(group, ("NDCG@10", "HR@10", "epochs", "best_epoch", "fit_min",
                                  "fit_cpu_min"))}
        line["peak_rss_mb"] = max(r["peak_rss_mb"] for r in group)
        line["threads"] = "/".join(sorted({str(r["threads"]) for r in group}))
        line["precision"] = "/".join(sorted({r["precision"] for r in group}))
        line["commit"] = "/".join(sorted({r["machine"]["commit"] for r in group}))
        line["cpu_flags"] = " ".join(group[0]["machine"]["cpu_flags"])
        for m in CURVE_MINUTES:
            for clock, label in (("at_minutes", "min"), ("at_cpu_minutes", "CPU min")):
                values = [r.get(clock, {}).get(str(m)) for r in group]
                values = [v for v in values if v is not None]
                line[f"NDCG@10 at {m} {label}"] = (
                    float(np.mean(values)) if values and len(values) == len(group) else None)
        out.append(line)
    return out


def save(name: str, new_runs: list[dict], append: bool) -> Path:
    """Merge ``new_runs`` into ``results/<name>.json`` (re-read now: another process may
    have added rows) and write it atomically."""
    path = RESULTS / f"{name}.json"
    runs = []
    if append and path.is_file():
        runs = json.loads(path.read_text())["rows"]
    keys = {(r["row"], r["dataset"], r["seed"]) for r in new_runs}
    runs = [r for r in runs if (r["row"], r["dataset"], r["seed"]) not in keys] + new_runs
    order = {d: i for i, d in enumerate(DATASETS)}
    runs.sort(key=lambda r: (r["row"] != "default", r["row"], order.get(r["dataset"], 9),
                             r["seed"]))
    payload = {"table": summarize(runs), "rows": runs,
               "protocol": "leave-last-out, top-10 over the full catalogue, seen items "
                           "excluded; fit_min excludes the per-epoch test scoring"}
    RESULTS.mkdir(exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float))
    tmp.replace(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per data set (default: 3 on ml100k, 1 elsewhere)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--set", default="{}", help="JSON of SeqRecommender parameters")
    parser.add_argument("--row", default=None, help="row name (default: 'default' without "
                                                     "--set, else the JSON)")
    parser.add_argument("--no-curve", action="store_true",
                        help="skip the per-epoch test scoring")
    parser.add_argument("--append", action="store_true",
                        help="merge into the existing results/<name>.json")
    parser.add_argument("--name", default="seq_defaults", help="result file name")
    parser.add_argument("--save", default=None,
                        help="save each fitted model to SAVE.<dataset>.seed<seed>.skrec")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = json.loads(args.set)
    row_name = args.row or ("default" if not params else json.dumps(params, sort_keys=True))
    info = machine()
    runs = []
    for dataset in args.datasets:
        X_train, y_test = load(dataset)
        n_seeds = args.seeds or DEFAULT_SEEDS[dataset]
        for seed in range(args.first_seed, args.first_seed + n_seeds):
            run = fit_one(dataset, X_train, y_test, params, seed, not args.no_curve, args.save)
            run = {"row": row_name, "params": params, **run, "machine": info}
            runs.append(run)
            print({k: v for k, v in run.items() if k not in ("history", "machine")},
                  flush=True)
            save(args.name, runs, append=True if runs[:-1] else args.append)
    table = summarize(runs)
    cols = ["row", "dataset", "NDCG@10", "HR@10", "epochs", "best_epoch", "fit_min",
            "fit_cpu_min", "peak_rss_mb", "threads", "NDCG@10 at 15 CPU min",
            "NDCG@10 at 30 CPU min", "NDCG@10 at 60 CPU min"]
    print(markdown_table(table, cols))


if __name__ == "__main__":
    main()
