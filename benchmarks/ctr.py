"""Click prediction: skrec.CTRClassifier against its peers, its speed, serving, pruning, scale.

Parts (``--parts``, each merged into ``benchmarks/results/ctr.json``; one CPU thread):

- ``quality``: Frappe_x1 test AUC and log loss, 3 seeds (mean ± sd), fit CPU seconds, side by
  side in one run: scikit-learn ``LogisticRegression`` on the one-hot matrix (C on valid),
  LightGBM (one categorical column per field), ``CTRClassifier`` at its defaults for each
  architecture (early stopping on ``valid.csv`` given as ``X_val``), and FuxiCTR DeepFM and
  DCN-v2 with the BARS configurations (rerun with ``--fuxictr``; otherwise their rows of
  ``results/ctr_peers.json``, measured earlier with the same script functions, are reused and
  marked so). Also the reliability curve of the default on test.
- ``speed``: training samples/s of ``CTRClassifier(architecture="deepfm")`` at FuxiCTR's BARS
  sizes (embeddings of 10, MLP 400x3 with batch norm, no hashed crosses) and at its own
  defaults, and of FuxiCTR DeepFM (BARS), the same batch size, threads and epochs, one after
  the other in this run (evaluation excluded on both sides).
- ``serve``: latency of scoring 1,000 candidate items for one Frappe request (user and
  context fixed) on one thread: ``score_candidates`` end to end (encoding included), and the
  model alone on encoded tensors (the exported graph's work), fp32 and int8; the test AUC
  of each precision.
- ``prune``: ``prune_`` of the default model with fine-tuning (early stopping on ``valid.csv``,
  as the fit): batch inference time on the test rows (model alone, median of repetitions)
  and test AUC, before and after.
- ``stream``: ``partial_fit`` over a synthetic Criteo-like stream (``iter_ctr_chunks``: 26
  categorical fields up to 10^7 values, 13 numeric, ~3 % clicks) in chunks, every field
  hashed: rows/s and the peak RSS, AUC on a held-out chunk.
- ``stream_crosses``: the same on a shorter stream with the click counts accumulated over the
  chunks (the default), with the wide part's crosses counted over the chunks instead, without
  their count mask, and with neither.
- ``ddp``: the stream's rows/s in one process and under ``torchrun --nproc_per_node=2``.

Usage::

    python benchmarks/ctr.py --parts quality --seeds 3
    python benchmarks/ctr.py --parts quality --models ours   # rerun ours, keep the peers' rows
    python benchmarks/ctr.py --parts speed,serve,prune
    python benchmarks/ctr.py --parts stream --stream-rows 20000000
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ctr_peers import (  # noqa: E402
    SEEDS,
    cpu_info,
    frappe_path,
    metrics,
    run_fuxictr,
    run_lgbm,
    run_lr,
)

from _common import RESULTS, peak_rss_mb, save_json, summarize_seeds  # noqa: E402

NAME = "ctr"
KEYS = ("test_auc", "test_logloss", "valid_auc", "valid_logloss", "fit_cpu_s", "fit_wall_s",
        "epochs")
ARCHITECTURES = ("wide_deep", "deepfm", "dcnv2", "transformer")
#: FuxiCTR's BARS DeepFM sizes, as CTRClassifier parameters (no hashed crosses and no click
#: counts: FuxiCTR's first-order part is our per-id wide weights).
BARS_DEEPFM = dict(architecture="deepfm", embed_dim=10, hidden_sizes=(400, 400, 400),
                   wide_crosses=0, click_counts=0, embedding_l2=0.05, min_frequency=1)


def _load(args):
    from skrec.datasets import load_frappe

    return load_frappe(frappe_path(args.data))


def _fit_ours(data, params: dict, seed: int) -> tuple[object, dict]:
    from skrec import CTRClassifier

    clf = CTRClassifier(random_state=seed, **params)
    c0, w0 = time.process_time(), time.perf_counter()
    clf.fit(data.X_train, data.y_train, X_val=data.X_valid, y_val=data.y_valid)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    vauc, vll = metrics(data.y_valid, clf.predict_proba(data.X_valid)[:, 1])
    tauc, tll = metrics(data.y_test, clf.predict_proba(data.X_test)[:, 1])
    return clf, {"seed": seed, "valid_auc": vauc, "valid_logloss": vll, "test_auc": tauc,
                 "test_logloss": tll, "fit_cpu_s": cpu, "fit_wall_s": wall,
                 "epochs": clf.n_iter_, "best_epoch": clf.best_epoch_,
                 "train_samples_per_s": float(np.mean([h["targets_per_s"]
                                                       for h in clf.history_]))}


def part_quality(args, out: dict) -> None:
    from skrec.ctr import reliability_curve

    data = _load(args)
    seeds = SEEDS[: args.seeds]
    models = set(args.models.split(","))
    unknown = models - {"ours", "experts", "lr", "lgbm", "fuxictr"}
    if unknown:
        raise SystemExit(f"--models: unknown {sorted(unknown)}")
    # rows of the models not rerun now are kept from the results file (one table)
    path = RESULTS / f"{NAME}.json"
    previous = json.loads(path.read_text()).get("quality", {}).get("rows", []) \
        if path.is_file() else []
    prefix = {"ours": "skrec CTRClassifier(architecture=",
              "experts": "skrec CTRClassifier(n_experts=", "lr": "LogisticRegression",
              "lgbm": "LightGBM", "fuxictr": "FuxiCTR"}
    rows = [r for r in previous
            if not any(r["model"].startswith(prefix[m]) for m in models)]

    def add(row):
        rows.append(row)
        print(f"{row['model']} seed {row['seed']}: test AUC {row['test_auc']:.4f} log loss "
              f"{row['test_logloss']:.4f}, fit {row['fit_cpu_s']:.1f} s CPU", flush=True)
        out["quality"] = {"rows": rows, "summary": summarize_seeds(rows, KEYS)}
        _save(out)

    if "ours" in models:
        for arch in ARCHITECTURES:
            for seed in seeds:
                clf, row = _fit_ours(data, {"architecture": arch}, seed)
                add({"model": f"skrec CTRClassifier(architecture={arch!r})", **row})
                if arch == "wide_deep" and seed == seeds[0]:
                    curve = reliability_curve(data.y_test,
                                              clf.predict_proba(data.X_test)[:, 1])
                    out["calibration"] = {k: (v.tolist() if hasattr(v, "tolist") else v)
                                          for k, v in curve.items()}
    if "experts" in models:  # the default with its MLP replaced by a mixture of 4 experts
        for seed in seeds:
            _, row = _fit_ours(data, {"n_experts": 4}, seed)
            add({"model": "skrec CTRClassifier(n_experts=4)", **row})
    if "lr" in models:
        for seed in seeds:
            add({**run_lr(data, seed), "model": "LogisticRegression (one-hot, C on valid)"})
    if "lgbm" in models:
        for seed in seeds:
            add({**run_lgbm(data, seed), "model": "LightGBM (one categorical column per field)"})
    if "fuxictr" not in models:
        return
    x1 = frappe_path(args.data) / "x1"
    for peer in ("DeepFM", "DCNv2"):
        if args.fuxictr:
            for seed in seeds:
                add(run_fuxictr(peer, seed, args, x1))
            continue
        path = RESULTS / "ctr_peers.json"
        old = json.loads(path.read_text())["rows"] if path.is_file() else []
        for row in old:
            if row.get("model") == f"FuxiCTR {peer} (BARS)" and row["seed"] in seeds:
                add({**row, "source": "results/ctr_peers.json (an earlier run of the same "
                                      "peer function, not rerun here)"})


def part_speed(args, out: dict) -> None:
    from skrec import CTRClassifier

    data = _load(args)
    rows = {}
    for name, params in (("skrec CTRClassifier deepfm, BARS sizes", BARS_DEEPFM),
                         ("skrec CTRClassifier deepfm, defaults", {"architecture": "deepfm"})):
        clf = CTRClassifier(**params, max_iter=args.epochs, early_stopping=False,
                            batch_size=args.batch_size, random_state=0)
        clf.fit(data.X_train, data.y_train)
        rows[name] = {"train_samples_per_s": float(np.mean([h["targets_per_s"]
                                                            for h in clf.history_])),
                      "epochs": args.epochs, "batch_size": args.batch_size,
                      "n_params": int(sum(p.numel() for p in clf.module_.parameters()))}
        print(name, rows[name], flush=True)
    x1 = frappe_path(args.data) / "x1"
    cmd = [args.fuxictr_python, str(Path(__file__).resolve().parent / "_fuxictr_peer.py"),
           "--model", "DeepFM", "--seed", "2021", "--model-zoo", args.model_zoo,
           "--data", str(x1), "--work", args.work, "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=""))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if lines:
        fx = json.loads(lines[-1])
        rows["FuxiCTR DeepFM (BARS)"] = {k: fx[k] for k in (
            "train_samples_per_s", "epochs", "batch_size", "n_params")}
        print("FuxiCTR", rows["FuxiCTR DeepFM (BARS)"], flush=True)
        base = rows["FuxiCTR DeepFM (BARS)"]["train_samples_per_s"]
        for r in rows.values():
            r["ratio_to_fuxictr"] = r["train_samples_per_s"] / base
    else:
        rows["FuxiCTR DeepFM (BARS)"] = {"error": proc.stderr[-2000:]}
    out["speed"] = rows
    _save(out)


def _latency(fn, reps: int) -> dict:
    for _ in range(20):
        fn()
    times = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    ms = times * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "reps": reps}


def _default_model(args, data):
    path = Path(args.work) / "default_model.skrec"
    import skrec

    if path.is_file():
        return skrec.load(path)
    clf, row = _fit_ours(data, {}, SEEDS[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    skrec.save(clf, path)
    return clf


def part_serve(args, out: dict) -> None:
    import pandas as pd
    import torch

    from skrec.serving import graph_inputs

    data = _load(args)
    clf = _default_model(args, data)
    test = data.X_test
    rng = np.random.default_rng(0)
    items = rng.choice(np.unique(data.X_train["item"]), args.candidates, replace=False)
    context = test.iloc[0].drop("item").to_dict()
    candidates = pd.DataFrame({"item": items})
    result = {"candidates": args.candidates, "request_fields": sorted(context)}
    for precision in ("fp32", "int8"):
        clf.set_params(inference_precision=precision)
        auc, ll = metrics(data.y_test, clf.predict_proba(test)[:, 1])
        full = candidates.assign(**context)[list(test.columns)]
        tensors = {k: torch.as_tensor(v) for k, v in graph_inputs(clf, full).items()}

        def model_only(tensors=tensors):
            with clf._serving() as setup:
                return setup.module(**tensors)

        def end_to_end():
            return clf.score_candidates(context, candidates)

        np.testing.assert_allclose(end_to_end(), clf.predict_proba(full)[:, 1], rtol=1e-5)
        result[precision] = {"test_auc": auc, "test_logloss": ll,
                             "model_only": _latency(model_only, args.reps),
                             "score_candidates": _latency(end_to_end, args.reps)}
        print(precision, result[precision], flush=True)
    clf.set_params(inference_precision="auto")
    out["serve"] = result
    _save(out)


def _batch_ms(clf, tensors, reps: int) -> float:
    def run():
        with clf._serving() as setup:
            return setup.module(**tensors)

    run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def part_prune(args, out: dict) -> None:
    import torch

    import skrec
    from skrec.pruning import model_summary
    from skrec.serving import graph_inputs

    data = _load(args)
    base = _default_model(args, data)
    tensors = {k: torch.as_tensor(v) for k, v in graph_inputs(base, data.X_test).items()}
    auc0, ll0 = metrics(data.y_test, base.predict_proba(data.X_test)[:, 1])
    ms0 = _batch_ms(base, tensors, args.reps // 10)
    rows = [{"amount": 0.0, "test_auc": auc0, "test_logloss": ll0, "batch_ms": ms0,
             "speedup": 1.0, "architecture": model_summary(base.module_)["architecture"]}]
    for amount in args.prune_amounts:
        clf = skrec.load(Path(args.work) / "default_model.skrec")
        c0 = time.process_time()
        clf.prune_(amount, X=data.X_train, y=data.y_train, X_val=data.X_valid,
                   y_val=data.y_valid, fine_tune_epochs=10)
        cpu = time.process_time() - c0
        auc, ll = metrics(data.y_test, clf.predict_proba(data.X_test)[:, 1])
        ms = _batch_ms(clf, tensors, args.reps // 10)
        rows.append({"amount": amount, "test_auc": auc, "test_logloss": ll, "batch_ms": ms,
                     "speedup": ms0 / ms, "auc_loss": auc0 - auc, "prune_cpu_s": cpu,
                     "fine_tune_epochs": clf.pruning_report_["fine_tune_epochs"],
                     "architecture": clf.pruning_report_["after"]["architecture"]})
        print(rows[-1], flush=True)
    out["prune"] = {"batch_rows": int(len(data.y_test)), "rows": rows}
    _save(out)


def _stream_model(**params):
    from skrec import CTRClassifier

    return CTRClassifier(**{**dict(hash_buckets=1 << 16, hashed="all",
                                   numeric=list(range(26, 39)), numeric_scaling="log",
                                   random_state=0), **params})


def _run_stream(n_rows: int, chunk: int, params: dict, held_out: int = 200_000) -> dict:
    from skrec.datasets import iter_ctr_chunks

    clf = _stream_model(**params)
    n_chunks = -(-n_rows // chunk)
    gen_s = train_s = 0.0
    c0 = time.process_time()
    stream = iter_ctr_chunks(n_rows + held_out, chunk, random_state=0)
    done = 0
    for i in range(n_chunks):
        t0 = time.perf_counter()
        part = next(stream)
        t1 = time.perf_counter()
        clf.partial_fit(part.X, part.y)
        t2 = time.perf_counter()
        gen_s, train_s = gen_s + t1 - t0, train_s + t2 - t1
        done += len(part.y)
        if (i + 1) % max(n_chunks // 10, 1) == 0:
            print(f"  {done:,} rows: {done / train_s:,.0f} rows/s, peak RSS "
                  f"{peak_rss_mb():,.0f} MiB", flush=True)
    rest = [next(stream) for _ in range(-(-held_out // chunk))]
    X = np.vstack([p.X for p in rest])
    y = np.concatenate([p.y for p in rest])
    auc, ll = metrics(y, clf.predict_proba(X)[:, 1])
    return {"rows": done, "chunk_rows": chunk, "rows_per_s": done / train_s,
            "train_wall_s": train_s, "generate_wall_s": gen_s,
            "cpu_s": time.process_time() - c0, "peak_rss_mb": peak_rss_mb(),
            "held_out_rows": int(y.size), "held_out_auc": auc, "held_out_logloss": ll,
            "held_out_click_rate": float(y.mean()),
            "params": {k: v for k, v in params.items()}}


def part_stream(args, out: dict) -> None:
    row = _run_stream(args.stream_rows, args.chunk, {})
    print(row, flush=True)
    out.setdefault("stream", {})[str(args.stream_rows)] = row
    _save(out)


def part_stream_crosses(args, out: dict) -> None:
    rows = {}
    for name, params in (("click counts over the chunks (default)", {}),
                         ("crosses counted over the chunks",
                          {"wide_crosses": 3, "click_counts": 0}),
                         ("crosses without the count mask",
                          {"wide_crosses": 3, "wide_cross_min_count": 1, "click_counts": 0}),
                         ("neither crosses nor click counts",
                          {"wide_crosses": 0, "click_counts": 0})):
        rows[name] = _run_stream(args.cross_rows, args.chunk, params)
        print(name, rows[name], flush=True)
        out["stream_crosses"] = rows
        _save(out)


def part_ddp(args, out: dict) -> None:
    single = _run_stream(args.ddp_rows, args.chunk, {}, held_out=args.chunk)
    res = Path(args.work) / "ddp_rank0.json"
    res.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", "--master_port=29533", __file__, "--parts",
           "ddp-rank", "--ddp-rows", str(args.ddp_rows), "--chunk", str(args.chunk),
           "--work", args.work]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    ranks = json.loads(res.read_text()) if res.is_file() else {"error": proc.stderr[-3000:]}
    out["ddp"] = {"one_process": single, "two_ranks": ranks,
                  "ratio": ranks.get("rows_per_s", float("nan")) / single["rows_per_s"],
                  "cores": os.cpu_count()}
    print(out["ddp"], flush=True)
    _save(out)


def part_ddp_rank(args) -> None:
    row = _run_stream(args.ddp_rows, args.chunk, {}, held_out=args.chunk)
    if os.environ.get("RANK", "0") == "0":
        (Path(args.work) / "ddp_rank0.json").write_text(json.dumps(row, default=float))


def _save(out: dict) -> None:
    path = RESULTS / f"{NAME}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    save_json(NAME, {**old, **out})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="quality,speed,serve,prune")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--models", default="ours,experts,lr,lgbm,fuxictr",
                    help="quality: which rows to (re)compute, the others are kept from the "
                         "results file: ours, experts (the default with n_experts=4), lr, "
                         "lgbm, fuxictr")
    ap.add_argument("--fuxictr", action="store_true", help="rerun the FuxiCTR peers")
    ap.add_argument("--fuxictr-python", default="/work/venvs/fuxictr/bin/python")
    ap.add_argument("--model-zoo", default="/work/venvs/fuxictr/model_zoo")
    ap.add_argument("--work", default="/tmp/skrec_ctr_bench")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--prune-amounts", type=float, nargs="+", default=[0.5, 0.75])
    ap.add_argument("--stream-rows", type=int, default=20_000_000)
    ap.add_argument("--cross-rows", type=int, default=2_000_000)
    ap.add_argument("--ddp-rows", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=100_000)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.parts == "ddp-rank":
        part_ddp_rank(args)
        return
    out = {"cpu": cpu_info(), "threads": 1, "torch": torch.__version__}
    parts = {"quality": part_quality, "speed": part_speed, "serve": part_serve,
             "prune": part_prune, "stream": part_stream, "stream_crosses": part_stream_crosses,
             "ddp": part_ddp}
    for part in args.parts.split(","):
        t0 = time.perf_counter()
        parts[part](args, out)
        out[f"seconds_{part}"] = time.perf_counter() - t0
        _save(out)


if __name__ == "__main__":
    main()
