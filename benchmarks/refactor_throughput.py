"""Fit throughput of SeqRecommender before and after a refactoring, side by side in one run.

Runs the same fit (SASRec defaults of ``benchmarks/throughput.py``: d=64, 2 blocks, 2 heads,
d_ff=256, max_len=200, batch 128, full softmax, early stopping off, ``--epochs`` epochs, one
torch thread) with the source tree of ``--before`` and with this one, alternately, each in its
own subprocess, for ``--rounds`` rounds. Reports the median training tokens/s (epochs after
the first, as ``history_`` records them) of each and their ratio; each subprocess also times a
1024 x 1024 fp32 matrix product (GFLOP/s), so that a change in machine load between runs
shows. Writes ``benchmarks/results/<name>.json``.

Run: ``python benchmarks/refactor_throughput.py --before /path/to/old/checkout [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from _common import markdown_table, ml100k_path, save_json

HERE = Path(__file__).resolve().parent

WORKER = r"""
import json, time, torch, numpy as np
torch.set_num_threads(1)
from skrec import SeqRecommender
from skrec.datasets import load_movielens, make_interactions
import skrec
path = {data!r}
X = (load_movielens(path).X if path else make_interactions(2000, 1700, random_state=0))
params = dict(d_model=64, n_layers=2, n_heads=2, d_ff=256, max_len=200, dropout=0.2)
est = SeqRecommender(**params, max_iter={epochs}, early_stopping=False, precision="fp32",
                     batch_size=128, random_state=0, device="cpu").fit(X)
skrec_rate = float(np.median([h["targets_per_s"] for h in est.history_[1:]]))
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
best = min(
    (lambda t0: (a @ b, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(10))
print(json.dumps({{"skrec": skrec_rate, "probe_gflops": 2 * 1024**3 / best / 1e9,
                  "source": skrec.__file__}}))
"""


def run(tree: Path, epochs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    data = ml100k_path()
    code = WORKER.format(data=str(data) if data.exists() else "", epochs=epochs)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tree),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="source tree of the earlier code")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--name", default="refactor_throughput")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    trees = {"before": Path(args.before).resolve(), "after": HERE.parent}
    runs = {k: [] for k in trees}
    for _ in range(args.rounds):
        for key, tree in trees.items():
            runs[key].append(run(tree, args.epochs))
            print(key, runs[key][-1], flush=True)
    rows = []
    for key in trees:
        skrec_rate = float(np.median([r["skrec"] for r in runs[key]]))
        probe = float(np.median([r["probe_gflops"] for r in runs[key]]))
        rows.append({"code": key, "skrec_tokens_s": skrec_rate, "probe_gflops": probe})
    ratio = rows[1]["skrec_tokens_s"] / rows[0]["skrec_tokens_s"]
    table = markdown_table(rows, list(rows[0]))
    print(table)
    print(f"after / before: {ratio:.3f}")
    save_json(args.name, {"rows": rows, "after_over_before": ratio, "runs": runs,
                          "epochs": args.epochs, "rounds": args.rounds, "threads": 1,
                          "before": str(trees["before"]), "note": args.note, "table": table})


if __name__ == "__main__":
    main()
