"""Wall seconds per MovieLens-1M epoch of the default SeqRecommender at 1 and 2 torch threads.

The defaults table (``seq_defaults.py``) fits on one thread, so that its CPU minutes do not
depend on the other load of a shared machine; a user's fit takes every core. This measures the
factor between the two side by side in one process: three short fits of ``epochs`` epochs
each (2 threads, 1 thread, 2 threads again; training and validation of every epoch, the
model's set-up included), on a machine whose other cores should be idle. The factor turns
the table's one-thread minutes into a fit's wall minutes on the whole machine.

Run: ``python benchmarks/seq_threads.py [--epochs 3]``; writes ``results/seq_threads.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from seq_defaults import load, machine

from _common import save_json
from skrec import SeqRecommender


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    X_train, _ = load("ml1m")
    runs = []
    for threads in (2, 1, 2):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        rec = SeqRecommender(max_iter=args.epochs, random_state=0).fit(X_train)
        wall = time.perf_counter() - t0
        runs.append({"threads": threads, "fit_wall_s": wall,
                     "epoch_s": [h["seconds"] for h in rec.history_],
                     "wall_s_per_epoch": wall / args.epochs})
        print(runs[-1], flush=True)
    one = np.mean([r["wall_s_per_epoch"] for r in runs if r["threads"] == 1])
    two = np.mean([r["wall_s_per_epoch"] for r in runs if r["threads"] == 2])
    save_json("seq_threads", {
        "dataset": "ml1m", "epochs_per_fit": args.epochs, "runs": runs,
        "wall_s_per_epoch_1_thread": one, "wall_s_per_epoch_2_threads": two,
        "speedup_2_threads": one / two, "machine": machine()})
    print(f"2 threads: {one / two:.2f}x the epochs per wall second of 1 thread")


if __name__ == "__main__":
    main()
