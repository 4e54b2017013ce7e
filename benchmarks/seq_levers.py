"""Levers toward NDCG@10 >= 0.195 on MovieLens-1M: a bare-torch SASRec with switches.

The recipe of ``sasrec_reference.py`` (Kang & McAuley as commonly reproduced: 2 pre-LN blocks,
1 head, d=64, ReLU FFN of width d, dropout 0.2 everywhere, item embeddings x sqrt(d) plus learned
positions, full softmax with tied embeddings, Adam lr 1e-3 betas (0.9, 0.98), batch 128,
validation on every user's last training item, best epoch by NDCG@10, patience 10) with one
switch per lever, so that each lever is measured alone before any of them is ported into
``SeqRecommender``. Same split and evaluation as the other sequence benchmarks
(leave-last-out of the data file, full ranking, seen items excluded).

Switches (``--set JSON``, keys of :data:`DEFAULT`): width ``d``, ``blocks``, ``heads``,
``d_ff``/``act`` (FFN), dropouts ``p``/``p_attn``/``p_ff``, ``emb_scale`` (x sqrt(d)),
``out_bias``, ``init`` ("torch" or skrec's "normal" N(0, 0.02)), ``pos`` ("learned", "rope",
"none"), ``block`` ("sasrec" or "ligr": sigmoid-gated residual branches as in eSASRec),
``fused_ce`` (skrec's chunked full softmax, the same loss as ``F.cross_entropy`` computed
faster; ``False`` or label smoothing: torch's), ``max_len``, ``windows`` ("last": each
user's latest max_len + 1 items; "all": every item as a
target, in windows from the end; "random": a random window of long histories per epoch),
``lr``/``betas``/``wd``/``clip``, ``warmup`` (steps, or a fraction of the horizon),
``sched`` ("const", "cosine", "linear" down to ``min_lr`` x lr over ``horizon`` epochs),
``batch``, ``bucket`` (length bucketing as skrec does), ``ls`` (label smoothing), ``val``
("all", "frac" of ``val_frac`` users as skrec, "none": train on every full row), ``metric``
("ndcg" or "loss"), ``patience``, ``smoothing`` (EMA weight of the monitored value), ``ema``
(weight averaging per epoch), ``max_epochs``, ``budget_min`` (CPU minutes of training).

After every epoch the test users are scored too (out of the timing), so each run gives its
time-to-quality curve: ``history[i]`` holds the training loss, the validation NDCG@10, the
cumulated wall and CPU seconds and the test NDCG@10/HR@10. The reported result is the epoch
the stopping rule keeps. Results are appended to ``results/seq_levers.json``.

Run: ``python benchmarks/seq_levers.py --tag NAME [--dataset ml1m] [--set JSON] [--seeds 0]
[--threads 1]``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F
from sasrec_reference import MAX_LEN, left_pad, sequences
from torch import nn

from _common import RESULTS, games_path, ml1m_path, ml100k_path
from skrec.nn.losses import softmax_cross_entropy

DEFAULT = dict(
    d=64, blocks=2, heads=1, d_ff=None, act="relu", p=0.2, p_attn=None, p_ff=None,
    emb_scale=True, out_bias=False, init="torch", pos="learned", block="sasrec", max_len=None,
    lr=1e-3, betas=(0.9, 0.98), wd=0.0, clip=None, warmup=0, sched="const", horizon=None,
    min_lr=0.0, batch=128, bucket=False, ls=0.0,
    val="all", val_frac=0.2, metric="ndcg", patience=10, smoothing=1.0, max_epochs=200,
    ema=None, budget_min=None, final_epochs=None, mask_blocks=True, windows="last",
    fused_ce=True,
)
def rope_cache(L, dh, base=10000.0):
    inv = 1.0 / base ** (torch.arange(0, dh, 2).float() / dh)
    t = torch.arange(L).float()
    f = torch.outer(t, inv)
    return f.cos(), f.sin()


def apply_rope(x, cos, sin):  # x (B,h,L,dh)
    x1, x2 = x[..., ::2], x[..., 1::2]
    L = x.shape[2]
    c, s = cos[-L:], sin[-L:]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.heads = c["d"], c["heads"]
        p = c["p"]
        self.p_attn = p if c["p_attn"] is None else c["p_attn"]
        p_ff = p if c["p_ff"] is None else c["p_ff"]
        d_ff = c["d_ff"] or d
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        act = {"relu": nn.ReLU(), "gelu": nn.GELU()}[c["act"]]
        self.ff = nn.Sequential(nn.Linear(d, d_ff), act, nn.Dropout(p_ff), nn.Linear(d_ff, d))
        self.drop = nn.Dropout(p)
        self.rope = c["pos"] == "rope"
        # LiGR-style gating (eSASRec): each residual branch times sigmoid(W LN(x))
        self.gated = c["block"] == "ligr"
        if self.gated:
            self.g1, self.g2 = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, mask, rope=None):
        B, L, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if self.rope:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.p_attn if self.training else 0.0)
        a = self.out(a.transpose(1, 2).reshape(B, L, d))
        if self.gated:
            a = a * torch.sigmoid(self.g1(self.ln1(x)))
        x = x + self.drop(a)
        y = self.ln2(x)
        f = self.ff(y)
        if self.gated:
            f = f * torch.sigmoid(self.g2(y))
        return x + self.drop(f)


class SASRec(nn.Module):
    def __init__(self, n_items, c):
        super().__init__()
        d, self.max_len, self.c = c["d"], c["max_len"], c
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(self.max_len, d) if c["pos"] == "learned" else None
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["blocks"]))
        self.drop, self.ln = nn.Dropout(c["p"]), nn.LayerNorm(d)
        self.bias = nn.Parameter(torch.zeros(n_items)) if c["out_bias"] else None
        if c["init"] == "normal":  # skrec: N(0, .02) everything, zero biases
            for m in self.modules():
                if isinstance(m, nn.Linear | nn.Embedding):
                    nn.init.normal_(m.weight, std=0.02)
                    if isinstance(m, nn.Linear):
                        nn.init.zeros_(m.bias)
        else:
            nn.init.normal_(self.item.weight, std=0.02)
            if self.pos is not None:
                nn.init.normal_(self.pos.weight, std=0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()
        if c["pos"] == "rope":
            self.rope = rope_cache(self.max_len, d // c["heads"])

    def forward(self, seq):
        B, L = seq.shape
        valid = seq > 0
        x = self.item(seq)
        if self.c["emb_scale"]:
            x = x * math.sqrt(self.item.embedding_dim)
        if self.pos is not None:
            x = x + self.pos.weight[self.max_len - L:]
        x = self.drop(x) * valid[..., None]
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        mask = ((causal & valid[:, None, :]) | torch.eye(L, dtype=torch.bool))[:, None]
        rope = getattr(self, "rope", None)
        for block in self.blocks:
            x = block(x, mask, rope)
            if self.c["mask_blocks"]:
                x = x * valid[..., None]
        return self.ln(x)

    def logits(self, h):
        out = h @ self.item.weight[1:].t()
        return out if self.bias is None else out + self.bias

    def scores(self, seq):
        return self.logits(self.forward(seq)[:, -1])


def top_k(model, seqs, k, batch=512):
    model.eval()
    out = np.zeros((len(seqs), k), dtype=np.int64)
    with torch.inference_mode():
        for i in range(0, len(seqs), batch):
            chunk = seqs[i:i + batch]
            s = model.scores(left_pad(chunk, max(1, min(model.max_len, max(map(len, chunk))))))
            for j, items in enumerate(chunk):
                s[j, items - 1] = -torch.inf
            out[i:i + batch] = torch.topk(s, k).indices.numpy()
    return out


def ndcg_hr(top, target, k=10):
    hit = top[:, :k] == np.asarray(target)[:, None]
    return (float((hit / np.log2(np.arange(2, k + 2))).sum(1).mean()), float(hit.any(1).mean()))


def lr_factor(c, step, total_steps):
    w = c["warmup"]
    if w and w < 1:
        w = int(w * total_steps)
    if w and step < w:
        return (step + 1) / w
    if c["sched"] == "const" or not total_steps:
        return 1.0
    t = min(1.0, (step - w) / max(1, total_steps - w))
    m = c["min_lr"]
    if c["sched"] == "cosine":
        return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * t))
    if c["sched"] == "linear":
        return m + (1 - m) * (1 - t)
    raise ValueError(c["sched"])


def run(dataset, c, seed=0, checkpoint=None):
    """Fit one configuration ``c`` on ``dataset``; the result row with its history.

    With ``checkpoint`` (a file path) the state is saved after every epoch and a run that
    finds the file continues from it (the file is removed when the run ends).
    """
    from skrec.datasets import load_movielens, load_sequences
    from skrec.model_selection import leave_last_out_split

    if dataset == "ml100k":
        X = load_movielens(ml100k_path()).X
    elif dataset == "games":
        X = load_sequences(games_path()).X
    else:
        X = load_sequences(ml1m_path()).X
    X_train, y_test = leave_last_out_split(X)
    full = sequences(X_train)
    test_target = np.full(len(full), -1)
    rows = np.repeat(np.arange(y_test.shape[0]), np.diff(y_test.indptr))
    test_target[rows] = y_test.indices
    test_users = np.flatnonzero(test_target >= 0)
    test_hist = [full[u] for u in test_users]
    test_empty = np.array([len(h) == 0 for h in test_hist])  # get the most popular items
    popular = np.argsort(-np.bincount(X_train.indices, minlength=X_train.shape[1]),
                         kind="stable")[:10]

    c = dict(c)
    c["max_len"] = c["max_len"] or MAX_LEN[dataset]
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    n = len(full)
    if c["val"] == "all":
        val_users = np.array([u for u in range(n) if len(full[u]) >= 2])
    elif c["val"] == "frac":
        perm = rng.permutation(n)
        val_users = np.sort(np.array([u for u in perm[:int(round(c["val_frac"] * n))]
                                      if len(full[u]) >= 2]))
    else:  # "none": train on every full sequence, fixed epochs / budget
        val_users = np.array([], dtype=int)
    is_val = np.zeros(n, bool)
    is_val[val_users] = True
    train = [s[:-1] if v else s for s, v in zip(full, is_val)]
    train = [s for s in train if len(s) >= 2]
    W = c["max_len"] + 1
    if c["windows"] == "all":  # every item trains: windows of max_len + 1 from the end
        train = [s[max(0, e - W):e] for s in train for e in range(len(s), 1, -W + 1)
                 if len(s[max(0, e - W):e]) >= 2]
    full_train = train
    train = [s[-W:] for s in full_train]
    val_hist = [full[u][:-1] for u in val_users]
    val_target = np.array([full[u][-1] - 1 for u in val_users])
    model = SASRec(X_train.shape[1], c)
    opt = torch.optim.AdamW(model.parameters(), lr=c["lr"], betas=tuple(c["betas"]),
                            weight_decay=c["wd"])
    n_batches = math.ceil(len(train) / c["batch"])
    horizon = c["horizon"] or c["max_epochs"]
    total_steps = horizon * n_batches
    lengths = np.array([len(s) for s in train])
    best, best_epoch, history = -np.inf, 0, []
    smoothed, ema_state = None, None
    t_train = 0.0
    c_train = 0.0
    step = 0
    epoch = 0
    start = 1
    if checkpoint and os.path.exists(checkpoint):
        st = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.set_state(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        (best, best_epoch, history, smoothed, ema_state, t_train, c_train,
         step) = st["loop"]
        start = st["epoch"] + 1
        print(f"resumed from {checkpoint} after epoch {st['epoch']}", flush=True)
    for epoch in range(start, c["max_epochs"] + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        if c["windows"] == "random":  # a random window of each long sequence per epoch
            train = []
            for s in full_train:
                e = len(s) if len(s) <= W else rng.randint(W, len(s) + 1)
                train.append(s[max(0, e - W):e])
        order = rng.permutation(len(train))
        if c["bucket"]:
            pool = c["batch"] * 50
            for st in range(0, len(order), pool):
                part = order[st:st + pool]
                order[st:st + pool] = part[np.argsort(-lengths[part], kind="stable")]
            batches = [order[i:i + c["batch"]] for i in range(0, len(order), c["batch"])]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        else:
            batches = [order[i:i + c["batch"]] for i in range(0, len(order), c["batch"])]
        tot, cnt = 0.0, 0
        for b in batches:
            chunk = [train[j] for j in b]
            seq = left_pad(chunk, max(map(len, chunk)))
            inputs, targets = seq[:, :-1], seq[:, 1:]
            h = model(inputs)[targets > 0]
            tg = targets[targets > 0] - 1
            if c["fused_ce"] and not c["ls"]:  # skrec's chunked loss: same value, faster
                bias = model.bias if model.bias is not None else model.item.weight.new_zeros(
                    model.item.weight.shape[0] - 1)
                loss = softmax_cross_entropy(h, model.item.weight[1:], bias, tg) / len(tg)
            else:
                loss = F.cross_entropy(model.logits(h), tg, label_smoothing=c["ls"])
            for g in opt.param_groups:
                g["lr"] = c["lr"] * lr_factor(c, step, total_steps)
            opt.zero_grad()
            loss.backward()
            if c["clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), c["clip"])
            opt.step()
            step += 1
            tot += float(loss.detach()) * len(tg)
            cnt += len(tg)
        if c["ema"]:
            st_ = model.state_dict()
            if ema_state is None:
                ema_state = {k: v.detach().clone() for k, v in st_.items()}
            else:
                for k, v in st_.items():
                    if ema_state[k].is_floating_point():
                        ema_state[k].lerp_(v.detach(), c["ema"])
            own = copy.deepcopy(model.state_dict())
            model.load_state_dict(ema_state)
        rec = {"epoch": epoch, "loss": tot / max(cnt, 1), "lr": opt.param_groups[0]["lr"]}
        if len(val_users):
            top = top_k(model, val_hist, 10)
            rec["val_ndcg"] = ndcg_hr(top, val_target)[0]
            if c["metric"] == "loss":
                with torch.inference_mode():
                    nll = 0.0
                    for i in range(0, len(val_hist), 512):
                        ch = val_hist[i:i + 512]
                        s = model.scores(left_pad(ch, max(1, min(model.max_len,
                                                                 max(map(len, ch))))))
                        for j, items in enumerate(ch):
                            s[j, items - 1] = -torch.inf
                        tgt = torch.as_tensor(val_target[i:i + 512])
                        nll += float(-(s.gather(1, tgt[:, None])[:, 0]
                                       - torch.logsumexp(s, 1)).sum())
                rec["val_loss"] = nll / len(val_hist)
        t_train += time.perf_counter() - t0
        c_train += time.process_time() - c0
        rec["seconds"] = t_train
        rec["cpu_s"] = c_train
        # test scoring, out of the timing
        top = top_k(model, test_hist, 10)
        top[test_empty] = popular
        rec["test_ndcg"], rec["test_hr"] = ndcg_hr(top, test_target[test_users])
        monitored = (rec.get("val_ndcg") if c["metric"] == "ndcg"
                     else -rec.get("val_loss", np.nan)) if len(val_users) else epoch
        if monitored is not None and np.isfinite(monitored):
            s = c["smoothing"]
            smoothed = monitored if smoothed is None else s * monitored + (1 - s) * smoothed
        history.append(rec)
        print(json.dumps(rec), flush=True)
        if smoothed is not None and smoothed > best:
            best, best_epoch = smoothed, epoch
        if c["ema"]:
            model.load_state_dict(own)
        if checkpoint:
            tmp = checkpoint + ".tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "rng": rng.get_state(), "torch_rng": torch.get_rng_state(),
                        "epoch": epoch, "loop": (best, best_epoch, history, smoothed, ema_state,
                                                 t_train, c_train, step)}, tmp)
            os.replace(tmp, checkpoint)
        if len(val_users) and epoch - best_epoch >= c["patience"]:
            break
        if c["budget_min"] and c_train > 60 * c["budget_min"]:
            break
    if checkpoint and os.path.exists(checkpoint):
        os.remove(checkpoint)
    final = history[best_epoch - 1]
    out = {"dataset": dataset, "seed": seed, "config": c, "epochs": epoch,
           "best_epoch": best_epoch, "NDCG@10": final["test_ndcg"], "HR@10": final["test_hr"],
           "train_min": t_train / 60, "best_min": final["seconds"] / 60,
           "cpu_min": c_train / 60, "best_cpu_min": final["cpu_s"] / 60,
           "threads": torch.get_num_threads(),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "history": history}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml1m", choices=["ml1m", "ml100k", "games"])
    ap.add_argument("--set", default="{}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--name", default="seq_levers", help="result file name")
    ap.add_argument("--checkpoint", default=None,
                    help="save the state here after every epoch; continue from it if present")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c = {**DEFAULT, **json.loads(a.set)}
    unknown = set(json.loads(a.set)) - set(DEFAULT)
    if unknown:
        raise SystemExit(f"unknown keys {unknown}")
    for seed in a.seeds:
        res = run(a.dataset, c, seed, a.checkpoint and f"{a.checkpoint}.seed{seed}")
        res["tag"], res["set"] = a.tag, json.loads(a.set)
        print("RESULT", json.dumps({k: v for k, v in res.items() if k != "history"}), flush=True)
        path = RESULTS / f"{a.name}.json"  # re-read: other runs may have added rows
        rows = json.loads(path.read_text())["rows"] if path.is_file() else []
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"rows": [*rows, res]}, indent=1, default=float))
        tmp.replace(path)


if __name__ == "__main__":
    main()
