"""Tests for skrec.metrics."""

from __future__ import annotations

import pickle
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from skrec.metrics import (
    RecScorer,
    coverage,
    get_rec_scorer,
    hit_rate_at_k,
    hit_rate_scorer,
    make_rec_scorer,
    mrr_at_k,
    mrr_scorer,
    ndcg_at_k,
    ndcg_scorer,
    precision_at_k,
    recall_at_k,
    recall_scorer,
)

ALL_METRICS = [ndcg_at_k, recall_at_k, precision_at_k, hit_rate_at_k, mrr_at_k]
LOG2_3 = np.log2(3.0)


def _sparse_targets(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


# --------------------------------------------------------------------------------------------
# Hand-worked example
# --------------------------------------------------------------------------------------------
# n_items = 5, k = 3
# u0: relevant {1, 3}, ranked [3, 0, 1]  -> hits [1, 0, 1]
#     DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3); recall = 2/min(3, 2) = 1
#     precision = 2/3; hit = 1; RR = 1
# u1: relevant {2},    ranked [0, 1, 2]  -> hits [0, 0, 1]
#     DCG = 1/log2(4) = 0.5; IDCG = 1; recall = 1/1; precision = 1/3; hit = 1; RR = 1/3
# u2: relevant {0,1,2,3}, ranked [4, -1, -1] -> no hit: every metric 0
# u3: no relevant item, ranked [0, 1, 2] -> excluded (NaN)
Y_HAND = _sparse_targets([[1, 3], [2], [0, 1, 2, 3], []], n_items=5)
P_HAND = np.array([[3, 0, 1], [0, 1, 2], [4, -1, -1], [0, 1, 2]])
EXPECTED_HAND = {
    ndcg_at_k: [1.5 / (1 + 1 / LOG2_3), 0.5, 0.0, np.nan],
    recall_at_k: [1.0, 1.0, 0.0, np.nan],
    precision_at_k: [2 / 3, 1 / 3, 0.0, np.nan],
    hit_rate_at_k: [1.0, 1.0, 0.0, np.nan],
    mrr_at_k: [1.0, 1 / 3, 0.0, np.nan],
}


@pytest.mark.parametrize("metric", ALL_METRICS, ids=lambda f: f.__name__)
def test_hand_worked_per_user(metric):
    got = metric(Y_HAND, P_HAND, k=3, average=False)
    np.testing.assert_allclose(got, EXPECTED_HAND[metric], equal_nan=True)


@pytest.mark.parametrize("metric", ALL_METRICS, ids=lambda f: f.__name__)
def test_hand_worked_mean_excludes_users_without_targets(metric):
    got = metric(Y_HAND, P_HAND, k=3)
    assert isinstance(got, float)
    assert got == pytest.approx(np.mean(EXPECTED_HAND[metric][:3]))


def test_cutoff_uses_first_k_columns():
    # u0 with k=1: ranked [3] -> hit; DCG = 1, IDCG = 1; recall = 1/min(1, 2) = 1
    # u1 with k=1: ranked [0] -> miss
    np.testing.assert_allclose(
        ndcg_at_k(Y_HAND, P_HAND, k=1, average=False), [1.0, 0.0, 0.0, np.nan], equal_nan=True
    )
    np.testing.assert_allclose(
        recall_at_k(Y_HAND, P_HAND, k=1, average=False), [1.0, 0.0, 0.0, np.nan], equal_nan=True
    )


def test_fewer_columns_than_k_count_as_misses():
    # k = 5 but only 3 ranked columns.
    # u0: DCG = 1.5; IDCG(min(5, 2) = 2) = 1 + 1/log2(3); precision = 2/5; recall = 2/2
    # u2: 4 relevant, IDCG uses 4 positions, no hit -> 0
    ndcg = ndcg_at_k(Y_HAND, P_HAND, k=5, average=False)
    assert ndcg[0] == pytest.approx(1.5 / (1 + 1 / LOG2_3))
    prec = precision_at_k(Y_HAND, P_HAND, k=5, average=False)
    np.testing.assert_allclose(prec, [2 / 5, 1 / 5, 0.0, np.nan], equal_nan=True)
    rec = recall_at_k(Y_HAND, P_HAND, k=5, average=False)
    np.testing.assert_allclose(rec, [1.0, 1.0, 0.0, np.nan], equal_nan=True)


@pytest.mark.parametrize("metric", ALL_METRICS, ids=lambda f: f.__name__)
def test_huge_k_allocates_nothing_of_size_k(metric):
    """k beyond the catalogue is the whole ranking: the same value as k = n_items (precision
    keeps its denominator k), and no array of length k (10**12 floats could not exist)."""
    np.testing.assert_allclose(metric(Y_HAND, P_HAND, k=2**63, average=False),
                               metric(Y_HAND, P_HAND, k=10**12, average=False) * (
                                   10**12 / 2**63 if metric is precision_at_k else 1),
                               equal_nan=True)  # beyond int64
    huge = metric(Y_HAND, P_HAND, k=10**12, average=False)
    at_n = metric(Y_HAND, P_HAND, k=5, average=False)
    if metric is precision_at_k:
        at_n = at_n * 5 / 10**12
    np.testing.assert_allclose(huge, at_n, equal_nan=True)
    assert get_rec_scorer("ndcg@99999999999").k == 99999999999


def test_recall_denominator_is_min_k_relevant():
    # 4 relevant items, k = 2, both top-2 are relevant: recall = 2 / min(2, 4) = 1
    y = _sparse_targets([[0, 1, 2, 3]], n_items=6)
    assert recall_at_k(y, np.array([[2, 0, 5]]), k=2) == pytest.approx(1.0)
    # k = 3: hits [1, 1, 0] -> 2 / min(3, 4) = 2/3
    assert recall_at_k(y, np.array([[2, 0, 5]]), k=3) == pytest.approx(2 / 3)


def test_padding_minus_one_is_a_miss():
    y = _sparse_targets([[0], [1]], n_items=3)
    pred = np.array([[-1, 0], [-1, -1]])
    # u0: hit at rank 2 -> nDCG 1/log2(3), RR 1/2; u1: all padding -> 0
    np.testing.assert_allclose(ndcg_at_k(y, pred, k=2, average=False), [1 / LOG2_3, 0.0])
    np.testing.assert_allclose(mrr_at_k(y, pred, k=2, average=False), [0.5, 0.0])


def test_duplicates_count_once():
    y = _sparse_targets([[1], [2, 4]], n_items=6)
    pred = np.array([[1, 1, 0], [2, 2, 4]])
    # u0: hits [1, dup, 0] -> precision 1/3 (not 2/3), nDCG 1
    np.testing.assert_allclose(precision_at_k(y, pred, k=3, average=False), [1 / 3, 2 / 3])
    # u1: hits [1, dup, 1] -> DCG = 1 + 1/log2(4) = 1.5, IDCG = 1 + 1/log2(3)
    np.testing.assert_allclose(
        ndcg_at_k(y, pred, k=3, average=False), [1.0, 1.5 / (1 + 1 / LOG2_3)]
    )
    assert ndcg_at_k(y, pred, k=3, average=False).max() <= 1.0
    np.testing.assert_allclose(recall_at_k(y, pred, k=3, average=False), [1.0, 1.0])


def test_one_dimensional_targets():
    y = np.array([2, -1, 0])
    pred = np.array([[0, 2], [1, 0], [3, 4]])
    # u0: target at rank 2 -> nDCG 1/log2(3), RR 1/2; u1: no target -> NaN; u2: miss -> 0
    np.testing.assert_allclose(
        ndcg_at_k(y, pred, k=2, average=False), [1 / LOG2_3, np.nan, 0.0], equal_nan=True
    )
    assert mrr_at_k(y, pred, k=2) == pytest.approx(0.25)
    assert hit_rate_at_k(y, pred, k=2) == pytest.approx(0.5)
    # Same as the sparse form of the targets.
    y_sparse = _sparse_targets([[2], [], [0]], n_items=5)
    for metric in ALL_METRICS:
        np.testing.assert_allclose(
            metric(y, pred, k=2, average=False),
            metric(y_sparse, pred, k=2, average=False),
            equal_nan=True,
        )


def test_target_values_are_binary_relevance():
    # Values are orders (timestamps), not grades: the result does not depend on them.
    y = sp.csr_matrix(np.array([[0.0, 7.0, 0.0, 123.0]]))
    pred = np.array([[3, 0, 1]])
    assert ndcg_at_k(y, pred, k=3) == pytest.approx(1.5 / (1 + 1 / LOG2_3))


def test_dense_2d_targets_and_list_predictions():
    y = np.array([[0, 1, 0], [1, 0, 0]])
    assert hit_rate_at_k(y, [[1, 2], [2, 1]], k=2) == pytest.approx(0.5)


def test_no_relevant_user_warns_and_returns_nan():
    y = sp.csr_matrix((2, 4))
    pred = np.array([[0, 1], [2, 3]])
    for metric in ALL_METRICS:
        with pytest.warns(UserWarning, match="no user has a relevant item"):
            assert np.isnan(metric(y, pred, k=2))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            per_user = metric(y, pred, k=2, average=False)
        assert per_user.shape == (2,) and np.isnan(per_user).all()


def test_empty_rankings():
    y = _sparse_targets([[0], [1]], n_items=3)
    pred = np.zeros((2, 0), dtype=np.int64)
    for metric in ALL_METRICS:
        assert metric(y, pred, k=3) == 0.0


@pytest.mark.parametrize(
    ("y_pred", "match"),
    [
        (np.array([0, 1, 2]), "2-D"),
        (np.zeros((2, 2, 2), dtype=int), "2-D"),
        (np.array([[0.0, 1.0], [1.0, 2.0], [0.0, 2.0]]), "integer"),
        (np.array([[0, 1], [1, 2]]), "rows"),
        (np.array([[0, 1], [1, 2], [0, 9]]), "outside the catalogue"),
        (np.array([[0, 1], [1, -2], [0, 1]]), "only -1"),
        (sp.csr_matrix(np.eye(3, dtype=int)), "sparse"),
        (None, "None"),
    ],
)
def test_bad_predictions_raise(y_pred, match):
    y = _sparse_targets([[0], [1], [2]], n_items=4)
    with pytest.raises(ValueError, match=match):
        ndcg_at_k(y, y_pred, k=2)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, None])
def test_bad_k_raises(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ndcg_at_k(Y_HAND, P_HAND, k=k)


def test_bad_targets_raise():
    with pytest.raises(ValueError, match="y_true"):
        ndcg_at_k(np.array([0, 1]), P_HAND, k=2)  # 2 targets for 4 users
    with pytest.raises(ValueError, match="y_true"):
        ndcg_at_k(np.array([0.5, 1, 2, 0]), P_HAND, k=2)


def test_inputs_not_modified():
    y = Y_HAND.copy()
    pred = P_HAND.copy()
    ndcg_at_k(y, pred, k=3)
    assert (y != Y_HAND).nnz == 0
    np.testing.assert_array_equal(pred, P_HAND)


# --------------------------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------------------------


def test_coverage():
    pred = np.array([[0, 1, -1], [1, 2, 3]])
    # top-3: items {0, 1, 2, 3} of 8 -> 0.5; top-1: items {0, 1} -> 0.25
    assert coverage(pred, n_items=8) == pytest.approx(0.5)
    assert coverage(pred, n_items=8, k=1) == pytest.approx(0.25)
    assert coverage(np.full((2, 2), -1), n_items=3) == 0.0
    with pytest.raises(ValueError, match="outside the catalogue"):
        coverage(pred, n_items=3)
    with pytest.raises(ValueError, match="n_items"):
        coverage(pred, n_items=0)


# --------------------------------------------------------------------------------------------
# Random rankings against independent references
# --------------------------------------------------------------------------------------------


def _random_case(seed: int, n_users: int = 80, n_items: int = 30, n_cols: int = 12):
    rng = np.random.default_rng(seed)
    rows = [
        sorted(rng.choice(n_items, size=rng.integers(0, 9), replace=False).tolist())
        for _ in range(n_users)
    ]
    y = _sparse_targets(rows, n_items)
    pred = np.stack([rng.permutation(n_items)[:n_cols] for _ in range(n_users)])
    # Pad some tails with -1 (at least one real item per row).
    n_pad = rng.integers(0, n_cols, size=n_users)
    pred[np.arange(n_cols)[None, :] >= n_cols - n_pad[:, None]] = -1
    return rows, y, pred


def _loop_reference(rows, pred, k):
    """Straightforward per-user loop; NaN for users without relevant items."""
    out = {name: [] for name in ("ndcg", "recall", "precision", "hit_rate", "mrr")}
    for rel, ranked in zip(rows, pred):
        rel = set(rel)
        if not rel:
            for values in out.values():
                values.append(np.nan)
            continue
        seen, gains = set(), []
        for item in list(ranked)[:k]:
            gains.append(1.0 if item in rel and item not in seen else 0.0)
            seen.add(item)
        dcg = sum(g / np.log2(r + 2) for r, g in enumerate(gains))
        idcg = sum(1 / np.log2(r + 2) for r in range(min(k, len(rel))))
        first = next((r for r, g in enumerate(gains) if g), None)
        out["ndcg"].append(dcg / idcg)
        out["recall"].append(sum(gains) / min(k, len(rel)))
        out["precision"].append(sum(gains) / k)
        out["hit_rate"].append(float(any(gains)))
        out["mrr"].append(0.0 if first is None else 1 / (first + 1))
    return {name: np.array(v) for name, v in out.items()}


@pytest.mark.parametrize("k", [1, 3, 10, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_against_loop_reference(seed, k):
    rows, y, pred = _random_case(seed)
    # Add duplicates to some rows so the first-occurrence rule is exercised too.
    pred = pred.copy()
    pred[::5, 1] = pred[::5, 0]
    ref = _loop_reference(rows, pred, k)
    funcs = {
        "ndcg": ndcg_at_k,
        "recall": recall_at_k,
        "precision": precision_at_k,
        "hit_rate": hit_rate_at_k,
        "mrr": mrr_at_k,
    }
    for name, func in funcs.items():
        np.testing.assert_allclose(
            func(y, pred, k=k, average=False), ref[name], equal_nan=True, err_msg=name
        )
        assert func(y, pred, k=k) == pytest.approx(np.nanmean(ref[name]))


@pytest.mark.parametrize("k", [1, 3, 10, 20])
def test_against_ir_measures(k):
    ir_measures = pytest.importorskip("ir_measures")
    from ir_measures import RR, P, R, Success, nDCG

    rows, y, pred = _random_case(seed=7)
    qrels = [ir_measures.Qrel(str(u), str(i), 1) for u, items in enumerate(rows) for i in items]
    run = [
        ir_measures.ScoredDoc(str(u), str(item), float(pred.shape[1] - r))
        for u, ranked in enumerate(pred)
        for r, item in enumerate(ranked)
        if item >= 0
    ]
    measures = [nDCG @ k, P @ k, RR @ k, Success @ k, R @ k]
    try:
        results = list(ir_measures.iter_calc(measures, qrels, run))
    except Exception as exc:  # no usable provider (e.g. pytrec_eval missing)
        pytest.skip(f"ir_measures cannot evaluate here: {exc}")
    ref = {str(m): np.full(len(rows), np.nan) for m in measures}
    for metric in results:
        ref[str(metric.measure)][int(metric.query_id)] = metric.value
    n_rel = np.array([len(items) for items in rows])
    has_rel = n_rel > 0
    assert not np.isnan(ref[str(nDCG @ k)][has_rel]).any()

    def check(ours, theirs, mask=has_rel):
        np.testing.assert_allclose(ours[mask], theirs[mask], atol=1e-9)

    check(ndcg_at_k(y, pred, k=k, average=False), ref[str(nDCG @ k)])
    check(precision_at_k(y, pred, k=k, average=False), ref[str(P @ k)])
    check(mrr_at_k(y, pred, k=k, average=False), ref[str(RR @ k)])
    check(hit_rate_at_k(y, pred, k=k, average=False), ref[str(Success @ k)])
    # ir_measures' R@k is hits / |relevant|; it equals ours when |relevant| <= k.
    small = has_rel & (n_rel <= k)
    assert small.any()
    check(recall_at_k(y, pred, k=k, average=False), ref[str(R @ k)], mask=small)


def test_large_input_is_vectorised():
    # 100k users x k=10 must run without a per-user Python loop (not timed here).
    rng = np.random.default_rng(0)
    n_users, n_items, k = 100_000, 5_000, 10
    y = rng.integers(0, n_items, size=n_users)
    pred = rng.integers(-1, n_items, size=(n_users, k))
    pred[:, 0] = y
    assert ndcg_at_k(y, pred, k=k) == pytest.approx(1.0)
    assert hit_rate_at_k(y, pred, k=k) == pytest.approx(1.0)


def test_metrics_module_does_not_import_torch():
    import subprocess

    code = "import sys, skrec.metrics, skrec.model_selection; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# Scorers
# --------------------------------------------------------------------------------------------


class TopItems(BaseEstimator):
    """Tiny recommender: ranks items by training popularity (plus an offset), seen items last."""

    def __init__(self, offset: int = 0):
        self.offset = offset

    def fit(self, X, y=None):
        X = sp.csr_matrix(X)
        self.popularity_ = np.asarray((X > 0).sum(axis=0)).ravel().astype(float)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X, k=10):
        X = sp.csr_matrix(X)
        scores = np.tile(np.roll(self.popularity_, self.offset), (X.shape[0], 1))
        scores[X.toarray() > 0] = -np.inf
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _custom_metric(y_true, y_pred, k=10):
    return hit_rate_at_k(y_true, y_pred, k=k)


def _cv_data(seed=0, n_users=60, n_items=15):
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(rng.random((n_users, n_items)) < 0.3 + 0.4 * (np.arange(n_items) < 5))
    y = rng.integers(0, 5, size=n_users)
    return X.astype(float), y


def test_scorer_computes_metric_of_predict():
    X, y = _cv_data()
    est = TopItems().fit(X)
    for scorer, func in [
        (ndcg_scorer, ndcg_at_k),
        (recall_scorer, recall_at_k),
        (hit_rate_scorer, hit_rate_at_k),
        (mrr_scorer, mrr_at_k),
    ]:
        assert scorer.k == 10
        assert scorer(est, X, y) == pytest.approx(func(y, est.predict(X, k=10), k=10))
    s = make_rec_scorer(precision_at_k, k=3)
    assert s(est, X, y) == pytest.approx(precision_at_k(y, est.predict(X, k=3), k=3))


def test_scorer_in_cross_val_score_and_grid_search():
    X, y = _cv_data()
    scores = cross_val_score(TopItems(), X, y, scoring=ndcg_scorer, cv=KFold(3))
    assert scores.shape == (3,) and np.isfinite(scores).all()
    grid = GridSearchCV(
        TopItems(), {"offset": [0, 7]}, scoring=get_rec_scorer("recall@5"), cv=KFold(3)
    ).fit(X, y)
    # offset 0 ranks the popular items (0..4, where the targets are) first.
    assert grid.best_params_ == {"offset": 0}
    multi = GridSearchCV(
        TopItems(),
        {"offset": [0, 7]},
        scoring={"ndcg": ndcg_scorer, "mrr": mrr_scorer},
        refit="ndcg",
        cv=KFold(2),
    ).fit(X, y)
    assert "mean_test_mrr" in multi.cv_results_


@pytest.mark.parametrize(
    "scorer",
    [ndcg_scorer, mrr_scorer, make_rec_scorer(recall_at_k, k=4), make_rec_scorer(_custom_metric)],
    ids=repr,
)
def test_scorer_pickles(scorer):
    X, y = _cv_data()
    est = TopItems().fit(X)
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone == scorer
    assert repr(clone) == repr(scorer)
    assert clone(est, X, y) == scorer(est, X, y)


def test_scorer_repr_and_parsing():
    assert repr(ndcg_scorer) == "make_rec_scorer('ndcg', k=10)"
    assert repr(make_rec_scorer(_custom_metric, k=5)) == "make_rec_scorer(_custom_metric, k=5)"
    assert make_rec_scorer(ndcg_at_k, k=3) == make_rec_scorer("ndcg", k=3)
    s = get_rec_scorer("ndcg@20")
    assert isinstance(s, RecScorer) and s.metric == "ndcg" and s.k == 20
    assert get_rec_scorer("hit_rate@5") == make_rec_scorer("hit_rate", 5)
    assert get_rec_scorer(" Recall @ 50 ") == make_rec_scorer("recall", 50)
    assert get_rec_scorer("mrr").k == 10
    assert get_rec_scorer(s) is s
    for bad in ["ndcg@0", "ndcg@", "auc@10", "ndcg@ten", ""]:
        with pytest.raises(ValueError):
            get_rec_scorer(bad)
    with pytest.raises(ValueError, match="Unknown metric"):
        make_rec_scorer("map")
    with pytest.raises(ValueError):
        make_rec_scorer("ndcg", k=0)
    with pytest.raises(ValueError):
        make_rec_scorer(42)
