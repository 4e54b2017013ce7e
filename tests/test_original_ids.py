"""From an event log to recommendations and similar items in the original ids."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from skrec import EASERecommender, MarkovChainRecommender, PopularityRecommender
from skrec.datasets import make_interactions
from skrec.preprocessing import InteractionEncoder

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def log():
    """A shuffled event log with string ids and datetimes, built from planted histories."""
    X = make_interactions(n_users=80, n_items=30, mean_length=8, random_state=0).tocoo()
    frame = pd.DataFrame(
        {
            "customer": [f"c{u:03d}" for u in X.row],
            "product": [f"p{i:02d}" for i in X.col],
            "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(X.data, unit="h"),
        }
    )
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def setup(log):
    enc = InteractionEncoder(user_col="customer", item_col="product", time_col="ts")
    X = enc.fit_transform(log)
    return enc, X, EASERecommender(l2=10.0).fit(X)


# ---------------------------------------------------------------- transform_users
def test_transform_users_maps_ids_to_rows(setup):
    enc, X, _ = setup
    ids = np.array(["c005", "c000", "c079"])
    rows = enc.transform_users(ids)
    assert rows.tolist() == [5, 0, 79]
    assert enc.users_[rows].tolist() == ids.tolist()
    assert enc.transform_users(pd.Series(ids)).tolist() == [5, 0, 79]
    assert enc.transform_users(np.array([["c001", "c002"]])).shape == (1, 2)
    assert enc.inverse_transform_users(rows).tolist() == ids.tolist()


def test_transform_users_unknown_ids(setup):
    enc, _, _ = setup
    # searchsorted would silently give a neighbour's row here
    with pytest.raises(ValueError, match="1 user id.*not seen at fit time"):
        enc.transform_users(["c001", "c0005"])
    assert enc.transform_users(["c001", "zz"], handle_unknown="ignore").tolist() == [1, -1]
    with pytest.raises(ValueError, match="handle_unknown"):
        enc.transform_users(["c001"], handle_unknown="drop")
    with pytest.raises(ValueError, match="cannot be compared"):
        enc.transform_users([1, 2])
    out = enc.inverse_transform_users([3, -1], fill_value="?")
    assert out.tolist() == ["c003", "?"]
    with pytest.raises(ValueError, match=r"\[-1, 80\)"):
        enc.inverse_transform_users([80])


def test_transform_users_not_fitted():
    with pytest.raises(NotFittedError):
        InteractionEncoder().transform_users(["a"])


def test_rows_of_known_users_match_fit_transform(setup):
    enc, X, _ = setup
    rows = enc.transform_users(["c010", "c003"])
    assert (X[rows] != X[[10, 3]]).nnz == 0


# ---------------------------------------------------------------- recommend
def test_recommend_returns_long_frame_in_original_ids(setup, log):
    enc, X, model = setup
    users = ["c003", "c010"]
    recs = enc.recommend(model, log, users=users, k=5)
    assert recs.columns.tolist() == ["customer", "rank", "product", "score"]
    assert recs["customer"].tolist() == ["c003"] * 5 + ["c010"] * 5
    assert recs["rank"].tolist() == [1, 2, 3, 4, 5] * 2
    ids, scores = model.recommend(X[enc.transform_users(users)], k=5)
    assert recs["product"].tolist() == enc.inverse_transform_items(ids).ravel().tolist()
    np.testing.assert_allclose(recs["score"].to_numpy(), scores.ravel())
    seen = set(log.loc[log.customer == "c003", "product"])
    assert not seen & set(recs.loc[recs.customer == "c003", "product"])


def test_recommend_known_new_and_unknown_users(setup, log):
    enc, _, model = setup
    new_events = pd.DataFrame(
        {"customer": ["newbie"] * 2, "product": ["p01", "p07"],
         "ts": pd.to_datetime(["2024-03-01", "2024-03-02"])}
    )
    both = pd.concat([log, new_events], ignore_index=True)
    recs = enc.recommend(model, both, users=["c003", "newbie", "stranger"], k=3)
    assert recs["customer"].tolist() == ["c003"] * 3 + ["newbie"] * 3 + ["stranger"] * 3
    newbie = recs.loc[recs.customer == "newbie", "product"].tolist()
    assert not {"p01", "p07"} & set(newbie)
    # the new user is read from their events: same as the matrix path
    X_new = enc.transform(new_events, users=["newbie"])
    assert newbie == enc.inverse_transform_items(model.predict(X_new, k=3))[0].tolist()
    # a user without events gets the most popular items
    popular = PopularityRecommender().fit(enc.transform(log))
    top = enc.inverse_transform_items(popular.predict(np.zeros((1, enc.n_items_)), k=3))
    assert recs.loc[recs.customer == "stranger", "product"].tolist() == top[0].tolist()


def test_recommend_default_users_are_the_logs(setup, log):
    enc, _, model = setup
    part = log[log.customer.isin(["c050", "c002"])]
    recs = enc.recommend(model, part, k=2)
    assert recs["customer"].tolist() == ["c002", "c002", "c050", "c050"]


def test_recommend_items_and_filter_seen(setup, log):
    enc, _, model = setup
    history = set(log.loc[log.customer == "c004", "product"])
    candidates = sorted(history)[:2] + ["p28", "p29"]
    recs = enc.recommend(model, log, users=["c004"], k=10, items=candidates)
    assert set(recs["product"]) <= set(candidates) - history  # fewer than k rows: no padding
    assert len(recs) == len(set(candidates) - history)
    everything = enc.recommend(model, log, users=["c004"], k=10, items=candidates,
                               filter_seen=False)
    assert set(everything["product"]) == set(candidates)
    with pytest.warns(UserWarning, match="1 candidate item id"):
        recs = enc.recommend(model, log, users=["c004"], k=3, items=["p28", "unknown"])
    assert recs["product"].tolist() == ["p28"]


def test_recommend_warns_from_the_callers_line_for_unknown_items(setup, log):
    enc, _, model = setup
    events = pd.DataFrame({"customer": ["x"], "product": ["brand-new"],
                           "ts": pd.to_datetime(["2024-05-01"])})
    with pytest.warns(UserWarning, match="not seen at fit time were dropped") as record:
        enc.recommend(model, events, users=["x"], k=2)
    assert record[0].filename == __file__


def test_recommend_as_dict_and_errors(setup, log):
    enc, _, model = setup
    out = enc.recommend(model, log, users=["c001"], k=2, as_frame=False)
    assert isinstance(out, dict) and list(out) == ["customer", "rank", "product", "score"]
    other = EASERecommender().fit(np.ones((3, 4)))
    with pytest.raises(ValueError, match="fitted on 4 items but this encoder has 30"):
        enc.recommend(other, log, users=["c001"])
    with pytest.raises(NotFittedError):
        enc.recommend(EASERecommender(), log, users=["c001"])
    with pytest.raises(TypeError, match="skrec recommender"):
        enc.recommend("model", log, users=["c001"])
    with pytest.raises(ValueError, match="duplicate"):
        enc.recommend(model, log, users=["c001", "c001"])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        enc.recommend(model, log, users=["c001"], k=0)


def test_recommend_does_not_modify_the_log(setup, log):
    enc, _, model = setup
    before = log.copy()
    enc.recommend(model, log, users=["c001"], k=2, items=["p01", "p02"])
    pd.testing.assert_frame_equal(log, before)


def test_recommend_without_time_column_and_integer_ids():
    log = {"user": np.array([10, 10, 20, 30, 30]), "item": np.array([1, 2, 2, 1, 3])}
    enc = InteractionEncoder()
    model = MarkovChainRecommender().fit(enc.fit_transform(log))
    out = enc.recommend(model, log, users=[20, 99], k=2, as_frame=False)
    assert out["user"].tolist() == [20, 20, 99, 99]
    assert out["item"].dtype.kind == "i"


# ---------------------------------------------------------------- similar items
def test_similar_items_in_original_ids(setup):
    enc, _, model = setup
    sim = enc.similar_items(model, ["p03", "p10"], k=4)
    assert sim.columns.tolist() == ["product", "rank", "similar_product", "score"]
    ids, scores = model.similar_items(enc.transform_items(["p03", "p10"]), k=4)
    assert sim["similar_product"].tolist() == enc.inverse_transform_items(ids).ravel().tolist()
    assert sim["product"].tolist() == ["p03"] * 4 + ["p10"] * 4
    one = enc.similar_items(model, "p03", k=2, items=["p01", "p02", "p03"], as_frame=False)
    assert set(one["similar_product"]) <= {"p01", "p02"}


def test_similar_items_errors(setup):
    enc, X, model = setup
    with pytest.raises(ValueError, match="not seen at fit time"):
        enc.similar_items(model, ["nope"])
    with pytest.raises(AttributeError):
        enc.similar_items(PopularityRecommender().fit(X), ["p01"])


def test_non_string_item_column_name():
    log = {0: np.array(["a", "a", "b"]), 1: np.array([5, 6, 5])}
    enc = InteractionEncoder(user_col=0, item_col=1)
    model = EASERecommender(l2=1.0).fit(enc.fit_transform(log))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = enc.similar_items(model, [5], k=1, as_frame=False)
    assert list(out) == [1, "rank", "similar_item", "score"]


def test_recommend_nobody_gives_an_empty_table(setup, log):
    enc, _, model = setup
    out = enc.recommend(model, log.iloc[:0], k=3)
    assert out.columns.tolist() == ["customer", "rank", "product", "score"] and len(out) == 0
    assert len(enc.recommend(model, log, users=[], k=3)) == 0
