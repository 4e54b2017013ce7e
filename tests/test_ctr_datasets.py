"""Click-prediction data: the Frappe_x1 loader and the synthetic Criteo-like generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skrec.datasets import iter_ctr_chunks, load_frappe, make_ctr

FRAPPE = Path(__file__).resolve().parents[2] / "shared" / "data" / "frappe"
HEADER = "label,user,item,daytime,weekday,isweekend,homework,cost,weather,country,city\n"


def test_make_ctr_shape_rate_and_determinism():
    d = make_ctr(20_000, random_state=0)
    assert d.X.shape == (20_000, 39) and d.X.dtype == np.float64
    assert d.categorical == list(range(26)) and d.numeric == list(range(26, 39))
    assert 0.02 < d.y.mean() < 0.04
    codes = d.X[:, :26]
    assert (codes == np.round(codes)).all() and codes.min() >= 0
    assert np.isnan(d.X[:, 26:]).any()  # numeric fields have missing values
    again = make_ctr(20_000, random_state=0)
    np.testing.assert_array_equal(again.X, d.X)
    np.testing.assert_array_equal(again.y, d.y)
    other = make_ctr(20_000, random_state=1)
    assert not np.array_equal(other.y, d.y)
    # skewed cardinalities: a large field has many distinct values, a small one few
    distinct = [np.unique(codes[:, j]).size for j in range(26)]
    assert max(distinct) > 5_000 and min(distinct) <= 5


def test_make_ctr_signal_is_learnable():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import OneHotEncoder

    d = make_ctr(30_000, n_categorical=8, max_cardinality=100, click_rate=0.2, random_state=0)
    X = d.X[:, :8]
    enc = OneHotEncoder(handle_unknown="ignore").fit(X[:20_000])
    lr = LogisticRegression(max_iter=500).fit(enc.transform(X[:20_000]), d.y[:20_000])
    auc = roc_auc_score(d.y[20_000:], lr.predict_proba(enc.transform(X[20_000:]))[:, 1])
    assert auc > 0.7


def test_make_ctr_frame_and_validation():
    pd = pytest.importorskip("pandas")
    d = make_ctr(500, n_categorical=3, n_numeric=2, max_cardinality=50, as_frame=True,
                 random_state=0)
    assert isinstance(d.X, pd.DataFrame)
    assert list(d.X.columns) == ["C1", "C2", "C3", "I1", "I2"]
    assert d.X["C1"].dtype.kind == "i" and d.X["I1"].dtype.kind == "f"
    with pytest.raises(ValueError, match="click_rate"):
        make_ctr(10, click_rate=1.5)
    with pytest.raises(ValueError, match="n_samples"):
        make_ctr(0)


def test_stream_is_chunked_reproducible_and_of_one_world():
    chunks = list(iter_ctr_chunks(2_500, 1_000, n_categorical=4, n_numeric=1,
                                  max_cardinality=1000, random_state=3))
    assert [len(c.y) for c in chunks] == [1_000, 1_000, 500]
    again = list(iter_ctr_chunks(2_500, 1_000, n_categorical=4, n_numeric=1,
                                 max_cardinality=1000, random_state=3))
    for a, b in zip(chunks, again):
        np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(chunks[0].X, chunks[1].X[:1_000])
    # same world: the same cardinalities, so values of one chunk recur in the next
    shared = np.intersect1d(chunks[0].X[:, 0], chunks[1].X[:, 0])
    assert shared.size > 0


def _write_frappe(folder: Path, rows: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        (folder / f"{split}.csv").write_text(HEADER + rows)


def test_load_frappe_small_files(tmp_path):
    rows = ("1,0,957,5039,5046,5053,5055,5058,5061,5068,5149\n"
            "0,1,958,5040,5047,5054,5056,5059,5062,5069,5150\n")
    _write_frappe(tmp_path / "x1", rows)
    d = load_frappe(tmp_path, as_frame=False)
    assert d.X_train.shape == (2, 10) and d.y_test.tolist() == [1, 0]
    assert d.feature_names[:2] == ["user", "item"]
    pd = pytest.importorskip("pandas")
    f = load_frappe(tmp_path / "x1")
    assert isinstance(f.X_valid, pd.DataFrame) and list(f.X_valid.columns) == d.feature_names
    (tmp_path / "x1" / "test.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        load_frappe(tmp_path)
    (tmp_path / "x1" / "test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="test.csv"):
        load_frappe(tmp_path)
    _write_frappe(tmp_path / "bad", rows.replace("1,0,957", "2,0,957"))
    with pytest.raises(ValueError, match="labels"):
        load_frappe(tmp_path / "bad")


@pytest.mark.skipif(not (FRAPPE / "x1" / "train.csv").is_file(), reason="Frappe not present")
def test_load_frappe_real_files():
    d = load_frappe(FRAPPE, as_frame=False)
    assert d.X_train.shape == (202_027, 10)
    assert d.X_valid.shape == (57_722, 10) and d.X_test.shape == (28_860, 10)
    assert abs(d.y_train.mean() - 0.3346) < 1e-3
