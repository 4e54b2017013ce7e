"""precision="auto" against fp32 and the explicit low precisions on this CPU, side by side.

The hardening issue's goal: on each kind of CPU, ``precision="auto"`` is never slower than
fp32. One run, in one process, alternating the settings: for each precision, a
``SeqRecommender`` fit of ``--epochs`` epochs on ML-100K (synthetic data of its shape when it
is absent; early stopping off, one torch thread), and ``predict`` for every user; the seconds
of each, their ratio to fp32, what ``"auto"`` resolved to, the CPU's flags and the timed probe
of :func:`skrec.training.precision.low_precision_factor`. Writes
``benchmarks/results/precision_auto.json``.

Run: ``python benchmarks/precision_auto.py [--epochs 2] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch

from _common import markdown_table, ml100k_path, save_json
from skrec import SeqRecommender
from skrec.datasets import load_movielens, make_interactions
from skrec.training.precision import (
    _cpu_flags,
    cpu_runs_natively,
    low_precision_factor,
    resolve_precision,
)


def cpu_summary() -> dict:
    flags = _cpu_flags() or frozenset()
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "bf16")
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return {"model": model or platform.processor(), "machine": platform.machine(),
            "flags": sorted(f for f in wanted if f in flags),
            "bf16_native": cpu_runs_natively("bf16"), "fp16_native": cpu_runs_natively("fp16"),
            "probe_bf16_over_fp32": low_precision_factor("bf16"),
            "probe_fp16_over_fp32": low_precision_factor("fp16"),
            "auto_resolves_to": resolve_precision("auto", torch.device("cpu"))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto", "bf16"],
                        help="fp32 first (the reference); fp16 is 10x slower where emulated")
    parser.add_argument("--name", default="precision_auto")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    path = ml100k_path()
    X = (load_movielens(path).X if (path / "u.data").is_file()
         else make_interactions(n_users=943, n_items=1682, mean_length=106, random_state=0))
    cpu = cpu_summary()
    precisions = ["fp32", *[p for p in args.precisions if p != "fp32"]]
    times = {p: {"fit": [], "predict": []} for p in precisions}
    for _ in range(args.repeats):
        for precision in precisions:
            est = SeqRecommender(max_iter=args.epochs, early_stopping=False, random_state=0,
                                 precision=precision, device="cpu")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the emulated precisions warn
                t0 = time.perf_counter()
                est.fit(X)
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                est.predict(X)
                predict_s = time.perf_counter() - t0
            times[precision]["fit"].append(fit_s)
            times[precision]["predict"].append(predict_s)
            times[precision]["resolved"] = est.precision_
    rows = []
    base = {k: float(np.median(times["fp32"][k])) for k in ("fit", "predict")}
    for precision in precisions:
        fit_s = float(np.median(times[precision]["fit"]))
        predict_s = float(np.median(times[precision]["predict"]))
        rows.append({"precision": precision, "resolved": times[precision]["resolved"],
                     "fit_s": round(fit_s, 2), "fit_x_fp32": round(fit_s / base["fit"], 3),
                     "predict_s": round(predict_s, 3),
                     "predict_x_fp32": round(predict_s / base["predict"], 3)})
    table = markdown_table(rows, ["precision", "resolved", "fit_s", "fit_x_fp32", "predict_s",
                                  "predict_x_fp32"])
    print(cpu)
    print(table)
    save_json(args.name, {"cpu": cpu, "epochs": args.epochs, "repeats": args.repeats,
                          "users": int(X.shape[0]), "items": int(X.shape[1]),
                          "threads": 1, "rows": rows, "table": table,
                          "note": "medians over the alternating rounds; ratios to fp32 measured "
                                  "in the same process"})


if __name__ == "__main__":
    main()
