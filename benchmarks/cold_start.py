"""Strict item cold start on MovieLens-100K: models that know new items only by their features.

Protocol (``--seeds`` splits, seeds 0, 1, 2 by default):

* 20 % of the items are drawn at random (seeded) and held out: **all** their interactions are
  removed from training. Every user keeps their interactions with the other (warm) items.
* Each user with at least one interaction with a held-out item is evaluated: the held-out items
  are ranked for them (among the held-out items only, ties broken at random) and compared with
  the held-out items they interacted with: Recall@20 (hits / min(20, |relevant|)) and NDCG@20
  from :mod:`skrec.metrics`. Every rating counts as an interaction.
* Item features are built with scikit-learn transformers inside a ``ColumnTransformer``,
  **fitted on the warm items only** (a new item's title is transformed with the vocabulary of
  the catalogue it joins): ``genres`` (multi-hot, ``CountVectorizer(analyzer=list,
  binary=True)``), ``title-tfidf`` (``TfidfVectorizer``), ``title-minilm`` (384-d
  all-MiniLM-L6-v2 sentence embeddings of the title from :class:`skrec.text.TextEmbedder`) and
  the combinations ``genres+title-tfidf`` and ``genres+title-minilm``.
* Hyper-parameters are tuned per split and feature set on a **validation split of the warm
  items** (20 % of them held out the same way, seed + 1000), by NDCG@20, then the model is
  refitted on all warm items. The test items are never seen while tuning.

Methods, side by side in one run (the model registry below):

* ``random``: a random ranking (the floor).
* ``content-kNN``: cosine between each held-out item's features and the user's profile (the
  mean of the L2-normalised features of the user's warm items).
* ``feature-popularity``: a ridge regression from the features to the warm items' log
  popularity; one list for every user (``alpha`` tuned).
* ``LightFM``: ``lightfm.LightFM(loss="warp")`` with item features (Kula, 2015), tuned on the
  grid ``LIGHTFM_GRID`` (components, learning rate, with or without id features for the warm
  items) with the epochs chosen at checkpoints ``LIGHTFM_EPOCHS``. LightFM trains on the warm
  items only (the cold items are not in its catalogue, so never sampled as negatives); dense
  feature columns (the text embeddings) are projected to ``LIGHTFM_DENSE_DIMS`` by a PCA fitted
  on the warm items, since LightFM's cost grows with the non-zeros per item (384 dense columns:
  ~25 s per epoch here, ~100x genres). LightFM is a benchmark-only peer, never a dependency.
  Its ``1.17`` sdist does not build with PEP 517 (``'dict' object has no attribute
  '__LIGHTFM_SETUP__'``, lyst/lightfm#687); install it with ``pip install wheel && pip
  install --no-use-pep517 lightfm``.

``warm_item_check`` (``--warm-check``) is the second check of the feature work: leave-last-out
NDCG@10 on ML-100K of a model with item features against the same model without, for the
builders registered in ``WARM_BUILDERS``, with the feature set ``--warm-features`` (default
``genres+title-tfidf``).

Run: ``python benchmarks/cold_start.py [--data PATH] [--seeds 3] [--methods ...]
[--features ...] [--quick] [--warm-check] [--warm-features SET] [--merge]``. Prints markdown
tables and writes ``benchmarks/results/cold_start.json``; with ``--merge`` the rows of this run
replace those of the same (seed, method, features) in the existing file and the others are
kept, so a new model can be added without re-running the others (the splits and tie-breaks are
seeded), and ``--note TEXT`` records what the run was for. Timings are seconds on this machine
(use ``OMP_NUM_THREADS=1``; LightFM runs with ``num_threads=1``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import KBinsDiscretizer, normalize

from _common import RESULTS, markdown_table, ml100k_path, peak_rss_mb, save_json
from skrec.datasets import load_movielens, load_movielens_items
from skrec.metrics import ndcg_at_k, recall_at_k
from skrec.model_selection import leave_last_out_split

K = 20
COLD_FRACTION = 0.2
VALIDATION_SEED_OFFSET = 1000
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)
LIGHTFM_GRID = {
    "no_components": (32, 64),
    "learning_rate": (0.02, 0.05),
    "item_alpha": (0.0,),
    "id_features": (False, True),
}
LIGHTFM_EPOCHS = (1, 2, 5, 10, 20)
#: LightFM sums one embedding per non-zero feature for every item it touches, so 384 dense
#: text dimensions make an epoch ~100x slower than genres (about 25 s here): dense columns are
#: projected to this many dimensions by a PCA fitted on the warm items, for LightFM only.
LIGHTFM_DENSE_DIMS = 32
QUICK_LIGHTFM_GRID = {"no_components": (32,), "learning_rate": (0.05,), "item_alpha": (0.0,),
                      "id_features": (False,)}
QUICK_LIGHTFM_EPOCHS = (1, 5)

Features = sp.csr_matrix | np.ndarray


# =============================================================================================
# The protocol: strict item cold-start splits and their evaluation.
# =============================================================================================


@dataclass
class ColdStartSplit:
    """One strict item cold-start split of a user x item matrix.

    Attributes
    ----------
    X_train : csr_matrix (n_users, n_items)
        The input with every interaction of a cold item removed (values keep the order).
    cold_items, warm_items : ndarray of int
        Column indices of the held-out items and of the others (sorted).
    users : ndarray of int
        Rows evaluated: the users with at least one interaction with a cold item.
    y : csr_matrix (len(users), n_items)
        Their interactions with the cold items (the targets).
    seed : int
        The seed that drew the cold items.
    featurize : callable or None
        ``featurize(warm_items) -> (n_items, n_features)`` matrix: the feature transformers
        fitted on the given warm items, applied to every item. ``None`` for no features.

    The strict setting, which every runner should follow: a model is trained on the warm
    items only (:attr:`X_warm`, :attr:`F_warm`: the cold items do not exist at training time,
    not even as negatives) and then scores the cold items from :attr:`F_cold` alone.
    """

    X_train: sp.csr_matrix
    cold_items: np.ndarray
    warm_items: np.ndarray
    users: np.ndarray
    y: sp.csr_matrix
    seed: int
    featurize: Callable[[np.ndarray], Features] | None = None
    _features: Features | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return self.X_train.shape[1]

    @property
    def X_warm(self) -> sp.csr_matrix:
        """Training interactions restricted to the warm items (columns = ``warm_items``)."""
        return sp.csr_matrix(self.X_train[:, self.warm_items])

    @property
    def F(self) -> Features:
        """Features of every item, from transformers fitted on this split's warm items."""
        if self.featurize is None:
            raise ValueError("this split has no features")
        if self._features is None:
            self._features = self.featurize(self.warm_items)
        return self._features

    @property
    def F_warm(self) -> Features:
        return self.F[self.warm_items]

    @property
    def F_cold(self) -> Features:
        return self.F[self.cold_items]

    def with_features(self, featurize: Callable[[np.ndarray], Features] | None):
        return dataclasses.replace(self, featurize=featurize, _features=None)


def cold_start_split(X: sp.csr_matrix, pool: np.ndarray, fraction: float, seed: int,
                     featurize: Callable[[np.ndarray], Features] | None = None
                     ) -> ColdStartSplit:
    """Hold out ``fraction`` of the items in ``pool`` (seeded); the others stay as they are."""
    X = sp.csr_matrix(X)
    rng = np.random.RandomState(seed)
    n_cold = int(round(fraction * len(pool)))
    cold = np.sort(rng.choice(pool, size=n_cold, replace=False))
    is_cold = np.zeros(X.shape[1], dtype=bool)
    is_cold[cold] = True
    cols = X.indices
    keep = ~is_cold[cols]
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    X_train = sp.csr_matrix((X.data[keep], (rows[keep], cols[keep])), shape=X.shape)
    target = sp.csr_matrix((X.data[~keep], (rows[~keep], cols[~keep])), shape=X.shape)
    users = np.flatnonzero(np.diff(target.indptr) > 0)
    warm = np.setdiff1d(pool, cold)
    return ColdStartSplit(X_train, cold, warm, users, target[users], seed, featurize)


def evaluate(split: ColdStartSplit, scores: np.ndarray) -> dict[str, float]:
    """Recall@K and NDCG@K of the cold-item rankings given by ``scores``.

    ``scores`` has shape ``(len(split.users), len(split.cold_items))``; ties are broken at
    random (seeded by the split) so that no method profits from the items' id order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    expected = (len(split.users), len(split.cold_items))
    if scores.shape != expected:
        raise ValueError(f"scores have shape {scores.shape}; expected {expected}.")
    perm = np.random.RandomState(split.seed + 7).permutation(len(split.cold_items))
    order = np.argsort(-scores[:, perm], axis=1, kind="stable")[:, :K]
    pred = split.cold_items[perm[order]]
    return {f"Recall@{K}": float(recall_at_k(split.y, pred, k=K)),
            f"NDCG@{K}": float(ndcg_at_k(split.y, pred, k=K))}


def validation_split(split: ColdStartSplit) -> ColdStartSplit:
    """A cold-start split of the warm items of ``split`` (for tuning; test items unseen).

    Its features are fitted on its own warm items, as the test split's are on theirs.
    """
    return cold_start_split(split.X_train, split.warm_items, COLD_FRACTION,
                            split.seed + VALIDATION_SEED_OFFSET, split.featurize)


def binary(X: sp.csr_matrix) -> sp.csr_matrix:
    """Interactions as ones (float32)."""
    B = sp.csr_matrix(X, dtype=np.float32, copy=True)
    B.data[:] = 1.0
    return B


# =============================================================================================
# Item features: scikit-learn transformers, fitted on the warm items only.
# =============================================================================================


def _genres() -> tuple[str, Any, str]:
    return ("genres", CountVectorizer(analyzer=list, binary=True), "genres")


def _tfidf() -> tuple[str, Any, str]:
    return ("title", TfidfVectorizer(sublinear_tf=True), "title")


def _year() -> tuple[str, Any, list[str]]:
    # release year in 8 quantile bins of the warm catalogue (one-hot); a missing year gets the
    # median. The year of an item is known when it is added, like its genres.
    return ("year", make_pipeline(SimpleImputer(strategy="median"),
                                  KBinsDiscretizer(n_bins=8, encode="onehot",
                                                   strategy="quantile")), ["year"])


def _minilm() -> tuple[str, Any, str]:
    from skrec.text import TextEmbedder

    return ("title", TextEmbedder(device="cpu"), "title")


FEATURE_SETS: dict[str, Callable[[], list]] = {
    "genres": lambda: [_genres()],
    "title-tfidf": lambda: [_tfidf()],
    "title-minilm": lambda: [_minilm()],
    "genres+title-tfidf": lambda: [_genres(), _tfidf()],
    "genres+title-minilm": lambda: [_genres(), _minilm()],
    "genres+year": lambda: [_genres(), _year()],
    "genres+year+title-minilm": lambda: [_genres(), _year(), _minilm()],
}


def item_features(name: str, items, warm_items: np.ndarray) -> sp.csr_matrix:
    """The ``(n_items, n_features)`` matrix of one feature set, fitted on the warm rows."""
    ct = ColumnTransformer(FEATURE_SETS[name](), sparse_threshold=1.0)
    ct.fit(items.iloc[warm_items])
    return sp.csr_matrix(ct.transform(items), dtype=np.float32)


def featurizer(name: str, items) -> Callable[[np.ndarray], sp.csr_matrix]:
    """``warm_items -> item_features(name, items, warm_items)``."""
    return functools.partial(item_features, name, items)


# =============================================================================================
# Model runners: the registry.
#
# A runner gets one split (``split.F``, ``split.F_warm``, ``split.F_cold``: the item features of
# the feature set being run, fitted on the split's warm items; absent for a method registered
# with ``uses_features=False``) and returns ``(scores, info)``: ``scores`` of shape
# (len(split.users), len(split.cold_items)), higher is better, and ``info``, a dict of what it
# chose (tuned parameters) for the results file. Everything it tunes, it tunes on
# ``validation_split(split)``. It trains on the warm items only (``split.X_warm``; the cold
# items do not exist yet) and scores the cold items from their features. To add a model, write
# one function and decorate it, e.g. for a skrec estimator that takes item features and can
# add items to a fitted model from their feature rows:
#
#     @runner("SeqRecommender")
#     def run_seq(split):
#         est = SeqRecommender(item_features=split.F_warm, random_state=split.seed)
#         est.fit(split.X_warm)
#         est.add_items(split.F_cold)  # columns n_warm.. are the cold items, in order
#         X_users = sp.hstack([split.X_warm[split.users],
#                              sp.csr_matrix((len(split.users), len(split.cold_items)))])
#         scores = est.predict_scores(X_users)[:, len(split.warm_items):]
#         return scores, {"epochs": est.n_iter_}
# =============================================================================================

Runner = Callable[[ColdStartSplit], tuple[np.ndarray, dict]]


@dataclass
class RunnerSpec:
    fn: Runner
    uses_features: bool


RUNNERS: dict[str, RunnerSpec] = {}


def runner(name: str, *, uses_features: bool = True) -> Callable[[Runner], Runner]:
    """Register a model runner under ``name``."""
    def register(fn: Runner) -> Runner:
        RUNNERS[name] = RunnerSpec(fn, uses_features)
        return fn
    return register


@runner("random", uses_features=False)
def run_random(split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    rng = np.random.RandomState(split.seed)
    return rng.rand(len(split.users), len(split.cold_items)), {}


@runner("oracle: test popularity", uses_features=False)
def run_oracle_popularity(split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    """Not a method: the cold items ranked by their popularity among the test targets, which
    no model may see. The ceiling of any ranking that is the same for every user (such as
    feature-popularity), and a yardstick for how much a goal asks of the features."""
    pop = np.asarray((split.y != 0).sum(axis=0), dtype=np.float64).ravel()[split.cold_items]
    return np.broadcast_to(pop, (len(split.users), len(pop))), {}


@runner("content-kNN")
def run_content_knn(split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    profiles = normalize(binary(split.X_warm)[split.users] @ sp.csr_matrix(normalize(split.F_warm)))
    scores = profiles @ sp.csr_matrix(normalize(split.F_cold)).T
    return np.asarray(scores.todense() if sp.issparse(scores) else scores), {}


def _ridge_scores(split: ColdStartSplit, alpha: float) -> np.ndarray:
    pop = np.asarray(binary(split.X_warm).sum(axis=0)).ravel()
    model = Ridge(alpha=alpha).fit(split.F_warm, np.log1p(pop))
    cold = model.predict(split.F_cold)
    return np.broadcast_to(cold, (len(split.users), len(cold)))


@runner("feature-popularity")
def run_feature_popularity(split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    val = validation_split(split)
    ndcg = {a: evaluate(val, _ridge_scores(val, a))[f"NDCG@{K}"] for a in RIDGE_ALPHAS}
    alpha = max(ndcg, key=ndcg.get)
    return _ridge_scores(split, alpha), {"alpha": alpha, "val_ndcg": ndcg[alpha]}


def _reduce_dense_columns(split: ColdStartSplit) -> tuple[sp.csr_matrix, sp.csr_matrix, int]:
    """``(F_warm, F_cold, n_dense)``: dense columns replaced by their PCA projection.

    A column is dense when it is non-zero for at least 90 % of the warm items (the text
    embeddings); the PCA is fitted on the warm items.
    """
    F_warm = sp.csr_matrix(split.F_warm, dtype=np.float32)
    F_cold = sp.csr_matrix(split.F_cold, dtype=np.float32)
    dense = F_warm.getnnz(axis=0) >= 0.9 * F_warm.shape[0]
    if dense.sum() <= LIGHTFM_DENSE_DIMS:
        return F_warm, F_cold, 0
    pca = PCA(n_components=LIGHTFM_DENSE_DIMS, random_state=split.seed)
    pca.fit(F_warm[:, dense].toarray())
    parts = []
    for M in (F_warm, F_cold):
        reduced = sp.csr_matrix(pca.transform(M[:, dense].toarray()).astype(np.float32))
        parts.append(sp.hstack([M[:, ~dense], reduced], format="csr"))
    return parts[0], parts[1], int(dense.sum())


def _lightfm_features(split: ColdStartSplit, id_features: bool):
    """Item features of the warm items (training) and of the cold items (scoring)."""
    F_warm, F_cold, _ = _reduce_dense_columns(split)
    if not id_features:
        return F_warm, F_cold
    # one id feature per warm item; the cold items have none (they never had interactions)
    n_warm = len(split.warm_items)
    ids_warm = sp.identity(n_warm, dtype=np.float32, format="csr")
    ids_cold = sp.csr_matrix((len(split.cold_items), n_warm), dtype=np.float32)
    return (sp.hstack([F_warm, ids_warm], format="csr"),
            sp.hstack([F_cold, ids_cold], format="csr"))


def _lightfm_scores(model, split: ColdStartSplit, F_cold) -> np.ndarray:
    item_bias, item_emb = model.get_item_representations(F_cold)
    user_bias, user_emb = model.get_user_representations()
    u = split.users
    return user_emb[u] @ item_emb.T + item_bias[None, :] + user_bias[u][:, None]


def _lightfm_path(split: ColdStartSplit, params: dict, epochs: tuple[int, ...]
                  ) -> tuple[dict[int, np.ndarray], float]:
    """Scores at each epoch checkpoint of one LightFM configuration, and the fit time.

    LightFM is trained on the warm items only (``split.X_warm``): the cold items are not in
    its catalogue, so they are never sampled as negatives.
    """
    from lightfm import LightFM

    params = dict(params)
    F_warm, F_cold = _lightfm_features(split, params.pop("id_features"))
    model = LightFM(loss="warp", random_state=split.seed, **params)
    interactions = binary(split.X_warm).tocoo()
    out, done, seconds = {}, 0, 0.0
    for e in sorted(epochs):
        t0 = time.perf_counter()
        model.fit_partial(interactions, item_features=F_warm, epochs=e - done, num_threads=1)
        seconds += time.perf_counter() - t0
        done = e
        out[e] = _lightfm_scores(model, split, F_cold)
    return out, seconds


@runner("LightFM")
def run_lightfm(split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    grid = QUICK_LIGHTFM_GRID if QUICK else LIGHTFM_GRID
    checkpoints = QUICK_LIGHTFM_EPOCHS if QUICK else LIGHTFM_EPOCHS
    val = validation_split(split)
    tried = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        path, seconds = _lightfm_path(val, params, checkpoints)
        for epochs, scores in path.items():
            tried.append({**params, "epochs": epochs, **evaluate(val, scores),
                          "fit_s_all_epochs": seconds})
    best = max(tried, key=lambda r: r[f"NDCG@{K}"])
    params = {k: best[k] for k in grid}
    path, _ = _lightfm_path(split, params, (best["epochs"],))
    n_dense = _reduce_dense_columns(split)[2]
    return path[best["epochs"]], {**params, "epochs": best["epochs"],
                                  "val_ndcg": best[f"NDCG@{K}"],
                                  "dense_columns_pca": (f"{n_dense}->{LIGHTFM_DENSE_DIMS}"
                                                        if n_dense else ""),
                                  "tried": tried}


QUICK = False


# skrec's neural recommenders with item features, at their defaults (nothing tuned). Each trains
# on the warm catalogue (features of the warm items), then adds the cold items to the fitted
# model from their feature rows (``add_items``: no retraining) and scores them for the users.
def _skrec_cold_scores(est, split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    est.fit(split.X_warm)
    est.add_items(split.F_cold)  # columns n_warm.. are the cold items, in order
    n_warm, n_cold = len(split.warm_items), len(split.cold_items)
    X_users = sp.hstack([split.X_warm[split.users], sp.csr_matrix((len(split.users), n_cold))],
                        format="csr")
    scores = est.predict_scores(X_users)[:, n_warm:]
    return scores, {"epochs": est.n_iter_, "best_epoch": est.best_epoch_}


@runner("skrec AERecommender")
def run_skrec_ae(split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    from skrec import AERecommender

    return _skrec_cold_scores(
        AERecommender(item_features=split.F_warm, random_state=split.seed), split)


@runner("skrec AERecommender feature_dropout=0.5")
def run_skrec_ae_fd(split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    """The ablation behind the ``feature_dropout`` default."""
    from skrec import AERecommender

    return _skrec_cold_scores(
        AERecommender(item_features=split.F_warm, feature_dropout=0.5,
                      random_state=split.seed), split)


@runner("skrec AERecommender feature_hidden=64")
def run_skrec_ae_mlp(split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    """The small MLP feature map (64 GELU units) against the default linear map."""
    from skrec import AERecommender

    return _skrec_cold_scores(
        AERecommender(item_features=split.F_warm, feature_hidden=64,
                      random_state=split.seed), split)


@runner("skrec SeqRecommender")
def run_skrec_seq(split: ColdStartSplit) -> tuple[np.ndarray, dict]:
    from skrec import SeqRecommender

    return _skrec_cold_scores(
        SeqRecommender(item_features=split.F_warm, random_state=split.seed), split)


# =============================================================================================
# Warm items: a model with features must not lose accuracy on items it knows.
#
# WARM_BUILDERS maps a name to ``build(item_features, seed) -> unfitted estimator``, where
# ``item_features`` is ``None`` for the id-only model. Register skrec models that take item
# features here; ``--warm-check`` runs every registered builder.
# =============================================================================================

def _warm_seq(features, seed):
    from skrec import SeqRecommender

    return SeqRecommender(item_features=features, random_state=seed)


def _warm_ae(features, seed):
    from skrec import AERecommender

    return AERecommender(item_features=features, random_state=seed)


def _warm_ae_mlp(features, seed):
    from skrec import AERecommender

    return AERecommender(item_features=features, feature_hidden=64, random_state=seed)


WARM_BUILDERS: dict[str, Callable[[Features | None, int], Any]] = {
    "SeqRecommender": _warm_seq,
    "AERecommender": _warm_ae,
    "AERecommender feature_hidden=64": _warm_ae_mlp,
}


def warm_item_check(build: Callable[[Features | None, int], Any], X: sp.csr_matrix,
                    F: Features, seeds: int) -> list[dict]:
    """Leave-last-out NDCG@10 (and fit time) of ``build(F, seed)`` vs ``build(None, seed)``."""
    X_hist, y = leave_last_out_split(X)
    rows = []
    for seed in range(seeds):
        row: dict[str, Any] = {"seed": seed}
        for label, feats in (("ids", None), ("ids+features", F)):
            est = build(feats, seed)
            t0 = time.perf_counter()
            est.fit(X_hist)
            row[f"fit_s[{label}]"] = time.perf_counter() - t0
            history = getattr(est, "history_", None)
            row[f"epochs[{label}]"] = len(history) if history else None
            # training time per epoch (validation excluded): the cost at equal epochs; the
            # whole fit for a model without epochs
            row[f"train_s_per_epoch[{label}]"] = (
                float(np.mean([h["seconds"] for h in history])) if history
                else row[f"fit_s[{label}]"]
            )
            row[f"NDCG@10[{label}]"] = float(est.score(X_hist, y, k=10))
        row["NDCG gain"] = row["NDCG@10[ids+features]"] / row["NDCG@10[ids]"] - 1
        row["fit overhead per epoch"] = (row["train_s_per_epoch[ids+features]"]
                                         / row["train_s_per_epoch[ids]"])
        rows.append(row)
    return rows


# =============================================================================================
# Running and summarising.
# =============================================================================================


def text_embedder_throughput(titles: list[str]) -> dict:
    """Time TextEmbedder on the titles with empty caches (model load and encoding apart)."""
    from skrec.text import TextEmbedder, clear_memory_cache

    clear_memory_cache()
    t0 = time.perf_counter()
    emb = TextEmbedder(device="cpu").fit(titles[:1])
    load_s = time.perf_counter() - t0
    emb.transform(titles[:1])  # the model fingerprint (hash of its files) is computed once
    clear_memory_cache()
    t0 = time.perf_counter()
    emb.transform(titles)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb.transform(titles)
    cached_s = time.perf_counter() - t0
    return {"texts": len(titles), "batch_size": emb.batch_size, "load_s": load_s,
            "encode_s": encode_s, "texts_per_s": len(titles) / encode_s,
            "cached_texts_per_s": len(titles) / cached_s, "torch_threads": torch.get_num_threads()}


def run(X, items, seeds: int, methods: list[str], feature_sets: list[str]) -> list[dict]:
    rows = []
    for seed in range(seeds):
        split = cold_start_split(X, np.arange(X.shape[1]), COLD_FRACTION, seed)
        print(f"seed {seed}: {len(split.cold_items)} cold items, {len(split.users)} users "
              f"evaluated, {split.y.nnz} target interactions, {split.X_train.nnz} training "
              "interactions", flush=True)
        splits = {name: split.with_features(featurizer(name, items)) for name in feature_sets}
        for s in splits.values():
            s.F  # noqa: B018 - build the features before any runner is timed
        for method in methods:
            spec = RUNNERS[method]
            for fname in (feature_sets if spec.uses_features else [None]):
                s = splits[fname] if fname else split
                t0 = time.perf_counter()
                scores, info = spec.fn(s)
                seconds = time.perf_counter() - t0
                row = {"seed": seed, "method": method, "features": fname or "-",
                       "n_features": s.F.shape[1] if fname else 0,
                       **evaluate(split, scores), "seconds_incl_tuning": seconds,
                       "n_users": len(split.users), "n_cold_items": len(split.cold_items),
                       **{k: v for k, v in info.items() if k != "tried"}}
                if "tried" in info:
                    row["tuning"] = info["tried"]
                rows.append(row)
                print({k: (round(v, 4) if isinstance(v, float) else v)
                       for k, v in row.items() if k != "tuning"}, flush=True)
    return rows


def tuning_table(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(rows without the tuning records, one row per (seed, features, LightFM config))``.

    Each tuning row holds the validation NDCG@K at every epoch checkpoint, so the results file
    says everything that was tried without one nested list per result row.
    """
    table = []
    for r in rows:
        for t in r.get("tuning", []):
            config = {k: t[k] for k in LIGHTFM_GRID}
            key = {"seed": r["seed"], "features": r["features"], **config}
            row = next((x for x in table if all(x[k] == v for k, v in key.items())), None)
            if row is None:
                row = {**key, "fit_s_all_epochs": t["fit_s_all_epochs"]}
                table.append(row)
            row[f"val NDCG@{K} e{t['epochs']}"] = t[f"NDCG@{K}"]
    return [{k: v for k, v in r.items() if k != "tuning"} for r in rows], table


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± sd over seeds per (method, features), with NDCG relative to LightFM."""
    out = []
    method_rank = {m: i for i, m in enumerate(RUNNERS)}
    feature_rank = {f: i for i, f in enumerate(FEATURE_SETS)}
    keys = sorted(dict.fromkeys((r["method"], r["features"]) for r in rows),
                  key=lambda mf: (method_rank.get(mf[0], len(RUNNERS)), mf[0],
                                  feature_rank.get(mf[1], -1)))
    lightfm = {f: np.mean([r[f"NDCG@{K}"] for r in rows
                           if r["method"] == "LightFM" and r["features"] == f])
               for m, f in keys if m == "LightFM"}
    for method, fname in keys:
        sel = [r for r in rows if r["method"] == method and r["features"] == fname]
        rec = np.array([r[f"Recall@{K}"] for r in sel])
        ndcg = np.array([r[f"NDCG@{K}"] for r in sel])
        row = {"method": method, "features": fname, "seeds": len(sel),
               f"Recall@{K}": f"{rec.mean():.4f} ± {rec.std():.4f}",
               f"NDCG@{K}": f"{ndcg.mean():.4f} ± {ndcg.std():.4f}",
               f"NDCG@{K} mean": float(ndcg.mean()),
               "NDCG vs LightFM (same features)": (
                   f"{ndcg.mean() / lightfm[fname]:.2f}x" if fname in lightfm else ""),
               "seconds": float(np.mean([r["seconds_incl_tuning"] for r in sel]))}
        if method == "LightFM":
            row["chosen"] = "; ".join(
                f"c{r['no_components']} lr{r['learning_rate']} a{r['item_alpha']:g} "
                f"{'ids' if r['id_features'] else 'noids'} e{r['epochs']}" for r in sel)
        elif method == "feature-popularity":
            row["chosen"] = "alpha " + "/".join(f"{r['alpha']:g}" for r in sel)
        out.append(row)
    return out


def main(argv=None):
    global QUICK
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="ML-100K folder (default: shared/data)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument("--features", nargs="+", default=list(FEATURE_SETS),
                        choices=list(FEATURE_SETS))
    parser.add_argument("--quick", action="store_true",
                        help="tiny LightFM grid (a smoke run; results not saved)")
    parser.add_argument("--warm-check", action="store_true",
                        help="also run warm_item_check for every builder in WARM_BUILDERS")
    parser.add_argument("--warm-models", nargs="+", default=list(WARM_BUILDERS),
                        choices=list(WARM_BUILDERS), help="the models of --warm-check")
    parser.add_argument("--warm-features", default="genres+title-tfidf",
                        choices=list(FEATURE_SETS),
                        help="the feature set of --warm-check (results of another set than "
                             "the default are keyed 'model [set]')")
    parser.add_argument("--warm-only", action="store_true",
                        help="run only --warm-check (with --merge: keep the cold-start rows)")
    parser.add_argument("--merge", action="store_true",
                        help="merge into the existing results file instead of replacing it")
    parser.add_argument("--note", default="",
                        help="what this run was for; kept with its command line and timings in "
                             "the results file's 'runs' list (merged runs add to it)")
    args = parser.parse_args(argv)
    if args.warm_only:
        args.methods, args.features, args.warm_check = [], [], True
    QUICK = args.quick

    path = ml100k_path(args.data)
    data = load_movielens(path)
    items = load_movielens_items(path, item_ids=data.item_ids)
    X = data.X
    print(f"ML-100K: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} interactions; torch "
          f"threads {torch.get_num_threads()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()[0]:.2f}", flush=True)
    t_start = time.perf_counter()
    throughput = None
    if any("minilm" in f for f in args.features):
        throughput = text_embedder_throughput(items["title"].tolist())
        print(f"TextEmbedder: {throughput}", flush=True)
    rows = run(X, items, args.seeds, args.methods, args.features)
    cols = ["method", "features", f"Recall@{K}", f"NDCG@{K}", "NDCG vs LightFM (same features)",
            "seconds", "chosen"]
    if rows:
        print(markdown_table(summarise(rows), cols))

    warm_rows = {}
    if args.warm_check:
        if not WARM_BUILDERS:
            print("warm check: no model registered in WARM_BUILDERS; nothing to run.")
        F = item_features(args.warm_features, items, np.arange(X.shape[1]))
        suffix = "" if args.warm_features == "genres+title-tfidf" else f" [{args.warm_features}]"
        for name in args.warm_models:
            warm_rows[name + suffix] = warm_item_check(WARM_BUILDERS[name], X, F, args.seeds)
            print(name + suffix, warm_rows[name + suffix], flush=True)

    if args.quick:
        print("quick run: results not saved")
        return
    # read the results file only now, just before writing it: a merged run started at the same
    # time (the cold-start rows on one core, a warm check on the other) has written by then
    previous = {}
    if args.merge and (RESULTS / "cold_start.json").is_file():
        previous = json.loads((RESULTS / "cold_start.json").read_text())
        done = {(r["seed"], r["method"], r["features"]) for r in rows}
        rows = [r for r in previous.get("rows", [])
                if (r["seed"], r["method"], r["features"]) not in done] + rows
    summary = summarise(rows)
    if args.merge:
        print(markdown_table(summary, cols))
    try:
        import lightfm
        lightfm_version = lightfm.__version__
    except ImportError:
        lightfm_version = None
    rows, tuning = tuning_table(rows)
    if previous:
        done = {(t["seed"], t["features"]) for t in tuning}
        tuning = [t for t in previous.get("lightfm_tuning", [])
                  if (t["seed"], t["features"]) not in done] + tuning
    out = save_json("cold_start", {
        "summary": summary,
        "rows": rows,
        "lightfm_tuning": tuning,
        "warm_check": {**previous.get("warm_check", {}), **warm_rows},
        "text_embedder": throughput or previous.get("text_embedder"),
        "protocol": {"cold_fraction": COLD_FRACTION, "k": K, "seeds": args.seeds,
                     "validation_seed_offset": VALIDATION_SEED_OFFSET,
                     "ridge_alphas": list(RIDGE_ALPHAS),
                     "lightfm_grid": {k: list(v) for k, v in LIGHTFM_GRID.items()},
                     "lightfm_epoch_checkpoints": list(LIGHTFM_EPOCHS),
                     "sd": "population standard deviation over seeds (ddof=0)"},
        "lightfm_version": lightfm_version,
        # one record per run that wrote this file (a merged run adds to the earlier ones)
        "runs": previous.get("runs", []) + [{
            "argv": list(argv) if argv is not None else sys.argv[1:],
            "note": args.note,
            "date": time.strftime("%Y-%m-%d"),
            "total_seconds": time.perf_counter() - t_start,
            "peak_rss_mb": peak_rss_mb(),
            "torch_threads": torch.get_num_threads(),
            "load_average_end": os.getloadavg()[0],
            "machine": platform.processor() or platform.machine(),
        }],
    })
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
