"""Prototype search for the click model's default: a plain training loop on encoded tensors.

The loop the estimator (phase 2) will get from the shared trainer, written out here so that
configurations can be compared fast: in-memory tensors, no DataLoader, Adam(W), early stopping
on the validation log loss (or AUC) with the learning rate divided by 10 on each plateau,
the best epoch's weights restored. Data: Frappe_x1 (train / valid / test) or the synthetic
Criteo-like generator (``--data synthetic``: train, valid and test drawn from one world).

Usage (each config is a JSON object; the keys are those of ``DEFAULTS``)::

    python benchmarks/ctr_search.py --seeds 1 --out results.jsonl \
        '{"architecture": "deepfm"}' '{"architecture": "dcnv2", "embed_dim": 16}'

Every run appends one JSON line (config, seed, valid and test AUC / log loss, epochs, seconds)
to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Training-loop and model settings; a config overrides some of them.
DEFAULTS = {
    "architecture": "deepfm", "embed_dim": 10, "hidden": [400, 400, 400], "dropout": 0.2,
    "batch_norm": True, "wide": None, "n_cross": 4, "cross_rank": None, "n_blocks": 2,
    "n_heads": 2, "d_ff": None, "n_experts": 0,
    "batch_size": 4096, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0,
    "emb_reg": 0.05, "emb_reg_kind": "full", "max_epochs": 100, "patience": 2,
    "monitor": "logloss", "decay_on_plateau": 0.1, "min_frequency": 1, "max_decays": 2,
    "emb_init": 1e-4, "cross_buckets": 0, "cross_reg": 0.0, "emb_lr": None, "wide_lr": None,
    "cross_fields": None, "cross_dropout": 0.0, "cross_min_count": 1, "split_wide_lr": False,
    "wide_id_lr": None,
    # memorisation by counts: per crossed field pair, the training rows' positive and negative
    # counts of the row's (hashed) pair, leave-one-out on the training rows, binned, as one
    # extra categorical field per pair ("top3": the pairs of the 3 largest fields)
    "count_fields": None, "count_bins": 8, "count_buckets": 1 << 20,
    # the same counts of each categorical field's own value ("all") or of the given fields
    "count_singles": None,
    # the wide part: its own L2 (None: in emb_reg's), optimizer ("adam" / "adagrad", with
    # the rate wide_lr for ids, numeric weights, bias and crosses), or alone (no deep part)
    "wide_reg": None, "wide_optimizer": "adam", "wide_only": False,
    # a 0/1 categorical field per numeric column: is the value missing (NaN)
    "numeric_missing": False,
    # train the wide part alone first (its own early stopping), then the whole model from
    # there (True), or only the rest with the wide part frozen ("frozen")
    "two_stage": False,
    # after early stopping, train the wide part on alone (the rest frozen) until it stops
    "finish_wide": False,
}


#: The default found by this search (validation of Frappe_x1 and of the synthetic data; see
#: the module docstring): what the estimator's defaults should reproduce.
PROTOTYPE_DEFAULT = {
    "architecture": "wide_deep", "embed_dim": 16, "hidden": [64], "cross_buckets": 1 << 20,
    "cross_fields": "top3", "wide_lr": 0.05, "cross_min_count": 2, "split_wide_lr": True,
    "min_frequency": 10, "emb_reg": 0.025,
}


def load(data: str, seed: int = 0, n_train: int = 500_000):
    """Encoded train / valid / test tensors and the encoder."""

    if data == "synthetic":
        from ctr_peers import synthetic

        d = synthetic(n_train, seed)
        parts = {s: (d[f"X_{s}"], d[f"y_{s}"]) for s in ("train", "valid", "test")}
        enc_kw = {"numeric_scaling": "log"}
    else:
        from skrec.datasets import load_frappe

        d = load_frappe(data)
        parts = {s: (d[f"X_{s}"], d[f"y_{s}"]) for s in ("train", "valid", "test")}
        enc_kw = {}
    return parts, enc_kw


def with_missing(X):
    """``X`` plus one 0/1 categorical column per numeric column that has NaN values."""
    num = [c for c in X.columns if X[c].dtype.kind == "f"]
    return X.assign(**{f"{c}_nan": X[c].isna().astype(np.int64) for c in num})


def encode(parts, enc_kw, min_frequency: int, numeric_missing: bool = False):
    from skrec.ctr import FieldEncoder

    prep = with_missing if numeric_missing else (lambda X: X)
    enc = FieldEncoder(min_frequency=min_frequency, **enc_kw).fit(prep(parts["train"][0]))
    out = {}
    for split, (X, y) in parts.items():
        b = enc.transform(prep(X)).to_torch()
        b["y"] = torch.as_tensor(np.asarray(y), dtype=torch.float32)
        out[split] = b
    return enc, out


def auc_logloss(y: np.ndarray, logit: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import roc_auc_score

    p = 1 / (1 + np.exp(-logit))
    p = np.clip(p, 1e-7, 1 - 1e-7)
    ll = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(roc_auc_score(y, p)), ll


def _bin_counts(c: torch.Tensor, n_bins: int) -> torch.Tensor:
    """0 for 0, then 1 + floor(log2(c)), capped at n_bins - 1."""
    out = torch.zeros_like(c)
    nz = c > 0
    out[nz] = 1 + torch.floor(torch.log2(c[nz].double())).long()
    return out.clamp(max=n_bins - 1)


def add_count_fields(cfg: dict, enc, data: dict) -> tuple[int, int, dict]:
    """Append the binned leave-one-out pair counts as categorical fields (see DEFAULTS).

    Returns the new table size, the new number of categorical fields and the data (copies of
    the dicts, with wider ``ids``).
    """
    from skrec.nn.ctr import cross_ids

    n_ids, n_cat = enc.n_ids_, enc.n_categorical_
    fields, singles = cfg["count_fields"], cfg["count_singles"]
    if not fields and not singles:
        return n_ids, n_cat, data
    if isinstance(fields, str):
        fields = enc.largest_fields(int(fields[3:])) if fields != "all" else None
    if singles == "all":
        singles = list(range(n_cat))
    nb, buckets = cfg["count_bins"], cfg["count_buckets"]
    tr = data["train"]

    def keys(ids):  # (n, n_keys): the hashed pairs, then the single fields' ids
        parts = [cross_ids(ids, buckets, fields)] if fields else []
        if singles:
            parts.append(ids[:, list(singles)] % buckets)
        return torch.cat(parts, dim=1)

    h = keys(tr["ids"])  # (n, n_keys)
    n_pairs = h.shape[1]
    y = tr["y"].long()
    pos = torch.zeros(n_pairs, buckets, dtype=torch.long)
    neg = torch.zeros(n_pairs, buckets, dtype=torch.long)
    for k in range(n_pairs):  # a table per pair (no collisions across pairs)
        pos[k] = torch.bincount(h[:, k], weights=y.double(), minlength=buckets).long()
        neg[k] = torch.bincount(h[:, k], weights=(1 - y).double(), minlength=buckets).long()
    out = {}
    base = n_ids + torch.arange(n_pairs) * nb * nb
    for split, b in data.items():
        hs = h if split == "train" else keys(b["ids"])
        k = torch.arange(n_pairs)
        a, c = pos[k, hs], neg[k, hs]
        if split == "train":  # leave the row itself out
            yy = b["y"].long()[:, None]
            a, c = a - yy, c - (1 - yy)
        extra = base + _bin_counts(a, nb) * nb + _bin_counts(c, nb)
        out[split] = {**b, "ids": torch.cat([b["ids"], extra], dim=1)}
    return n_ids + n_pairs * nb * nb, n_cat + n_pairs, out


def batch_of(b: dict, idx: torch.Tensor) -> dict:
    return {"ids": b["ids"][idx], "numeric": b["numeric"][idx]}


def forward(model, batch: dict, wide_only: bool = False) -> torch.Tensor:
    return model.wide(**batch) if wide_only else model(**batch)


@torch.inference_mode()
def predict(model, b: dict, bs: int = 65536, wide_only: bool = False) -> np.ndarray:
    model.eval()
    n = b["ids"].shape[0]
    out = [forward(model, batch_of(b, torch.arange(i, min(i + bs, n))), wide_only)
           for i in range(0, n, bs)]
    return torch.cat(out).numpy()


def _optimizers(cfg: dict, model, wide_only: bool):
    """The optimizers and the parameters of the two L2 terms (see DEFAULTS)."""
    emb_params = [model.embedding.weight, model.embedding.numeric_weight]
    wide_params = []
    if model.wide is not None:
        wide_params = [model.wide.cross_weight]
        if cfg["split_wide_lr"]:  # the id weights learn at the base rate, the crosses faster
            emb_params = emb_params + [model.wide.weight]
        else:
            wide_params.append(model.wide.weight)
    wide_l2 = []
    if cfg["wide_reg"] is not None and model.wide is not None:  # the wide part's own L2
        wide_l2 = [model.wide.weight, model.wide.numeric_weight]
    l2_params = [p for p in emb_params if all(p is not q for q in wide_l2)]
    if wide_only:  # stage 1: only the wide part's weights are regularised (and trained)
        l2_params = [p for p in l2_params if p is model.wide.weight]
    l2_params = [p for p in l2_params if p.requires_grad]
    opt_cls = torch.optim.AdamW if cfg["optimizer"] == "adamw" else torch.optim.Adam
    wd = cfg["weight_decay"]
    emb_wd = wd if cfg["emb_reg_kind"] == "wd" else 0.0
    optimizers = []
    own = []
    if cfg["wide_optimizer"] == "adagrad" and model.wide is not None:
        w = model.wide
        own = [w.weight, w.numeric_weight, w.bias, w.cross_weight]
        optimizers.append(torch.optim.Adagrad(own, lr=cfg["wide_lr"] or cfg["lr"]))
        emb_params = [p for p in emb_params if all(p is not q for q in own)]
        wide_params = [p for p in wide_params if all(p is not q for q in own)]
    taken = {id(p) for p in emb_params + wide_params + own}
    dense = [p for p in model.parameters() if id(p) not in taken and p.requires_grad]
    groups = []
    if cfg["wide_id_lr"] and model.wide is not None:  # id weights: own rate, still in the L2
        emb_params = [p for p in emb_params if p is not model.wide.weight]
        wide_params = [p for p in wide_params if p is not model.wide.weight]
        groups.append({"params": [model.wide.weight], "weight_decay": emb_wd,
                       "lr": cfg["wide_id_lr"]})
    groups += [
        {"params": emb_params, "weight_decay": emb_wd, "lr": cfg["emb_lr"] or cfg["lr"]},
        {"params": wide_params, "weight_decay": emb_wd, "lr": cfg["wide_lr"] or cfg["lr"]},
        {"params": dense, "weight_decay": wd if cfg["optimizer"] == "adamw" else 0.0,
         "lr": cfg["lr"]}]
    groups = [g for g in groups if any(p.requires_grad for p in g["params"])]
    for g in groups:
        g["params"] = [p for p in g["params"] if p.requires_grad]
    if groups:
        optimizers.append(opt_cls(groups))
    return optimizers, l2_params, wide_l2


def _loss(cfg: dict, model, tr: dict, idx, logit, l2_params, wide_l2):
    loss = F.binary_cross_entropy_with_logits(logit, tr["y"][idx])
    reg = cfg["emb_reg"]
    if reg and cfg["emb_reg_kind"] == "full" and l2_params:
        loss = loss + reg / 2 * sum(p.pow(2).sum() for p in l2_params)
    elif reg and cfg["emb_reg_kind"] == "unique":  # the full-table L2 on touched rows
        rows = torch.unique(tr["ids"][idx])
        loss = loss + reg / 2 * model.embedding.weight[rows].pow(2).sum()
        if model.embedding.numeric_weight.numel():
            loss = loss + reg / 2 * model.embedding.numeric_weight.pow(2).sum()
    elif reg and cfg["emb_reg_kind"] == "batch":
        e = model.embedding.weight[tr["ids"][idx]]
        loss = loss + reg * e.pow(2).sum(dim=(1, 2)).mean()
    if wide_l2 and cfg["wide_reg"]:
        loss = loss + cfg["wide_reg"] / 2 * sum(p.pow(2).sum() for p in wide_l2)
    if cfg["cross_reg"] and model.wide is not None and model.wide.cross_buckets:
        from skrec.nn.ctr import cross_ids

        w = model.wide.cross_weight[cross_ids(tr["ids"][idx], model.wide.cross_buckets,
                                              model.wide.cross_fields)]
        loss = loss + cfg["cross_reg"] * w.pow(2).sum(dim=(1, 2)).mean()
    return loss


def fit_loop(cfg: dict, model, data: dict, gen, wide_only: bool, log=print,
             start: float | None = None) -> dict:
    """Epochs until early stopping; the best epoch's weights are left in ``model``.

    ``start``: the monitored validation score of ``model`` as it is (epoch 0 of this run, a
    candidate for the best weights), e.g. the wide part trained alone before.
    """
    optimizers, l2_params, wide_l2 = _optimizers(cfg, model, wide_only)
    tr, va = data["train"], data["valid"]
    n = tr["ids"].shape[0]
    bs = cfg["batch_size"]
    best, best_state, best_epoch, bad, decays = None, None, 0, 0, 0
    if start is not None:
        best, best_state = start, copy.deepcopy(model.state_dict())
    history = []
    t_train = 0.0
    t0 = time.perf_counter()
    for epoch in range(cfg["max_epochs"]):
        model.train()
        if not any(p.requires_grad for p in model.deep.parameters()):
            model.deep.eval()
        te = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            logit = forward(model, batch_of(tr, idx), wide_only)
            loss = _loss(cfg, model, tr, idx, logit, l2_params, wide_l2)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            total += float(loss.detach()) * idx.numel()
        t_train += time.perf_counter() - te
        vauc, vll = auc_logloss(va["y"].numpy(), predict(model, va, wide_only=wide_only))
        score = vll if cfg["monitor"] == "logloss" else -vauc
        history.append({"epoch": epoch + 1, "loss": total / n, "valid_auc": vauc,
                        "valid_logloss": vll, "stage": "wide" if wide_only else "all"})
        log(f"  epoch {epoch + 1}{' (wide)' if wide_only else ''}: loss {total / n:.4f} "
            f"valid AUC {vauc:.4f} log loss {vll:.4f} ({time.perf_counter() - t0:.0f} s)")
        if best is None or score < best - 1e-6:
            best, bad = score, 0
            best_state = copy.deepcopy(model.state_dict())
            best_epoch = epoch + 1
        else:
            bad += 1
            if cfg["decay_on_plateau"] and decays < cfg["max_decays"]:
                decays += 1
                model.load_state_dict(best_state)
                for opt in optimizers:
                    for g in opt.param_groups:
                        g["lr"] *= cfg["decay_on_plateau"]
                bad = 0 if cfg.get("reset_patience") else bad
            if bad >= cfg["patience"]:
                break
    model.load_state_dict(best_state)
    return {"history": history, "best_epoch": best_epoch, "t_train": t_train, "best": best}


def train(cfg: dict, enc, data: dict, seed: int, log=print) -> dict:
    from skrec.nn.ctr import CTRModel

    n_ids, n_cat, data = add_count_fields(cfg, enc, data)
    torch.manual_seed(seed)
    model = CTRModel(
        n_ids, n_cat, enc.n_multi_, enc.n_numeric_,
        architecture=cfg["architecture"], embed_dim=cfg["embed_dim"], hidden=cfg["hidden"],
        dropout=cfg["dropout"], batch_norm=cfg["batch_norm"], wide=cfg["wide"],
        n_cross=cfg["n_cross"], cross_rank=cfg["cross_rank"], n_blocks=cfg["n_blocks"],
        n_heads=cfg["n_heads"], d_ff=cfg["d_ff"], n_experts=cfg["n_experts"],
        cross_buckets=cfg["cross_buckets"],
        cross_fields=enc.largest_fields(int(cfg["cross_fields"][3:]))
        if isinstance(cfg["cross_fields"], str) else cfg["cross_fields"],
        cross_dropout=cfg["cross_dropout"])
    model.embedding.reset_parameters(cfg["emb_init"])
    if model.wide is not None and cfg["cross_min_count"] > 1:
        model.wide.set_cross_counts(data["train"]["ids"], cfg["cross_min_count"])
    gen = torch.Generator().manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    n = data["train"]["ids"].shape[0]
    runs = []
    wide_only = cfg["wide_only"]
    start = None
    if cfg["two_stage"]:  # the wide part alone first, then everything from there
        runs.append(fit_loop(cfg, model, data, gen, True, log))
        if cfg["two_stage"] == "frozen":
            for p in model.wide.parameters():
                p.requires_grad_(False)
        with torch.no_grad():  # the deep part starts at 0: the model is the wide part's
            model.head.weight.zero_()
            model.head.bias.zero_()
        start = runs[-1]["best"]
    if not (cfg["two_stage"] and wide_only):
        runs.append(fit_loop(cfg, model, data, gen, wide_only, log, start))
    if cfg["finish_wide"] and not wide_only:  # the wide part on, the rest frozen
        trainable = [p for p in model.parameters() if p.requires_grad]
        wide = {id(p) for p in model.wide.parameters()}
        for p in trainable:
            p.requires_grad_(id(p) in wide)
        runs.append(fit_loop(cfg, model, data, gen, False, log, runs[-1]["best"]))
        for p in trainable:
            p.requires_grad_(True)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    va = data["valid"]
    vauc, vll = auc_logloss(va["y"].numpy(), predict(model, va, wide_only=wide_only))
    tauc, tll = auc_logloss(data["test"]["y"].numpy(),
                            predict(model, data["test"], wide_only=wide_only))
    history = [h for r in runs for h in r["history"]]
    n_epochs = len(history)
    return {"valid_auc": vauc, "valid_logloss": vll, "test_auc": tauc, "test_logloss": tll,
            "epochs": n_epochs, "best_epoch": runs[-1]["best_epoch"], "fit_s": fit_s,
            "fit_cpu_s": fit_cpu,
            "train_samples_per_s": n * n_epochs / sum(r["t_train"] for r in runs),
            "n_params": int(sum(p.numel() for p in model.parameters())), "history": history,
            "model": model}


def add_peer_row(args, row: dict) -> None:
    """Append ``row`` to the peers' results (read just before writing: runs in parallel)."""
    from ctr_peers import KEYS, cpu_info

    from _common import RESULTS, save_json, summarize_seeds

    name = "ctr_peers_synthetic" if args.data == "synthetic" else "ctr_peers"
    path = RESULTS / f"{name}.json"
    payload = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    keep = {k: row[k] for k in ("seed", "valid_auc", "valid_logloss", "test_auc",
                                "test_logloss", "epochs", "best_epoch", "fit_s", "fit_cpu_s",
                                "train_samples_per_s", "n_params", "threads")}
    rows = [r for r in payload["rows"] if not (r.get("peer") == args.peer_name
                                               and r.get("seed") == row["seed"])]
    rows.append({"model": args.peer_name, "peer": args.peer_name, **keep,
                 "fit_wall_s": row["fit_s"], "config": row["override"]})
    payload["rows"] = rows
    payload["summary"] = summarize_seeds(rows, KEYS)
    payload.setdefault("cpu", cpu_info())
    save_json(name, payload)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="JSON objects overriding DEFAULTS")
    ap.add_argument("--data", default="/work/shared/data/frappe")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="ctr_search.jsonl")
    ap.add_argument("--tag", default="")
    ap.add_argument("--n-train", type=int, default=500_000, help="synthetic data: train rows")
    ap.add_argument("--peer-name", default=None,
                    help="also add each run as a row of this name to the peers' results file "
                         "(results/ctr_peers.json, or ctr_peers_synthetic.json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts, enc_kw = load(args.data, n_train=args.n_train)
    encoded = {}
    for text in args.configs:
        cfg = {**DEFAULTS, **json.loads(text)}
        mf = (cfg["min_frequency"], cfg["numeric_missing"])
        if mf not in encoded:
            encoded[mf] = encode(parts, enc_kw, *mf)
        enc, data = encoded[mf]
        for seed in [int(s) for s in args.seeds.split(",")]:
            print(f"{json.loads(text)} seed {seed}", flush=True)
            res = train(cfg, enc, data, seed, log=lambda m: print(m, flush=True))
            res.pop("model")
            row = {"tag": args.tag, "data": args.data, "override": json.loads(text),
                   "config": cfg, "seed": seed, "threads": args.threads, **res}
            print(f"=> valid AUC {res['valid_auc']:.4f} LL {res['valid_logloss']:.4f} | test "
                  f"AUC {res['test_auc']:.4f} LL {res['test_logloss']:.4f} | epochs "
                  f"{res['epochs']} (best {res['best_epoch']}) {res['fit_s']:.0f} s, "
                  f"{res['train_samples_per_s']:.0f} samples/s", flush=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            if args.peer_name:
                add_peer_row(args, row)


if __name__ == "__main__":
    main()
