"""Tests for skrec.model_selection."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from skrec.model_selection import (
    leave_last_out_split,
    random_holdout_split,
    temporal_split,
    user_holdout_split,
)


def _random_X(seed: int = 0, n_users: int = 50, n_items: int = 40, density: float = 0.2):
    """Users with 0..many interactions whose values are timestamps (with some ties)."""
    rng = np.random.default_rng(seed)
    dense = np.where(
        rng.random((n_users, n_items)) < density, rng.integers(1, 200, size=(n_users, n_items)), 0
    ).astype(float)
    dense[0] = 0  # a cold user
    dense[1] = 0
    dense[1, 3] = 17.0  # a user with one interaction
    dense[2, :4] = [5.0, 5.0, 0.0, 5.0]  # ties
    return sp.csr_matrix(dense)


def _assert_canonical(M, shape):
    assert type(M) is sp.csr_matrix
    assert M.dtype == np.float64
    assert M.shape == shape
    assert M.has_sorted_indices
    # sorted indices really hold (not only the flag)
    for u in range(M.shape[0]):
        row = M.indices[M.indptr[u] : M.indptr[u + 1]]
        assert (np.diff(row) > 0).all()
    assert (M.data > 0).all()


def _assert_partition(X, *parts):
    """The parts have disjoint supports and add up to X with the same values."""
    total = parts[0].copy()
    for part in parts[1:]:
        assert parts[0].multiply(part).nnz == 0 or total.multiply(part).nnz == 0
        assert total.multiply(part).nnz == 0
        total = total + part
    assert total.nnz == X.nnz
    assert abs(total - X).max() == 0


def _snapshot(X):
    return X.data.copy(), X.indices.copy(), X.indptr.copy()


def _unchanged(X, snap):
    return all(np.array_equal(a, b) for a, b in zip((X.data, X.indices, X.indptr), snap))


def _row_counts(M):
    return np.diff(M.indptr)


# --------------------------------------------------------------------------------------------
# leave_last_out_split
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_last", [1, 2, 3])
def test_leave_last_out_basic(n_last):
    X = _random_X()
    snap = _snapshot(X)
    X_train, y_test = leave_last_out_split(X, n_last=n_last)
    assert _unchanged(X, snap)
    _assert_canonical(X_train, X.shape)
    _assert_canonical(y_test, X.shape)
    _assert_partition(X, X_train, y_test)
    counts = _row_counts(X)
    expected = np.where(counts > n_last, n_last, 0)
    np.testing.assert_array_equal(_row_counts(y_test), expected)
    for u in np.flatnonzero(expected):
        # held-out values are the latest: none earlier than anything kept
        assert y_test[u].data.min() >= X_train[u].data.max()


def test_leave_last_out_tie_rule():
    X = sp.csr_matrix(np.array([[5.0, 5.0, 0.0, 5.0], [1.0, 3.0, 2.0, 0.0], [0, 0, 4.0, 0]]))
    X_train, y_test = leave_last_out_split(X)
    # Row 0: all tied at 5 -> the largest item index (3) is the latest.
    # Row 1: value 3 (item 1) is the latest. Row 2: one interaction -> stays in training.
    np.testing.assert_array_equal(y_test.toarray(), [[0, 0, 0, 5.0], [0, 3.0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(
        X_train.toarray(), [[5.0, 5.0, 0, 0], [1.0, 0, 2.0, 0], [0, 0, 4.0, 0]]
    )
    _, y2 = leave_last_out_split(X, n_last=2)
    np.testing.assert_array_equal(y2.toarray()[0], [0, 5.0, 0, 5.0])
    np.testing.assert_array_equal(y2.toarray()[1], [0, 3.0, 2.0, 0])


def test_leave_last_out_accepts_dense_and_coo_without_modifying():
    dense = np.array([[1.0, 3.0, 2.0], [0.0, 1.0, 0.0]])
    before = dense.copy()
    X_train, y_test = leave_last_out_split(dense)
    np.testing.assert_array_equal(dense, before)
    np.testing.assert_array_equal(y_test.toarray(), [[0, 3.0, 0], [0, 0, 0]])
    coo = sp.coo_matrix(dense)
    X_train2, y_test2 = leave_last_out_split(coo)
    assert (X_train2 != X_train).nnz == 0 and (y_test2 != y_test).nnz == 0
    np.testing.assert_array_equal(coo.toarray(), before)


@pytest.mark.parametrize("n_last", [0, -1, 1.5, True])
def test_leave_last_out_bad_n_last(n_last):
    with pytest.raises(ValueError, match="n_last"):
        leave_last_out_split(_random_X(), n_last=n_last)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="negative"):
        leave_last_out_split(np.array([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        random_holdout_split(np.array([1.0, 2.0]))


# --------------------------------------------------------------------------------------------
# user_holdout_split
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [False, True])
def test_user_holdout_split(ordered):
    X = _random_X(n_users=60)
    snap = _snapshot(X)
    X_train, X_fold, y_test, train_users, test_users = user_holdout_split(
        X, test_size=0.25, fold_in_size=0.8, random_state=0, return_users=True, ordered=ordered
    )
    assert _unchanged(X, snap)
    # Disjoint and covering user sets; 25% of 60 users held out.
    assert len(test_users) == 15 and len(train_users) == 45
    assert np.intersect1d(train_users, test_users).size == 0
    np.testing.assert_array_equal(np.union1d(train_users, test_users), np.arange(60))
    assert (np.diff(train_users) > 0).all() and (np.diff(test_users) > 0).all()
    _assert_canonical(X_train, (45, X.shape[1]))
    _assert_canonical(X_fold, (15, X.shape[1]))
    _assert_canonical(y_test, (15, X.shape[1]))
    # Training users keep everything; held-out users' rows are split exactly.
    assert abs(X_train - X[train_users]).max() == 0
    _assert_partition(X[test_users], X_fold, y_test)
    counts = _row_counts(X[test_users])
    n_fold = _row_counts(X_fold)
    big = counts >= 2
    assert (n_fold[big] >= 1).all() and (_row_counts(y_test)[big] >= 1).all()
    np.testing.assert_array_equal(n_fold[~big], counts[~big])  # 0 or 1 item: all in fold-in
    expected = np.clip(np.floor(0.8 * counts[big] + 0.5), 1, counts[big] - 1)
    np.testing.assert_array_equal(n_fold[big], expected)
    if ordered:
        for u in np.flatnonzero(big):
            assert X_fold[u].data.max() <= y_test[u].data.min()


def test_user_holdout_deterministic_and_seed_dependent():
    X = _random_X(n_users=60)
    a = user_holdout_split(X, random_state=3, return_users=True)
    b = user_holdout_split(X, random_state=3, return_users=True)
    c = user_holdout_split(X, random_state=4, return_users=True)
    for m, n in zip(a[:3], b[:3]):
        assert (m != n).nnz == 0
    np.testing.assert_array_equal(a[4], b[4])
    assert not np.array_equal(a[4], c[4])
    rs = np.random.RandomState(3)
    d = user_holdout_split(X, random_state=rs, return_users=True)
    np.testing.assert_array_equal(a[4], d[4])


def test_user_holdout_int_test_size_and_no_users_returned():
    X = _random_X(n_users=20)
    out = user_holdout_split(X, test_size=3, random_state=0)
    assert len(out) == 3
    assert out[0].shape[0] == 17 and out[1].shape[0] == 3 and out[2].shape[0] == 3


def test_user_holdout_fold_in_counts_hand_worked():
    # one training user + one test user with 10 items: fold-in round(0.8*10) = 8, target 2;
    # with 0.5 and 3 items: round(1.5) = 2 (halves up) -> fold-in 2, target 1
    X = sp.csr_matrix(np.vstack([np.arange(1.0, 11.0), np.arange(1.0, 11.0)]))
    _, X_fold, y_test = user_holdout_split(X, test_size=1, fold_in_size=0.8, random_state=0)
    assert X_fold.nnz == 8 and y_test.nnz == 2
    _, X_fold, y_test = user_holdout_split(
        X, test_size=1, fold_in_size=0.8, random_state=0, ordered=True
    )
    np.testing.assert_array_equal(y_test.data, [9.0, 10.0])
    X3 = sp.csr_matrix(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    _, X_fold, y_test = user_holdout_split(X3, test_size=1, fold_in_size=0.5, random_state=0)
    assert X_fold.nnz == 2 and y_test.nnz == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_size": 0.0}, "test_size"),
        ({"test_size": 1.0}, "test_size"),
        ({"test_size": -0.2}, "test_size"),
        ({"test_size": 0}, "test_size"),
        ({"test_size": 10}, "test_size"),
        ({"test_size": True}, "test_size"),
        ({"test_size": "0.2"}, "test_size"),
        ({"test_size": float("nan")}, "test_size"),
        ({"test_size": 0.99}, "test_size"),  # ceil(0.99 * 10) = 10: no training user left
        ({"fold_in_size": 1.0}, "fold_in_size"),
        ({"fold_in_size": 0.0}, "fold_in_size"),
        ({"fold_in_size": 2}, "fold_in_size"),
    ],
)
def test_user_holdout_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        user_holdout_split(_random_X(n_users=10), **kwargs)


def test_user_holdout_needs_two_users():
    with pytest.raises(ValueError, match="at least 2 users"):
        user_holdout_split(np.array([[1.0, 2.0]]))


# --------------------------------------------------------------------------------------------
# random_holdout_split
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("test_size", [0.1, 0.2, 0.5, 0.9])
def test_random_holdout_split(test_size):
    X = _random_X()
    snap = _snapshot(X)
    X_train, y_test = random_holdout_split(X, test_size=test_size, random_state=0)
    assert _unchanged(X, snap)
    _assert_canonical(X_train, X.shape)
    _assert_canonical(y_test, X.shape)
    _assert_partition(X, X_train, y_test)
    counts = _row_counts(X)
    expected = np.where(counts >= 2, np.clip(np.floor(test_size * counts + 0.5), 1, counts - 1), 0)
    np.testing.assert_array_equal(_row_counts(y_test), expected)
    assert (_row_counts(X_train)[counts >= 1] >= 1).all()  # never all of a user's items


def test_random_holdout_deterministic():
    X = _random_X()
    a = random_holdout_split(X, random_state=11)
    b = random_holdout_split(X, random_state=11)
    c = random_holdout_split(X, random_state=12)
    assert (a[1] != b[1]).nnz == 0 and (a[0] != b[0]).nnz == 0
    assert (a[1] != c[1]).nnz > 0


@pytest.mark.parametrize("test_size", [0, 1, 0.0, 1.0, -0.5, 2, None, True])
def test_random_holdout_bad_test_size(test_size):
    with pytest.raises(ValueError, match="test_size"):
        random_holdout_split(_random_X(), test_size=test_size)


# --------------------------------------------------------------------------------------------
# temporal_split
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0.5, 50, 100.0, 150.5, 1000])
def test_temporal_split_cut_no_leakage(cut):
    X = _random_X()
    snap = _snapshot(X)
    X_train, y_test = temporal_split(X, cut=cut)
    assert _unchanged(X, snap)
    _assert_canonical(X_train, X.shape)
    _assert_canonical(y_test, X.shape)
    _assert_partition(X, X_train, y_test)
    # Nothing after the cut remains in training; everything after it is held out.
    assert (X_train.data <= cut).all()
    assert (y_test.data > cut).all()
    assert y_test.nnz == int((X.data > cut).sum())


@pytest.mark.parametrize("test_size", [0.1, 0.25, 0.5])
def test_temporal_split_test_size(test_size):
    # Distinct timestamps: exactly round(test_size * N) interactions after the cut.
    rng = np.random.default_rng(0)
    n = 400
    rows, cols = np.divmod(rng.choice(40 * 30, size=n, replace=False), 30)
    X = sp.csr_matrix((rng.permutation(n) + 1.0, (rows, cols)), shape=(40, 30))
    X_train, y_test = temporal_split(X, test_size=test_size)
    _assert_partition(X, X_train, y_test)
    assert y_test.nnz == int(np.floor(test_size * n + 0.5))
    assert X_train.data.max() < y_test.data.min()


def test_temporal_split_ties_stay_together():
    X = _random_X()
    X_train, y_test = temporal_split(X, test_size=0.2)
    assert X_train.data.max() < y_test.data.min()
    assert y_test.nnz <= round(0.2 * X.nnz)
    with pytest.warns(UserWarning, match="empty"):
        _, y_empty = temporal_split(np.array([[3.0, 3.0], [3.0, 0.0]]), test_size=0.5)
    assert y_empty.nnz == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"cut": 10, "test_size": 0.2},
        {"cut": float("nan")},
        {"cut": "2020-01-01"},
        {"test_size": 0.0},
        {"test_size": 1.0},
        {"test_size": 5},
    ],
)
def test_temporal_split_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        temporal_split(_random_X(), **kwargs)


def test_preserves_original_values_for_sequence_models():
    X = _random_X(seed=5)
    for X_train, y_test in [
        leave_last_out_split(X),
        random_holdout_split(X, random_state=0),
        temporal_split(X, test_size=0.3),
    ]:
        assert np.isin(y_test.data, X.data).all()
        assert (X_train.multiply(X) != X_train.multiply(X_train)).nnz == 0
        assert (y_test.multiply(X) != y_test.multiply(y_test)).nnz == 0


def _with_duplicates(flag_lies: bool) -> sp.csr_matrix:
    """Two users; (0, 1) stored twice (values 5 and 3), (1, 2) twice (2 and 9)."""
    X = sp.csr_matrix((np.array([1.0, 5.0, 3.0, 2.0, 4.0, 2.0, 9.0]),
                       np.array([0, 1, 1, 3, 0, 2, 2]), np.array([0, 4, 7])), shape=(2, 4))
    if flag_lies:  # built from raw arrays and marked canonical: scipy would trust the flag
        X.has_canonical_format = True
    return X


@pytest.mark.parametrize("flag_lies", [False, True])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_duplicates_are_one_interaction_at_the_latest_value_everywhere(fmt, flag_lies):
    """The data contract: a repeated (user, item) keeps its largest value, in every entry
    point, never scipy's sum; the splits add up to that matrix."""
    from skrec import EASERecommender
    from skrec._validation import check_interactions
    from skrec.metrics import ndcg_at_k

    X = _with_duplicates(flag_lies)
    X = {"csr": X, "csc": X.tocsc() if not flag_lies else X.T.tocsr().T, "coo": X.tocoo()}[fmt]
    latest = np.array([[1.0, 5.0, 0.0, 2.0], [4.0, 0.0, 9.0, 0.0]])
    canonical = check_interactions(X)
    np.testing.assert_array_equal(canonical.toarray(), latest)
    assert canonical.nnz == 5  # no duplicate left stored
    for X_train, y_test in (leave_last_out_split(X), random_holdout_split(X, random_state=0),
                            temporal_split(X, cut=3.0)):
        np.testing.assert_array_equal((X_train + y_test).toarray(), latest)
    X_train, y_test = leave_last_out_split(X)
    np.testing.assert_array_equal(y_test.toarray(), [[0, 5.0, 0, 0], [0, 0, 9.0, 0]])
    ease = EASERecommender(l2=1.0)
    np.testing.assert_array_equal(ease.fit(X).predict(X, k=4),
                                  ease.fit(latest).predict(latest, k=4))
    assert ndcg_at_k(X, ease.predict(latest, k=2, filter_seen=False), k=2) == pytest.approx(
        ndcg_at_k(latest, ease.predict(latest, k=2, filter_seen=False), k=2))


def test_vectorised_on_many_users():
    # 50k users: runs in well under a second because there is no per-user Python loop.
    rng = np.random.default_rng(0)
    n_users, n_items, nnz = 50_000, 2_000, 500_000
    X = sp.csr_matrix(
        (
            rng.integers(1, 10**9, size=nnz).astype(float),
            (rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz)),
        ),
        shape=(n_users, n_items),
    )
    X_train, y_test = leave_last_out_split(X)
    _assert_partition(X, X_train, y_test)
    X_tr, X_fold, y = user_holdout_split(X, random_state=0)
    assert X_tr.shape[0] + X_fold.shape[0] == 50_000
