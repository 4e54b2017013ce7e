"""The shared contract of skrec recommenders (BaseRecommender), tested on the baselines."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import get_tags
from sklearn.utils._testing import create_memmap_backed_data

from skrec import EASERecommender, PopularityRecommender
from skrec.base import rank_top_k
from skrec.metrics import ndcg_at_k, ndcg_scorer
from skrec.model_selection import leave_last_out_split

ESTIMATORS = [PopularityRecommender, EASERecommender]


def binarize(X):
    """Module-level (picklable) transformer function: every interaction becomes 1."""
    X = sp.csr_matrix(X, copy=True)
    X.data[:] = 1.0
    return X


@pytest.fixture(scope="module")
def split(interactions):
    """Leave-last-out split of the shared small data set."""
    return leave_last_out_split(interactions)


@pytest.fixture(scope="module")
def fitted_ease(split):
    return EASERecommender(l2=50.0).fit(split[0])


def _with_cold_rows(X: sp.csr_matrix, rows=(0, 5)) -> sp.csr_matrix:
    X = sp.lil_matrix(X, copy=True)
    for r in rows:
        X[r, :] = 0
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    return X


# --------------------------------------------------------------------------------- sklearn API
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_clone_get_set_params(Est):
    est = Est()
    params = est.get_params()
    assert clone(est).get_params() == params
    if "l2" in params:
        assert est.set_params(l2=7.0) is est
        assert est.l2 == 7.0
        assert clone(est).l2 == 7.0
        with pytest.raises(ValueError, match="Invalid parameter"):
            est.set_params(alpha=1.0)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_tags(Est):
    tags = get_tags(Est())
    assert tags.input_tags.sparse
    assert tags.input_tags.positive_only
    assert not tags.target_tags.required
    assert tags.requires_fit


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_fit_returns_self_and_sets_state(Est, split):
    X, _ = split
    est = Est()
    assert est.fit(X) is est
    assert est.n_features_in_ == X.shape[1]
    assert est.item_popularity_.shape == (X.shape[1],)
    np.testing.assert_array_equal(est.item_popularity_, X.getnnz(axis=0))


def test_params_not_mutated_by_fit(split):
    est = EASERecommender(l2=np.float64(25.0))
    before = joblib.hash(est.get_params())
    est.fit(*split)
    assert joblib.hash(est.get_params()) == before


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_readonly_memmap_input(Est, split):
    X, y = split
    dense = X.toarray()
    X_mm, dense_mm = create_memmap_backed_data([X, dense])
    a = Est().fit(X_mm, y).predict(dense_mm)
    b = Est().fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)


def test_pipeline_with_transformer(split):
    X, y = split
    pipe = make_pipeline(FunctionTransformer(binarize, accept_sparse=True), EASERecommender(l2=50))
    pipe.fit(X, y)
    direct = EASERecommender(l2=50).fit(X, y)  # EASE binarises anyway: same model
    np.testing.assert_array_equal(pipe.predict(X), direct.predict(X))
    assert pipe.score(X, y) == pytest.approx(direct.score(X, y))
    assert clone(pipe).get_params()["easerecommender__l2"] == 50


@pytest.mark.parametrize("scoring", [None, ndcg_scorer])
def test_grid_search(scoring, split):
    X, y = split
    grid = GridSearchCV(
        EASERecommender(), {"l2": [1.0, 50.0, 5000.0]}, cv=3, n_jobs=2, scoring=scoring
    )
    grid.fit(X, y)
    scores = grid.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and (scores > 0).all()
    assert grid.best_params_["l2"] in (1.0, 50.0, 5000.0)
    assert grid.best_estimator_.n_features_in_ == X.shape[1]
    assert grid.score(X, y) == pytest.approx(grid.best_estimator_.score(X, y))


def test_grid_search_default_score_is_ndcg(split):
    X, y = split
    kwargs = dict(param_grid={"l2": [10.0, 500.0]}, cv=2)
    a = GridSearchCV(EASERecommender(), **kwargs).fit(X, y).cv_results_["mean_test_score"]
    b = GridSearchCV(EASERecommender(), scoring=ndcg_scorer, **kwargs).fit(X, y)
    np.testing.assert_allclose(a, b.cv_results_["mean_test_score"])


# --------------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_pickle_and_joblib_round_trip(Est, split, tmp_path):
    X, y = split
    est = Est().fit(X, y)
    expected_ids, expected_scores = est.recommend(X, k=10)
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    for loaded in (pickle.loads(pickle.dumps(est)), joblib.load(path)):
        assert type(loaded) is Est
        assert loaded.get_params() == est.get_params()
        ids, scores = loaded.recommend(X, k=10)
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_array_equal(scores, expected_scores)
        np.testing.assert_array_equal(loaded.predict_scores(X), est.predict_scores(X))


# --------------------------------------------------------------------------------- bad input
def _bad_X(n_items: int):
    good = np.ones((3, n_items))
    neg, nan, inf = good.copy(), good.copy(), good.copy()
    neg[0, 0], nan[1, 1], inf[2, 2] = -1.0, np.nan, np.inf
    return [
        pytest.param(neg, "negative", id="negative"),
        pytest.param(sp.csr_matrix(neg), "negative", id="negative-sparse"),
        pytest.param(nan, "NaN", id="nan"),
        pytest.param(sp.csr_matrix(nan), "NaN", id="nan-sparse"),
        pytest.param(inf, "infinite", id="inf"),
        pytest.param(np.ones(n_items), "2-D", id="1-D"),
        pytest.param(np.ones((3, n_items, 1)), "2-D", id="3-D"),
        pytest.param(np.ones((0, n_items)), "0 users", id="0-rows"),
        pytest.param(np.ones((3, 0)), "0 items", id="0-columns"),
        pytest.param(np.full((3, n_items), "a", dtype=object), "numeric", id="strings"),
        pytest.param(np.full((3, n_items), "a"), "real numbers", id="unicode-dtype"),
        pytest.param(good.astype(complex), "Complex", id="complex"),
        pytest.param(None, "None", id="None"),
        pytest.param("X.csv", "string", id="str"),
    ]


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("X_bad, match", _bad_X(6))
def test_bad_X_in_fit(Est, X_bad, match):
    with pytest.raises(ValueError, match=match):
        Est().fit(X_bad)


@pytest.mark.parametrize("X_bad, match", _bad_X(6))
@pytest.mark.parametrize("method", ["predict", "recommend", "predict_scores", "score"])
def test_bad_X_after_fit(X_bad, match, method):
    est = EASERecommender().fit(np.eye(6) + np.roll(np.eye(6), 1, axis=1))
    args = (np.zeros(3, dtype=int),) if method == "score" else ()
    with pytest.raises(ValueError, match=match):
        getattr(est, method)(X_bad, *args)


def test_non_numeric_objects_raise_type_error():
    # scikit-learn's convention: arbitrary Python objects give a TypeError.
    X = np.ones((3, 4), dtype=object)
    X[0, 0] = {"a": 1}
    with pytest.raises(TypeError, match="non-numeric"):
        EASERecommender().fit(X)


@pytest.mark.parametrize("method", ["predict", "recommend", "predict_scores", "score"])
def test_wrong_number_of_items_after_fit(method, split):
    X, y = split
    est = EASERecommender().fit(X)
    X_bad = X[:, :-1]
    args = (y[:, :-1],) if method == "score" else ()
    msg = f"X has {X.shape[1] - 1} features, but EASERecommender is expecting {X.shape[1]}"
    with pytest.raises(ValueError, match=msg):
        getattr(est, method)(X_bad, *args)


@pytest.mark.parametrize(
    "y_bad, match",
    [
        pytest.param(np.zeros(4, dtype=int), "has 4 entries but X has 5 rows", id="short"),
        pytest.param(np.array([0, 1, 2, 3, 6]), "item index 6, outside", id="out-of-range"),
        pytest.param(np.array([0, 1, 2, 3, 0.5]), "fractional", id="fractional"),
        pytest.param(np.array([0, 1, 2, 3, np.nan]), "NaN", id="nan"),
        pytest.param(np.array(["a"] * 5), "integer item indices", id="strings"),
        pytest.param(sp.csr_matrix((4, 6)), "has 4 rows but X has 5 rows", id="sparse-rows"),
        pytest.param(sp.csr_matrix((5, 7)), "has 7 features", id="sparse-items"),
        pytest.param(-np.eye(5, 6), "negative", id="negative-matrix"),
    ],
)
@pytest.mark.parametrize("where", ["fit", "score"])
def test_bad_y(y_bad, match, where):
    X = np.eye(5, 6) + np.eye(5, 6, k=1)
    if where == "fit":
        with pytest.raises(ValueError, match=match):
            EASERecommender().fit(X, y_bad)
    else:
        est = EASERecommender().fit(X)
        with pytest.raises(ValueError, match=match):
            est.score(X, y_bad)


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("method", ["predict", "recommend", "predict_scores", "score"])
def test_not_fitted(Est, method):
    args = (np.zeros(2, dtype=int),) if method == "score" else ()
    with pytest.raises(NotFittedError):
        getattr(Est(), method)(np.ones((2, 3)), *args)


def test_invalid_hyper_parameter_leaves_estimator_unfitted():
    est = EASERecommender(l2=-1.0)
    with pytest.raises(ValueError, match="l2 must be a positive"):
        est.fit(np.eye(3))
    with pytest.raises(NotFittedError):
        est.predict(np.eye(3))


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "10"])
def test_bad_k(k, fitted_ease, split):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        fitted_ease.recommend(split[0][:3], k=k)


@pytest.mark.parametrize(
    "items, match",
    [
        ([0, 999], "outside"),
        ([-1], "outside"),
        (np.ones(3, dtype=bool), "boolean mask must have shape"),
        ([[0, 1]], "1-D"),
        ([0.5], "1-D"),
    ],
)
def test_bad_items(items, match, fitted_ease, split):
    with pytest.raises(ValueError, match=match):
        fitted_ease.recommend(split[0][:3], items=items)


# --------------------------------------------------------------------------------- input safety
def _formats(X: sp.csr_matrix):
    coo = X.tocoo()
    # a non-canonical COO: duplicates (that sum to the value) and an explicit zero
    dup = sp.coo_matrix(
        (
            np.concatenate([coo.data / 2, coo.data / 2, [0.0]]),
            (np.concatenate([coo.row, coo.row, [0]]), np.concatenate([coo.col, coo.col, [0]])),
        ),
        shape=X.shape,
    )
    unsorted = X.copy()
    unsorted.indices = unsorted.indices.copy()
    for r in range(unsorted.shape[0]):  # reverse the column order inside each row
        lo, hi = unsorted.indptr[r], unsorted.indptr[r + 1]
        unsorted.indices[lo:hi] = unsorted.indices[lo:hi][::-1]
        unsorted.data[lo:hi] = unsorted.data[lo:hi][::-1]
    unsorted.has_sorted_indices = False
    return {
        "csr": X.copy(),
        "csr-unsorted": unsorted,
        "csc": X.tocsc(),
        "coo": coo,
        "coo-duplicates": dup,
        "csr_array": sp.csr_array(X),
        "dense": X.toarray(),
        "dense-int": X.toarray().astype(np.int32),
        "list": X.toarray().tolist(),
    }


def _snapshot(X):
    if sp.issparse(X):
        parts = [X.data, getattr(X, "indices", None), getattr(X, "indptr", None)]
        parts += [getattr(X, "row", None), getattr(X, "col", None)]
        return [None if p is None else np.array(p, copy=True) for p in parts], X.format
    return [np.array(X, copy=True)], None


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_input_formats_give_same_result_and_are_not_modified(Est, split):
    X, y = split
    X = X[:80]
    y = y[:80]
    expected = Est().fit(X, y).recommend(X, k=5)
    for name, Xf in _formats(X).items():
        before = _snapshot(Xf)
        est = Est().fit(Xf, y)
        ids, scores = est.recommend(Xf, k=5)
        np.testing.assert_array_equal(ids, expected[0], err_msg=name)
        np.testing.assert_allclose(scores, expected[1], rtol=1e-6, err_msg=name)
        est.predict(Xf)
        est.predict_scores(Xf, filter_seen=True)
        est.score(Xf, y)
        after = _snapshot(Xf)
        assert before[1] == after[1], name
        for a, b in zip(before[0], after[0]):
            if a is not None:
                np.testing.assert_array_equal(a, b, err_msg=name)


def test_y_not_modified(split):
    X, y = split
    y_1d = np.asarray(y.argmax(axis=1)).ravel()
    y_copy, y_1d_copy = y.copy(), y_1d.copy()
    est = EASERecommender().fit(X, y)
    est.score(X, y)
    est.fit(X, y_1d).score(X, y_1d)
    assert (y != y_copy).nnz == 0
    np.testing.assert_array_equal(y_1d, y_1d_copy)


# --------------------------------------------------------------------------------- ranking
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_deterministic(Est, split):
    X, y = split
    a = Est().fit(X, y)
    b = Est().fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.predict_scores(X), b.predict_scores(X))
    # batching does not change the result
    np.testing.assert_array_equal(a.recommend(X, k=7, batch_size=13)[0], a.recommend(X, k=7)[0])
    np.testing.assert_array_equal(a.predict_scores(X, batch_size=13), a.predict_scores(X))


def test_predict_is_recommend_ids(fitted_ease, split):
    X, _ = split
    ids, scores = fitted_ease.recommend(X, k=10)
    np.testing.assert_array_equal(fitted_ease.predict(X), ids)
    assert ids.shape == scores.shape == (X.shape[0], 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert (np.diff(scores, axis=1) <= 0).all()  # best first


def test_filter_seen(fitted_ease, split):
    X, _ = split
    ids = fitted_ease.predict(X, k=20)
    seen = X.toarray() > 0
    assert not np.take_along_axis(seen, ids, axis=1).any()
    ids_all = fitted_ease.predict(X, k=20, filter_seen=False)
    assert np.take_along_axis(seen, ids_all, axis=1).any()
    # without filtering, the ranking is the plain argsort of the scores
    scores = fitted_ease.predict_scores(X)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    agree = (ids_all == expected).all(axis=1).mean()
    assert agree > 0.99  # (ties between float32 scores may be ordered differently)


@pytest.mark.parametrize("as_mask", [False, True])
def test_recommend_items_restriction(as_mask, fitted_ease, split):
    X, _ = split
    allowed = np.arange(0, X.shape[1], 3)
    items = np.isin(np.arange(X.shape[1]), allowed) if as_mask else allowed.tolist()
    ids, scores = fitted_ease.recommend(X, k=5, items=items)
    valid = ids >= 0
    assert np.isin(ids[valid], allowed).all()
    seen = X.toarray() > 0
    assert not seen[np.nonzero(valid)[0], ids[valid]].any()
    # the restricted ranking is the unrestricted ranking with the other items removed
    full = fitted_ease.predict(X, k=X.shape[1])
    for u in range(0, X.shape[0], 37):
        expected = [i for i in full[u] if i in set(allowed)][:5]
        assert ids[u][: len(expected)].tolist() == expected


def test_padding_when_k_exceeds_candidates(fitted_ease, split):
    X, _ = split
    n_items = X.shape[1]
    ids, scores = fitted_ease.recommend(X, k=n_items + 5)
    n_unseen = n_items - X.getnnz(axis=1)
    for u in range(X.shape[0]):
        assert (ids[u, : n_unseen[u]] >= 0).all()
        assert (ids[u, n_unseen[u] :] == -1).all()
        assert np.isneginf(scores[u, n_unseen[u] :]).all()
        assert np.isfinite(scores[u, : n_unseen[u]]).all()
    ids, scores = fitted_ease.recommend(X, k=4, items=[1, 2], filter_seen=False)
    assert (ids[:, 2:] == -1).all() and np.isin(ids[:, :2], [1, 2]).all()
    ids, _ = fitted_ease.recommend(X[:3], k=3, items=[])
    assert (ids == -1).all()


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_cold_rows_get_popularity(Est, split):
    X, y = split
    est = Est().fit(X, y)
    X_cold = _with_cold_rows(X, rows=(0, 5))
    popular = np.argsort(-est.item_popularity_, kind="stable")
    ids = est.predict(X_cold, k=10)
    np.testing.assert_array_equal(ids[0], popular[:10])
    np.testing.assert_array_equal(ids[5], popular[:10])
    np.testing.assert_array_equal(ids[1:5], est.predict(X[1:5], k=10))
    # an all-empty matrix of new users
    empty = sp.csr_matrix((3, X.shape[1]))
    np.testing.assert_array_equal(est.predict(empty, k=4), np.tile(popular[:4], (3, 1)))


def test_popularity_ties_broken_by_index():
    X = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=float))
    est = PopularityRecommender().fit(X)
    np.testing.assert_array_equal(est.predict(np.zeros((1, 4)), k=4), [[0, 1, 2, 3]])


def test_cold_scores_are_popularity_shares_in_a_tie_free_order():
    """Cold users get each item's share of the training interactions, not rank numbers,
    and the ranking order stays a stable sort by decreasing count (ties: lower index)."""
    rng = np.random.default_rng(0)
    dense = (rng.random((200, 40)) < 0.05) * 1.0  # many tied counts
    dense[:, 7] = 0.0  # and an item nobody interacted with
    X = sp.csr_matrix(dense)
    for Est in ESTIMATORS:
        est = Est().fit(X)
        counts = est.item_popularity_
        ids, scores = est.recommend(sp.csr_matrix((2, 40)), k=40)
        np.testing.assert_array_equal(ids[0], np.argsort(-counts, kind="stable"))
        np.testing.assert_array_equal(ids[1], ids[0])
        share = (counts / counts.sum())[ids[0]]
        assert np.all(np.diff(scores[0]) < 0)  # strictly decreasing: no tie left to topk
        np.testing.assert_allclose(scores[0], share, rtol=1e-5, atol=1e-40)
        assert scores[0].sum() == pytest.approx(1.0, abs=1e-5)
        assert scores[0][ids[0] == 7] <= 0.0  # an item nobody interacted with


def test_k_is_clamped_to_the_catalogue_before_any_allocation(fitted_ease, split):
    """A huge k gives the whole catalogue (min(k, n_items) columns) and allocates nothing of
    width k: 10**12 columns of int64 could not be allocated at all."""
    X, y = split
    n_items = X.shape[1]
    ids, scores = fitted_ease.recommend(X[:5], k=10**12)
    assert ids.shape == scores.shape == (5, n_items)
    np.testing.assert_array_equal(ids, fitted_ease.recommend(X[:5], k=n_items)[0])
    assert fitted_ease.predict(X[:5], k=np.int64(2**62)).shape == (5, n_items)
    sim, sim_scores = fitted_ease.similar_items([0, 1], k=10**12)
    assert sim.shape == sim_scores.shape == (2, n_items)
    assert fitted_ease.similar_items(3, k=10**12)[0].shape == (n_items,)
    assert fitted_ease.score(X, y, k=10**12) == pytest.approx(
        fitted_ease.score(X, y, k=n_items))
    # within the catalogue, padding still marks the candidates that ran out
    ids, scores = fitted_ease.recommend(X[:5], k=10**12, items=[0, 1, 2], filter_seen=False)
    assert ids.shape == (5, n_items) and (ids[:, 3:] == -1).all()


def test_predict_scores(fitted_ease, split):
    X, _ = split
    X_cold = _with_cold_rows(X, rows=(2,))
    scores = fitted_ease.predict_scores(X_cold)
    assert scores.shape == X.shape and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    # cold row: popularity order
    np.testing.assert_array_equal(
        np.argsort(-scores[2], kind="stable"),
        np.argsort(-fitted_ease.item_popularity_, kind="stable"),
    )
    # other rows: the EASE scores X_bin @ B
    X_bin = (X_cold > 0).astype(np.float32)
    np.testing.assert_allclose(scores[3:], (X_bin @ fitted_ease.coef_)[3:], rtol=1e-5, atol=1e-6)
    filtered = fitted_ease.predict_scores(X_cold, filter_seen=True)
    seen = X_cold.toarray() > 0
    assert np.isneginf(filtered[seen]).all()
    np.testing.assert_array_equal(filtered[~seen], scores[~seen])
    # the top-k of the filtered scores are what recommend returns
    ids, top = fitted_ease.recommend(X_cold, k=5)
    np.testing.assert_array_equal(np.take_along_axis(filtered, ids, axis=1), top)


def test_score_with_1d_y(fitted_ease, split):
    X, y = split
    y_1d = np.full(X.shape[0], -1)
    rows, cols = y.nonzero()
    y_1d[rows] = cols
    s_matrix = fitted_ease.score(X, y)
    s_1d = fitted_ease.score(X, y_1d)
    assert s_1d == pytest.approx(s_matrix)
    assert s_1d == pytest.approx(ndcg_at_k(y, fitted_ease.predict(X, k=10), k=10))
    assert fitted_ease.score(X, y_1d.reshape(-1, 1)) == pytest.approx(s_1d)
    assert fitted_ease.score(X, y, k=5) == pytest.approx(
        ndcg_at_k(y, fitted_ease.predict(X, k=5), k=5)
    )
    assert 0.0 < s_1d <= 1.0


def test_score_without_y_holds_out_each_users_latest_item(split, interactions):
    est = EASERecommender(l2=50.0).fit(interactions[:200])
    X_test = interactions[200:]
    assert est.score(X_test) == pytest.approx(est.score(*leave_last_out_split(X_test)))
    assert ndcg_scorer(est, X_test) == pytest.approx(est.score(X_test))


@pytest.mark.parametrize("scoring", [None, "scorers"])
def test_grid_search_without_y_scores_every_candidate(interactions, scoring):
    """GridSearchCV(...).fit(X) without y: finite scores, the best candidate picked (it scored
    NaN for all and silently kept the first)."""
    import warnings

    from sklearn.model_selection import KFold

    from skrec.metrics import make_scorers

    grid = {"l2": [1e6, 1e-2, 30.0]}
    kw = {} if scoring is None else {"scoring": make_scorers(["ndcg@10", "recall@20"]),
                                     "refit": "ndcg@10"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Scoring failed" warning
        search = GridSearchCV(EASERecommender(), grid, cv=KFold(3), **kw).fit(interactions)
    key = "mean_test_score" if scoring is None else "mean_test_ndcg@10"
    scores = search.cv_results_[key]
    assert np.isfinite(scores).all() and len(set(scores)) == 3
    assert search.best_params_["l2"] == grid["l2"][int(np.argmax(scores))]
    folds = list(KFold(3).split(interactions))
    manual = np.mean([EASERecommender(l2=30.0).fit(interactions[tr]).score(interactions[te])
                      for tr, te in folds])
    assert scores[2] == pytest.approx(manual)


def test_fit_with_y_trains_on_union(split):
    X, y = split
    a = EASERecommender(l2=20.0).fit(X, y)
    b = EASERecommender(l2=20.0).fit(X + y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.item_popularity_, b.item_popularity_)


def test_unseen_users_fold_in(split):
    X, y = split
    est = EASERecommender(l2=50.0).fit(X[:200], y[:200])
    ids = est.predict(X[200:], k=10)  # users not seen at fit time
    assert ids.shape == (X.shape[0] - 200, 10)
    assert (ids >= 0).all()


# --------------------------------------------------------------------------------- devices
def test_rank_top_k_matches_argsort():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((6, 9)).astype(np.float32)
    X = sp.csr_matrix((rng.random((6, 9)) < 0.3).astype(float))
    ids, vals = rank_top_k(torch.from_numpy(scores.copy()), X, 4)
    masked = np.where(X.toarray() > 0, -np.inf, scores)
    expected = np.argsort(-masked, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(vals, np.take_along_axis(masked, expected, axis=1))


@pytest.mark.cuda
def test_rank_top_k_on_cuda_matches_cpu():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.standard_normal((50, 40)).astype(np.float32))
    X = sp.csr_matrix((rng.random((50, 40)) < 0.3).astype(float))
    X[3, :] = 0
    X.eliminate_zeros()
    cold = torch.arange(40, 0, -1, dtype=torch.float32)
    cand = torch.from_numpy(rng.random(40) < 0.7)
    kwargs = dict(candidates=cand, cold_scores=cold)
    cpu = rank_top_k(scores.clone(), X, 45, **kwargs)
    gpu = rank_top_k(scores.clone().cuda(), X, 45, **kwargs)
    np.testing.assert_array_equal(cpu[0], gpu[0])
    np.testing.assert_array_equal(cpu[1], gpu[1])
