"""PopularityRecommender and EASERecommender: correctness against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from skrec import EASERecommender, PopularityRecommender
from skrec.datasets import load_movielens, make_interactions
from skrec.metrics import hit_rate_at_k, ndcg_at_k
from skrec.model_selection import leave_last_out_split


def ease_reference(X_train, l2: float) -> np.ndarray:
    """Independent float64 EASE (Steck 2019): ``(n_users, n_items)`` scores of ``X_train``."""
    X = (sp.csr_matrix(X_train).toarray() > 0).astype(np.float64)
    G = X.T @ X + l2 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = P / (-np.diag(P))
    np.fill_diagonal(B, 0.0)
    return X @ B


def top_k_reference(scores: np.ndarray, X_train, k: int) -> np.ndarray:
    """Top-``k`` unseen items per row, best first (stable order among exact ties)."""
    masked = np.where(sp.csr_matrix(X_train).toarray() > 0, -np.inf, scores)
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def compare_rankings(ids, ref_ids, ref_scores, tol: float = 1e-4):
    """Count rows identical, identical up to near-ties (score gap < tol), and different."""
    identical = near_tie = 0
    for u in range(ids.shape[0]):
        a, b = ids[u], ref_ids[u]
        if np.array_equal(a, b):
            identical += 1
            continue
        differ = a != b
        gap = np.abs(ref_scores[u, a[differ]] - ref_scores[u, b[differ]])
        near_tie += bool((gap < tol).all())
    return identical, near_tie, ids.shape[0] - identical - near_tie


# --------------------------------------------------------------------------------- popularity
def test_popularity_docstring_example():
    X = sp.csr_matrix([[1, 0, 2, 0], [0, 1, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(
        PopularityRecommender().fit(X).predict(X, k=2), [[1, 3], [0, 3], [2, 1]]
    )


def test_popularity_ranks_by_count_and_uses_y(interactions):
    X, y = leave_last_out_split(interactions)
    est = PopularityRecommender().fit(X, y)
    counts = interactions.getnnz(axis=0)
    np.testing.assert_array_equal(est.item_popularity_, counts)
    order = np.argsort(-counts, kind="stable")
    ids = est.predict(sp.csr_matrix((1, X.shape[1])), k=X.shape[1])[0]
    np.testing.assert_array_equal(ids, order)
    # for a user with history: the same order without the seen items
    u = 7
    seen = set(X[u].indices)
    expected = [i for i in order if i not in seen][:10]
    np.testing.assert_array_equal(est.predict(X[u], k=10)[0], expected)


def test_popularity_scores_do_not_depend_on_history(interactions):
    est = PopularityRecommender().fit(interactions)
    scores = est.predict_scores(interactions[:5])
    assert (scores == scores[0]).all()


# --------------------------------------------------------------------------------- EASE
def test_ease_docstring_example():
    X = make_interactions(n_users=200, n_items=50, random_state=0)
    assert EASERecommender(l2=100.0).fit(X).predict(X[:2], k=3).shape == (2, 3)


@pytest.mark.parametrize("l2", [1.0, 50.0, 1000.0])
def test_ease_matches_closed_form(l2, interactions):
    X, y = leave_last_out_split(interactions)
    est = EASERecommender(l2=l2).fit(X)
    assert est.coef_.dtype == np.float32
    assert est.coef_.shape == (X.shape[1], X.shape[1])
    assert est.coef_.flags.c_contiguous  # rows contiguous: fast sparse x dense scoring
    np.testing.assert_array_equal(np.diag(est.coef_), 0.0)
    ref = ease_reference(X, l2)
    np.testing.assert_allclose(est.predict_scores(X), ref, rtol=1e-4, atol=1e-5)
    ids = est.predict(X, k=10)
    identical, near_tie, different = compare_rankings(ids, top_k_reference(ref, X, 10), ref)
    assert different == 0, (identical, near_tie, different)


def test_ease_binarises_values(interactions):
    ones = interactions.copy()
    ones.data[:] = 1.0
    a = EASERecommender(l2=10.0).fit(interactions)
    b = EASERecommender(l2=10.0).fit(ones * 3.0)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.predict(interactions), b.predict(ones))


@pytest.mark.parametrize("l2", [0, -1.0, np.nan, np.inf, "100", None, True])
def test_ease_invalid_l2(l2):
    with pytest.raises(ValueError, match="l2 must be a positive finite number"):
        EASERecommender(l2=l2).fit(np.eye(4))


def test_ease_beats_popularity_on_planted_structure():
    X_all = make_interactions(n_users=600, n_items=120, mean_length=15, random_state=1)
    X, y = leave_last_out_split(X_all)
    hr = {}
    for name, est in [("pop", PopularityRecommender()), ("ease", EASERecommender(l2=50.0))]:
        hr[name] = hit_rate_at_k(y, est.fit(X).predict(X, k=10), k=10)
    assert hr["ease"] > hr["pop"] + 0.1, hr


# --------------------------------------------------------------------------------- MovieLens
@pytest.fixture(scope="module")
def ml100k_split(ml100k_path):
    data = load_movielens(ml100k_path)
    assert data.X.shape == (943, 1682) and data.X.nnz == 100_000
    return leave_last_out_split(data.X)


def test_ease_on_movielens_matches_float64_reference(ml100k_split):
    X, y = ml100k_split
    l2 = 500.0
    est = EASERecommender(l2=l2).fit(X)
    ids = est.predict(X, k=10)
    ref_scores = ease_reference(X, l2)
    ref_ids = top_k_reference(ref_scores, X, 10)
    identical, near_tie, different = compare_rankings(ids, ref_ids, ref_scores)
    assert (identical + near_tie) / X.shape[0] >= 0.995, (identical, near_tie, different)
    # and it is a real recommender: clearly better than popularity
    pop = PopularityRecommender().fit(X).predict(X, k=10)
    ndcg_ease, ndcg_pop = ndcg_at_k(y, ids, k=10), ndcg_at_k(y, pop, k=10)
    assert ndcg_ease > ndcg_pop
    assert ndcg_at_k(y, ref_ids, k=10) == pytest.approx(ndcg_ease, abs=2e-3)
    assert est.score(X, y) == pytest.approx(ndcg_ease)
