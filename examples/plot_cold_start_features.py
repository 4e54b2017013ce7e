"""
Recommending new movies from their genres: item features and cold start
========================================================================

A movie added this morning has no ratings: its column of ``X`` is empty, and a model that
knows items only by their ids can never recommend it. With **item features** (here the genres
and the release decade of each movie), :class:`~skrec.AERecommender` and
:class:`~skrec.SeqRecommender` represent an item by its id embedding *plus* a learned
projection of its features, so a new item is scored from its features alone.

The protocol (as ``benchmarks/cold_start.py``, in short): hide 20 % of the movies (all their
ratings) while training, add them afterwards with ``add_items`` (no retraining), and rank the
hidden movies for the users who rated them. The floor is a random ranking; the baseline that
is hard to beat on MovieLens is *feature popularity* (a ridge regression from the features to
the warm movies' popularity, one list for everybody).

The data are MovieLens 100K, read from ``$SKREC_DATA_DIR`` or ``../shared/data/ml-100k`` next
to the repository (skrec does not ship MovieLens). Without the files the example falls back to
synthetic data with random "genres" (so it runs anywhere, with meaningless numbers, and says
so loudly). Set
``SKREC_EXAMPLES_FAST=1`` for a short run.
"""

# %%
# Items and their features
# ------------------------
# :func:`~skrec.datasets.load_movielens_items` returns one row per column of ``X``. Genres are
# multi-hot (``CountVectorizer(analyzer=list)`` reads each tuple of genre names), the decade
# one-hot: a sparse matrix ``F`` with one row per movie.
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import Ridge
from sklearn.preprocessing import OneHotEncoder

from skrec import AERecommender
from skrec.datasets import find_movielens, load_movielens, load_movielens_items, make_interactions
from skrec.metrics import ndcg_at_k

FAST = os.environ.get("SKREC_EXAMPLES_FAST", "0") not in ("", "0")


path = find_movielens("100k", search_from=__file__ if "__file__" in globals() else None,
                      instead="synthetic data with random genres")
if path is not None:
    data = load_movielens(path)
    X = data.X
    items = load_movielens_items(path, item_ids=data.item_ids)
    items["decade"] = (items["year"].fillna(0) // 10 * 10).astype(int).astype(str)
else:
    X = make_interactions(n_users=400, n_items=300, mean_length=25, random_state=0)
    rng = np.random.default_rng(0)
    genres = np.array(["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"])
    items = pd.DataFrame({
        "title": [f"Movie #{j}" for j in range(X.shape[1])],
        "genres": [tuple(rng.choice(genres, rng.integers(1, 3), replace=False))
                   for _ in range(X.shape[1])],
        "decade": rng.choice(["1970", "1980", "1990"], X.shape[1]),
    })
print(f"{X.shape[0]} users x {X.shape[1]} movies, {X.nnz} ratings")
print(items[["title", "genres", "decade"]].head(3))

featurizer = ColumnTransformer([
    ("genres", CountVectorizer(analyzer=list, binary=True), "genres"),
    ("decade", OneHotEncoder(handle_unknown="ignore"), ["decade"]),
])

# %%
# Hide 20 % of the movies
# -----------------------
# The cold movies' ratings are removed from training, and the featurizer is fitted on the warm
# movies only: at training time the cold movies do not exist.
rng = np.random.default_rng(0)
n_items = X.shape[1]
cold = np.sort(rng.choice(n_items, n_items // 5, replace=False))
warm = np.setdiff1d(np.arange(n_items), cold)
X_warm = X[:, warm].tocsr()
Y_cold = X[:, cold].tocsr()  # who rated which cold movie: the truth
users = np.flatnonzero(np.diff(Y_cold.indptr) > 0)
F_warm = featurizer.fit_transform(items.iloc[warm])
F_cold = featurizer.transform(items.iloc[cold])
print(f"{len(warm)} warm movies, {len(cold)} cold movies, {len(users)} users to evaluate; "
      f"{F_warm.shape[1]} features")

# %%
# Fit with item features, then add the new movies
# -----------------------------------------------
# ``item_features`` is a constructor parameter: one row per column of the ``X`` given to
# ``fit``. ``add_items`` appends the cold movies as new columns (indices ``len(warm)`` and
# up), scored from their features at once.
model = AERecommender(item_features=F_warm, max_iter=5 if FAST else 200, random_state=0)
model.fit(X_warm)
model.add_items(F_cold)
print(f"fitted in {model.n_iter_} epochs; catalogue now {model.n_features_in_} movies")

# Rank the cold movies for each user from their warm history.
X_users = sp.hstack([X_warm[users], sp.csr_matrix((len(users), len(cold)))], format="csr")
scores = {"skrec AERecommender": model.predict_scores(X_users)[:, len(warm):]}

# %%
# Baselines: random and feature popularity
# -----------------------------------------
popularity = np.log1p(np.diff(X_warm.tocsc().indptr))
ridge = Ridge(alpha=10.0).fit(F_warm, popularity)
scores["feature popularity"] = np.tile(ridge.predict(F_cold), (len(users), 1))
scores["random"] = rng.random((len(users), len(cold)))


def ndcg20(s: np.ndarray) -> float:
    top = np.argsort(-s, axis=1)[:, :20]
    return float(ndcg_at_k(Y_cold[users], top, k=20))


results = pd.Series({name: ndcg20(s) for name, s in scores.items()}, name="NDCG@20")
print(results.round(4).to_string())

fig, ax = plt.subplots(figsize=(6, 2.5))
results.sort_values().plot.barh(ax=ax)
ax.set_xlabel("NDCG@20 on movies never seen in training")
fig.tight_layout()

# %%
# New movies for one user
# -----------------------
# The top cold movies for the first evaluated user, with their genres: the model learned which
# genres this user's history points to.
u = 0
top = np.argsort(-scores["skrec AERecommender"][u])[:5]
liked = items.iloc[warm[X_warm[users[u]].indices]]["genres"].explode().value_counts()
print("user's most rated genres:", ", ".join(liked.index[:3]))
print(items.iloc[cold[top]][["title", "genres"]].to_string(index=False))
