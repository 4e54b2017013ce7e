"""A bare-torch SASRec with the published recipe: the peer SeqRecommender is measured against.

Kang & McAuley (ICDM 2018) as commonly reproduced: 2 blocks, 1 head, d=64, pre-LayerNorm
residual blocks ``x + Dropout(f(LayerNorm(x)))`` with dropout 0.2 on the embeddings, the
attention weights, inside the point-wise feed-forward network (ReLU, width d) and on both
residual branches; item embeddings scaled by sqrt(d) plus learned positions, N(0, 0.02)
embedding initialisation; full softmax cross-entropy over the catalogue with the tied item
embeddings and no output bias; Adam (lr 1e-3, betas 0.9/0.98), batch 128, no gradient
clipping, fp32. Model selection: every user's last training item is the validation target
(the next-to-last item of the full sequence) and training sees the items before it; the epoch
with the best validation NDCG@10 is kept (patience 10 epochs, at most 200). Recommendations read
the whole training row. Written for skrec's benchmarks from the paper's description; it
shares no code with skrec (only the evaluation around it).

Run: ``python benchmarks/sasrec_reference.py [--datasets ml100k games ml1m] [--seeds 3]
[--threads 1]``; ``ml1m`` is MovieLens-1M in the SASRec preprocessing (whose file lacks each
user's true last item), the protocol the same leave-last-out.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from _common import games_path, markdown_table, mean_sd, ml1m_path, ml100k_path, save_json

MAX_LEN = {"ml100k": 200, "games": 50, "ml1m": 200}


def sequences(X):
    """Each CSR row's items (1-based) ordered by the stored values, ties by item index."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    order = np.lexsort((X.indices, X.data, rows))
    items = X.indices[order] + 1
    return np.split(items, X.indptr[1:-1])


def left_pad(seqs, width):
    out = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-width:]
        out[i, width - len(s):] = s
    return torch.from_numpy(out)


class Block(nn.Module):
    def __init__(self, d, heads, p):
        super().__init__()
        self.heads, self.p = heads, p
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(p), nn.Linear(d, d))
        self.drop = nn.Dropout(p)

    def forward(self, x, mask):
        B, L, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(B, L, d)))
        return x + self.drop(self.ff(self.ln2(x)))


class SASRec(nn.Module):
    def __init__(self, n_items, d=64, blocks=2, heads=1, max_len=200, p=0.2):
        super().__init__()
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        nn.init.normal_(self.item.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        with torch.no_grad():
            self.item.weight[0].zero_()
        self.blocks = nn.ModuleList(Block(d, heads, p) for _ in range(blocks))
        self.drop, self.ln, self.max_len = nn.Dropout(p), nn.LayerNorm(d), max_len

    def forward(self, seq):  # (B, L) left-padded, L <= max_len -> (B, L, d)
        B, L = seq.shape
        valid = seq > 0
        x = self.item(seq) * math.sqrt(self.item.embedding_dim)
        x = self.drop(x + self.pos.weight[self.max_len - L:]) * valid[..., None]
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        mask = ((causal & valid[:, None, :]) | torch.eye(L, dtype=torch.bool))[:, None]
        for block in self.blocks:
            x = block(x, mask) * valid[..., None]
        return self.ln(x)

    def scores(self, seq):  # next-item scores of the last position, (B, n_items)
        return self.forward(seq)[:, -1] @ self.item.weight[1:].t()


def top_k(model, seqs, k, batch=512):
    """Top-k items (0-based) per sequence, the sequence's own items excluded."""
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


def fit_predict(X_train, *, dataset="ml100k", seed=0, max_len=None, batch_size=128, p=0.2,
                heads=1, lr=1e-3, max_epochs=200, patience=10, k=10):
    """Train with validation on each user's last training item; top-k from the whole rows."""
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    full = sequences(X_train)
    has_val = np.array([len(s) >= 2 for s in full])
    train = [s[:-1] if h else s for s, h in zip(full, has_val)]
    train = [s[-(max_len or MAX_LEN[dataset]) - 1:] for s in train if len(s) >= 2]
    val_hist = [s[:-1] for s, h in zip(full, has_val) if h]
    val_target = np.array([s[-1] - 1 for s, h in zip(full, has_val) if h])
    model = SASRec(X_train.shape[1], heads=heads, max_len=max_len or MAX_LEN[dataset], p=p)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    best, best_state, best_epoch, history, t0 = -1.0, None, 0, [], time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        for i in range(0, len(order), batch_size):
            chunk = [train[j] for j in order[i:i + batch_size]]
            seq = left_pad(chunk, max(map(len, chunk)))
            inputs, targets = seq[:, :-1], seq[:, 1:]
            h = model(inputs)[targets > 0]
            loss = F.cross_entropy(h @ model.item.weight[1:].t(), targets[targets > 0] - 1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        top = top_k(model, val_hist, k)
        hit = top == val_target[:, None]
        ndcg = float((hit / np.log2(np.arange(2, k + 2))).sum(1).mean())
        history.append({"epoch": epoch, "val_ndcg@10": ndcg, "seconds": time.perf_counter() - t0})
        if ndcg > best:
            best, best_state, best_epoch = ndcg, copy.deepcopy(model.state_dict()), epoch
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    pred = top_k(model, full, k)
    popular = np.argsort(-np.bincount(X_train.indices, minlength=X_train.shape[1]), kind="stable")
    pred[np.diff(X_train.indptr) == 0] = popular[:k]  # empty rows: most popular items
    return {"pred": pred, "epochs": epoch, "best_epoch": best_epoch, "history": history,
            "best_val_ndcg@10": best, "seconds": time.perf_counter() - t0}


def main(argv=None):
    from skrec.datasets import load_movielens, load_sequences
    from skrec.metrics import hit_rate_at_k, ndcg_at_k
    from skrec.model_selection import leave_last_out_split

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=["ml100k", "games"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--name", default="sasrec_reference", help="result file name")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, summary = [], []
    for dataset in args.datasets:
        X = (load_movielens(ml100k_path()) if dataset == "ml100k"
             else load_sequences(ml1m_path() if dataset == "ml1m" else games_path())).X
        X_train, y_test = leave_last_out_split(X)
        runs = []
        for seed in range(args.seeds):
            res = fit_predict(X_train, dataset=dataset, seed=seed)
            row = {"dataset": dataset, "seed": seed,
                   "NDCG@10": ndcg_at_k(y_test, res["pred"], k=10),
                   "HR@10": hit_rate_at_k(y_test, res["pred"], k=10),
                   "train_s": res["seconds"], "epochs": res["epochs"],
                   "best_epoch": res["best_epoch"], "val_NDCG@10": res["best_val_ndcg@10"],
                   "history": res["history"]}
            print({k: v for k, v in row.items() if k != "history"}, flush=True)
            runs.append(row)
        rows += runs
        summary.append({"dataset": dataset, "model": "sasrec_reference", **mean_sd(runs)})
    cols = ["dataset", "model", "NDCG@10", "HR@10", "train_s", "epochs", "seeds"]
    print(markdown_table(summary, cols))
    save_json(args.name, {"summary": summary, "rows": rows, "precision": "fp32",
                          "torch_threads": torch.get_num_threads(),
                          "machine": platform.processor() or platform.machine()})


if __name__ == "__main__":
    main()
