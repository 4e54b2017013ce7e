"""
From a MovieLens event log to recommendations with titles
=========================================================

The whole workflow in your own ids, as in a notebook: start from an event log (a pandas
DataFrame with one row per rating), encode it, compare models in one evaluation table, and
serve recommendations and similar movies **with their titles**, for known users, a new user
who just rated a few movies, and a visitor with no history at all.

The pieces:

* :class:`~skrec.preprocessing.InteractionEncoder` turns the log into the user x item matrix
  the estimators read (ordered by time), and back;
* :func:`~skrec.model_selection.evaluate` fits several models and returns one table of
  metrics with fit and predict times;
* ``encoder.recommend(model, log, users=...)`` returns a DataFrame ``(user, rank, item, score)``
  in the original ids, and ``encoder.similar_items(model, items)`` the most similar items;
* :func:`~skrec.datasets.load_movielens_titles` reads the movie titles.

The data are MovieLens 100K, read from ``$SKREC_DATA_DIR`` or ``../shared/data/ml-100k`` next
to the repository (skrec does not ship MovieLens: the GroupLens licence forbids
redistribution; :func:`skrec.datasets.fetch_movielens` downloads it). Without the files the
example **falls back to a synthetic log** with made-up titles, so it runs anywhere (and says
so loudly). Set
``SKREC_EXAMPLES_FAST=1`` for a short run (for CI).
"""

# %%
# The event log
# -------------
# ``u.data`` is a plain tab-separated log: user id, movie id, rating (1-5) and a Unix time.
# Any DataFrame with a user, an item and a time column works the same way.
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.base import clone

from skrec import EASERecommender, MarkovChainRecommender, PopularityRecommender, SeqRecommender
from skrec.datasets import find_movielens, load_movielens_titles, make_interactions
from skrec.model_selection import evaluate, leave_last_out_split
from skrec.plotting import plot_history
from skrec.preprocessing import InteractionEncoder

FAST = os.environ.get("SKREC_EXAMPLES_FAST", "0") not in ("", "0")


path = find_movielens("100k", search_from=__file__ if "__file__" in globals() else None,
                      instead="a synthetic log with made-up titles")
if path is not None:
    log = pd.read_csv(
        path / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"]
    )
    titles = load_movielens_titles(path)  # movie id -> title
    print(f"MovieLens 100K from {path}")
else:
    coo = make_interactions(n_users=600, n_items=400, mean_length=30, random_state=0).tocoo()
    rng = np.random.default_rng(0)
    log = pd.DataFrame(
        {
            "user": coo.row + 1,
            "item": coo.col + 1,
            "rating": rng.integers(1, 6, coo.nnz),
            "timestamp": 880_000_000 + coo.data.astype(np.int64) * 3600,
        }
    )
    titles = {i: f"Movie #{i}" for i in log["item"].unique()}
log = log.sample(frac=1.0, random_state=0)  # the order of the rows does not matter
print(log.head())
print(f"{len(log)} ratings, {log.user.nunique()} users, {log.item.nunique()} movies")

# %%
# Encode it
# ---------
# With ``time_col``, each stored value is the position of the rating in the user's history
# (1 = first, by time; ties keep the log's row order). That order is what the sequence models
# read: **not** the rating. (Passing the ratings as the values would make
# :class:`~skrec.SeqRecommender` warn: small integers with many ties are no order.)
enc = InteractionEncoder(user_col="user", item_col="item", time_col="timestamp")
X_all = enc.fit_transform(log)
print(repr(X_all))
rows = enc.transform_users([1, 2])  # original user ids -> rows of X_all
print("users 1 and 2 are rows", rows.tolist(), "and rated", np.diff(X_all.indptr)[rows].tolist(),
      "movies")

# %%
# One evaluation table
# --------------------
# Hold out each user's latest rating (leave-last-out), fit every model on the rest, and score
# the top-20 lists of all users against the held-out movie. ``evaluate`` fits the models in
# place and times ``fit`` and ``predict``.
X, y = leave_last_out_split(X_all)
models = {
    "Popularity": PopularityRecommender(),
    "Markov chain": MarkovChainRecommender(),
    "EASE": EASERecommender(l2=500.0),
    "SASRec": SeqRecommender(
        d_model=48,
        n_layers=1,
        n_heads=1,
        d_ff=96,
        max_len=50,
        max_iter=2 if FAST else 40,
        learning_rate_init=3e-3,
        random_state=0,
    ),
}
table = evaluate(models, X, y, metrics=["ndcg@10", "recall@10", "mrr@10", "coverage@10"])
print(table.round(4).to_string())

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
table[["ndcg@10", "recall@10"]].plot.barh(ax=ax)
ax.set_xlabel("score on the held-out latest rating")
ax.set_ylabel("")
ax.invert_yaxis()
plt.tight_layout()
plt.show()

# %%
# How the transformer trained
# ---------------------------
# Training and validation loss share the left axis, the validation NDCG@10 the right one; the
# dotted line marks the epoch whose weights early stopping kept.
ax = plot_history(models["SASRec"])
ax.set_title("SASRec on the event log", pad=25)
plt.tight_layout()
plt.show()

# %%
# Recommendations with titles
# ---------------------------
# Refit the best model on every rating before serving. ``recommend`` reads each user's row
# from the log passed to it (fold-in), so one call serves:
#
# * known users (their history is in ``log``);
# * a new user, not in the training log, from the ratings they just gave;
# * a visitor with no rating at all, who gets the most popular movies.
best = table["ndcg@10"].idxmax()
model = clone(models[best]).fit(X_all)
print(f"serving with {best}")

new_user = pd.DataFrame(
    {
        "user": [10_000] * 3,
        "item": log["item"].value_counts().index[[3, 10, 25]],  # three popular movies
        "rating": [5, 4, 5],
        "timestamp": log["timestamp"].max() + np.array([60, 120, 180]),
    }
)
recs = enc.recommend(model, pd.concat([log, new_user]), users=[1, 10_000, -1], k=5)
recs["title"] = recs["item"].map(titles)
print(recs.to_string(index=False))
print("user 10000 rated:", [titles[i] for i in new_user["item"]])

# %%
# Only among some movies
# ----------------------
# ``items=`` restricts the candidates (say, the catalogue of a partner site); here, movies with
# at least 100 ratings. ``filter_seen=True`` (the default) leaves out what each user rated.
counts = log["item"].value_counts()
catalogue = counts.index[counts >= (100 if path is not None else 60)]
recs = enc.recommend(model, log, users=[1, 2], k=3, items=catalogue)
recs["title"] = recs["item"].map(titles)
print(recs.to_string(index=False))

# %%
# Similar movies
# --------------
# ``similar_items`` exists on every model that relates items: EASE's item-item weights, the
# Markov chain's transitions ("what is watched next"), the transformer's item embeddings
# (cosine). The popularity baseline has none.
query = counts.index[:2].tolist()  # the two most rated movies
for name in ("EASE", "Markov chain", "SASRec"):
    sim = enc.similar_items(models[name], query, k=3)
    sim["movie"] = sim["item"].map(titles)
    sim["similar movie"] = sim["similar_item"].map(titles)
    print(f"\n{name}:")
    print(sim[["movie", "rank", "similar movie", "score"]].to_string(index=False))
