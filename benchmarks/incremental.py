"""Per-event latency of incremental serving (SequenceSession) against a full recompute.

A known user adds one event; how long until the next top-10? For histories of 10, 50 and 200
items (one thread, the default SeqRecommender architecture: 2 blocks, d_model 64, max_len 200),
each event is served four ways, interleaved so that they share the machine's noise:

* ``recommend``: the stateless public path, ``rec.recommend(row)`` on the matrix row of the
  whole history (validation, sequence building, full pass, ranking);
* ``add (unprepared)``: ``session.add(item)`` on a session not prepared since the last event:
  the full pass (``prepare``) runs on the critical path, then the one-position step;
* ``add (prepared)``: ``session.add(item)`` after ``session.prepare()`` ran between events
  (what a service does after sending its answer): one position per block, then ranking;
* ``prepare``: the full pass itself, off the critical path.

Positions are counted from the end, so the earlier items' keys and values cannot be reused from
the previous event; ``prepare`` computes them in their next layout (see
:class:`skrec.session.SequenceSession`). The total work per event therefore stays one full pass;
what the session removes from the latency is that pass (and the stateless path's overheads).
The model is trained for one epoch (latency does not depend on the weights). Run:
``python benchmarks/incremental.py [--events N] [--n-items N] [--precision fp32 auto]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import scipy.sparse as sp
import torch

from _common import markdown_table, ml100k_path, peak_rss_mb, save_json

METHODS = ("recommend", "add (unprepared)", "add (prepared)", "prepare")


def _fit(n_items: int | None, precision: str):
    from skrec import SeqRecommender
    from skrec.datasets import load_movielens, make_interactions

    if n_items is None and ml100k_path(None).exists():
        X, data = load_movielens(ml100k_path(None)).X, "ml-100k"
    else:
        n = n_items or 1682
        X, data = make_interactions(n_users=500, n_items=n, mean_length=30, random_state=0), \
            f"synthetic-{n}"
    rec = SeqRecommender(max_iter=1, early_stopping=False, random_state=0, device="cpu",
                         precision=precision).fit(X)
    return rec, data


def measure(rec, history_len: int, events: int, warmup: int, seed: int = 0) -> dict:
    """Seconds per event of each method, over ``events`` users (interleaved)."""
    rng = np.random.default_rng(seed)
    n_items = rec.n_features_in_
    times = {m: [] for m in METHODS}
    for e in range(warmup + events):
        items = rng.choice(n_items, history_len + 1, replace=False)
        history, new = items[:-1], int(items[-1])
        row = sp.csr_matrix((np.arange(1.0, history_len + 2), (np.zeros_like(items), items)),
                            shape=(1, n_items))  # values give the order
        unprepared = rec.start_session(history)
        prepared = rec.start_session(history)
        t = {}
        t0 = time.perf_counter()
        rec.recommend(row, k=10)
        t["recommend"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        unprepared.add(new, k=10)
        t["add (unprepared)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepared.prepare()
        t["prepare"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepared.add(new, k=10)
        t["add (prepared)"] = time.perf_counter() - t0
        if e >= warmup:
            for m in METHODS:
                times[m].append(t[m])
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--n-items", type=int, default=None,
                        help="synthetic catalogue size (default: ML-100K if present)")
    parser.add_argument("--precision", nargs="+", default=["fp32", "auto"])
    parser.add_argument("--name", default="incremental")
    parser.add_argument("--note", default="", help="stored in the result file (how it was run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows, ratios = [], []
    for precision in args.precision:
        rec, data = _fit(args.n_items, precision)
        for L in args.lengths:
            times = measure(rec, L, args.events, args.warmup)
            p50 = {}
            for m in METHODS:
                ms = np.asarray(times[m]) * 1e3
                p50[m] = float(np.percentile(ms, 50))
                rows.append({"data": data, "n_items": rec.n_features_in_,
                             "precision": rec.precision_, "history_len": L, "method": m,
                             "p50_ms": p50[m], "p99_ms": float(np.percentile(ms, 99)),
                             "mean_ms": float(ms.mean())})
            ratios.append({"precision": rec.precision_, "history_len": L,
                           "recommend / add (prepared)": p50["recommend"] / p50["add (prepared)"],
                           "add (unprepared) / add (prepared)":
                               p50["add (unprepared)"] / p50["add (prepared)"]})
            print(ratios[-1], flush=True)
    print(markdown_table(rows, ["data", "precision", "history_len", "method", "p50_ms",
                                "p99_ms", "mean_ms"]))
    print(markdown_table(ratios, list(ratios[0])))
    save_json(args.name, {"note": args.note, "rows": rows, "p50_ratios": ratios,
                          "events": args.events,
                          "torch_threads": torch.get_num_threads(),
                          "machine": platform.processor() or platform.machine(),
                          "peak_rss_mb": peak_rss_mb()})


if __name__ == "__main__":
    main()
