"""Property-based tests (hypothesis) of the splitters, metrics and the ranking path."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from skrec.baselines import PopularityRecommender
from skrec.metrics import hit_rate_at_k, ndcg_at_k, recall_at_k
from skrec.model_selection import leave_last_out_split, random_holdout_split


@st.composite
def interactions(draw):
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 15))
    density = draw(st.floats(0.0, 1.0))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    values = rng.integers(1, 5, size=(n_users, n_items)).astype(float)  # ties on purpose
    return sp.csr_matrix(np.where(mask, values, 0.0))


@settings(max_examples=60, deadline=None)
@given(interactions(), st.integers(1, 3))
def test_leave_last_out_partitions_each_row(X, n_last):
    before = X.copy()
    X_train, y = leave_last_out_split(X, n_last=n_last)
    assert (X_train + y != X).nnz == 0
    assert X_train.multiply(y).nnz == 0
    counts = np.diff(X.indptr)
    held = np.diff(y.indptr)
    assert np.array_equal(held, np.where(counts > n_last, n_last, 0))
    # every held-out item is at least as late as every kept item of its row
    for u in np.flatnonzero(held):
        assert X_train[u].data.max(initial=0) <= y[u].data.min()
    assert (X != before).nnz == 0


@settings(max_examples=60, deadline=None)
@given(interactions(), st.integers(0, 1000))
def test_random_holdout_partitions_each_row(X, seed):
    X_train, y = random_holdout_split(X, test_size=0.3, random_state=seed)
    assert (X_train + y != X).nnz == 0
    assert X_train.multiply(y).nnz == 0
    # nobody loses all their items
    assert np.all(np.diff(X_train.indptr)[np.diff(X.indptr) > 0] > 0)


@settings(max_examples=60, deadline=None)
@given(interactions(), st.integers(1, 6))
def test_rankings_and_metrics_are_well_formed(X, k):
    rec = PopularityRecommender().fit(X)
    ids = rec.predict(X, k=k)
    assert ids.shape == (X.shape[0], min(k, X.shape[1]))  # the width is clamped to the catalogue
    for u in range(X.shape[0]):
        row = ids[u][ids[u] >= 0]
        assert len(set(row)) == row.size  # no duplicates
        assert not set(row) & set(X[u].indices)  # seen items excluded
        # -1 padding only at the end
        assert np.all(ids[u][row.size:] == -1)
    y = sp.csr_matrix(np.ones(X.shape)) - X.astype(bool)
    if y.nnz:
        for metric in (ndcg_at_k, recall_at_k, hit_rate_at_k):
            value = metric(y, ids, k=k)
            assert 0.0 <= value <= 1.0 + 1e-12
