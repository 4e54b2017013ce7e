"""Data-parallel training on CPU: 2 DDP processes x 1 thread against 1 process x 1 or 2 threads.

Side by side in one run, on ML-100K and on an ML-1M-sized synthetic set
(``make_interactions``: 6,040 users x 3,500 items, ~1M interactions), ``SeqRecommender``
trains the same number of epochs (no early stopping) in each configuration:

* ``1x1``: one process, one thread;
* ``1x2``: one process, two threads (intra-op parallelism);
* ``2x1 DDP``: ``torchrun --nproc_per_node=2``, one thread each, gloo on 127.0.0.1, the
  script unchanged: each rank takes ``batch_size`` users per step (a global batch twice as
  large, half as many optimizer steps per epoch);
* ``2x1 DDP, same global batch``: ``batch_size`` halved per rank, so that the optimisation
  is the one of ``1x1`` (same steps, same effective batch).

Every configuration runs in its own process(es). Reported: training tokens/s (the mean of
``history_["targets_per_s"]`` over the epochs after the first; in DDP the targets of both
ranks), the ratios to ``1x1`` and ``1x2``, the wall time of ``fit``, NDCG@10 and HR@10 of the
held-out last items (leave-last-out, full ranking, seen items excluded), and for DDP the
measured time of one gloo all-reduce of the model's gradient (what the two processes pay per
optimizer step on top of the computation). ``tokens_per_cpu_s`` divides the tokens trained by
the CPU time of the processes (rank 0's, doubled for DDP): other load on the machine does not
change it, so it shows the overhead of data parallelism itself.

(This script is ``ddp.py``, not ``distributed.py``: a module of that name in ``benchmarks/``
would shadow the ``distributed`` package of dask for every script run from this folder.)

Timings need a quiet machine with at least two free cores. Run:
``python benchmarks/ddp.py [--epochs 5] [--data PATH] [--quick]``
(``--quick``: 2 epochs and a quarter of the synthetic users, for a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: ML-1M's shape: 6,040 users, 3,706 movies rated (3,500 here), 1,000,209 ratings.
ML1M_USERS, ML1M_ITEMS, ML1M_RATINGS = 6040, 3500, 1_000_209
_KEEP: list = []


# ------------------------------------------------------------------------------ the worker
def _load(spec: dict):
    from skrec.datasets import load_movielens, make_interactions
    from skrec.model_selection import leave_last_out_split

    if spec["dataset"] == "ml100k":
        X = load_movielens(spec["data"]).X
    else:
        n_users = spec["n_users"]
        X = make_interactions(n_users=n_users, n_items=ML1M_ITEMS,
                              mean_length=ML1M_RATINGS / ML1M_USERS, random_state=0)
    return leave_last_out_split(X)


def _allreduce_ms(module, reps: int = 20) -> float:
    """Milliseconds of one all-reduce of a gradient-sized fp32 buffer (gloo)."""
    import torch
    import torch.distributed as dist

    n = sum(p.numel() for p in module.parameters())
    buf = torch.zeros(n)
    dist.all_reduce(buf)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(reps):
        work = dist.all_reduce(buf, async_op=True)
        work.wait()
    seconds = time.perf_counter() - t0
    # keep the last work (and buffer) for the main thread to release: see skrec._distributed
    _KEEP.append((work, buf))
    return seconds / reps * 1e3


def worker(spec: dict, out: str) -> None:
    import torch

    torch.set_num_threads(spec["threads"])
    from skrec import SeqRecommender
    from skrec.metrics import hit_rate_at_k, ndcg_at_k

    X, y = _load(spec)
    est = SeqRecommender(max_iter=spec["epochs"], batch_size=spec["batch_size"],
                         early_stopping=False, precision=spec["precision"], random_state=0,
                         device="cpu")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    est.fit(X)
    fit_s = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    rank = int(os.environ.get("RANK", "0"))
    # CPU seconds of this process (all its threads) during fit: unlike the wall time, not
    # inflated by other processes on the machine, so it shows the overhead of DDP itself
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    result = {"fit_s": fit_s, "fit_cpu_s_rank0": cpu_s}
    if spec.get("ddp"):
        result["allreduce_ms"] = _allreduce_ms(est.module_)
    if rank != 0:
        return
    pred = est.predict(X, k=10)
    later = est.history_[1:] or est.history_
    result.update({
        "tokens_per_s": sum(h["targets_per_s"] for h in later) / len(later),
        "steps_per_epoch": est.history_[0]["steps"],
        "epoch_s": sum(h["seconds"] for h in later) / len(later),
        "NDCG@10": float(ndcg_at_k(y, pred, k=10)),
        "HR@10": float(hit_rate_at_k(y, pred, k=10)),
        "precision": est.precision_,
        "threads_seen": torch.get_num_threads(),
        "loss_last_epoch": est.history_[-1]["loss"],
        "n_params": sum(p.numel() for p in est.module_.parameters()),
        "tokens_per_epoch": int(round(est.history_[0]["targets_per_s"]
                                      * est.history_[0]["seconds"])),
    })
    # tokens trained per CPU-second of one process (in DDP each rank trains half of them)
    result["tokens_per_cpu_s"] = (result["tokens_per_epoch"] * spec["epochs"]
                                  / (cpu_s * (2 if spec.get("ddp") else 1)))
    Path(out).write_text(json.dumps(result))


# ------------------------------------------------------------------------------ the driver
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(spec: dict, nproc: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]),
               MKL_NUM_THREADS=str(spec["threads"]))
    root = str(HERE.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        args = [str(Path(__file__).resolve()), "--worker", json.dumps(spec), out]
        if nproc > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run",
                   f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
                   f"--master_port={_free_port()}", *args]
        else:
            cmd = [sys.executable, *args]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True)
        wall = time.perf_counter() - t0
        result = json.loads(Path(out).read_text())
    result["process_wall_s"] = wall
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help="ML-100K folder")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32, help="users per step of 1x1")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--datasets", nargs="+", default=["ml100k", "ml1m-synthetic"],
                        choices=["ml100k", "ml1m-synthetic"])
    parser.add_argument("--synthetic-users", type=int, default=ML1M_USERS)
    parser.add_argument("--quick", action="store_true",
                        help="2 epochs, a quarter of the synthetic users (smoke test)")
    parser.add_argument("--configs", nargs="+", default=None,
                        help="run only these configurations (1x1 is always run first)")
    parser.add_argument("--name", default="distributed", help="result file name")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker[0]), args.worker[1])

    sys.path.insert(0, str(HERE))
    from _common import markdown_table, ml100k_path, save_json

    if args.quick:
        args.epochs, args.synthetic_users = 2, ML1M_USERS // 4
    b = args.batch_size
    configs = [
        ("1x1", 1, 1, b),
        ("1x2", 1, 2, b),
        ("2x1 DDP", 2, 1, b),
        ("2x1 DDP, same global batch", 2, 1, b // 2),
    ]
    if args.configs:
        configs = [c for c in configs if c[0] == "1x1" or c[0] in args.configs]
    rows = []
    for dataset in args.datasets:
        base = {"dataset": dataset, "epochs": args.epochs, "precision": args.precision,
                "data": str(ml100k_path(args.data)), "n_users": args.synthetic_users}
        ref = {}
        for name, nproc, threads, batch in configs:
            spec = dict(base, threads=threads, batch_size=batch, ddp=nproc > 1)
            print(f"== {dataset}: {name} (batch_size={batch} per process)", flush=True)
            res = _run(spec, nproc)
            ref.setdefault(name, res["tokens_per_s"])
            row = {
                "dataset": dataset, "config": name, "processes": nproc, "threads": threads,
                "batch_per_process": batch, "global_batch": batch * nproc, **res,
                "x_1x1": res["tokens_per_s"] / ref["1x1"],
                "x_1x2": res["tokens_per_s"] / ref["1x2"] if ref.get("1x2") else None,
            }
            if "allreduce_ms" in res:
                step_ms = 1e3 * res["epoch_s"] / max(res["steps_per_epoch"], 1)
                row["allreduce_share_of_step"] = res["allreduce_ms"] / step_ms
            rows.append(row)
            print(json.dumps(row), flush=True)
    columns = ["dataset", "config", "global_batch", "precision", "tokens_per_s", "x_1x1",
               "x_1x2", "epoch_s", "fit_s", "tokens_per_cpu_s", "NDCG@10", "HR@10",
               "allreduce_ms", "allreduce_share_of_step"]
    table = markdown_table(rows, columns)
    print(table)
    save_json(args.name, {
        "rows": rows,
        "epochs": args.epochs,
        "synthetic_users": args.synthetic_users,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "note": "tokens/s: mean over the epochs after the first; DDP counts both ranks' "
                "targets. Run on a quiet machine with two free cores.",
    })


if __name__ == "__main__":
    main()
