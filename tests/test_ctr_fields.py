"""FieldEncoder: the input layer of click prediction (frames, code arrays, sparse one-hot)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from skrec.ctr import FieldBatch, FieldEncoder, hash_values
from skrec.ctr._fields import MISSING, N_RESERVED, UNKNOWN

pd = pytest.importorskip("pandas")


def _frame(n: int = 8) -> pd.DataFrame:
    return pd.DataFrame({
        "app": ["a", "b", "a", "c", "a", "b", None, "a"][:n],
        "hour": np.array([3, 14, 3, 3, 9, 14, 3, 9][:n]),
        "site": pd.Categorical(["x", "y", "x", "x", "y", "x", "x", "y"][:n]),
        "paid": [True, False, True, True, False, False, True, False][:n],
        "price": [0.0, 1.5, 2.0, np.nan, 1.0, 0.5, 2.5, 3.0][:n],
        "tags": [["t1", "t2"], ["t2"], [], None, ["t3"], ["t1"], ["t2", "t2"], ["t1"]][:n],
    })


def _ids_of(enc: FieldEncoder, name: str, value) -> int:
    i = next(k for k, f in enumerate(enc.fields_) if f["name"] == name)
    f = enc.fields_[i]
    return f["offset"] + N_RESERVED + int(np.flatnonzero(enc.categories_[i] == value)[0])


def test_frame_fields_kinds_and_ids():
    X = _frame()
    enc = FieldEncoder().fit(X)
    kinds = [(f["name"], f["kind"]) for f in enc.fields_]
    assert kinds == [("app", "categorical"), ("hour", "categorical"), ("site", "categorical"),
                     ("paid", "categorical"), ("tags", "multi"), ("price", "numeric")]
    b = enc.transform(X)
    assert isinstance(b, FieldBatch) and len(b) == 8
    assert b.ids.shape == (8, 4) and b.ids.dtype == np.int64
    assert b.ids[0, 0] == _ids_of(enc, "app", "a") and b.ids[1, 0] == _ids_of(enc, "app", "b")
    assert b.ids[6, 0] == enc.fields_[0]["offset"] + MISSING  # None -> missing id
    assert b.ids[0, 1] == _ids_of(enc, "hour", 3)
    # the blocks of the table are disjoint and cover n_ids_
    ends = [f["offset"] + f["size"] for f in enc.fields_ if f["kind"] != "numeric"]
    assert ends[-1] == enc.n_ids_
    assert (b.ids.max(axis=0) < np.asarray(ends[:4])).all()
    # numeric: standardised, NaN -> the training mean (0)
    v = X["price"].to_numpy()
    mu, sd = np.nanmean(v), np.nanstd(v)
    np.testing.assert_allclose(b.numeric[:, 0], np.nan_to_num((v - mu) / sd), rtol=1e-6)
    assert b.numeric[3, 0] == 0.0
    # bags: one CSR row per (sample, multi field); weights 1; missing cell -> empty bag
    assert b.n_multi == 1 and b.bags.shape == (8, enc.n_ids_)
    assert b.bags[0].nnz == 2 and b.bags[2].nnz == 0 and b.bags[3].nnz == 0
    assert b.bags[6].nnz == 2  # a repeated tag counts twice
    assert sorted(b.bags[0].indices) == sorted([_ids_of(enc, "tags", "t1"),
                                                _ids_of(enc, "tags", "t2")])


def test_unknown_and_rare_categories_share_the_unknown_id():
    X = _frame()
    enc = FieldEncoder(min_frequency=2).fit(X)
    app = enc.fields_[0]
    assert list(enc.categories_[0]) == ["a", "b"]  # "c" seen once: rare
    new = X.copy()
    new.loc[0, "app"] = "never seen"
    new.loc[1, "hour"] = 23
    new.at[4, "tags"] = ["t3", "zzz"]
    b = enc.transform(new)
    assert b.ids[0, 0] == app["offset"] + UNKNOWN
    assert b.ids[3, 0] == app["offset"] + UNKNOWN  # rare "c"
    assert b.ids[1, 1] == enc.fields_[1]["offset"] + UNKNOWN
    tags = enc.fields_[4]
    assert list(b.bags[4].indices) == [tags["offset"] + UNKNOWN] * 2  # t3 rare, zzz unknown


def test_largest_fields():
    enc = FieldEncoder().fit(_frame())
    # categorical fields: app (3 values), hour (3), site (2), paid (2)
    assert enc.largest_fields(2) == [0, 1]
    assert enc.largest_fields(10) == [0, 1, 2, 3]


def test_columns_matched_by_name_and_bad_columns_rejected():
    X = _frame()
    enc = FieldEncoder().fit(X)
    ref = enc.transform(X)
    shuffled = enc.transform(X[list(reversed(X.columns))])
    np.testing.assert_array_equal(ref.ids, shuffled.ids)
    np.testing.assert_array_equal(ref.numeric, shuffled.numeric)
    with pytest.raises(ValueError, match="extra.*not seen at fit time"):
        enc.transform(X.assign(extra=1))
    with pytest.raises(ValueError, match="lacks the column.*hour"):
        enc.transform(X.drop(columns="hour"))
    with pytest.raises(ValueError, match="'hour' holds string values.*number"):
        enc.transform(X.assign(hour=X["hour"].astype(str)))
    with pytest.raises(ValueError, match="numeric column 'price'"):
        enc.transform(X.assign(price=["x"] * 8))
    # an integer id column read as float because of a NaN: accepted, NaN -> missing
    with_nan = X.assign(hour=X["hour"].astype(float))
    with_nan.loc[2, "hour"] = np.nan
    b = enc.transform(with_nan)
    assert b.ids[2, 1] == enc.fields_[1]["offset"] + MISSING
    np.testing.assert_array_equal(np.delete(b.ids[:, 1], 2), np.delete(ref.ids[:, 1], 2))


def test_numeric_nan_and_inf():
    X = _frame()
    with pytest.raises(ValueError, match="price.*NaN"):
        FieldEncoder(numeric_nan="error").fit(X)
    with pytest.raises(ValueError, match="infinite"):
        FieldEncoder().fit(X.assign(price=[np.inf] + [1.0] * 7))
    enc = FieldEncoder(numeric_scaling="log").fit(X)
    v = X["price"].to_numpy()
    lv = np.log1p(v)
    np.testing.assert_allclose(enc.transform(X).numeric[:, 0],
                               np.nan_to_num((lv - np.nanmean(lv)) / np.nanstd(lv)), rtol=1e-5)


def test_numeric_nan_indicator_adds_a_missing_field_per_numeric_column_with_nan():
    import io

    import skrec

    X = _frame().drop(columns="tags").assign(clean=np.arange(8.0) / 2)
    enc = FieldEncoder(numeric_nan="indicator").fit(X)
    names = [(f["name"], f["kind"]) for f in enc.fields_]
    # price held NaN at fit: its indicator is a categorical field; clean did not: none
    assert names[:5] == [("app", "categorical"), ("hour", "categorical"),
                         ("site", "categorical"), ("paid", "categorical"),
                         ("price_missing", "categorical")]
    assert names[5:] == [("price", "numeric"), ("clean", "numeric")]
    b = enc.transform(X)
    nan = X["price"].isna().to_numpy()
    flag = b.ids[:, 4]
    assert len(set(flag[nan])) == 1 and len(set(flag[~nan])) == 1 and flag[3] != flag[0]
    ref = FieldEncoder().fit(X).transform(X)  # the value itself is still the mean
    np.testing.assert_array_equal(b.numeric, ref.numeric)
    np.testing.assert_array_equal(b.ids[:, :4], ref.ids)
    # a NaN in a column without an indicator is the mean; requests read the indicator too
    new = enc.transform(X[:1].assign(price=np.nan, clean=np.nan))
    assert new.ids[0, 4] == flag[3] and new.numeric[0, 1] == 0.0
    req = enc.transform_request({"app": "a", "price": np.nan}, X.drop(columns=["app", "price"]))
    assert (req.ids[:, 4] == flag[3]).all()
    codes = FieldEncoder(numeric_nan="indicator", numeric=[1]).fit(
        X[["hour", "price"]].to_numpy())
    assert codes.transform_request({1: np.nan}, X[["hour"]].to_numpy()).ids.shape == (8, 2)
    buf = io.BytesIO()
    skrec.save(enc, buf)
    np.testing.assert_array_equal(skrec.load(io.BytesIO(buf.getvalue())).transform(X).ids,
                                  b.ids)
    with pytest.raises(ValueError, match="numeric_nan must be one of"):
        FieldEncoder(numeric_nan="zero").fit(X)


def test_input_is_not_modified():
    X = _frame()
    before = X.copy(deep=True)
    tags_before = [None if t is None else list(t) for t in X["tags"]]
    enc = FieldEncoder(min_frequency=2, hash_buckets=3, hashed=["hour"]).fit(X)
    enc.transform(X)
    pd.testing.assert_frame_equal(X, before)
    assert [None if t is None else list(t) for t in X["tags"]] == tags_before
    codes = np.array([[1, 2], [3, 4]])
    codes_before = codes.copy()
    FieldEncoder().fit(codes).transform(codes)
    np.testing.assert_array_equal(codes, codes_before)


def test_empty_input():
    X = _frame()
    enc = FieldEncoder().fit(X)
    b = enc.transform(X.iloc[:0])
    assert len(b) == 0 and b.ids.shape == (0, 4) and b.numeric.shape == (0, 1)
    assert b.bags.shape[0] == 0
    with pytest.raises(ValueError, match="no row"):
        FieldEncoder().fit(X.iloc[:0])


def test_hashing_bounds_the_table_and_is_deterministic():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"big": rng.integers(0, 10**9, 5000), "small": rng.integers(0, 5, 5000),
                      "text": rng.integers(0, 10**6, 5000).astype(str)})
    enc = FieldEncoder(hash_buckets=100).fit(X)
    hashed = {f["name"]: f["hashed"] for f in enc.fields_}
    assert hashed == {"big": True, "small": False, "text": True}
    assert enc.n_ids_ == 2 * (N_RESERVED + 100) + N_RESERVED + 5
    b = enc.transform(X)
    big = enc.fields_[0]
    assert (b.ids[:, 0] >= big["offset"] + N_RESERVED).all()
    assert (b.ids[:, 0] < big["offset"] + big["size"]).all()
    # unseen values get a bucket, not the unknown id; equal values, equal buckets
    new = X.iloc[:3].assign(big=[-1, 7, 7])
    ids = enc.transform(new).ids[:, 0]
    assert ids[1] == ids[2] and (ids >= big["offset"] + N_RESERVED).all()
    # fixed values: the same buckets on any machine and run
    np.testing.assert_array_equal(hash_values(np.array([0, 1, 2, 10**12]), 1000),
                                  hash_values(np.array([0, 1, 2, 10**12]), 1000))
    assert hash_values(np.array([5]), 2**31)[0] != hash_values(np.array(["5"]), 2**31)[0]
    np.testing.assert_array_equal(hash_values(np.array([3.0, 4.0]), 97),
                                  hash_values(np.array([3, 4]), 97))
    spread = np.bincount(hash_values(np.arange(100_000), 10), minlength=10)
    assert spread.min() > 9_000  # about uniform
    enc_all = FieldEncoder(hash_buckets=1000, hashed="all").fit(X)
    assert all(f["hashed"] for f in enc_all.fields_)


def test_code_array_input():
    codes = np.array([[0, 5], [1, 5], [0, 7], [2, 9]])
    enc = FieldEncoder().fit(codes)
    assert enc.input_kind_ == "array" and enc.n_categorical_ == 2
    b = enc.transform(np.array([[1, 7], [3, 5]]))
    assert b.ids[0, 0] == N_RESERVED + 1 and b.ids[1, 0] == UNKNOWN
    # an OrdinalEncoder's float output (NaN for missing) is read as codes
    from sklearn.preprocessing import OrdinalEncoder

    raw = np.array([["a", "x"], ["b", "y"], ["a", np.nan]], dtype=object)
    ordinal = OrdinalEncoder(encoded_missing_value=np.nan).fit_transform(raw)
    enc = FieldEncoder().fit(ordinal)
    b = enc.transform(ordinal)
    assert b.ids[2, 1] == enc.fields_[1]["offset"] + MISSING
    assert b.ids[0, 0] == b.ids[2, 0] != b.ids[1, 0]
    # a column of non-integral values is a measurement: numeric; integral floats are codes
    enc = FieldEncoder().fit(np.array([[0.5, 1.0], [1.0, 2.0]]))
    assert [f["kind"] for f in enc.fields_] == ["categorical", "numeric"]
    assert enc.fields_[1]["column"] == 0
    with pytest.raises(ValueError, match="non-integer values.*numeric"):
        FieldEncoder(categorical=[0]).fit(np.array([[0.5, 1.0], [1.0, 2.0]]))
    enc = FieldEncoder(numeric=[0]).fit(np.array([[0.5, 1.0], [1.5, 2.0]]))
    assert [f["kind"] for f in enc.fields_] == ["categorical", "numeric"]
    with pytest.raises(ValueError, match="3 columns.*2"):
        enc.transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="frame input.*array"):
        enc.transform(pd.DataFrame({"a": [1.0], "b": [2.0]}))


def test_sparse_input_from_a_onehot_encoder_matches_the_code_array():
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, size=(50, 3))
    ohe = OneHotEncoder().fit(codes)
    Xs = ohe.transform(codes)
    enc = FieldEncoder(field_layout=ohe).fit(Xs)
    assert enc.input_kind_ == "sparse" and enc.n_categorical_ == 3 and enc.n_multi_ == 0
    b = enc.transform(Xs)
    ref = FieldEncoder().fit(codes).transform(codes)
    np.testing.assert_array_equal(b.ids, ref.ids)  # same layout: columns in sorted order
    # an unknown category gives an all-zero field -> the missing id
    ohe_ignore = OneHotEncoder(handle_unknown="ignore").fit(codes)
    enc = FieldEncoder(field_layout=ohe_ignore).fit(ohe_ignore.transform(codes))
    b = enc.transform(ohe_ignore.transform(np.array([[9, 0, 0]])))
    assert b.ids[0, 0] == MISSING
    with pytest.raises(ValueError, match="field_layout"):
        FieldEncoder().fit(Xs)


def test_sparse_input_with_ranges_multi_hot_and_values():
    # field 0: one-hot over 3 columns; field 1: multi-hot over 4 columns; field 2: a real value
    dense = np.array([[1, 0, 0, 1, 1, 0, 0, 0.5],
                      [0, 1, 0, 0, 0, 0, 1, 2.0],
                      [0, 0, 1, 0, 0, 0, 0, 0.0]])
    X = sp.csr_matrix(dense)
    enc = FieldEncoder(field_layout=[(0, 3), (3, 7), (7, 8)]).fit(X)
    assert [f["kind"] for f in enc.fields_] == ["categorical", "multi", "multi"]
    b = enc.transform(X)
    assert b.n_multi == 2 and b.bags.shape == (6, enc.n_ids_)
    # the wide input x is recovered exactly: ids and bag entries with their weights
    assert b.bags[0].nnz == 2 and b.bags[2].nnz == 1 and b.bags[4].nnz == 0
    np.testing.assert_allclose(b.bags[1].data, [0.5])
    np.testing.assert_allclose(b.bags[3].data, [2.0])
    assert b.bags[5].nnz == 0  # the zero value is no entry
    same = FieldEncoder(field_layout=[3, 4, 1]).fit(X).transform(X)
    np.testing.assert_array_equal(same.ids, b.ids)
    with pytest.raises(ValueError, match="overlaps"):
        FieldEncoder(field_layout=[(0, 3), (2, 8)]).fit(X)
    with pytest.raises(ValueError, match="belong to no field"):
        FieldEncoder(field_layout=[(0, 3), (3, 7)]).fit(X)
    bad = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0, 0, 1.0]]))
    with pytest.raises(ValueError, match="one-hot at fit time"):
        enc.transform(bad)


def test_sparse_input_from_a_column_transformer():
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = _frame()[["app", "hour", "price"]].fillna({"app": "none", "price": 0.0})
    ct = ColumnTransformer([("cat", OneHotEncoder(), ["app", "hour"]),
                            ("num", StandardScaler(), ["price"])],
                           sparse_threshold=1.0).fit(X)
    Xs = sp.csr_matrix(ct.transform(X))
    enc = FieldEncoder(field_layout=ct).fit(Xs)
    names = [f["name"] for f in enc.fields_]
    assert names == ["cat__app", "cat__hour", "num__0"]
    assert [f["kind"] for f in enc.fields_] == ["categorical", "categorical", "multi"]
    b = enc.transform(Xs)
    assert b.ids.shape == (8, 2)


def test_batch_take_and_to_torch():
    torch = pytest.importorskip("torch")
    from skrec.nn.ctr import gather_bags

    X = _frame()
    b = FieldEncoder().fit(X).transform(X)
    rows = np.array([6, 0, 3, 3])
    sub = b.take(rows)
    np.testing.assert_array_equal(sub.ids, b.ids[rows])
    np.testing.assert_array_equal(sub.bags.toarray(), b.bags.toarray()[rows])
    t = b.to_torch()
    ids, offsets, weights = gather_bags(t["bag_ids"], t["bag_offsets"], t["bag_weights"],
                                        torch.as_tensor(rows), b.n_multi)
    ts = sub.to_torch()
    assert torch.equal(ids, ts["bag_ids"]) and torch.equal(offsets, ts["bag_offsets"])
    assert torch.equal(weights, ts["bag_weights"])
    mask = np.zeros(8, dtype=bool)
    mask[[1, 2]] = True
    np.testing.assert_array_equal(b.take(mask).ids, b.ids[[1, 2]])


def test_fitted_state_is_plain_data_and_survives_skrec_save(tmp_path):
    import skrec

    X = _frame()
    enc = FieldEncoder(min_frequency=2).fit(X)
    for key, value in vars(enc).items():
        if key.startswith("_"):
            continue
        assert isinstance(value, (int, float, str, list, dict, tuple, np.ndarray, type(None))), key
    path = tmp_path / "enc.skrec"
    skrec.save(enc, path)
    loaded = skrec.load(path)
    a, b = enc.transform(X), loaded.transform(X)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.numeric, b.numeric)
    np.testing.assert_array_equal(a.bags.toarray(), b.bags.toarray())


def test_parameter_validation():
    X = _frame()
    with pytest.raises(ValueError, match="min_frequency"):
        FieldEncoder(min_frequency=0).fit(X)
    with pytest.raises(ValueError, match="hash_buckets"):
        FieldEncoder(hash_buckets=0).fit(X)
    with pytest.raises(ValueError, match="numeric_scaling"):
        FieldEncoder(numeric_scaling="minmax").fit(X)
    with pytest.raises(ValueError, match="both"):
        FieldEncoder(numeric=["hour"], categorical=["hour"]).fit(X)
    with pytest.raises(ValueError, match="'nope'"):
        FieldEncoder(numeric=["nope"]).fit(X)
    with pytest.raises(ValueError, match="dates"):
        FieldEncoder().fit(pd.DataFrame({"t": pd.to_datetime(["2024-01-01"])}))
    enc = FieldEncoder(categorical=["price"], numeric=["hour"])
    with pytest.raises(ValueError, match="non-integer"):
        enc.fit(X)
    enc = FieldEncoder(numeric=["hour"]).fit(X)
    assert [f["kind"] for f in enc.fields_][-2:] == ["numeric", "numeric"]


def test_negative_sampling_correction_restores_the_click_rate():
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression

    from skrec.ctr import negative_sampling_correction, reliability_curve

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200_000, 1))
    y = (rng.random(200_000) < expit(2 * x[:, 0] - 3.5)).astype(int)
    keep = (y == 1) | (rng.random(y.size) < 0.1)  # negatives kept at r = 0.1
    model = LogisticRegression().fit(x[keep], y[keep])
    raw = expit(model.decision_function(x))
    fixed = expit(negative_sampling_correction(model.decision_function(x), 0.1))
    assert raw.mean() > 3 * y.mean()  # trained on subsampled negatives: far too high
    assert abs(fixed.mean() - y.mean()) < 0.1 * y.mean()
    curve = reliability_curve(y, fixed, n_bins=10)
    assert curve["ece"] < 0.01 and curve["count"].sum() == y.size
    assert reliability_curve(y, raw)["ece"] > 5 * curve["ece"]
    with pytest.raises(ValueError, match="rate"):
        negative_sampling_correction([0.0], 0.0)


def test_category_lookup_without_pandas_is_exact():
    from skrec.ctr._values import _Lookup

    lookup = _Lookup(np.array(["b", "a", "zeta", "m"], dtype=object))
    values = np.array(["m", "q", "a", "zeta", "b", ""], dtype=object)
    expected = np.array([3, -1, 1, 2, 0, -1])
    np.testing.assert_array_equal(lookup._searched(values), expected)
    np.testing.assert_array_equal(lookup(values), expected)  # the pandas path agrees


def _same_batch(a: FieldBatch, b: FieldBatch) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.numeric, b.numeric)
    assert (a.bags is None) == (b.bags is None)
    if a.bags is not None:
        assert (a.bags != b.bags).nnz == 0


def test_transform_request_equals_the_full_rows():
    X = _frame()
    enc = FieldEncoder().fit(X)
    request = {"app": "b", "hour": 14, "tags": ["t1", "t2"], "price": 1.5}
    cands = X[["site", "paid"]].iloc[:5]
    full = cands.assign(app="b", hour=14, price=1.5, tags=[["t1", "t2"]] * 5)
    _same_batch(enc.transform_request(request, cands), enc.transform(full))
    one_row = pd.DataFrame({k: [v] for k, v in request.items() if k != "tags"})
    one_row["tags"] = [["t1", "t2"]]
    _same_batch(enc.transform_request(one_row, cands), enc.transform(full))
    assert len(enc.transform_request(request, cands.iloc[:0])) == 0
    # missing and numpy-typed values read as the full rows' do (no one-row frame is built)
    odd = {"app": None, "hour": np.int32(14), "tags": [], "price": np.nan}
    full = cands.assign(app=None, hour=14, price=np.nan, tags=[[]] * 5)
    _same_batch(enc.transform_request(odd, cands), enc.transform(full))
    with pytest.raises(ValueError, match="dates"):  # a date goes through pandas' checks
        enc.transform_request({**request, "hour": np.datetime64("2024-01-01")}, cands)
    with pytest.raises(ValueError, match="both"):
        enc.transform_request({**request, "site": "x"}, cands)
    with pytest.raises(ValueError, match="neither.*'paid'"):
        enc.transform_request(request, cands[["site"]])
    with pytest.raises(ValueError, match="not seen at fit"):
        enc.transform_request({**request, "nope": 1}, cands)
    # an array model: the request by column index, the candidates' columns in order
    codes = np.array([[1, 7, 3], [2, 7, 4], [1, 5, 3]])
    enc = FieldEncoder().fit(codes)
    _same_batch(enc.transform_request({1: 7}, codes[:, [0, 2]]),
                enc.transform(np.column_stack([codes[:, 0], np.full(3, 7), codes[:, 2]])))
    with pytest.raises(ValueError, match="other 2"):
        enc.transform_request({1: 7}, codes)
    # a sparse model: the request's row is added to every candidate row
    onehot = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]]))
    enc = FieldEncoder(field_layout=[2, 2]).fit(onehot)
    req = sp.csr_matrix(np.array([[0, 0, 1, 0]]))
    cand = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 0, 0]]))
    _same_batch(enc.transform_request(req, cand), enc.transform(onehot[:2]))
