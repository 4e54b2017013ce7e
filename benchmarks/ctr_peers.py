"""Click prediction on Frappe_x1: the peers side by side (test AUC and log loss, fit CPU seconds).

Every model is selected on ``valid.csv`` and scored on ``test.csv``, one CPU thread, several
seeds (mean ± sd):

- ``lr``: scikit-learn ``LogisticRegression`` on the one-hot matrix, ``C`` chosen on the
  validation log loss (lbfgs is deterministic: the seeds give the same model);
- ``lgbm``: LightGBM with one categorical column per field, early stopping on the validation
  log loss (``pip install lightgbm``; a benchmark-only dependency);
- ``fuxictr-deepfm``, ``fuxictr-dcnv2``: FuxiCTR 2.3.10 DeepFM and DCN-v2 with the BARS
  Frappe_x1 configurations, run by ``_fuxictr_peer.py`` in FuxiCTR's own virtual environment
  (``--fuxictr-python``, ``--model-zoo``: the FuxiCTR repository's ``model_zoo`` folder).

Usage::

    python benchmarks/ctr_peers.py --peers lr,lgbm --seeds 3 --merge
    python benchmarks/ctr_peers.py --peers fuxictr-deepfm,fuxictr-dcnv2 --seeds 3 --merge

Results: ``benchmarks/results/ctr_peers.json`` (rows per run and a summary per model; with
``--merge`` the rows of other models and seeds are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, markdown_table, save_json, summarize_seeds  # noqa: E402

NAME = "ctr_peers"
KEYS = ("test_auc", "test_logloss", "valid_auc", "valid_logloss", "fit_cpu_s", "fit_wall_s",
        "epochs", "train_samples_per_s")
SEEDS = (2021, 2022, 2023)


def frappe_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("SKREC_DATA_DIR"):
        return Path(os.environ["SKREC_DATA_DIR"]) / "frappe"
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "frappe"


def metrics(y, p) -> tuple[float, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(roc_auc_score(y, p)), float(log_loss(y, p))


def cpu_info() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover
        return platform.processor()
    model = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines()
                  if ln.startswith("model name")), platform.processor())
    feats = sorted({f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
                    if f" {f}" in flags})
    return f"{model} ({', '.join(feats)})"


def synthetic(n_train: int, seed: int = 0):
    """Train / valid / test impressions of one synthetic world, as ``ctr_search.py --data
    synthetic`` draws them (the same rows)."""
    from sklearn.utils import Bunch

    from skrec.datasets import make_ctr

    d = make_ctr(n_train + 200_000, max_cardinality=1_000_000, as_frame=True, random_state=seed)
    cut = [n_train, n_train + 100_000]
    out = Bunch(categorical=d.categorical, numeric=d.numeric)
    for name, sl in (("train", slice(0, cut[0])), ("valid", slice(cut[0], cut[1])),
                     ("test", slice(cut[1], None))):
        out[f"X_{name}"], out[f"y_{name}"] = d.X.iloc[sl].reset_index(drop=True), d.y[sl]
    return out


def _design(data):
    """One-hot of the categorical columns and the scaled log counts of the numeric ones."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    num = list(getattr(data, "numeric", []))
    cat = [c for c in data.X_train.columns if c not in num]
    log = FunctionTransformer(lambda X: np.nan_to_num(np.log1p(np.asarray(X, float))))
    return ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cat),
                              ("num", make_pipeline(log, StandardScaler()), num)],
                             sparse_threshold=1.0)


def run_lr(data, seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression

    enc = _design(data)
    Xtr = enc.fit_transform(data.X_train)
    Xva, Xte = enc.transform(data.X_valid), enc.transform(data.X_test)
    best = None
    c0 = time.process_time()
    for C in (0.01, 0.1, 1.0, 10.0, 100.0):
        model = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(Xtr, data.y_train)
        auc, ll = metrics(data.y_valid, model.predict_proba(Xva)[:, 1])
        if best is None or ll < best[1]:
            best = (C, ll, auc, model)
    search_cpu = time.process_time() - c0
    C, vll, vauc, _ = best
    c0, w0 = time.process_time(), time.perf_counter()
    model = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(Xtr, data.y_train)
    fit_cpu, fit_wall = time.process_time() - c0, time.perf_counter() - w0
    tauc, tll = metrics(data.y_test, model.predict_proba(Xte)[:, 1])
    return {"model": "LogisticRegression (one-hot, C on valid)", "seed": seed, "C": C,
            "valid_auc": vauc, "valid_logloss": vll, "test_auc": tauc, "test_logloss": tll,
            "fit_cpu_s": fit_cpu, "fit_wall_s": fit_wall, "search_cpu_s": search_cpu}


def run_lgbm(data, seed: int) -> dict:
    import lightgbm as lgb
    import pandas as pd

    num = list(getattr(data, "numeric", []))

    def cats(X):
        return pd.DataFrame({c: X[c] if c in num else pd.Categorical(
            X[c].where(X[c].isin(cats_of[c])), categories=cats_of[c]) for c in X.columns})

    cats_of = {c: np.unique(data.X_train[c]) for c in data.X_train.columns if c not in num}
    Xtr, Xva, Xte = cats(data.X_train), cats(data.X_valid), cats(data.X_test)
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 63,
              "min_data_in_leaf": 20, "feature_fraction": 0.9, "bagging_fraction": 0.9,
              "bagging_freq": 1, "num_threads": 1, "seed": seed, "verbosity": -1,
              "max_cat_to_onehot": 4, "cat_l2": 10.0, "cat_smooth": 10.0}
    c0, w0 = time.process_time(), time.perf_counter()
    train = lgb.Dataset(Xtr, data.y_train)
    valid = lgb.Dataset(Xva, data.y_valid, reference=train)
    booster = lgb.train(params, train, num_boost_round=5000, valid_sets=[valid],
                        callbacks=[lgb.early_stopping(50, verbose=False)])
    fit_cpu, fit_wall = time.process_time() - c0, time.perf_counter() - w0
    it = booster.best_iteration
    vauc, vll = metrics(data.y_valid, booster.predict(Xva, num_iteration=it))
    tauc, tll = metrics(data.y_test, booster.predict(Xte, num_iteration=it))
    return {"model": "LightGBM (one categorical column per field)", "seed": seed,
            "valid_auc": vauc, "valid_logloss": vll, "test_auc": tauc, "test_logloss": tll,
            "fit_cpu_s": fit_cpu, "fit_wall_s": fit_wall, "epochs": it,
            "params": {k: v for k, v in params.items() if k not in ("seed", "verbosity")}}


def run_fuxictr(model: str, seed: int, args, data_dir: Path) -> dict:
    work = Path(args.work) / f"{model}_{seed}"
    cmd = [args.fuxictr_python, str(Path(__file__).resolve().parent / "_fuxictr_peer.py"),
           "--model", model, "--seed", str(seed), "--model-zoo", args.model_zoo,
           "--data", str(data_dir), "--work", str(work)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH="")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"FuxiCTR {model} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="Frappe folder (default ../shared/data/frappe)")
    ap.add_argument("--peers", default="lr,lgbm,fuxictr-deepfm,fuxictr-dcnv2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-list", default=None, help="comma-separated seeds (overrides --seeds)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge", action="store_true", help="keep other models' rows")
    ap.add_argument("--fuxictr-python", default="/work/venvs/fuxictr/bin/python")
    ap.add_argument("--model-zoo", default="/work/venvs/fuxictr/model_zoo")
    ap.add_argument("--work", default="/tmp/skrec_ctr_fuxictr")
    ap.add_argument("--dataset", choices=("frappe", "synthetic"), default="frappe")
    ap.add_argument("--n-train", type=int, default=500_000, help="synthetic: train rows")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from skrec.datasets import load_frappe

    global NAME
    data_dir = frappe_path(args.data)
    if args.dataset == "synthetic":
        NAME = "ctr_peers_synthetic"
        data, x1 = synthetic(args.n_train), None
    else:
        if not (data_dir / "x1" / "train.csv").is_file() and not (
                data_dir / "train.csv").is_file():
            sys.exit(f"Frappe_x1 not found under {data_dir}; pass --data.")
        data = load_frappe(data_dir)
        x1 = data_dir / "x1" if (data_dir / "x1").is_dir() else data_dir
    rows = []
    for peer in args.peers.split(","):
        seeds = ([int(x) for x in args.seed_list.split(",")] if args.seed_list
                 else SEEDS[: args.seeds])
        for seed in seeds:
            t0 = time.perf_counter()
            if peer == "lr":
                row = run_lr(data, seed)
            elif peer == "lgbm":
                row = run_lgbm(data, seed)
            elif peer == "fuxictr-deepfm":
                row = run_fuxictr("DeepFM", seed, args, x1)
            elif peer == "fuxictr-dcnv2":
                row = run_fuxictr("DCNv2", seed, args, x1)
            else:
                sys.exit(f"unknown peer {peer!r}")
            row["peer"] = peer
            row["threads"] = args.threads
            rows.append(row)
            print(f"{peer} seed {seed}: test AUC {row['test_auc']:.4f} log loss "
                  f"{row['test_logloss']:.4f} fit CPU {row['fit_cpu_s']:.1f} s "
                  f"({time.perf_counter() - t0:.0f} s wall)", flush=True)
            _write(rows, args)
    print(markdown_table(summarize_seeds(_all_rows(rows, args), KEYS),
                         ["model", "seeds", "test_auc", "test_logloss", "fit_cpu_s"]))


def _all_rows(rows: list[dict], args) -> list[dict]:
    path = RESULTS / f"{NAME}.json"
    if not args.merge or not path.is_file():
        return rows
    done = {(r["peer"], r["seed"]) for r in rows}
    old = json.loads(path.read_text()).get("rows", [])
    return [r for r in old if (r.get("peer"), r.get("seed")) not in done] + rows


def _write(rows: list[dict], args) -> None:
    all_rows = _all_rows(rows, args)
    save_json(NAME, {
        "benchmark": ("Frappe_x1 test, model selected on valid; peers side by side"
                      if NAME == "ctr_peers" else
                      f"synthetic Criteo-like (make_ctr, {args.n_train} train rows, 100,000 "
                      "valid, 100,000 test, random_state=0); peers side by side"),
        "cpu": cpu_info(), "threads": args.threads,
        "summary": summarize_seeds(all_rows, KEYS), "rows": all_rows,
    })


if __name__ == "__main__":
    main()
