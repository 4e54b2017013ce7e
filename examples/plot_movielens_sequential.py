"""
Sequential recommendation on MovieLens
======================================

Train a :class:`~skrec.SeqRecommender` (a SASRec-style causal transformer) to predict each
user's next movie, and compare it with the baselines every recommender must beat:
popularity, a first-order Markov chain and EASE.

The protocol is **leave-last-out**: each user's latest rating is held out, the model reads the
rest of the history, and we measure NDCG@10 and HR@10 of its top-10 list over the whole
catalogue (no sampled candidates), with already-seen movies excluded.

The data are MovieLens 100K (943 users, 1,682 movies). skrec does not ship MovieLens (the
GroupLens licence forbids redistribution): this example reads it from ``$SKREC_DATA_DIR`` or
``../shared/data/ml-100k`` next to the repository, and **falls back to synthetic data** from
:func:`skrec.datasets.make_interactions` when the files are absent, so it runs anywhere (it
then says so loudly, with how to point it at the data).
With a network, :func:`skrec.datasets.fetch_movielens` downloads and caches the official
archive.

Set ``SKREC_EXAMPLES_FAST=1`` to train for a few epochs only (for CI).
"""

# %%
# Load the data
# -------------
# ``load_movielens`` returns ``X``: rows are users, columns are movies, and each stored value is
# the position of the rating in the user's history (1 = first, by timestamp; ties keep the
# file's row order). That is what a sequence model reads.
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from skrec import SeqRecommender
from skrec.baselines import EASERecommender, MarkovChainRecommender, PopularityRecommender
from skrec.datasets import find_movielens, load_movielens, make_interactions
from skrec.metrics import hit_rate_at_k, ndcg_at_k
from skrec.model_selection import leave_last_out_split
from skrec.plotting import plot_history

FAST = os.environ.get("SKREC_EXAMPLES_FAST", "0") not in ("", "0")


path = find_movielens("100k", search_from=__file__ if "__file__" in globals() else None,
                      instead="synthetic data (make_interactions)")
if path is not None:
    data = load_movielens(path)
    X_all = data.X
    titles = getattr(data, "item_titles", None)
    print(f"MovieLens 100K from {path}")
else:
    X_all = make_interactions(n_users=943, n_items=1000, mean_length=60, random_state=0)
    titles = None
print(f"{X_all.shape[0]} users, {X_all.shape[1]} items, {X_all.nnz} interactions")

# %%
# Hold out each user's last interaction
# -------------------------------------
# ``X`` keeps every user's history but the latest item; ``y`` holds that item. Both keep the
# original values, so the order is not lost.
X, y = leave_last_out_split(X_all)
print(f"history: {X.nnz} interactions, held out: {y.nnz}")

# %%
# The baselines
# -------------
# Popularity is the floor; the Markov chain recommends what usually follows the last movie;
# EASE is a strong closed-form item-item model that ignores the order.
results = {}


def evaluate(name: str, model, seconds: float) -> None:
    top10 = model.predict(X, k=10)
    results[name] = {
        "NDCG@10": ndcg_at_k(y, top10, k=10),
        "HR@10": hit_rate_at_k(y, top10, k=10),
        "fit (s)": seconds,
    }


for name, model in {
    "Popularity": PopularityRecommender(),
    "Markov chain": MarkovChainRecommender(),
    "EASE (l2=500)": EASERecommender(l2=500.0),
}.items():
    start = time.perf_counter()
    model.fit(X)
    evaluate(name, model, time.perf_counter() - start)

# %%
# The sequence model
# ------------------
# A small transformer (one block, width 48, the latest 50 items of each history) keeps the
# example around a minute on a laptop CPU (the defaults are larger: see the benchmarks). Early
# stopping holds out the last item of 20% of the users, tracks their validation loss (smoothed
# over epochs) after every epoch, stops after 5 epochs without improvement and restores the
# best weights. ``precision="auto"`` trains in bf16 only where the hardware runs
# it natively, and in fp32 elsewhere (see the user guide on mixed precision).
seq = SeqRecommender(
    d_model=48,
    n_layers=1,
    n_heads=1,
    d_ff=96,
    max_len=50,
    learning_rate_init=3e-3,
    max_iter=2 if FAST else 15,
    n_iter_no_change=5,
    precision="auto",
    random_state=0,
)
start = time.perf_counter()
seq.fit(X)
evaluate("SeqRecommender", seq, time.perf_counter() - start)
print(f"trained {seq.n_iter_} epochs in precision {seq.precision_!r} on {seq.device_}")

# %%
# Results
# -------
print(f"{'model':<16} {'NDCG@10':>8} {'HR@10':>7} {'fit (s)':>8}")
for name, row in results.items():
    print(f"{name:<16} {row['NDCG@10']:8.4f} {row['HR@10']:7.4f} {row['fit (s)']:8.2f}")

# %%
# The training history
# --------------------
# ``history_`` records the training loss, the validation loss (which early stopping monitors,
# smoothed over epochs) and NDCG@10, the time and the throughput of every epoch.
# :func:`skrec.plotting.plot_history` draws them, here the validation loss (left axis) and
# NDCG@10 (right axis); :func:`skrec.plotting.history_frame` gives them as a DataFrame.
ax = plot_history(seq, metrics=("val_loss", "val_ndcg@10"))
plt.tight_layout()
plt.show()

# %%
# Recommendations for one user
# ----------------------------
# ``predict`` returns column indices; ``load_movielens``'s ``item_ids`` map them back to movie
# ids (and ``item_titles`` to titles when the titles file is present).
user = 0
history = X[user].indices[np.argsort(X[user].data)][-5:]  # the five latest, oldest first
top5 = seq.predict(X[user : user + 1], k=5)[0]


def name_of(item: int) -> str:
    return str(titles[item]) if titles is not None else f"item {item}"


print("latest movies:", [name_of(i) for i in history])
print("recommended:  ", [name_of(i) for i in top5])
print("held out:     ", [name_of(i) for i in y[user].indices])
