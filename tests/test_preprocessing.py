"""Tests of skrec.preprocessing.InteractionEncoder."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from skrec.preprocessing import InteractionEncoder

# _log() has a "time" column that most tests leave out on purpose (the warning is tested below)
pytestmark = pytest.mark.filterwarnings("ignore:The log has a column 'time':UserWarning")


def _log():
    # user "a": items 10 (t=5), 20 (t=1), 30 (t=5, tie with item 10: later in the log)
    # user "b": item 10 (t=3); user "c": item 20 (t=2)
    return {
        "user": np.array(["a", "a", "b", "a", "c"]),
        "item": np.array([10, 20, 10, 30, 20]),
        "time": np.array([5, 1, 3, 5, 2]),
        "w": np.array([1.0, 2.0, 0.5, 4.0, 1.0]),
    }


def _copy(log):
    return {k: v.copy() for k, v in log.items()}


def _assert_same_log(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == b[k].dtype


def _canonical(X):
    assert sp.issparse(X) and X.format == "csr"
    assert X.dtype == np.float64
    assert X.has_sorted_indices and X.has_canonical_format
    assert (X.data > 0).all()


# -- order semantics ---------------------------------------------------------------------------


def test_fit_learns_sorted_vocabularies():
    enc = InteractionEncoder(time_col="time").fit(_log())
    np.testing.assert_array_equal(enc.users_, ["a", "b", "c"])
    np.testing.assert_array_equal(enc.items_, [10, 20, 30])
    assert (enc.n_users_, enc.n_items_, enc.n_events_) == (3, 3, 5)


def test_order_by_time_ties_keep_log_order():
    X = InteractionEncoder(time_col="time").fit_transform(_log())
    _canonical(X)
    np.testing.assert_array_equal(X.toarray(), [[2, 1, 3], [1, 0, 0], [0, 1, 0]])


def test_order_ties_follow_row_position_not_item_id():
    log = {
        "user": np.array([1, 1, 1, 1]),
        "item": np.array([4, 3, 2, 1]),
        "time": np.array([7.0, 7.0, 7.0, 7.0]),
    }
    X = InteractionEncoder(time_col="time").fit_transform(log)
    np.testing.assert_array_equal(X.toarray(), [[4, 3, 2, 1]])


def test_order_without_time_col_is_row_position():
    with pytest.warns(UserWarning, match="ordered by their row position"):
        X = InteractionEncoder().fit_transform(_log())
    np.testing.assert_array_equal(X.toarray(), [[1, 2, 3], [1, 0, 0], [0, 1, 0]])


def test_repeated_consumption_keeps_last_occurrence():
    log = {
        "user": np.array([0, 0, 0, 0]),
        "item": np.array(["x", "y", "x", "z"]),
        "time": np.array([1.0, 2.0, 3.0, 4.0]),
    }
    X = InteractionEncoder(time_col="time").fit_transform(log)
    # distinct items x, y, z; x last seen at t=3 -> order y=1, x=2, z=3
    np.testing.assert_array_equal(X.toarray(), [[2, 1, 3]])
    T = InteractionEncoder(time_col="time", values="timestamp").fit_transform(log)
    np.testing.assert_array_equal(T.toarray(), [[3, 2, 4]])
    # the later duplicate wins even when it comes earlier in the log
    log2 = {k: v[::-1].copy() for k, v in log.items()}
    X2 = InteractionEncoder(time_col="time").fit_transform(log2)
    np.testing.assert_array_equal(X2.toarray(), [[2, 1, 3]])


def test_values_per_row_are_a_permutation():
    rng = np.random.default_rng(0)
    n = 5000
    log = {
        "user": rng.integers(0, 50, n),
        "item": rng.integers(0, 80, n),
        "time": rng.integers(1, 30, n).astype(float),
    }
    X = InteractionEncoder(time_col="time").fit_transform(log)
    _canonical(X)
    for u in range(X.shape[0]):
        row = X[u]
        np.testing.assert_array_equal(np.sort(row.data), np.arange(1, row.nnz + 1))
    # order agrees with the last time of each (user, item) pair
    T = InteractionEncoder(time_col="time", values="timestamp").fit_transform(log)
    assert (T.indices == X.indices).all()
    for u in range(0, X.shape[0], 7):
        x, t = X[u].data, T[u].data
        assert (np.diff(t[np.argsort(x)]) >= 0).all()


def test_timestamp_weight_and_ones_values():
    log = _log()
    T = InteractionEncoder(time_col="time", values="timestamp").fit_transform(log)
    np.testing.assert_array_equal(T.toarray(), [[5, 1, 5], [3, 0, 0], [0, 2, 0]])
    log["item"][3] = 10  # user a consumes item 10 twice: weights 1 + 4
    W = InteractionEncoder(weight_col="w", values="weight").fit_transform(log)
    np.testing.assert_array_equal(W.toarray(), [[5, 2], [0.5, 0], [0, 1]])
    ones = InteractionEncoder(values="ones").fit_transform(log)
    np.testing.assert_array_equal(ones.toarray(), [[1, 1], [1, 0], [0, 1]])


def test_datetime_time_column():
    log = _log()
    log["time"] = np.datetime64("2024-01-01T00:00:00", "s") + log["time"].astype("m8[h]")
    X = InteractionEncoder(time_col="time").fit_transform(log)
    np.testing.assert_array_equal(X.toarray(), [[2, 1, 3], [1, 0, 0], [0, 1, 0]])
    T = InteractionEncoder(time_col="time", values="timestamp").fit_transform(log)
    start = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
    assert T[0, 1] == start + 3600.0


# -- unknown users and items, fold-in ----------------------------------------------------------


def test_unknown_items_dropped_with_warning_giving_count():
    enc = InteractionEncoder(time_col="time").fit(_log())
    new = {
        "user": np.array(["a", "a", "b", "b"]),
        "item": np.array([10, 99, 98, 98]),
        "time": np.array([1, 2, 3, 4]),
    }
    with pytest.warns(UserWarning, match=r"3 event\(s\) with 2 item\(s\) not seen"):
        X = enc.transform(new)
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_unknown_users_dropped_with_warning_by_default():
    enc = InteractionEncoder().fit(_log())
    new = {"user": np.array(["a", "zz", "zz"]), "item": np.array([10, 20, 30])}
    with pytest.warns(UserWarning, match=r"2 event\(s\) of 1 user\(s\) not seen"):
        X = enc.transform(new)
    assert X.shape == (3, 3) and X.nnz == 1


def test_users_argument_builds_rows_in_order_with_new_and_empty_users():
    enc = InteractionEncoder(time_col="time").fit(_log())
    new = {
        "user": np.array(["new", "c", "new", "other"]),
        "item": np.array([30, 10, 20, 10]),
        "time": np.array([2, 1, 1, 0]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # events of users not listed are dropped silently
        X = enc.transform(new, users=["nobody", "new", "c"])
    assert X.shape == (3, 3)
    np.testing.assert_array_equal(X.toarray(), [[0, 0, 0], [0, 1, 2], [1, 0, 0]])
    empty = enc.transform(
        {"user": np.array([], dtype=str), "item": np.array([], dtype=int), "time": np.array([])},
        users=["x", "y"],
    )
    assert empty.shape == (2, 3) and empty.nnz == 0
    assert enc.transform(new, users=[]).shape == (0, 3)


def test_duplicate_users_argument_raises():
    enc = InteractionEncoder().fit(_log())
    with pytest.raises(ValueError, match="duplicate"):
        enc.transform(_log(), users=["a", "b", "a"])


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"time_col": "time"},
        {},
        {"time_col": "time", "values": "timestamp"},
        {"weight_col": "w", "values": "weight"},
        {"values": "ones"},
    ],
)
def test_inverse_transform_round_trip(params):
    enc = InteractionEncoder(**params)
    X = enc.fit_transform(_log())
    back = enc.inverse_transform(X, as_frame=False)
    assert isinstance(back, dict)
    assert list(back)[:2] == ["user", "item"]
    assert all(len(v) == X.nnz for v in back.values())
    X2 = enc.transform(back)
    assert (X2 != X).nnz == 0


def test_inverse_transform_value_column_and_sorting():
    enc = InteractionEncoder(time_col="time")
    back = enc.inverse_transform(enc.fit_transform(_log()), as_frame=False)
    np.testing.assert_array_equal(back["user"], ["a", "a", "a", "b", "c"])
    np.testing.assert_array_equal(back["item"], [20, 10, 30, 10, 20])
    np.testing.assert_array_equal(back["time"], [1, 2, 3, 1, 1])
    ones = InteractionEncoder(values="ones").fit(_log())
    assert "value" in ones.inverse_transform(ones.transform(_log()), as_frame=False)


def test_inverse_transform_with_users_and_shape_errors():
    enc = InteractionEncoder().fit(_log())
    X = sp.csr_matrix(np.array([[0.0, 2.0, 1.0]]))
    back = enc.inverse_transform(X, users=["new"], as_frame=False)
    np.testing.assert_array_equal(back["user"], ["new", "new"])
    np.testing.assert_array_equal(back["item"], [30, 20])
    with pytest.raises(ValueError, match="rows"):
        enc.inverse_transform(X)
    with pytest.raises(ValueError, match="items"):
        enc.inverse_transform(sp.csr_matrix((3, 5)))


def test_item_index_round_trip_and_fill_values():
    enc = InteractionEncoder().fit(_log())
    idx = np.array([[2, 0], [1, -1]])
    ids = enc.inverse_transform_items(idx)
    assert ids.dtype == object and ids[1, 1] is None
    np.testing.assert_array_equal(ids[0], [30, 10])
    filled = enc.inverse_transform_items(idx, fill_value=-1)
    assert filled.dtype.kind == "i"
    np.testing.assert_array_equal(filled, [[30, 10], [20, -1]])
    np.testing.assert_array_equal(enc.transform_items(filled[0]), [2, 0])
    np.testing.assert_array_equal(enc.inverse_transform_items([0, 1, 2]), enc.items_)
    np.testing.assert_array_equal(enc.transform_items(enc.items_), [0, 1, 2])
    np.testing.assert_array_equal(enc.transform_items([10, 77], handle_unknown="ignore"), [0, -1])
    with pytest.raises(ValueError, match="not seen"):
        enc.transform_items([10, 77])
    with pytest.raises(ValueError, match=r"\[-1, 3\)"):
        enc.inverse_transform_items([3])
    with pytest.raises(ValueError, match="integers"):
        enc.inverse_transform_items([0.5])


def test_string_ids_fill_value():
    log = {"user": np.array([1, 2]), "item": np.array(["ab", "c"])}
    enc = InteractionEncoder().fit(log)
    out = enc.inverse_transform_items([1, -1], fill_value="")
    assert out.dtype.kind == "U"
    np.testing.assert_array_equal(out, ["c", ""])


# -- input handling ----------------------------------------------------------------------------


def test_input_not_mutated():
    log = _log()
    before = _copy(log)
    enc = InteractionEncoder(time_col="time").fit(log)
    enc.transform(log, users=["c", "zz"])
    X = enc.transform(log)
    X_before = X.copy()
    enc.inverse_transform(X, as_frame=False)
    _assert_same_log(log, before)
    assert (X != X_before).nnz == 0


@pytest.mark.parametrize(
    "params, log_update, match",
    [
        ({"user_col": "u", "time_col": "t"}, {}, r"missing column\(s\) \['u', 't'\]"),
        ({}, {"user": np.array(["a", None, "b", "a", "c"], dtype=object)}, "missing value"),
        ({}, {"item": np.array([1.0, np.nan, 2.0, 3.0, 4.0])}, "missing value"),
        ({"time_col": "time"}, {"time": np.array(["x", "y", "z", "u", "v"])}, "numeric"),
        ({"time_col": "time"}, {"time": np.array([1.0, np.nan, 2, 3, 4])}, "missing or inf"),
        ({"values": "nope"}, {}, "values must be one of"),
        ({"values": "timestamp"}, {}, "needs time_col"),
        ({"values": "weight"}, {}, "needs weight_col"),
        ({"values": "weight", "weight_col": "w"}, {"w": -np.ones(5)}, "negative"),
        ({"time_col": "time", "values": "timestamp"}, {"time": np.zeros(5)}, "> 0"),
        ({}, {"item": np.arange(4)}, "different lengths"),
    ],
)
def test_clear_errors(params, log_update, match):
    log = {**_log(), **log_update}
    with pytest.raises(ValueError, match=match):
        InteractionEncoder(**params).fit(log)


def test_empty_log_and_bad_container():
    empty = {"user": np.array([], dtype=int), "item": np.array([], dtype=int)}
    with pytest.raises(ValueError, match="empty"):
        InteractionEncoder().fit(empty)
    with pytest.raises(ValueError, match="DataFrame or a mapping"):
        InteractionEncoder().fit(np.ones((3, 2)))
    enc = InteractionEncoder().fit(_log())
    assert enc.transform(empty).nnz == 0


def test_incomparable_id_types():
    enc = InteractionEncoder().fit(_log())
    bad = {"user": np.array(["a"]), "item": np.array(["10"])}
    with pytest.raises(ValueError, match="cannot be compared"):
        enc.transform(bad)


def test_sklearn_api():
    enc = InteractionEncoder(user_col="u", time_col="t")
    assert enc.get_params()["user_col"] == "u"
    cloned = clone(enc)
    assert cloned.get_params() == enc.get_params()
    fitted = InteractionEncoder(time_col="time").fit(_log())
    again = pickle.loads(pickle.dumps(fitted))
    assert (again.transform(_log()) != fitted.transform(_log())).nnz == 0
    np.testing.assert_array_equal(fitted.get_feature_names_out(), ["10", "20", "30"])


# -- pandas (optional) -------------------------------------------------------------------------


def test_dataframe_input_and_output():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(_log())
    df["user"] = df["user"].astype("category")
    df_before = df.copy()
    enc = InteractionEncoder(time_col="time")
    X = enc.fit_transform(df)
    np.testing.assert_array_equal(X.toarray(), [[2, 1, 3], [1, 0, 0], [0, 1, 0]])
    pd.testing.assert_frame_equal(df, df_before)
    back = enc.inverse_transform(X)
    assert isinstance(back, pd.DataFrame)
    assert list(back.columns) == ["user", "item", "time"]
    assert (enc.transform(back) != X).nnz == 0


def test_dataframe_nullable_and_string_dtypes():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "user": pd.array([3, 1, 3], dtype="Int64"),
            "item": pd.Series(["x", "y", "x"], dtype="string"),
            "time": pd.array([2.0, 1.0, 1.0], dtype="Float64"),
        }
    )
    enc = InteractionEncoder(time_col="time")
    X = enc.fit_transform(df)
    np.testing.assert_array_equal(enc.users_, [1, 3])
    np.testing.assert_array_equal(enc.items_, ["x", "y"])
    np.testing.assert_array_equal(X.toarray(), [[0, 1], [1, 0]])
    assert (enc.transform(df) != X).nnz == 0
    df.loc[1, "time"] = pd.NA
    with pytest.raises(ValueError, match="missing"):
        enc.transform(df)


def test_dataframe_missing_ids_and_tz_aware_times():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "user": pd.array(["a", "b", None], dtype="string"),
            "item": [1, 2, 3],
            "time": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
        }
    )
    with pytest.raises(ValueError, match="missing value"):
        InteractionEncoder(time_col="time").fit(df)
    df = df.dropna()
    T = InteractionEncoder(time_col="time", values="timestamp").fit_transform(df)
    assert T[0, 0] == pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    local = df.assign(time=df["time"].dt.tz_convert("Europe/Paris"))
    T2 = InteractionEncoder(time_col="time", values="timestamp").fit_transform(local)
    assert (T2 != T).nnz == 0


def test_works_without_pandas():
    # sklearn imports pandas when it is installed, so hide it entirely in a fresh interpreter.
    code = """
import sys
sys.modules["pandas"] = None  # any "import pandas" now raises ImportError
import numpy as np
from skrec.preprocessing import InteractionEncoder
import skrec.datasets
log = {"user": np.array([1, 1, 2]), "item": np.array([5, 6, 5]), "t": np.array([2, 1, 3])}
enc = InteractionEncoder(time_col="t")
X = enc.fit_transform(log)
back = enc.inverse_transform(X)
assert isinstance(back, dict), type(back)
assert (enc.transform(back) != X).nnz == 0
"""
    subprocess.run([sys.executable, "-c", code], check=True)


# -- ids are matched exactly, whatever their dtype -------------------------------------------


def _encoder(items, users=None):
    items = list(items) if not isinstance(items, np.ndarray) else items
    users = np.zeros(len(items), dtype=np.int64) if users is None else users
    return InteractionEncoder().fit({"user": users, "item": items})


BIG = 2**62  # int64 and uint64 ids around here were rounded through float64


@pytest.mark.parametrize("vocab, query, expected", [
    # uint64 ids looked up with int64 ids, negative ones and Python ints of every size
    (np.array([BIG, BIG + 1, BIG + 2, 5], dtype=np.uint64),
     np.array([BIG + 1, 5, -1, BIG + 3], dtype=np.int64), [2, 0, -1, -1]),
    (np.array([BIG, BIG + 1, BIG + 2, 5], dtype=np.uint64),
     [BIG + 1, -1, 2**64, 2**64 - 1], [2, -1, -1, -1]),
    (np.array([2**63 + 1, 2**63 + 2, 2**64 - 1, 3], dtype=np.uint64),
     [2**63 + 1, 2**63, 2**64 - 1, 3], [1, -1, 3, 0]),
    # int64 ids looked up with uint64 ids beyond int64 and with floats
    (np.array([-5, BIG, BIG + 1], dtype=np.int64),
     np.array([BIG + 1, 2**63 + BIG + 1], dtype=np.uint64), [2, -1]),
    (np.array([-5, BIG, BIG + 1], dtype=np.int64),
     np.array([-5.0, 2.0**62, 2.5, np.inf, 2.0**63]), [0, 1, -1, -1, -1]),
    # float ids looked up with integers that float64 cannot hold exactly
    (np.array([1.5, 2.0**53]), np.array([2**53, 2**53 + 1], dtype=np.int64), [1, -1]),
    # strings of other widths; numbers in an object array of strings match nothing
    (np.array(["a", "bb"]), np.array(["bb", "bbb", "a"]), [1, -1, 0]),
    (np.array(["a", "bb"]), np.array(["a", 1, None], dtype=object), [0, -1, -1]),
    # longer strings in an object array are not cut to the vocabulary's width
    (np.array(["abc", "x"]), np.array(["abcd", "x", 5], dtype=object), [-1, 1, -1]),
    # mixed object ids (ints beyond 64 bits, strings): numbers first, then strings
    (np.array([2**70, "b", 1, "a"], dtype=object),
     np.array(["a", 2**70, 1, "zz", 2**70 + 1, [1]], dtype=object), [2, 1, 0, -1, -1, -1]),
    # a list mixing them is not turned into strings by numpy ([1, "a"] -> ["1", "a"])
    (np.array([1, "a"], dtype=object), [1, "a", "1"], [0, 1, -1]),
])
def test_ids_are_matched_exactly_whatever_their_dtype(vocab, query, expected):
    enc = _encoder(vocab)
    got = enc.transform_items(query, handle_unknown="ignore")
    assert got.tolist() == expected
    found = got >= 0
    query_list = list(np.asarray(query, dtype=object).tolist())
    back = enc.inverse_transform_items(got[found]).tolist()
    assert back == [q for q, f in zip(query_list, found) if f]


def test_log_columns_of_large_integers_keep_their_exact_values():
    # a dict of lists: np.asarray would round 2**63 + 1 to a float
    log = {"user": [2**63 + 1, 2**63 + 2, 7], "item": [2**63 + 3, 2**63 + 4, 2**63 + 3]}
    enc = InteractionEncoder()
    X = enc.fit_transform(log)
    assert enc.users_.dtype == np.uint64 and enc.items_.dtype == np.uint64
    assert enc.users_.tolist() == [7, 2**63 + 1, 2**63 + 2]
    assert enc.items_.tolist() == [2**63 + 3, 2**63 + 4]
    np.testing.assert_array_equal(X.toarray(), [[1, 0], [1, 0], [0, 1]])
    assert enc.transform_users([2**63 + 2]).tolist() == [2]
    # a list of ints and strings stays ints and strings
    enc = InteractionEncoder().fit({"user": [1, 2], "item": [1, "1"]})
    assert enc.items_.tolist() == [1, "1"] and enc.n_items_ == 2
    # object columns of numpy scalars of both signs: exact Python ints
    mixed = np.array([np.int64(-1), np.uint64(2**64 - 1), np.int64(-1)], dtype=object)
    enc = InteractionEncoder().fit({"user": mixed, "item": [1, 2, 3]})
    assert enc.users_.tolist() == [-1, 2**64 - 1]
    assert enc.transform_users(np.array([2**64 - 1], dtype=np.uint64)).tolist() == [1]


def test_mixed_type_ids_are_encoded_and_served():
    from skrec import EASERecommender

    items = np.array(["sku-1", 42, "sku-2", 42, 2**70], dtype=object)
    log = {"user": np.array(["u", "u", "v", "w", "w"]), "item": items}
    enc = InteractionEncoder()
    X = enc.fit_transform(log)
    assert enc.items_.tolist() == [42, 2**70, "sku-1", "sku-2"]
    model = EASERecommender(l2=1.0).fit(X)
    recs = enc.recommend(model, log, users=["u"], k=2, as_frame=False)
    assert set(recs["item"].tolist()) <= {2**70, "sku-2"}
    bad = np.empty(2, dtype=object)
    bad[:] = [[1], "a"]  # a list is no id
    with pytest.raises(ValueError, match="could not be sorted"):
        InteractionEncoder().fit({"user": [1, 2], "item": bad})
    with pytest.raises(ValueError, match="got an unhashable list"):
        enc.transform(log, users=bad)


def test_the_dtype_error_names_each_side_with_its_dtype():
    from skrec import EASERecommender

    log = {"user": np.array([1, 1, 2]), "item": np.array([1, 2, 3])}
    enc = InteractionEncoder()
    model = EASERecommender(l2=1.0).fit(enc.fit_transform(log))
    with pytest.raises(ValueError, match=r"log's user ids \(column 'user'\) \(dtype int64\) "
                                         r"cannot be compared with the ids given in users= "
                                         r"\(dtype <U"):
        enc.recommend(model, log, users=["a"])
    with pytest.raises(ValueError, match=r"item ids \(dtype <U1\) cannot be compared with the "
                                         r"item ids seen at fit time \(dtype int64\)"):
        enc.transform_items(["x"])
    with pytest.raises(ValueError, match=r"log's user ids \(column 'user'\) \(dtype <U1\) "
                                         r"cannot be compared with the user ids seen at fit time "
                                         r"\(dtype int64\)"):
        enc.transform({"user": np.array(["a"]), "item": np.array([1])})


# -- a time column that was not named ----------------------------------------------------------


def test_an_unnamed_time_column_warns_and_says_whether_rows_follow_it():
    log = {  # user 1's rows are out of time order, user 2's are in order
        "user": np.array([1, 1, 2, 2]),
        "item": np.array([10, 20, 30, 40]),
        "timestamp": np.array([9, 3, 1, 2]),
    }
    with pytest.warns(UserWarning, match=r"column 'timestamp' that looks like event times \(by "
                                         r"its name\).*for 1 of 2 user\(s\) the rows are not in "
                                         r"'timestamp' order.*time_col='timestamp'") as rec:
        X = InteractionEncoder().fit_transform(log)
    assert rec[0].filename == __file__  # points at the caller's line
    np.testing.assert_array_equal(X.toarray()[0], [1, 2, 0, 0])  # still row order, as documented
    sorted_log = {**log, "timestamp": np.array([1, 3, 1, 2])}
    with pytest.warns(UserWarning, match="the rows are in 'timestamp' order here"):
        InteractionEncoder().fit(sorted_log)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        InteractionEncoder(time_col="timestamp").fit(log)  # named: no warning
        InteractionEncoder(values="ones").fit(log)  # order does not matter
        InteractionEncoder().fit({"user": [1, 2], "item": [3, 4], "rating": [5, 1],
                                  "title": ["a", "b"], "category": [1, 1]})


@pytest.mark.parametrize("name", ["ts", "time", "event_time", "createdAt", "created_at",
                                  "Date", "unix_timestamp", "watchTime"])
def test_time_like_column_names(name):
    with pytest.warns(UserWarning, match=f"column '{name}' that looks like event times"):
        InteractionEncoder().fit({"user": [1, 1], "item": [1, 2], name: [2, 1]})


def test_a_datetime_column_warns_whatever_its_name():
    pd = pytest.importorskip("pandas")
    log = pd.DataFrame({"user": ["a", "a"], "item": [1, 2],
                        "logged": pd.to_datetime(["2024-01-02", "2024-01-01"], utc=True)})
    with pytest.warns(UserWarning, match=r"'logged' that looks like event times \(dtype "
                                         r"datetime64.*for 1 of 1 user"):
        InteractionEncoder().fit(log)
