"""
Autoencoders under strong generalization
========================================

:class:`~skrec.AERecommender` implements Mult-VAE and Mult-DAE (Liang et al., 2018): an
autoencoder reads a user's whole item set and decodes a softmax over the catalogue.

We evaluate it under **strong generalization**, the protocol of the Mult-VAE paper: a share of
the *users* is held out entirely. The model trains on the other users only; at test time it
reads a random 80 % of each held-out user's items (the *fold-in*) and must rank the other 20 %.
Nothing about the test users was seen during training, which is exactly how a new user is
served in production: skrec scores any row of ``X`` without retraining.

The comparison includes popularity and EASE (Steck, 2019), a closed-form linear autoencoder that
is famously hard to beat on data of this size.

MovieLens 100K is read from ``$SKREC_DATA_DIR`` or ``../shared/data/ml-100k`` when present;
otherwise the example uses synthetic data from :func:`skrec.datasets.make_interactions`, and
says so loudly.
Set ``SKREC_EXAMPLES_FAST=1`` for a short run (for CI).
"""

# %%
# Data and the split
# ------------------
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp

from skrec import AERecommender
from skrec.baselines import EASERecommender, PopularityRecommender
from skrec.datasets import find_movielens, load_movielens, make_interactions
from skrec.metrics import ndcg_at_k, recall_at_k
from skrec.model_selection import user_holdout_split
from skrec.plotting import plot_history

FAST = os.environ.get("SKREC_EXAMPLES_FAST", "0") not in ("", "0")


path = find_movielens("100k", search_from=__file__ if "__file__" in globals() else None,
                      instead="synthetic data (make_interactions)")
if path is not None:
    X_all = load_movielens(path).X
    print(f"MovieLens 100K from {path}")
else:
    X_all = make_interactions(n_users=1500, n_items=800, mean_length=60, random_state=0)

# 20 % of the users are held out; 80 % of each held-out user's items are the fold-in.
X_train, X_fold_in, y_test = user_holdout_split(
    X_all, test_size=0.2, fold_in_size=0.8, random_state=0
)
print(
    f"{X_train.shape[0]} training users, {X_fold_in.shape[0]} held-out users, "
    f"{X_all.shape[1]} items"
)

# %%
# Fit and evaluate
# ----------------
# Every model is fitted on the training users only and evaluated on the held-out users from
# their fold-in rows; fold-in items are never recommended (``filter_seen=True``, the default).
# Recall@20 follows Liang et al.: hits divided by ``min(20, number of held-out items)``.
models = {
    "Popularity": PopularityRecommender(),
    "EASE (l2=500)": EASERecommender(l2=500.0),
}
common = dict(
    max_iter=3 if FAST else 60,
    n_iter_no_change=5,
    batch_size=64,
    random_state=0,
)
models["Mult-DAE"] = AERecommender(variational=False, **common)
models["Mult-VAE"] = AERecommender(variational=True, anneal_steps=200, **common)

rows = []
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X_train)
    seconds = time.perf_counter() - start
    top = model.predict(X_fold_in, k=20)
    rows.append(
        {
            "model": name,
            "NDCG@10": ndcg_at_k(y_test, top, k=10),
            "Recall@20": recall_at_k(y_test, top, k=20),
            "fit (s)": seconds,
            "epochs": getattr(model, "n_iter_", ""),
        }
    )

print(f"{'model':<14} {'NDCG@10':>8} {'Recall@20':>10} {'fit (s)':>8} {'epochs':>7}")
for r in rows:
    print(
        f"{r['model']:<14} {r['NDCG@10']:8.4f} {r['Recall@20']:10.4f} "
        f"{r['fit (s)']:8.2f} {r['epochs']!s:>7}"
    )

# %%
# Training curves
# ---------------
# Early stopping held out 20 % of the items of 10 % of the *training* users and tracked their
# NDCG@10 after every epoch; the best weights were restored at the end. For the Mult-VAE the
# history also records ``beta``, the weight of the KL term, annealed from 0.
neural = [name for name in ("Mult-DAE", "Mult-VAE") if name in models]
if neural:
    fig, axes = plt.subplots(1, len(neural), figsize=(5.5 * len(neural), 3.8), squeeze=False)
    for ax, name in zip(axes[0], neural):
        plot_history(models[name], metrics=("loss", "val_ndcg@10"), ax=ax)
        ax.set_title(name)  # placed above the legend, which sits above the axes
    plt.tight_layout()
    plt.show()

# %%
# Serving a brand-new user
# ------------------------
# A new user is one more row: no retraining, no user id. Here, someone who watched the first
# three items of the catalogue.
best = max(rows, key=lambda r: r["NDCG@10"])["model"]
new_user = sp.csr_matrix((np.ones(3), ([0, 0, 0], [0, 1, 2])), shape=(1, X_all.shape[1]))
print(f"{best} recommends:", models[best].predict(new_user, k=10)[0])
