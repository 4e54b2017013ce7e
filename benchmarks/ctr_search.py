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


def encode(parts, enc_kw, min_frequency: int):
    from skrec.ctr import FieldEncoder

    enc = FieldEncoder(min_frequency=min_frequency, **enc_kw).fit(parts["train"][0])
    out = {}
    for split, (X, y) in parts.items():
        b = enc.transform(X).to_torch()
        b["y"] = torch.as_tensor(np.asarray(y), dtype=torch.float32)
        out[split] = b
    return enc, out


def auc_logloss(y: np.ndarray, logit: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import roc_auc_score

    p = 1 / (1 + np.exp(-logit))
    p = np.clip(p, 1e-7, 1 - 1e-7)
    ll = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(roc_auc_score(y, p)), ll


def batch_of(b: dict, idx: torch.Tensor) -> dict:
    return {"ids": b["ids"][idx], "numeric": b["numeric"][idx]}


@torch.inference_mode()
def predict(model, b: dict, bs: int = 65536) -> np.ndarray:
    model.eval()
    n = b["ids"].shape[0]
    out = [model(**batch_of(b, torch.arange(i, min(i + bs, n)))) for i in range(0, n, bs)]
    return torch.cat(out).numpy()


def train(cfg: dict, enc, data: dict, seed: int, log=print) -> dict:
    from skrec.nn.ctr import CTRModel

    torch.manual_seed(seed)
    model = CTRModel(
        enc.n_ids_, enc.n_categorical_, enc.n_multi_, enc.n_numeric_,
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
    emb_params = [model.embedding.weight, model.embedding.numeric_weight]
    wide_params = []
    if model.wide is not None:
        wide_params = [model.wide.cross_weight]
        if cfg["split_wide_lr"]:  # the id weights learn at the base rate, the crosses faster
            emb_params = emb_params + [model.wide.weight]
        else:
            wide_params.append(model.wide.weight)
    reg_params = emb_params + wide_params
    l2_params = list(emb_params)  # what the "full" L2 covers (set before the groups split)
    taken = {id(p) for p in reg_params}
    dense = [p for p in model.parameters() if id(p) not in taken and p.requires_grad]
    opt_cls = torch.optim.AdamW if cfg["optimizer"] == "adamw" else torch.optim.Adam
    wd = cfg["weight_decay"]
    emb_wd = wd if cfg["emb_reg_kind"] == "wd" else 0.0
    groups = []
    if cfg["wide_id_lr"] and model.wide is not None:  # id weights: own rate, still in the L2
        emb_params = [p for p in emb_params if p is not model.wide.weight]
        wide_params = [p for p in wide_params if p is not model.wide.weight]
        groups.append({"params": [model.wide.weight], "weight_decay": emb_wd,
                       "lr": cfg["wide_id_lr"]})
    opt = opt_cls([
        *groups,
        {"params": emb_params, "weight_decay": emb_wd, "lr": cfg["emb_lr"] or cfg["lr"]},
        {"params": wide_params, "weight_decay": emb_wd, "lr": cfg["wide_lr"] or cfg["lr"]},
        {"params": dense, "weight_decay": wd if cfg["optimizer"] == "adamw" else 0.0,
         "lr": cfg["lr"]}])
    tr, va = data["train"], data["valid"]
    n = tr["ids"].shape[0]
    bs = cfg["batch_size"]
    gen = torch.Generator().manual_seed(seed)
    best, best_state, bad, decays = None, None, 0, 0
    history = []
    t_train = 0.0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for epoch in range(cfg["max_epochs"]):
        model.train()
        te = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            logit = model(**batch_of(tr, idx))
            loss = F.binary_cross_entropy_with_logits(logit, tr["y"][idx])
            reg = cfg["emb_reg"]
            if reg and cfg["emb_reg_kind"] == "full":
                loss = loss + reg / 2 * sum(p.pow(2).sum() for p in l2_params)
            elif reg and cfg["emb_reg_kind"] == "unique":  # the full-table L2 on touched rows
                rows = torch.unique(tr["ids"][idx])
                loss = loss + reg / 2 * model.embedding.weight[rows].pow(2).sum()
                if model.embedding.numeric_weight.numel():
                    loss = loss + reg / 2 * model.embedding.numeric_weight.pow(2).sum()
            elif reg and cfg["emb_reg_kind"] == "batch":
                e = model.embedding.weight[tr["ids"][idx]]
                loss = loss + reg * e.pow(2).sum(dim=(1, 2)).mean()
            if cfg["cross_reg"] and model.wide is not None and model.wide.cross_buckets:
                from skrec.nn.ctr import cross_ids

                w = model.wide.cross_weight[cross_ids(tr["ids"][idx], model.wide.cross_buckets,
                                                      model.wide.cross_fields)]
                loss = loss + cfg["cross_reg"] * w.pow(2).sum(dim=(1, 2)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        t_train += time.perf_counter() - te
        vauc, vll = auc_logloss(va["y"].numpy(), predict(model, va))
        score = vll if cfg["monitor"] == "logloss" else -vauc
        history.append({"epoch": epoch + 1, "loss": total / n, "valid_auc": vauc,
                        "valid_logloss": vll})
        log(f"  epoch {epoch + 1}: loss {total / n:.4f} valid AUC {vauc:.4f} "
            f"log loss {vll:.4f} ({time.perf_counter() - t0:.0f} s)")
        if best is None or score < best - 1e-6:
            best, bad = score, 0
            best_state = copy.deepcopy(model.state_dict())
            best_epoch = epoch + 1
        else:
            bad += 1
            if cfg["decay_on_plateau"] and decays < cfg["max_decays"]:
                decays += 1
                model.load_state_dict(best_state)
                for g in opt.param_groups:
                    g["lr"] *= cfg["decay_on_plateau"]
                bad = 0 if cfg.get("reset_patience") else bad
            if bad >= cfg["patience"]:
                break
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    model.load_state_dict(best_state)
    vauc, vll = auc_logloss(va["y"].numpy(), predict(model, va))
    tauc, tll = auc_logloss(data["test"]["y"].numpy(), predict(model, data["test"]))
    n_epochs = len(history)
    return {"valid_auc": vauc, "valid_logloss": vll, "test_auc": tauc, "test_logloss": tll,
            "epochs": n_epochs, "best_epoch": best_epoch, "fit_s": fit_s, "fit_cpu_s": fit_cpu,
            "train_samples_per_s": n * n_epochs / t_train,
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
        mf = cfg["min_frequency"]
        if mf not in encoded:
            encoded[mf] = encode(parts, enc_kw, mf)
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
