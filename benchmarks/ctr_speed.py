"""Click prediction speed: encoding, training samples/s side by side with FuxiCTR, serving.

Three measurements, one CPU thread:

1. ``encode``: :class:`skrec.ctr.FieldEncoder` fit and transform of 1M synthetic impressions
   of 26 categorical fields (integer ids, and the same as strings);
2. ``train``: training samples/s of skrec's click model (the plain loop of
   ``ctr_search.py``, evaluation excluded) and of FuxiCTR DeepFM with the BARS Frappe_x1
   configuration (``_fuxictr_peer.py`` in FuxiCTR's venv, its evaluation time subtracted),
   the same batch size, threads and epochs, one after the other in this run;
3. ``serve``: latency of scoring 1,000 candidate rows of one request (p50 / p99 over
   repetitions), fp32 and int8 (dynamic quantization of the linear layers), model only and
   encoding + model, with the AUC of both on Frappe test.

Usage::

    python benchmarks/ctr_speed.py --parts encode,train,serve --epochs 2 \
        --config '{"architecture": "deepfm"}'

Results: ``benchmarks/results/ctr_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ctr_peers import cpu_info, frappe_path  # noqa: E402
from ctr_search import DEFAULTS, auc_logloss, encode, load, predict, train  # noqa: E402

from _common import save_json  # noqa: E402


def part_encode(n: int = 1_000_000) -> dict:
    from skrec.ctr import FieldEncoder
    from skrec.datasets import make_ctr

    X = make_ctr(n, n_numeric=0, max_cardinality=1_000_000, as_frame=True, random_state=0).X
    out = {"rows": n, "fields": X.shape[1]}
    for name, data in (("int", X), ("str", X.astype(str))):
        c0 = time.process_time()
        enc = FieldEncoder().fit(data)
        c1 = time.process_time()
        enc.transform(data)
        c2 = time.process_time()
        out[name] = {"fit_cpu_s": c1 - c0, "transform_cpu_s": c2 - c1, "n_ids": enc.n_ids_}
        print(f"encode {name}: fit {c1 - c0:.2f} s, transform {c2 - c1:.2f} s CPU", flush=True)
    return out


def part_train(args, cfg: dict) -> dict:
    parts, enc_kw = load(str(frappe_path(args.data)))
    enc, data = encode(parts, enc_kw, cfg["min_frequency"])
    rows = {}
    for name, c in (("skrec " + cfg["architecture"], cfg),
                    ("skrec deepfm (BARS sizes)", {**DEFAULTS, "architecture": "deepfm"})):
        c = {**c, "max_epochs": args.epochs, "patience": 10**6, "decay_on_plateau": 0,
             "batch_size": args.batch_size}
        res = train(c, enc, data, seed=0, log=lambda m: None)
        rows[name] = {"train_samples_per_s": res["train_samples_per_s"],
                      "epochs": args.epochs, "batch_size": args.batch_size,
                      "n_params": res["n_params"]}
        print(f"{name}: {res['train_samples_per_s']:.0f} samples/s", flush=True)
    x1 = frappe_path(args.data) / "x1"
    cmd = [args.fuxictr_python, str(Path(__file__).resolve().parent / "_fuxictr_peer.py"),
           "--model", "DeepFM", "--seed", "2021", "--model-zoo", args.model_zoo,
           "--data", str(x1), "--work", args.work, "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=""))
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if lines:
        fx = json.loads(lines[-1])
        rows["FuxiCTR DeepFM (BARS)"] = {k: fx[k] for k in (
            "train_samples_per_s", "epochs", "batch_size", "n_params")}
        print(f"FuxiCTR DeepFM: {fx['train_samples_per_s']:.0f} samples/s", flush=True)
    else:
        print("FuxiCTR failed:", out.stderr[-2000:], flush=True)
    return rows


def _latency(fn, reps: int) -> dict:
    for _ in range(10):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def part_serve(args, cfg: dict) -> dict:
    parts, enc_kw = load(str(frappe_path(args.data)))
    enc, data = encode(parts, enc_kw, cfg["min_frequency"])
    c = {**cfg, "max_epochs": args.serve_epochs}
    res = train(c, enc, data, seed=0, log=lambda m: None)
    model = res["model"].eval()
    qmodel = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                    dtype=torch.qint8).eval()
    test = data["test"]
    y = test["y"].numpy()
    out = {"config": c, "candidates": args.candidates}
    X_test = parts["test"][0]
    rng = np.random.default_rng(0)
    rows = rng.choice(len(X_test), args.candidates, replace=False)
    frame = X_test.iloc[rows]
    idx = torch.as_tensor(rows)
    batch = {"ids": test["ids"][idx], "numeric": test["numeric"][idx]}
    for name, m in (("fp32", model), ("int8", qmodel)):
        auc, ll = auc_logloss(y, predict(m, test))

        def score(m=m):
            with torch.inference_mode():
                return m(**batch)

        def encode_and_score(m=m):
            t = enc.transform(frame).to_torch()
            with torch.inference_mode():
                return m(**t)

        out[name] = {"test_auc": auc, "test_logloss": ll,
                     "model": _latency(score, args.reps),
                     "encode_and_model": _latency(encode_and_score, max(args.reps // 4, 50))}
        print(f"serve {name}: AUC {auc:.4f} model p99 {out[name]['model']['p99_ms']:.2f} ms, "
              f"with encoding p99 {out[name]['encode_and_model']['p99_ms']:.2f} ms",
              flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="encode,train,serve")
    ap.add_argument("--config", default="{}", help="JSON overriding ctr_search.DEFAULTS")
    ap.add_argument("--data", default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--serve-epochs", type=int, default=100)
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--fuxictr-python", default="/work/venvs/fuxictr/bin/python")
    ap.add_argument("--model-zoo", default="/work/venvs/fuxictr/model_zoo")
    ap.add_argument("--work", default="/tmp/skrec_ctr_speed_fuxictr")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = {**DEFAULTS, **json.loads(args.config)}
    result = {"cpu": cpu_info(), "threads": 1, "torch": torch.__version__}
    for part in args.parts.split(","):
        if part == "encode":
            result["encode"] = part_encode()
        elif part == "train":
            result["train"] = part_train(args, cfg)
        elif part == "serve":
            result["serve"] = part_serve(args, cfg)
    path = Path(__file__).resolve().parent / "results" / "ctr_speed.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    save_json("ctr_speed", {**old, **result})


if __name__ == "__main__":
    main()
