"""
Pruning: accuracy against size and speed
========================================

``prune_`` removes whole attention heads, feed-forward units and embedding dimensions from a
fitted :class:`~skrec.SeqRecommender` and **slices the dense matrices**, so the pruned model
really has fewer parameters and FLOPs and serves faster with ordinary kernels. A few epochs of
fine-tuning afterwards win back much of the accuracy that pruning costs (the last section shows
a model pruned without fine-tuning).

This example fits one model, then prunes copies of it by increasing amounts and draws the
trade-off curve: NDCG@10 (leave-last-out) against the fraction of units removed, next to the
parameter count and the measured time to recommend for every user. For contrast it also
shows unstructured magnitude pruning, which zeroes weights but keeps every matrix's shape:
no speed-up with dense kernels.

Set ``SKREC_EXAMPLES_FAST=1`` for a short run (for CI).
"""

# %%
# Fit the model to prune
# ----------------------
import copy
import os
import time

import matplotlib.pyplot as plt

from skrec import SeqRecommender
from skrec.datasets import make_interactions
from skrec.metrics import ndcg_at_k
from skrec.model_selection import leave_last_out_split

FAST = os.environ.get("SKREC_EXAMPLES_FAST", "0") not in ("", "0")

X_all = make_interactions(
    n_users=300 if FAST else 1000, n_items=300, mean_length=30, random_state=0
)
X, y = leave_last_out_split(X_all)

base = SeqRecommender(
    d_model=64,
    n_layers=2,
    n_heads=4,
    d_ff=256,
    max_len=50,
    learning_rate_init=3e-3,
    max_iter=2 if FAST else 10,
    precision="fp32",
    random_state=0,
)
base.fit(X)
print(f"base model: {base.n_iter_} epochs, NDCG@10 = {base.score(X, y):.4f}")


def serving_seconds(model: SeqRecommender, repeats: int = 2 if FAST else 5) -> float:
    """Best-of-``repeats`` time to recommend 10 items for every user."""
    model.predict(X[:50], k=10)  # warm-up: first-call allocations are not serving time
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(X, k=10)
        times.append(time.perf_counter() - start)
    return min(times)


def n_parameters(model: SeqRecommender) -> int:
    return sum(p.numel() for p in model.module_.parameters())


# %%
# Prune copies of it
# ------------------
# ``prune_(amount, X=X)`` ranks units by a first-order Taylor estimate of their effect on the
# training loss (computed on ``X``), removes ``amount`` of every group, and fine-tunes the
# smaller model on ``X`` for ``fine_tune_epochs`` epochs (with early stopping). ``prune_``
# works in place, so each amount starts from a deep copy of the base model.
amounts = [0.25, 0.5] if FAST else [0.25, 0.5, 0.75]
fine_tune = 1 if FAST else 2
rows = [
    {
        "method": "unpruned",
        "amount": 0.0,
        "NDCG@10": ndcg_at_k(y, base.predict(X, k=10)),
        "parameters": n_parameters(base),
        "nonzero": sum(int(p.count_nonzero()) for p in base.module_.parameters()),
        "serve (s)": serving_seconds(base),
    }
]
for method in ("structured", "magnitude"):
    for amount in amounts:
        model = copy.deepcopy(base).prune_(amount, method=method, X=X, fine_tune_epochs=fine_tune)
        nonzero = sum(int(p.count_nonzero()) for p in model.module_.parameters())
        rows.append(
            {
                "method": method,
                "amount": amount,
                "NDCG@10": ndcg_at_k(y, model.predict(X, k=10)),
                "parameters": n_parameters(model),
                "nonzero": nonzero,
                "serve (s)": serving_seconds(model),
            }
        )

print(
    f"{'method':<11} {'amount':>6} {'NDCG@10':>8} {'parameters':>11} {'nonzero':>9} "
    f"{'serve (s)':>9}"
)
for r in rows:
    print(
        f"{r['method']:<11} {r['amount']:6.2f} {r['NDCG@10']:8.4f} {r['parameters']:11,d} "
        f"{r['nonzero']:9,d} {r['serve (s)']:9.3f}"
    )

# %%
# The trade-off curve
# -------------------
# Left: accuracy. Right: size and serving time relative to the unpruned model. Structured
# pruning shrinks both; magnitude pruning leaves the parameter count and the time unchanged
# (its zeros are still multiplied). Timings on a busy machine are noisy; FLOPs (below) are not.
# Fine-tuning is extra training: a lightly pruned model can even score a little higher than a
# base model that was stopped by ``max_iter`` rather than by early stopping.
ref = rows[0]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
for method, marker, color in (("structured", "o", "C0"), ("magnitude", "s", "C1")):
    part = [ref] + [r for r in rows if r["method"] == method]
    if len(part) == 1:
        continue
    x = [r["amount"] for r in part]
    left.plot(x, [r["NDCG@10"] for r in part], marker=marker, color=color, label=method)
    right.plot(
        x,
        [r["parameters"] / ref["parameters"] for r in part],
        marker=marker,
        color=color,
        label=f"{method}: parameters",
    )
    right.plot(
        x,
        [r["serve (s)"] / ref["serve (s)"] for r in part],
        marker=marker,
        color=color,
        linestyle="--",
        label=f"{method}: serving time",
    )
left.set_xlabel("amount pruned (fraction of units / weights)")
left.set_ylabel("NDCG@10 after fine-tuning")
left.legend()
right.set_xlabel("amount pruned")
right.set_ylabel("relative to the unpruned model")
right.axhline(1.0, color="grey", linewidth=0.8)
right.legend(fontsize="small")
plt.tight_layout()
plt.show()

# %%
# What the pruning removed
# ------------------------
# ``pruning_report_`` describes the last pruning: the units kept in every group, and the
# parameters and FLOPs per user before and after.
model = copy.deepcopy(base).prune_(0.5)  # no X: weight-norm importance, no fine-tuning
report = model.pruning_report_
for group in report["groups"]:
    print(group)
print("parameters:", report["before"]["parameters"], "->", report["after"]["parameters"])
print(
    "FLOPs per user:",
    report["before"]["flops_per_user"],
    "->",
    report["after"]["flops_per_user"],
)
print(f"NDCG@10 without fine-tuning: {model.score(X, y):.4f}")
