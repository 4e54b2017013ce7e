"""Regression tests for the bad-input findings of issue 13 (each names the finding it covers)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from skrec import EASERecommender, MarkovChainRecommender, PopularityRecommender, SeqRecommender
from skrec._validation import check_interactions, warn_if_not_ordered
from skrec.datasets import make_interactions
from skrec.metrics import coverage, ndcg_at_k
from skrec.model_selection import (
    leave_last_out_split,
    random_holdout_split,
    temporal_split,
    user_holdout_split,
)
from skrec.preprocessing import InteractionEncoder

pd = pytest.importorskip("pandas")

TINY_SEQ = dict(d_model=8, n_heads=1, d_ff=8, n_layers=1, max_len=10, max_iter=1,
                precision="fp32", random_state=0)


@pytest.fixture(scope="module")
def X():
    return make_interactions(n_users=60, n_items=25, mean_length=8, random_state=0)


@pytest.fixture(scope="module")
def fitted(X):
    return EASERecommender(l2=10.0).fit(X)


def _log():
    return pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 20, 10, 30], "time": [1, 2, 3, 4]})


# ------------------------------------------------ tables and lists of tuples -> TypeError
TABLES = {
    "DataFrame": lambda: _log(),
    "Series": lambda: _log()["item"],
    "list of tuples": lambda: [(1, 10, 1), (1, 20, 2), (2, 10, 3)],
}


@pytest.mark.parametrize("kind", TABLES)
@pytest.mark.parametrize(
    "call",
    [
        lambda X, est: EASERecommender().fit(X),
        lambda X, est: est.predict(X),
        lambda X, est: est.recommend(X),
        lambda X, est: est.predict_scores(X),
        lambda X, est: leave_last_out_split(X),
        lambda X, est: random_holdout_split(X),
        lambda X, est: user_holdout_split(X),
        lambda X, est: temporal_split(X, cut=2.5),
    ],
    ids=["fit", "predict", "recommend", "predict_scores", "leave_last_out_split",
         "random_holdout_split", "user_holdout_split", "temporal_split"],
)
def test_event_log_tables_raise_type_error_pointing_to_encoder(kind, call, fitted):
    with pytest.raises(TypeError, match="InteractionEncoder"):
        call(TABLES[kind](), fitted)


@pytest.mark.parametrize("kind", TABLES)
def test_tables_as_y_raise_type_error(kind, fitted, X):
    with pytest.raises(TypeError, match="InteractionEncoder"):
        fitted.score(X[:4], TABLES[kind]())
    with pytest.raises(TypeError, match="InteractionEncoder"):
        EASERecommender().fit(X[:4], TABLES[kind]())


def test_recommendation_frame_as_y_pred_raises_type_error(fitted, X):
    table = pd.DataFrame({"user": [0, 0], "rank": [1, 2], "item": [3, 4]})
    with pytest.raises(TypeError, match="item indices"):
        ndcg_at_k(np.array([1, 2, 3]), table)
    with pytest.raises(TypeError, match="item indices"):
        coverage(table, n_items=25)


def test_list_of_lists_is_still_a_matrix():
    X = check_interactions([[1, 0, 2], [0, 3, 0]])
    assert X.shape == (2, 3) and X.nnz == 3


def test_dataframe_matrix_message_says_how_to_pass_a_matrix(X):
    frame = pd.DataFrame(X.toarray())
    with pytest.raises(TypeError, match=r"to_numpy\(\)"):
        EASERecommender().fit(frame)
    EASERecommender().fit(frame.to_numpy())  # the route the message gives works


def _numeric_log(n=3000, seed=0):
    """An event log of integer ids and Unix times, as MovieLens u.data has them."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user": rng.integers(1, 944, n), "item": rng.integers(1, 1683, n),
                         "time": 8.8e8 + rng.integers(0, 10**7, n)})


def test_an_event_log_frame_is_never_advised_to_numpy():
    """Following the advice must not give a matrix of n_events users x 3 items."""
    for table in (_numeric_log(), _numeric_log()[["user", "item"]], _numeric_log()["item"],
                  _numeric_log().astype({"user": str}).assign(a=1, b=2.0)):
        with pytest.raises(TypeError, match="event log") as info:
            EASERecommender().fit(table)
        message = str(info.value)
        assert "Do not pass .to_numpy()" in message
        assert "pass .to_numpy()" not in message.replace("Do not pass .to_numpy()", "")


@pytest.mark.parametrize("as_", ["dense", "csr", "coo"])
@pytest.mark.parametrize("call", [lambda X: EASERecommender().fit(X),
                                  lambda X: leave_last_out_split(X),
                                  lambda X: PopularityRecommender().fit(X)],
                         ids=["fit", "split", "popularity"])
def test_an_event_log_read_as_a_matrix_is_named(as_, call):
    """log[["user", "item", "time"]].to_numpy() (or a sparse matrix of it): a warning that
    names the event-log shape and the encoder, attributed to the caller's line."""
    arr = _numeric_log()[["user", "item", "time"]].to_numpy()
    X = {"dense": arr, "csr": sp.csr_matrix(arr), "coo": sp.coo_matrix(arr)}[as_]
    with pytest.warns(UserWarning, match=r"looks like an event log.*3000 users and a "
                                         r"catalogue of 3 items.*InteractionEncoder") as rec:
        call(X)
    assert any(w.filename == __file__ for w in rec)


def test_real_small_catalogues_are_not_taken_for_event_logs():
    rng = np.random.default_rng(0)
    matrices = [rng.integers(1, 6, (500, 3)).astype(float),  # ratings
                np.argsort(rng.random((500, 4)), axis=1) + 1.0,  # orders
                (rng.random((500, 2)) < 0.5) * 1.0,  # ones
                1.7e9 + rng.integers(0, 10**6, (500, 3)),  # timestamps, all distinct
                _numeric_log()[["user", "item", "time"]].to_numpy()[:15]]  # a few rows
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for X in matrices:
            EASERecommender(l2=1.0).fit(X).predict(X)
            leave_last_out_split(X)


def test_strings_read_as_a_matrix_point_to_the_encoder():
    arr = _numeric_log().astype({"user": str, "item": str}).to_numpy().astype(str)
    arr[0, 0] = "u1"
    with pytest.raises(ValueError, match="InteractionEncoder"):
        EASERecommender().fit(arr)
    with pytest.raises(ValueError, match="InteractionEncoder"):
        EASERecommender().fit(arr.astype(object))


# ------------------------------------------------ batch_size
@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, "8", True, np.float64(4.0)])
@pytest.mark.parametrize("method", ["recommend", "predict_scores", "similar_items"])
def test_bad_batch_size_names_it(batch_size, method, fitted, X):
    arg = [0, 1] if method == "similar_items" else X[:5]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        getattr(fitted, method)(arg, batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [1, 7, np.int64(3), None])
def test_valid_batch_sizes_give_the_same_result(batch_size, fitted, X):
    ids, scores = fitted.recommend(X, k=5, batch_size=batch_size)
    ref_ids, ref_scores = fitted.recommend(X, k=5)
    assert np.array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)
    assert np.array_equal(
        fitted.predict_scores(X, batch_size=batch_size), fitted.predict_scores(X)
    )


# ------------------------------------------------ Markov smoothing
@pytest.mark.parametrize("smoothing", [np.inf, -1.0, np.nan, "0.1", True])
def test_markov_rejects_non_finite_smoothing(smoothing, X):
    est = MarkovChainRecommender(smoothing=smoothing)
    with pytest.raises(ValueError, match="smoothing must be a finite number >= 0"):
        est.fit(X)
    assert not hasattr(est, "n_features_in_")


def test_markov_huge_smoothing_gives_finite_popularity_scores(X):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning either
        est = MarkovChainRecommender(smoothing=1e300).fit(X)
        scores = est.predict_scores(X[:5])
    assert np.isfinite(scores).all()
    pop = PopularityRecommender().fit(X)
    # popularity alone: the same top items as the popularity baseline
    assert np.array_equal(est.predict(X[:5], k=3), pop.predict(X[:5], k=3))


def test_markov_scores_are_a_probability_mixture(X):
    est = MarkovChainRecommender(smoothing=0.5).fit(X)
    scores = est.predict_scores(X[:10])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


# ------------------------------------------------ EASE on a singular Gram matrix
def test_ease_singular_gram_matrix_asks_for_larger_l2():
    X = sp.csr_matrix(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    est = EASERecommender(l2=1e-300)
    with pytest.raises(ValueError, match="raise l2|Raise l2"):
        est.fit(X)
    assert not hasattr(est, "coef_")
    EASERecommender(l2=1.0).fit(X)  # the suggested fix works


# ------------------------------------------------ InteractionEncoder with duplicate columns
def test_encoder_duplicate_column_names_raise_value_error():
    log = pd.DataFrame([[1, 2, 3]], columns=["user", "user", "item"])
    with pytest.raises(ValueError, match="duplicate column"):
        InteractionEncoder().fit(log)
    with pytest.raises(ValueError, match="duplicate column"):
        InteractionEncoder().fit(_log()).transform(log)


def test_encoder_same_column_for_two_roles_raises():
    log = pd.DataFrame({"id": [1, 2], "time": [1, 2]})
    with pytest.raises(ValueError, match="user_col and item_col"):
        InteractionEncoder(user_col="id", item_col="id").fit(log)


def test_encoder_duplicate_unused_columns_are_fine():
    log = pd.DataFrame([[1, 2, 0, 0]], columns=["user", "item", "x", "x"])
    assert InteractionEncoder().fit_transform(log).shape == (1, 1)


# ------------------------------------------------ duplicate entries: the latest wins
# User 0 saw item 1 at times 2 and 5, and item 2 at time 6. Summing the repeat would put item 1
# at "time 7", after item 2; the encoder keeps the last event (time 5): item 1, then item 2.
TIMES, ITEMS = np.array([2.0, 5.0, 6.0]), np.array([1, 1, 2])


def _with_repeat(fmt):
    if fmt == "coo":
        return sp.coo_matrix((TIMES, (np.zeros(3, dtype=int), ITEMS)), shape=(1, 3))
    if fmt == "csr":  # built from raw arrays: scipy keeps the duplicate (non-canonical)
        return sp.csr_matrix((TIMES, ITEMS, np.array([0, 3])), shape=(1, 3))
    # CSC: column 1 holds row 0 twice
    return sp.csc_matrix((TIMES, np.zeros(3, dtype=int), np.array([0, 0, 2, 3])), shape=(1, 3))


@pytest.mark.parametrize("fmt", ["coo", "csr", "csc"])
def test_duplicate_entries_keep_the_largest_value_like_the_encoder(fmt):
    X = _with_repeat(fmt)
    assert fmt == "coo" or not X.has_canonical_format
    before = X.copy()
    out = check_interactions(X)
    assert out.toarray().tolist() == [[0.0, 5.0, 6.0]]
    assert out.has_canonical_format
    assert (X != before).nnz == 0  # the input is unchanged
    log = {"user": [0, 0, 0], "item": ITEMS, "t": TIMES}
    X_enc = InteractionEncoder(time_col="t", values="timestamp").fit_transform(log)
    assert X_enc.toarray().tolist() == [[5.0, 6.0]]  # the same rule: the last event wins


def test_duplicate_negative_entry_is_not_hidden_by_a_larger_one():
    X = sp.coo_matrix((np.array([-1.0, 3.0]), (np.array([0, 0]), np.array([0, 0]))), shape=(1, 2))
    with pytest.raises(ValueError, match="Negative values"):
        check_interactions(X)


def test_duplicate_entries_give_the_encoders_sequence_order():
    X = sp.vstack([_with_repeat("csr")] * 3, format="csr")  # vstack keeps the duplicates
    markov = MarkovChainRecommender().fit(X)
    assert markov.transitions_[1, 2] == 1.0  # item 1 (latest at 5) -> item 2 (at 6)
    assert markov.transitions_[2, 1] == 0.0


# ------------------------------------------------ ratings given as the order
def _ratings_like(X, rng):
    R = X.copy().astype(np.float64)
    R.data = rng.integers(1, 6, size=R.nnz).astype(np.float64)
    return R


@pytest.mark.parametrize("Est", [MarkovChainRecommender, SeqRecommender])
def test_ratings_as_order_warn_naming_values_option(Est, X):
    R = _ratings_like(X, np.random.default_rng(0))
    est = Est(**TINY_SEQ) if Est is SeqRecommender else Est()
    with pytest.warns(UserWarning, match='values="order"') as record:
        est.fit(R)
    assert record[0].filename == __file__  # points to the caller's line


@pytest.mark.parametrize("Est", [MarkovChainRecommender, SeqRecommender])
def test_binary_flags_as_order_warn(Est, X):
    est = Est(**TINY_SEQ) if Est is SeqRecommender else Est()
    with pytest.warns(UserWarning, match="look like ratings or flags"):
        est.fit(X.astype(bool).astype(np.float64))


@pytest.mark.parametrize("Est", [MarkovChainRecommender, SeqRecommender])
def test_orders_and_timestamps_do_not_warn(Est, X):
    est = Est(**TINY_SEQ) if Est is SeqRecommender else Est()
    T = X.copy()
    T.data = T.data * 3600.0 + 1.7e9
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        est.fit(X)  # positions 1..n
        est.fit(T)  # timestamps


def test_set_models_do_not_warn_on_ratings(X):
    R = _ratings_like(X, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        EASERecommender().fit(R)
        PopularityRecommender().fit(R)


def test_ratings_detection_thresholds():
    short = sp.csr_matrix(np.array([[5.0, 4.0, 3.0], [1.0, 2.0, 0.0]]))  # no ties: fine
    halves = sp.csr_matrix(np.array([[3.5, 3.5, 4.5, 4.5, 0.5]]))
    big = sp.csr_matrix(np.array([[11.0, 11.0, 11.0]]))  # above any rating scale
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warn_if_not_ordered(short, "Est")
        warn_if_not_ordered(big, "Est")
    with pytest.warns(UserWarning, match="ratings"):
        warn_if_not_ordered(halves, "Est")


# ------------------------------------------------ a model with NaN weights never ranks
def test_nan_scores_raise_instead_of_ranking(X):
    est = EASERecommender(l2=10.0).fit(X)
    est.coef_[:, 3] = np.nan  # as if training had diverged
    for call in (lambda: est.recommend(X[:4]), lambda: est.predict(X[:4]),
                 lambda: est.predict_scores(X[:4]), lambda: est.similar_items([0, 1])):
        with pytest.raises(FloatingPointError, match="NaN scores"):
            call()
