"""Inference speed and quality of each serving path: eager fp32, bf16, int8, exported, ONNX.

For SeqRecommender (the default architecture: 2 layers, 64 dims, 200-long histories) and
AERecommender (Mult-VAE), every path is measured side by side in one process:

* ``eager fp32``: ``predict`` with ``inference_precision="fp32"``;
* ``eager autocast bf16``: what the default ``inference_precision="auto"`` does where the
  training precision resolved to bf16 (``precision="auto"`` on CPUs with native bf16):
  autocast of the fp32 weights;
* ``eager bf16`` / ``eager int8``: ``inference_precision="bf16"`` (a bf16 copy of the model)
  and ``"int8"`` (dynamically quantized linear layers);
* ``torch.export``: the exported scoring graph (:func:`skrec.serving.export_program`),
  called from Python;
* ``onnxruntime fp32`` / ``onnxruntime int8``: the ONNX export
  (:func:`skrec.serving.export_onnx`) in ONNX Runtime (one thread), as exported and after
  ``onnxruntime.quantization.quantize_dynamic``.

Columns: ``batch_s`` is the best of 3 top-10 passes over a synthetic 6,000 users x 3,500 items
batch (random weights: speed does not depend on what was learned); ``p50_ms``/``p99_ms`` the
latency of one user's top-10 (a 200-item ML-100K history, trained model); ``ndcg@10`` the
quality of the model trained on ML-100K (leave-last-out, full ranking, seen items excluded),
served by that path. ``agree@10`` is the mean overlap of each path's top-10 lists with eager
fp32's. The ONNX export's parity (largest score difference, identical top-10 lists) is checked
on ML-100K too. Run with one thread: ``OMP_NUM_THREADS=1 python benchmarks/inference.py``.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import skrec
from _common import markdown_table, ml100k_path, save_json
from skrec import AERecommender, SeqRecommender
from skrec.baselines import EASERecommender
from skrec.datasets import load_movielens, make_interactions
from skrec.metrics import ndcg_at_k
from skrec.model_selection import leave_last_out_split
from skrec.serving import export_onnx, export_program, graph_inputs


# ------------------------------------------------------------------------------ serving paths
class Eager:
    """``predict`` of the estimator with an ``inference_precision`` (``"autocast bf16"``: the
    default ``"auto"`` of a model whose resolved training precision is bf16)."""

    def __init__(self, est, precision):
        self.est = copy.deepcopy(est)
        if precision == "autocast bf16":
            self.est.precision_, precision = "bf16", "auto"
        self.est.set_params(inference_precision=precision)

    def predict(self, X, k=10):
        return self.est.predict(X, k=k)


class Graph:
    """A graph taking ``(history, exclude)``, called on batches of users of similar length
    (the batches of ``predict``), with the inputs built by ``graph_inputs``."""

    def __init__(self, est, run):
        self.est, self.run = est, run

    def predict(self, X, k=10):
        X = self.est._validate_X(X)
        out = np.empty((X.shape[0], k), dtype=np.int64)
        for rows, Xb, _ in self.est._iter_batches(X, None):
            history, exclude = graph_inputs(self.est, Xb)
            out[rows] = self.run(history, exclude)[:, :k]
        return out


def program_path(est):
    module = export_program(est, k=10).module()

    def run(history, exclude):
        with torch.no_grad():
            return module(torch.as_tensor(history), torch.as_tensor(exclude))[0].numpy()

    return Graph(est, run)


def onnx_session(path, threads=1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options)


def onnx_path(est, folder: Path, int8: bool):
    path = folder / f"{type(est).__name__}.onnx"
    if not path.exists():
        export_onnx(est, path, k=10)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = folder / f"{type(est).__name__}_int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8)
        path = q
    session = onnx_session(path)

    def run(history, exclude):
        return session.run(["ids"], {"history": history, "exclude": exclude})[0]

    return Graph(est, run)


def paths(est, folder: Path, with_onnx: bool):
    out = {
        "eager fp32": lambda: Eager(est, "fp32"),
        "eager autocast bf16": lambda: Eager(est, "autocast bf16"),
        "eager bf16": lambda: Eager(est, "bf16"),
        "eager int8": lambda: Eager(est, "int8"),
        "torch.export": lambda: program_path(est),
    }
    if with_onnx:
        out["onnxruntime fp32"] = lambda: onnx_path(est, folder, int8=False)
        out["onnxruntime int8"] = lambda: onnx_path(est, folder, int8=True)
    return out


# ------------------------------------------------------------------------------ measurements
def latency(runner, row, reps: int) -> tuple[float, float]:
    """p50 and p99 (ms) of one user's top-10 after a warm-up."""
    for _ in range(30):
        runner.predict(row)
    times = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter()
        runner.predict(row)
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def batch_time(runner, X, reps: int = 3) -> float:
    """Best-of-``reps`` seconds of a top-10 pass over ``X``."""
    runner.predict(X[:10])
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        runner.predict(X)
        best = min(best, time.perf_counter() - t0)
    return best


def onnx_parity(est, folder: Path, X) -> dict:
    """Largest score difference and identical top-10 lists: ONNX Runtime vs eager fp32."""
    ref = copy.deepcopy(est).set_params(inference_precision="fp32")
    ids_ref, scores_ref = ref.recommend(X, k=10)
    export_onnx(est, folder / "parity.onnx", k=10)
    history, exclude = graph_inputs(est, X)
    ids, scores = onnx_session(folder / "parity.onnx").run(
        None, {"history": history, "exclude": exclude})
    finite = np.isfinite(scores_ref)
    return {"max_abs_score_diff": float(np.abs(scores[finite] - scores_ref[finite]).max()),
            "identical_top10": bool(np.array_equal(ids, ids_ref)),
            "users": int(X.shape[0])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None)
    parser.add_argument("--reps", type=int, default=500, help="single-user calls per path")
    parser.add_argument("--models", nargs="+", default=["seq", "ae"], choices=["seq", "ae"])
    parser.add_argument("--model-dir", default=None,
                        help="reuse (or write) the ML-100K models saved with skrec.save here")
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="cap the ML-100K training epochs (a quick smoke run)")
    parser.add_argument("--batch-users", type=int, default=6000)
    parser.add_argument("--name", default="inference", help="result file name")
    parser.add_argument("--note", default="", help="recorded with the results (e.g. 'trial')")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with_onnx = not args.no_onnx

    path = ml100k_path(args.data)
    if (path / "u.data").is_file():
        X_all, data_name = load_movielens(path).X, "ML-100K"
    else:  # pragma: no cover - without the data the quality column is meaningless
        X_all = make_interactions(943, 1682, mean_length=100, random_state=0)
        data_name = "synthetic 943x1682"
    X_train, y_test = leave_last_out_split(X_all)
    lengths = np.diff(X_train.indptr)
    long_user = X_train[int(np.argmax(lengths >= 200))]
    big = make_interactions(args.batch_users, 3500, mean_length=60, random_state=0)
    model_dir = Path(args.model_dir) if args.model_dir else None

    def trained(kind):
        """The model trained on ML-100K (default hyper-parameters, fp32, early stopping)."""
        file = model_dir / f"{kind}_ml100k.skrec" if model_dir else None
        if file is not None and file.exists():
            return skrec.load(file), 0.0
        cls = SeqRecommender if kind == "seq" else AERecommender
        cap = {"max_iter": args.max_iter} if args.max_iter else {}
        est = cls(precision="fp32", random_state=0, device="cpu", **cap)
        t0 = time.perf_counter()
        est.fit(X_train)
        seconds = time.perf_counter() - t0
        if file is not None:
            model_dir.mkdir(parents=True, exist_ok=True)
            skrec.save(est, file)
        return est, seconds

    rows, parity, train_s = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind in args.models:
            est, train_s[kind] = trained(kind)
            cls = type(est)
            arch = {k: v for k, v in est.get_params().items() if k in (
                "d_model", "n_layers", "n_heads", "max_len", "hidden_sizes", "latent_dim")}
            speed = cls(**arch, max_iter=1, early_stopping=False, random_state=0,
                        device="cpu", precision="fp32").fit(big[:500])
            (folder / kind).mkdir()
            if with_onnx:
                parity[kind] = onnx_parity(est, folder / kind, X_train)
            ref_ids = None
            for name, make in paths(est, folder / kind, with_onnx).items():
                runner = make()
                ids = runner.predict(X_train)
                if ref_ids is None:
                    ref_ids = ids
                speed_dir = folder / f"{kind}-speed"
                speed_dir.mkdir(exist_ok=True)
                speed_runner = paths(speed, speed_dir, with_onnx)[name]()
                p50, p99 = latency(runner, long_user, args.reps)
                row = {
                    "model": kind, "path": name,
                    "batch_s": batch_time(speed_runner, big),
                    "ml100k_batch_s": batch_time(runner, X_train),
                    "p50_ms": p50, "p99_ms": p99,
                    "ndcg@10": float(ndcg_at_k(y_test, ids, k=10)),
                    "agree@10": float(np.mean([len(set(a) & set(b)) / 10
                                               for a, b in zip(ids, ref_ids)])),
                }
                rows.append(row)
                print(row, flush=True)
        ease = EASERecommender().fit(X_train)
        p50, p99 = latency(ease, long_user, args.reps)
        rows.append({"model": "ease", "path": "eager", "ml100k_batch_s": batch_time(ease, X_train),
                     "p50_ms": p50, "p99_ms": p99,
                     "ndcg@10": float(ndcg_at_k(y_test, ease.predict(X_train), k=10))})
    for kind in args.models:
        base = next(r for r in rows if r["model"] == kind and r["path"] == "eager fp32")
        for r in rows:
            if r["model"] == kind:
                r["batch_speedup"] = base["batch_s"] / r["batch_s"]
                r["ndcg_change_%"] = 100 * (r["ndcg@10"] / base["ndcg@10"] - 1)
    columns = ["model", "path", "batch_s", "batch_speedup", "ml100k_batch_s", "p50_ms",
               "p99_ms", "ndcg@10", "ndcg_change_%", "agree@10"]
    print(markdown_table(rows, columns))
    print(f"ONNX parity on {data_name}: {parity}")
    print(f"torch threads: {torch.get_num_threads()}")
    save_json(args.name, {
        "note": args.note,
        "rows": rows, "onnx_parity": parity, "threads": torch.get_num_threads(),
        "data": data_name, "batch_data": f"synthetic {big.shape[0]}x3500 (mean length 60)",
        "train_seconds": train_s, "cpu_native_bf16": bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    })


if __name__ == "__main__":
    main()
