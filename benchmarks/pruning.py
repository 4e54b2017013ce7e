"""Structured pruning + fine-tuning on ML-100K: quality, size and inference speed, side by side.

For SeqRecommender (and AERecommender), one model is trained, then copies are pruned by each
``--amounts`` (structured, default targets) and fine-tuned on the same training matrix with the
shared trainer. The ``0 %`` row is a control: nothing removed, the same fine-tuning. All
models are then measured in the same process, interleaved (round robin), so load on a shared
machine affects them alike:

* NDCG@10 / HR@10, leave-last-out (the latest interaction of each user held out);
* batch inference: ``recommend(X, k=10)`` for all users (median of ``--repeats``);
* single-user latency: ``recommend`` on one user's row, p50/p99 over ``--latency-calls``
  calls per model after warm-up (random users, the same ones for every model).

Run: ``python benchmarks/pruning.py [--data PATH] [--max-iter N] [--fine-tune-epochs N]
[--seq-param d_model=64 ...] [--ae-param hidden_sizes=(600,) ...] [--no-ae]``.
Writes a markdown table to stdout and ``benchmarks/results/pruning.json``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import platform
import time

import numpy as np
import torch

from _common import markdown_table, ml100k_path, peak_rss_mb, save_json, timed
from skrec import AERecommender, SeqRecommender
from skrec.datasets import load_movielens
from skrec.metrics import hit_rate_at_k, ndcg_at_k
from skrec.model_selection import leave_last_out_split
from skrec.pruning import model_summary


def _params(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _load() -> float:
    return os.getloadavg()[0]


def _measure(models: dict, X, y, repeats: int, latency_calls: int, seed: int) -> dict:
    """Quality and interleaved timings of every model in ``models``."""
    rng = np.random.RandomState(seed)
    users = rng.randint(0, X.shape[0], size=latency_calls)
    rows = [X[u] for u in users]  # sliced before timing
    out = {name: {} for name in models}
    for name, est in models.items():
        pred = est.predict(X, k=10)
        out[name]["NDCG@10"] = ndcg_at_k(y, pred, k=10)
        out[name]["per_user"] = ndcg_at_k(y, pred, k=10, average=False)
        out[name]["HR@10"] = hit_rate_at_k(y, pred, k=10)
        est.recommend(X, k=10)  # warm-up
        for r in rows[:20]:
            est.recommend(r, k=10)
    batch = {name: [] for name in models}
    for _ in range(repeats):
        for name, est in models.items():
            batch[name].append(timed(est.recommend, X, k=10)[1])
    lat = {name: [] for name in models}
    for r in rows:
        for name, est in models.items():
            t0 = time.perf_counter()
            est.recommend(r, k=10)
            lat[name].append(time.perf_counter() - t0)
    for name in models:
        out[name]["batch_s"] = float(np.median(batch[name]))
        out[name]["users_per_s"] = X.shape[0] / out[name]["batch_s"]
        ms = np.array(lat[name]) * 1e3
        out[name]["p50_ms"] = float(np.percentile(ms, 50))
        out[name]["p99_ms"] = float(np.percentile(ms, 99))
    return out


def run_family(label, make, X, y, args) -> list[dict]:
    base = make()
    _, fit_s = timed(base.fit, X)
    print(f"[{label}] fitted in {fit_s:.1f}s, {base.n_iter_} epochs", flush=True)
    models = {"unpruned": base}
    info = {"unpruned": {"amount": None, "fine_tune_epochs": 0, "fine_tune_s": 0.0}}
    for amount in args.amounts:
        est = copy.deepcopy(base)
        # Prune, score, then fine-tune: the second call removes nothing more (amounts are
        # counted against the unpruned model) and runs the fine-tuning, exactly as one call
        # prune_(amount, X=X, fine_tune_epochs=...) would.
        est.prune_(amount, X=X, fine_tune_epochs=0, importance=args.importance)
        ndcg_pruned = ndcg_at_k(y, est.predict(X, k=10), k=10)
        groups = est.pruning_report_["groups"]
        _, s = timed(est.prune_, amount, X=X, fine_tune_epochs=args.fine_tune_epochs,
                     importance=args.importance)
        rep = est.pruning_report_
        rep["groups"] = groups
        start = rep["fine_tune_history_start"]
        name = f"pruned {amount:.0%}"
        models[name] = est
        info[name] = {"amount": amount, "fine_tune_epochs": rep["fine_tune_epochs"],
                      "fine_tune_s": s, "ndcg_before_fine_tune": ndcg_pruned,
                      "fine_tune_val_ndcg": [h.get("val_ndcg@10") for h in est.history_[start:]],
                      "groups": groups}
        print(f"[{label}] {name}: {rep['after']['architecture']}, "
              f"{rep['fine_tune_epochs']} fine-tune epochs in {s:.1f}s", flush=True)
    measured = _measure(models, X, y, args.repeats, args.latency_calls, args.seed)
    ref = measured["unpruned"]
    rows = []
    keep = ~np.isnan(ref["per_user"])
    for name, est in models.items():
        summary = model_summary(est.module_)
        m = measured[name]
        rows.append({
            "model": label,
            "variant": name,
            "NDCG@10": m["NDCG@10"],
            "dNDCG %": 100 * (m["NDCG@10"] / ref["NDCG@10"] - 1),
            # standard error of that difference, paired over the same test users
            "SE %": 100 * float(np.std(m["per_user"][keep] - ref["per_user"][keep], ddof=1)
                                / np.sqrt(keep.sum()) / ref["NDCG@10"]),
            "HR@10": m["HR@10"],
            "params": summary["parameters"],
            "MFLOPs/user": summary["flops_per_user"] / 1e6,
            "batch_s": m["batch_s"],
            "speed-up": ref["batch_s"] / m["batch_s"],
            "users/s": m["users_per_s"],
            "p50_ms": m["p50_ms"],
            "p99_ms": m["p99_ms"],
            "NDCG@10 before ft": info[name].get("ndcg_before_fine_tune", ""),
            "ft_epochs": info[name]["fine_tune_epochs"],
            "ft_s": info[name]["fine_tune_s"],
            "ft_val_ndcg": info[name].get("fine_tune_val_ndcg"),
            "groups": info[name].get("groups"),
            "architecture": summary["architecture"],
            "fit_s": fit_s if name == "unpruned" else None,
            "epochs": est.n_iter_,
        })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="ML-100K folder (default: shared/data)")
    parser.add_argument("--max-iter", type=int, default=None, help="cap training epochs")
    parser.add_argument("--amounts", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--fine-tune-epochs", type=int, default=20)
    parser.add_argument("--importance", default="auto", choices=["auto", "weight", "taylor"])
    parser.add_argument("--seq-param", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--ae-param", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-ae", action="store_true", help="skip the autoencoder")
    parser.add_argument("--repeats", type=int, default=5, help="batch-inference repetitions")
    parser.add_argument("--latency-calls", type=int, default=300, help="single-user calls")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = _load()

    data = load_movielens(ml100k_path(args.data))
    X_train, y_test = leave_last_out_split(data.X)
    common = {"random_state": args.seed, "device": "cpu"}
    if args.max_iter:
        common["max_iter"] = args.max_iter
    seq_params = {**common, **_params(args.seq_param)}
    ae_params = {**common, **_params(args.ae_param)}
    rows = run_family("SeqRecommender", lambda: SeqRecommender(**seq_params), X_train, y_test,
                      args)
    if not args.no_ae:
        rows += run_family("AERecommender", lambda: AERecommender(**ae_params), X_train,
                           y_test, args)
    columns = ["model", "variant", "NDCG@10", "dNDCG %", "SE %", "NDCG@10 before ft", "HR@10",
               "params", "MFLOPs/user", "batch_s", "speed-up", "p50_ms", "p99_ms", "ft_epochs"]
    table = markdown_table(rows, columns)
    load_after = _load()
    print(table)
    print(f"\nload average (1 min) before/after: {load_before:.2f} / {load_after:.2f} on "
          f"{os.cpu_count()} cores; torch threads {torch.get_num_threads()}")
    path = save_json("pruning", {
        "rows": rows,
        "table": table,
        "args": vars(args),
        "seq_params": {k: repr(v) for k, v in seq_params.items()},
        "ae_params": {k: repr(v) for k, v in ae_params.items()},
        "load_average_before_after": [load_before, load_after],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "peak_rss_mb": peak_rss_mb(),
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
