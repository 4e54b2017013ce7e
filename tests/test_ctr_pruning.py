"""Structured pruning of CTRClassifier: embedding dimensions, MLP units, heads, experts, rank;
fine-tuning through the shared trainer; the pruned model saves and loads."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import skrec
from skrec import CTRClassifier
from skrec.datasets import make_ctr

FAST = dict(batch_size=128, max_iter=4, wide_cross_buckets=1 << 10,
            click_count_buckets=1 << 10, min_frequency=2,
            random_state=0, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def data():
    d = make_ctr(3000, n_categorical=4, n_numeric=2, max_cardinality=40, click_rate=0.3,
                 as_frame=True, random_state=0)
    return d.X, d.y


def test_prune_and_fine_tune_the_default_model(data):
    X, y = data
    clf = CTRClassifier(**FAST).fit(X[:2400], y[:2400])
    auc = roc_auc_score(y[2400:], clf.predict_proba(X[2400:])[:, 1])
    w = np.ones(2400)
    clf.prune_(0.5, X=X[:2400], y=y[:2400], sample_weight=w, fine_tune_epochs=2)
    assert clf.module_.embed_dim == 8 and clf.module_.deep.hidden == [32]
    report = clf.pruning_report_
    assert report["importance"] == "taylor" and report["fine_tune_epochs"] >= 1
    assert report["fine_tune_best_score"] == clf.best_score_
    assert report["after"]["flops_per_user"] < 0.6 * report["before"]["flops_per_user"]
    pruned_auc = roc_auc_score(y[2400:], clf.predict_proba(X[2400:])[:, 1])
    assert pruned_auc > auc - 0.05
    buf = io.BytesIO()
    skrec.save(clf, buf)
    back = skrec.load(io.BytesIO(buf.getvalue()))
    np.testing.assert_array_equal(back.predict_proba(X[:50]), clf.predict_proba(X[:50]))
    with pytest.raises(ValueError, match="pass y with X"):
        clf.prune_(0.6, X=X[:100])


def test_fine_tuning_stops_on_an_explicit_validation_set(data):
    from sklearn.metrics import log_loss

    X, y = data
    clf = CTRClassifier(**FAST).fit(X[:2000], y[:2000], X_val=X[2000:2400], y_val=y[2000:2400])
    clf.prune_(0.5, X=X[:2000], y=y[:2000], X_val=X[2000:2400], y_val=y[2000:2400],
               fine_tune_epochs=2)
    # the restored epoch's score is the log loss of the given rows, as fit's X_val gives it
    assert clf.best_score_ == pytest.approx(
        log_loss(y[2000:2400], clf.predict_proba(X[2000:2400])[:, 1]), rel=1e-6)
    with pytest.raises(ValueError, match="both X_val and y_val"):
        clf.prune_(0.1, X=X[:2000], y=y[:2000], X_val=X[2000:2400])


@pytest.mark.parametrize("params, target, check", [
    ({"architecture": "transformer"}, "heads",
     lambda m: [b.attn.n_heads for b in m.blocks] != [2, 2]),
    ({"n_experts": 4}, "experts", lambda m: m.deep.n_experts == 2),
    ({"architecture": "dcnv2", "cross_rank": 8}, "rank", lambda m: m.cross.ranks == [4] * 3),
])
def test_heads_experts_and_cross_rank_are_pruned(data, params, target, check):
    X, y = data
    clf = CTRClassifier(**{**FAST, "max_iter": 1, **params,
                           "prune": {"amount": 0.5, "targets": [target],
                                     "fine_tune_epochs": 1}}).fit(X, y)
    assert check(clf.module_)
    assert np.isfinite(clf.predict_proba(X[:20])).all()
