"""How long a default SeqRecommender fit takes on ~1M interactions, early stopping included.

The goal of the sequence-model issue: a default fit of an ML-1M-sized data set stops early
within 60 minutes on 2 cores. The data are synthetic with ML-1M's shape
(:func:`skrec.datasets.make_interactions`: 6,040 users x 3,500 items, mean history 165, about
1M interactions); the protocol is leave-last-out, the fit is ``SeqRecommender(random_state=0)``
with every default (``batch_size="auto"`` takes 128 here), and the result records the epochs
run, the best epoch, the seconds per epoch and in all, and the test NDCG@10 (full ranking,
seen items excluded).

Run: ``python benchmarks/seq_1m_fit.py [--threads 2] [--set JSON]``; ``--set`` changes
parameters (for example ``'{"batch_size": 32}'`` for the former default).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from _common import peak_rss_mb, save_json
from skrec import SeqRecommender
from skrec.datasets import make_interactions
from skrec.model_selection import leave_last_out_split


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice)")
    parser.add_argument("--set", default="{}", help="JSON of SeqRecommender parameters")
    parser.add_argument("--name", default="seq_1m_fit", help="result file name")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    X = make_interactions(n_users=6040, n_items=3500, mean_length=165, random_state=0)
    X_train, y_test = leave_last_out_split(X)
    params = {"random_state": 0, **json.loads(args.set)}
    est = SeqRecommender(**params)
    t0 = time.perf_counter()
    est.fit(X_train)
    fit_s = time.perf_counter() - t0
    seconds = [h["seconds"] for h in est.history_]
    result = {
        "data": {"users": X.shape[0], "items": X.shape[1], "interactions": int(X.nnz)},
        "params": params,
        "batch_size_": est.batch_size_,
        "precision": est.precision_,
        "epochs": est.n_iter_,
        "best_epoch": est.best_epoch_,
        "fit_s": fit_s,
        "fit_min": fit_s / 60,
        "median_epoch_s": float(np.median(seconds)),
        "NDCG@10": float(est.score(X_train, y_test, k=10)),
        "history": [{k: h[k] for k in ("epoch", "loss", "val_loss", "val_ndcg@10", "seconds")
                     if k in h} for h in est.history_],
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=1))
    save_json(args.name, result)


if __name__ == "__main__":
    main()
