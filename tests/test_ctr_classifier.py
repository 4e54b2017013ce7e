"""CTRClassifier: the scikit-learn contract (fit, probabilities, model selection, persistence,
early stopping, weights, calibration)."""

from __future__ import annotations

import io
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import skrec
from skrec import CTRClassifier
from skrec.datasets import make_ctr
from skrec.persistence import ModelFileError
from skrec.persistence._container import _pack, _unpack

pd = pytest.importorskip("pandas")

#: Small and fast: few buckets, small batches, a few epochs.
FAST = dict(batch_size=128, max_iter=4, wide_crosses=3, wide_cross_buckets=1 << 10,
            click_count_buckets=1 << 10, min_frequency=2, random_state=0, device="cpu",
            precision="fp32")


@pytest.fixture(scope="module")
def data():
    d = make_ctr(3000, n_categorical=4, n_numeric=2, max_cardinality=40, click_rate=0.3,
                 as_frame=True, random_state=0)
    return d.X, d.y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return CTRClassifier(**FAST).fit(X[:2400], y[:2400])


def test_fit_predict_and_the_classifier_attributes(data, fitted):
    X, y = data
    clf = fitted
    assert clf.classes_.tolist() == [0, 1]
    assert clf.n_features_in_ == 6 and clf.feature_names_in_.tolist() == list(X.columns)
    proba = clf.predict_proba(X[2400:])
    assert proba.shape == (600, 2) and np.allclose(proba.sum(axis=1), 1)
    logit = clf.decision_function(X[2400:])
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-logit)), rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(X[2400:]), (logit > 0).astype(int))
    assert roc_auc_score(y[2400:], proba[:, 1]) > 0.7  # it learned the planted signal
    assert clf.score(X[2400:], y[2400:]) == np.mean(clf.predict(X[2400:]) == y[2400:])
    assert clf.predict_proba(X[:0]).shape == (0, 2)
    # labels of any two classes; the second (sorted) is the click
    labels = np.where(y[:2400] == 1, "click", "no")
    other = CTRClassifier(**{**FAST, "max_iter": 1}).fit(X[:2400], labels)
    assert other.classes_.tolist() == ["click", "no"]
    assert set(other.predict(X[:50])) <= {"click", "no"}


def test_history_early_stopping_and_the_plateau_decay(data):
    X, y = data
    clf = CTRClassifier(**{**FAST, "max_iter": 30, "learning_rate_init": 0.02})
    clf.fit(X[:2000], y[:2000], X_val=X[2000:], y_val=y[2000:])
    h = clf.history_
    assert {"loss", "val_log_loss", "val_auc", "lr_factor", "seconds"} <= set(h[0])
    assert clf.validation_metric_ == "log_loss" and clf.n_iter_ < 30
    assert clf.best_score_ == min(r["val_log_loss"] for r in h)
    assert h[clf.best_epoch_ - 1]["val_log_loss"] == clf.best_score_
    assert [r["lr_factor"] for r in h][-1] < 1.0  # a plateau divided the learning rate
    # the restored best weights give the best validation log loss
    from sklearn.metrics import log_loss

    p = clf.predict_proba(X[2000:])[:, 1]
    assert log_loss(y[2000:], p) == pytest.approx(clf.best_score_, rel=1e-5)
    auc = CTRClassifier(**{**FAST, "validation_metric": "auc", "max_iter": 3}).fit(X, y)
    assert auc.best_score_ == max(r["val_auc"] for r in auc.history_)
    assert len(auc.history_) == 3  # validation_fraction of the rows held out
    with pytest.raises(ValueError, match="both X_val and y_val"):
        CTRClassifier(**FAST).fit(X, y, X_val=X)
    with pytest.raises(ValueError, match="validation_metric"):
        CTRClassifier(**{**FAST, "validation_metric": "ndcg@10"}).fit(X, y)


@pytest.mark.parametrize("architecture", ["deepfm", "dcnv2", "transformer"])
def test_every_architecture_trains_and_predicts(data, architecture):
    X, y = data
    clf = CTRClassifier(**{**FAST, "max_iter": 2, "architecture": architecture,
                           "n_experts": 2 if architecture == "deepfm" else 0}).fit(X, y)
    assert clf.module_.architecture == architecture
    assert roc_auc_score(y, clf.predict_proba(X)[:, 1]) > 0.6


def test_pipeline_grid_search_clone_and_cross_validation(data):
    X, y = data
    X, y = X[:1200], y[:1200]
    base = CTRClassifier(**{**FAST, "max_iter": 1})
    pipe = make_pipeline(FunctionTransformer(lambda frame: frame), base)
    assert pipe.fit(X, y).predict_proba(X).shape == (1200, 2)
    for scoring in ("roc_auc", "neg_log_loss"):
        search = GridSearchCV(base, {"architecture": ["wide_deep", "deepfm", "dcnv2",
                                                      "transformer"]},
                              scoring=scoring, cv=2).fit(X, y)
        assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    twin = clone(base)
    assert twin.get_params() == base.get_params() and not hasattr(twin, "module_")
    assert cross_val_score(base, X, y, cv=2, scoring="roc_auc").shape == (2,)


def test_joblib_and_skrec_save_round_trip(data, fitted, tmp_path):
    X, _ = data
    expected = fitted.predict_proba(X[:100])
    joblib.dump(fitted, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "clf.joblib").predict_proba(X[:100]),
                                  expected)
    buf = io.BytesIO()
    skrec.save(fitted, buf)
    back = skrec.load(io.BytesIO(buf.getvalue()))
    np.testing.assert_array_equal(back.predict_proba(X[:100]), expected)
    assert type(back.encoder_).__name__ == "FieldEncoder"
    assert back.get_params() == fitted.get_params()
    assert back.cross_counts_.dtype == np.uint8
    back.partial_fit(X[:200], fitted.predict(X[:200]))  # a loaded model keeps training

    def forge(edit):
        payload, tensors = _unpack(bytearray(buf.getvalue()))
        edit(payload)
        return io.BytesIO(_pack(__import__("json").dumps(payload), tensors))

    def shift(payload):  # an encoder whose fields no longer match the module's table
        enc = payload["attributes"]["encoder_"]["$estimator"]["attributes"]
        enc["n_ids_"] += 1

    with pytest.raises(ModelFileError, match="n_ids_"):
        skrec.load(forge(shift))

    def classes(payload):
        payload["attributes"]["classes_"] = None

    with pytest.raises(ModelFileError, match="classes_"):
        skrec.load(forge(classes))


def test_sample_and_class_weights(data):
    X, y = data
    X, y = X[:1500], y[:1500]
    plain = CTRClassifier(**FAST).fit(X, y)
    balanced = CTRClassifier(**{**FAST, "class_weight": "balanced"}).fit(X, y)
    share = y.mean()
    manual = CTRClassifier(**{**FAST, "class_weight": {0: 0.5 / (1 - share),
                                                        1: 0.5 / share}}).fit(X, y)
    np.testing.assert_allclose(balanced.predict_proba(X), manual.predict_proba(X), atol=1e-6)
    # weighting the clicks up raises the predicted click rate
    assert balanced.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean() + 0.05
    w = np.where(y == 1, 3.0, 1.0)
    w_before = w.copy()
    weighted = CTRClassifier(**FAST).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(w, w_before)  # the user's weights are not modified
    assert weighted.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean()
    with pytest.raises(ValueError, match="sample_weight"):
        CTRClassifier(**FAST).fit(X, y, sample_weight=-w)
    with pytest.raises(ValueError, match="balanced"):
        CTRClassifier(**{**FAST, "class_weight": "balanced"}).partial_fit(X, y)


def test_negative_sampling_rate_corrects_back_to_the_true_click_rate():
    d = make_ctr(8000, n_categorical=3, n_numeric=0, max_cardinality=20, click_rate=0.2,
                 as_frame=True, random_state=1)
    rng = np.random.RandomState(0)
    keep = (d.y == 1) | (rng.rand(d.y.size) < 0.25)  # every click, a quarter of the rest
    params = {**FAST, "max_iter": 6, "embedding_l2": 0.0}
    raw = CTRClassifier(**params).fit(d.X[keep], d.y[keep])
    corrected = clone(raw).set_params(negative_sampling_rate=0.25).fit(d.X[keep], d.y[keep])
    np.testing.assert_allclose(corrected.decision_function(d.X),
                               raw.decision_function(d.X) + np.log(0.25), atol=1e-9)
    p_raw = raw.predict_proba(d.X)[:, 1].mean()
    p = corrected.predict_proba(d.X)[:, 1].mean()
    assert abs(p - d.y.mean()) < 0.03 < abs(p_raw - d.y.mean())
    np.testing.assert_array_equal(np.argsort(corrected.decision_function(d.X[:50])),
                                  np.argsort(raw.decision_function(d.X[:50])))
    with pytest.raises(ValueError, match="negative_sampling_rate"):
        CTRClassifier(negative_sampling_rate=0.0).fit(d.X, d.y)


def test_reduced_inference_precisions_stay_close(data, fitted):
    X, _ = data
    p32 = fitted.predict_proba(X[:300])[:, 1]
    for precision, tol in (("bf16", 0.05), ("int8", 0.05)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted.set_params(inference_precision=precision)
            try:
                got = fitted.predict_proba(X[:300])[:, 1]
            finally:
                fitted.set_params(inference_precision="auto")
        assert np.abs(got - p32).max() < tol and not np.array_equal(got, p32)
