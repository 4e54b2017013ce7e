"""
Grid search over precision and gradient accumulation
====================================================

skrec's neural estimators are ordinary scikit-learn estimators, so
:class:`~sklearn.model_selection.GridSearchCV` tunes them with no extra code. Rows are users,
so its K-fold splits hold out **whole users** (the strong-generalization protocol): each
candidate is trained on the histories of the training users and scored, with its default
``score`` (NDCG@10), on held-out users it never saw, from their own history.

Here we search over the two training knobs that decide how fast an epoch runs on your
hardware:

* ``precision``: ``"fp32"``, ``"bf16"`` or ``"fp16"`` autocast. bf16 is only worth trying where
  the hardware runs it natively (recent NVIDIA GPUs, CPUs with AVX-512 BF16 or AMX); elsewhere it
  is emulated and much slower than fp32, so this example adds it to the grid only when
  :func:`skrec.training.cpu_supports_bf16` says so or a CUDA GPU is present.
* ``accumulation_steps``: micro-batches summed before each optimizer step. ``k`` steps of
  ``batch_size`` users give exactly the gradient of one batch of ``k * batch_size`` users, so
  accumulation buys large effective batches within a fixed memory budget. It also divides the
  number of optimizer steps per epoch by ``k``, which is why the learning rate belongs in the
  same grid.

Set ``SKREC_EXAMPLES_FAST=1`` for a smaller run (for CI).
"""

# %%
# Data: synthetic histories with planted sequential structure
# -----------------------------------------------------------
import os

import matplotlib.pyplot as plt
import pandas as pd
import torch
from sklearn.model_selection import GridSearchCV, KFold

from skrec import SeqRecommender
from skrec.datasets import make_interactions
from skrec.model_selection import leave_last_out_split
from skrec.training import cpu_supports_bf16

FAST = os.environ.get("SKREC_EXAMPLES_FAST", "0") not in ("", "0")

X_all = make_interactions(n_users=300 if FAST else 800, n_items=150, mean_length=20, random_state=0)
X, y = leave_last_out_split(X_all)  # y: each user's last item, the target of the score
print(f"{X.shape[0]} users, {X.shape[1]} items")

# %%
# The grid
# --------
# fp32 is always a candidate. bf16 joins it where it is native; fp16 only on CUDA (it needs a
# gradient scaler and is meant for GPUs without bf16).
precisions = ["fp32"]
if torch.cuda.is_available():
    precisions.append("bf16" if torch.cuda.is_bf16_supported() else "fp16")
elif cpu_supports_bf16():
    precisions.append("bf16")
else:
    print(
        "This CPU has no native bf16 (no AVX-512 BF16 / AMX): bf16 would be emulated and far "
        "slower than fp32, so the grid keeps fp32 only."
    )

param_grid = {
    "precision": precisions,
    "accumulation_steps": [1, 4],
    "learning_rate_init": [1e-3, 4e-3],
}
estimator = SeqRecommender(
    d_model=32,
    n_layers=1,
    n_heads=1,
    d_ff=64,
    max_len=30,
    batch_size=32,
    max_iter=2 if FAST else 8,
    early_stopping=False,
    random_state=0,
)
search = GridSearchCV(estimator, param_grid, cv=KFold(3, shuffle=True, random_state=0))

# %%
# Fit: every candidate trains on two folds of users (``X`` plus their held-out ``y``, i.e.
# whole histories) and is scored on the third fold's users, reading their history ``X`` and
# ranking their held-out item ``y``.
search.fit(X, y)

# %%
# Results
# -------
columns = {
    "param_precision": "precision",
    "param_accumulation_steps": "accumulation",
    "param_learning_rate_init": "lr",
    "mean_test_score": "NDCG@10",
    "std_test_score": "std",
    "mean_fit_time": "fit (s)",
    "rank_test_score": "rank",
}
table = pd.DataFrame(search.cv_results_)[list(columns)].rename(columns=columns)
print(table.sort_values("rank").to_string(index=False, float_format="{:.4f}".format))
print("best:", search.best_params_)

# %%
# How to read it
# --------------
# * With the same learning rate, ``accumulation_steps=4`` takes four times fewer optimizer steps
#   per epoch, so after a fixed number of epochs it tends to lag behind; a larger learning rate
#   wins part of that back. That is why the two are tuned together.
# * Precision mostly changes the time of an epoch (``fit (s)``), not the score. Where bf16 is
#   in the grid, compare the ``fit (s)`` of its rows with fp32's to see what it buys on your
#   hardware; on data this small, fixed overheads hide much of the difference.
# * The best candidate is refitted on all users (``refit=True``) and ready to use:
print(search.best_estimator_.predict(X[:3], k=5))

# %%
# Plot the scores of the grid
# ---------------------------
fig, ax = plt.subplots(figsize=(6, 3.5))
for (precision, lr), part in table.groupby(["precision", "lr"]):
    part = part.sort_values("accumulation")
    ax.errorbar(
        part["accumulation"].astype(int),
        part["NDCG@10"],
        yerr=part["std"],
        marker="o",
        capsize=3,
        label=f"{precision}, lr={lr:g}",
    )
ax.set_xticks([1, 4])
ax.set_xlabel("accumulation_steps")
ax.set_ylabel("NDCG@10 (held-out users)")
ax.legend()
plt.tight_layout()
plt.show()
