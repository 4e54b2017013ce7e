"""Training throughput of SeqRecommender.fit against a bare-torch loop, and FLOP/s.

Both train the same SASRec module (a SequenceModel with a causal transformer encoder) with
the same full cross-entropy on the same sequences
(ML-100K, or synthetic data when it is absent), in the same process, side by side:

* ``bare``: a minimal loop (pre-built padded batches, AdamW, autocast) -- no estimator;
* ``skrec``: ``SeqRecommender(max_iter=E, early_stopping=False).fit(X)``, tokens/s taken from
  ``history_`` (epochs after the first).

For each precision and accumulation setting it reports tokens/s, the ratio skrec / bare, and
the achieved model FLOP/s as a fraction of this machine's matmul peak, which the script
measures itself (fp32 and bf16). Run: ``python benchmarks/throughput.py [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from _common import markdown_table, ml100k_path, save_json
from skrec import SeqRecommender
from skrec._histories import ordered_sequences
from skrec.datasets import load_movielens, make_interactions
from skrec.nn import ItemEmbedding, SequenceModel, TransformerEncoder
from skrec.training import cpu_supports_bf16


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    """Measured dense matmul FLOP/s of an n x n x n product in ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def model_flops_per_token(d: int, d_ff: int, n_layers: int, n_items: int, seq_len: float):
    """Training FLOPs per target token (forward + backward = 3x forward matmul FLOPs)."""
    per_layer = 2 * (4 * d * d + 2 * d * d_ff) + 2 * 2 * seq_len * d  # projections + attention
    return 3 * (n_layers * per_layer + 2 * d * n_items)


def bare_loop(seqs: np.ndarray, n_items: int, params: dict, precision: str, acc: int,
              epochs: int, batch_size: int, seed: int = 0) -> float:
    """Tokens/s of a minimal training loop over the same data (epochs after the first)."""
    torch.manual_seed(seed)
    model = SequenceModel(
        ItemEmbedding(n_items, params["d_model"]),
        TransformerEncoder(params["d_model"], params["n_layers"], params["n_heads"],
                           params["d_ff"], params["max_len"], params["dropout"], causal=True),
        params["max_len"],
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=precision == "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    lengths = (seqs != 0).sum(1)
    order = np.argsort(-lengths, kind="stable")  # bucketed like the trainer
    batches = []
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        width = max(int(lengths[rows].max()), 2)
        batches.append(torch.as_tensor(seqs[rows, -width:]))
    rates = []
    for epoch in range(epochs):
        t0, tokens = time.perf_counter(), 0
        for w in range(0, len(batches), acc):
            window = batches[w : w + acc]
            n_window = sum(int((b[:, :-1] != 0).sum()) for b in window)
            opt.zero_grad(set_to_none=True)
            for seq in window:
                inp, tgt = seq[:, :-1], seq[:, 1:]
                valid = inp != 0
                with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                    h = model(inp)[valid]
                    weight, bias = model.output_weights()
                    logits = torch.addmm(bias, h, weight.t()).float()
                    loss = F.cross_entropy(logits, tgt[valid] - 1, reduction="sum")
                scaler.scale(loss / n_window).backward()
                tokens += int(valid.sum())
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(opt)
            scaler.update()
        if epoch:
            rates.append(tokens / (time.perf_counter() - t0))
    return float(np.median(rates))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=None)
    parser.add_argument("--low-precision-users", type=int, default=128,
                        help="users used for bf16/fp16 when the CPU emulates them")
    args = parser.parse_args(argv)

    path = ml100k_path(args.data)
    X = load_movielens(path).X if path.exists() else make_interactions(2000, 1700,
                                                                       random_state=0)
    params = dict(d_model=64, n_layers=2, n_heads=2, d_ff=256, max_len=200, dropout=0.2)
    batch_size = 128
    native_bf16 = cpu_supports_bf16()
    precisions = args.precisions or ["fp32", "bf16", "fp16"]
    peaks = {"fp32": matmul_peak(torch.float32)}
    peaks["bf16"] = matmul_peak(torch.bfloat16, n=512 if not native_bf16 else 1024, reps=2)
    rows = []
    for precision in precisions:
        # Emulated low precision is ~100x slower here: measure it on a subset of users.
        Xp = X if precision == "fp32" or native_bf16 else X[: args.low_precision_users]
        seqs = ordered_sequences(Xp, params["max_len"] + 1)
        mean_len = float(((seqs != 0).sum(1)).mean())
        flops_tok = model_flops_per_token(64, 256, 2, X.shape[1], mean_len)
        for acc in (1, 4):
            bare = bare_loop(seqs, X.shape[1], params, precision, acc, args.epochs,
                             batch_size // acc)
            est = SeqRecommender(**params, max_iter=args.epochs, early_stopping=False,
                                 precision=precision, accumulation_steps=acc,
                                 batch_size=batch_size // acc, random_state=0,
                                 device="cpu").fit(Xp)
            skrec_rate = float(np.median([h["targets_per_s"] for h in est.history_[1:]]))
            peak = peaks["bf16" if precision != "fp32" else "fp32"]
            rows.append({
                "precision": precision,
                "accumulation": acc,
                "micro_batch": batch_size // acc,
                "users": Xp.shape[0],
                "bare_tokens_s": bare,
                "skrec_tokens_s": skrec_rate,
                "skrec/bare": skrec_rate / bare,
                "GFLOP/s": skrec_rate * flops_tok / 1e9,
                "frac_of_peak": skrec_rate * flops_tok / peak,
            })
            print(rows[-1], flush=True)
    print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s (native bf16: {native_bf16}); "
          f"threads {torch.get_num_threads()}")
    print(markdown_table(rows, list(rows[0])))
    save_json("throughput", {"rows": rows, "peak_flops": peaks, "native_bf16": native_bf16,
                             "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
