"""similar_items: one path in BaseRecommender, a small similarity hook per estimator."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError

from skrec import (
    AERecommender,
    EASERecommender,
    MarkovChainRecommender,
    PopularityRecommender,
    SeqRecommender,
)
from skrec.datasets import make_interactions

TINY = {
    "EASE": lambda: EASERecommender(l2=10.0),
    "Markov": lambda: MarkovChainRecommender(),
    "Seq": lambda: SeqRecommender(d_model=8, n_heads=1, d_ff=8, n_layers=1, max_len=10,
                                  max_iter=2, precision="fp32", random_state=0),
    "AE": lambda: AERecommender(latent_dim=8, max_iter=2, precision="fp32", random_state=0),
    "AE deep": lambda: AERecommender(hidden_sizes=(12,), latent_dim=6, max_iter=1,
                                     precision="fp32", random_state=0),
}


@pytest.fixture(scope="module")
def X():
    return make_interactions(n_users=120, n_items=30, mean_length=8, random_state=0)


@pytest.fixture(scope="module")
def fitted(X):
    return {name: make().fit(X) for name, make in TINY.items()}


def _reference(est, query):
    """The similarity each estimator documents, computed independently in numpy."""
    if isinstance(est, EASERecommender):
        return est.coef_[query]
    if isinstance(est, MarkovChainRecommender):
        s = est.smoothing
        pop = est.item_popularity_ / est.item_popularity_.sum()
        return (est.transitions_[query].toarray() + s * pop) / (1 + s)
    if isinstance(est, SeqRecommender):
        emb = est.module_.output_weights()[0].detach().numpy()
    else:
        emb = est.module_.decoder[-1].weight.detach().numpy()
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return emb[query] @ emb.T


@pytest.mark.parametrize("name", list(TINY))
def test_similar_items_ranks_by_the_documented_similarity(name, fitted):
    est = fitted[name]
    query = np.array([0, 5, 29, 5])
    ids, scores = est.similar_items(query, k=6)
    assert ids.shape == scores.shape == (4, 6)
    ref = _reference(est, query)
    for r, q in enumerate(query):
        assert q not in ids[r]  # filter_self
        np.testing.assert_allclose(scores[r], ref[r, ids[r]], rtol=1e-4, atol=1e-6)
        others = np.delete(ref[r], q)
        # the best 6 of the other items (ties may swap): same scores in decreasing order
        np.testing.assert_allclose(scores[r], np.sort(others)[::-1][:6], rtol=1e-4, atol=1e-6)
    assert np.array_equal(ids[1], ids[3])  # a repeated query gives the same answer


@pytest.mark.parametrize("name", list(TINY))
def test_similar_items_options(name, fitted):
    est = fitted[name]
    ids, scores = est.similar_items(3, k=4)
    assert ids.shape == scores.shape == (4,)  # one query: 1-D
    with_self, _ = est.similar_items([3], k=30, filter_self=False)
    assert 3 in with_self[0]
    allowed = np.array([1, 2, 3, 4])
    ids, scores = est.similar_items([3, 10], k=5, items=allowed)
    assert set(ids[0][ids[0] >= 0]) == {1, 2, 4}  # 3 itself is filtered
    assert ids[0, 3:].tolist() == [-1, -1] and np.isneginf(scores[0, 3:]).all()
    assert set(ids[1][ids[1] >= 0]) == {1, 2, 3, 4}
    batched = est.similar_items(np.arange(30), k=5, batch_size=7)
    whole = est.similar_items(np.arange(30), k=5)
    np.testing.assert_allclose(batched[1], whole[1], rtol=1e-5)
    empty_ids, empty_scores = est.similar_items(np.array([], dtype=int), k=3)
    assert empty_ids.shape == empty_scores.shape == (0, 3)


def test_popularity_has_no_similar_items(X):
    est = PopularityRecommender().fit(X)
    assert not hasattr(est, "similar_items")
    with pytest.raises(AttributeError) as info:
        est.similar_items([0])
    assert "no item-item similarity" in str(info.value.__cause__)


@pytest.mark.parametrize(
    "item_ids, match",
    [
        ([0, 30], "outside"),
        ([-1], "outside"),
        ([0.0, 1.0], "integer item"),
        ([True], "integer item"),
        (np.zeros((2, 2), dtype=int), "1-D"),
        (["a"], "integer item"),
    ],
)
def test_similar_items_bad_queries(item_ids, match, fitted):
    with pytest.raises(ValueError, match=match):
        fitted["EASE"].similar_items(item_ids)


@pytest.mark.parametrize("k", [0, -2, 2.0, "3"])
def test_similar_items_bad_k(k, fitted):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        fitted["EASE"].similar_items([0], k=k)


def test_similar_items_not_fitted():
    with pytest.raises(NotFittedError):
        EASERecommender().similar_items([0])


def test_query_not_modified(fitted):
    query = np.array([4, 2, 9])
    before = query.copy()
    fitted["Markov"].similar_items(query, k=3)
    assert np.array_equal(query, before)


def test_similar_items_on_planted_structure():
    # Two disjoint groups of items consumed together: each item's neighbours are its group.
    rng = np.random.default_rng(0)
    rows = []
    for u in range(200):
        group = np.arange(0, 5) if u % 2 else np.arange(5, 10)
        rows.append(np.isin(np.arange(10), rng.choice(group, 4, replace=False)))
    X = sp.csr_matrix(np.array(rows, dtype=float))
    ids, _ = EASERecommender(l2=1.0).fit(X).similar_items([0, 7], k=4)
    assert set(ids[0]) == {1, 2, 3, 4}
    assert set(ids[1]) == {5, 6, 8, 9}


def test_cosine_hook_handles_zero_vectors(fitted):
    # a pruned-away or never-trained embedding row must not give NaN
    est = fitted["AE"]
    weight = est.module_.decoder[-1].weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight[7] = 0.0
        ids, scores = est.similar_items([7, 8], k=5)
        assert np.isfinite(scores).all()
    finally:
        with torch.no_grad():
            weight.copy_(saved)
