"""CTRClassifier's click counts (``click_counts``): binning, leave-one-out at fit, full counts
at prediction, persistence, accumulation over ``partial_fit`` chunks, parameter checks."""

from __future__ import annotations

import io

import joblib
import numpy as np
import pytest
import torch

import skrec
from skrec import CTRClassifier
from skrec.ctr._counts import bin_counts, count_clicks, count_field_ids, pair_keys
from skrec.serving import export_program, graph_inputs

pd = pytest.importorskip("pandas")

#: Tiny and fast: no validation hold-out (every row is counted), few buckets.
FAST = dict(batch_size=64, max_iter=2, early_stopping=False, wide_cross_buckets=1 << 8,
            click_count_buckets=1 << 12, min_frequency=1, random_state=0, device="cpu",
            precision="fp32")


def _table(n: int = 400, seed: int = 0):
    rng = np.random.RandomState(seed)
    X = pd.DataFrame({"user": rng.randint(0, 8, n), "ad": rng.randint(0, 6, n),
                      "hour": rng.randint(0, 3, n)})
    y = np.array((X["user"] + X["ad"]) % 3 == 0, dtype=int)
    y[rng.rand(n) < 0.1] ^= 1
    return X, y


def test_bins_are_log_scale_and_capped():
    c = np.array([-1, 0, 1, 2, 3, 4, 7, 8, 63, 64, 10_000])
    np.testing.assert_array_equal(bin_counts(c, 8), [0, 0, 1, 2, 2, 3, 3, 4, 6, 7, 7])
    np.testing.assert_array_equal(bin_counts(c, 3), [0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2])


def test_leave_one_out_on_a_hand_made_table():
    # one pair, buckets 0 and 1: bucket 0 holds 3 clicks and 1 non-click, bucket 1 one click
    keys = np.array([[0], [0], [0], [0], [1]])
    y = np.array([1, 1, 1, 0, 1])
    counts = count_clicks(None, keys, y, n_buckets=4)
    assert counts.dtype == np.uint16 and counts.shape == (1, 2, 4)
    np.testing.assert_array_equal(counts[0], [[1, 0, 0, 0], [3, 1, 0, 0]])
    nb, offset = 4, 100
    loo = count_field_ids(counts, keys, nb, offset, y)[:, 0] - offset
    # (clicks, non-clicks) without the row: clicked rows of bucket 0 -> (2, 1), its
    # non-click -> (3, 0), the lone click of bucket 1 -> (0, 0)
    expected = [bin_counts(2, nb) * nb + 1] * 3 + [bin_counts(3, nb) * nb, 0]
    np.testing.assert_array_equal(loo, expected)
    full = count_field_ids(counts, keys, nb, offset)[:, 0] - offset
    np.testing.assert_array_equal(full, [2 * nb + 1] * 4 + [1 * nb])
    # accumulation saturates instead of wrapping
    big = count_clicks(np.full((1, 2, 4), 65_534, dtype=np.uint16), keys, y, 4)
    assert big.max() == 65_535


def test_fit_counts_every_pair_and_leaks_no_label():
    X, y = _table()
    clf = CTRClassifier(**FAST, click_counts=["user", "ad"], wide_crosses=0).fit(X, y)
    ids = clf.encoder_.transform(X).ids
    keys = pair_keys(ids, clf._count_fields(), clf.click_count_buckets)
    np.testing.assert_array_equal(clf.click_counts_[0, 1, keys[:, 0]],
                                  [(y[keys[:, 0] == k]).sum() for k in keys[:, 0]])
    assert clf.click_counts_.sum() == len(y)
    n_cat = clf.encoder_.n_categorical_
    assert clf.module_.embedding.n_categorical == n_cat + 1
    # the training rows read leave-one-out counts: of a pair seen once, nothing
    once = pd.DataFrame({"user": np.arange(40), "ad": np.arange(40) + 100, "hour": 0})
    y_once = np.arange(40) % 2
    clf1 = CTRClassifier(**FAST, click_counts=2, wide_crosses=0).fit(once, y_once)
    train = clf1._prepare(clf1._training_inputs(once, y_once)).tensors["ids"][:, -1]
    assert train.unique().numel() == 1  # the same id for a click and a non-click
    # prediction reads the full counts of the training rows: the label shows
    full = clf1._with_counts(clf1.encoder_.transform(once)).ids[:, -1]
    assert len(set(full[y_once == 1])) == 1 and len(set(full[y_once == 0])) == 1
    assert full[0] != full[1]


def test_predictions_persistence_and_serving_read_the_counts(tmp_path):
    X, y = _table()
    clf = CTRClassifier(**FAST, click_counts=3).fit(X, y)
    assert clf.click_counts_.shape == (3, 2, 1 << 12)
    expected = clf.predict_proba(X[:50])
    buf = io.BytesIO()
    skrec.save(clf, buf)
    back = skrec.load(io.BytesIO(buf.getvalue()))
    np.testing.assert_array_equal(back.predict_proba(X[:50]), expected)
    np.testing.assert_array_equal(back.click_counts_, clf.click_counts_)
    back.partial_fit(X, y)  # a loaded model keeps counting
    np.testing.assert_array_equal(back.click_counts_, 2 * clf.click_counts_)
    joblib.dump(clf, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "clf.joblib").predict_proba(X[:50]),
                                  expected)
    # one request's candidates score as their full rows
    cands = clf.score_candidates({"user": 3, "hour": 1}, pd.DataFrame({"ad": np.arange(6)}))
    rows = pd.DataFrame({"user": 3, "ad": np.arange(6), "hour": 1})
    np.testing.assert_allclose(cands, clf.predict_proba(rows)[:, 1], rtol=1e-6)
    # the graph's inputs carry the count fields' ids; the exported graph scores them alike
    inputs = {k: torch.as_tensor(v) for k, v in graph_inputs(clf, X[:50]).items()}
    assert inputs["ids"].shape == (50, clf.encoder_.n_categorical_ + 3)
    np.testing.assert_allclose(export_program(clf).module()(**inputs).detach().numpy(),
                               expected[:, 1], rtol=1e-5, atol=1e-7)
    # counts that do not match the parameters are refused at load
    broken = joblib.load(tmp_path / "clf.joblib")
    broken.click_counts_ = broken.click_counts_[:, :, :10]
    with pytest.raises(ValueError, match="click_counts_"):
        broken._check_fitted_state()
    del broken.click_counts_
    with pytest.raises(ValueError, match="click_counts_ is missing"):
        broken._check_fitted_state()


def test_partial_fit_accumulates_and_fit_recounts():
    X, y = _table(600)
    first, second = slice(0, 300), slice(300, 600)
    clf = CTRClassifier(**FAST, click_counts=2)
    clf.partial_fit(X[first], y[first]).partial_fit(X[second], y[second])
    whole = CTRClassifier(**FAST, click_counts=2).fit(X, y)
    np.testing.assert_array_equal(clf.click_counts_, whole.click_counts_)
    # a warm-started fit counts its own rows only (no row counted twice)
    warm = CTRClassifier(**FAST, click_counts=2, warm_start=True).fit(X, y)
    warm.fit(X[second], y[second])
    alone = CTRClassifier(**FAST, click_counts=2).fit(X[second], y[second])
    np.testing.assert_array_equal(warm.click_counts_, alone.click_counts_)
    # the held-out validation rows are not counted
    held = CTRClassifier(**{**FAST, "early_stopping": True}, click_counts=2,
                         validation_fraction=0.25).fit(X, y)
    assert held.click_counts_[0].sum() == 450


@pytest.mark.parametrize("params, match", [
    ({"click_counts": -1}, "click_counts must be an integer >= 0"),
    ({"click_counts": "top3"}, "click_counts must be an integer >= 0"),
    ({"click_counts": ["user", "nope"]}, r"click_counts names \['nope'\]"),
    ({"click_counts": 2, "click_count_bins": 1}, "click_count_bins must be an integer >= 2"),
    ({"click_counts": 2, "click_count_bins": 17}, "click_count_bins must be at most 16"),
    ({"click_counts": 2, "click_count_buckets": 0}, "click_count_buckets must be an integer"),
])
def test_bad_click_count_parameters_are_clear_errors(params, match):
    X, y = _table(100)
    with pytest.raises(ValueError, match=match):
        CTRClassifier(**{**FAST, **params}).fit(X, y)
