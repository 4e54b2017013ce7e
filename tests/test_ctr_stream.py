"""CTRClassifier over a stream: partial_fit chunk by chunk, warm_start, callbacks, history_."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from skrec import CTRClassifier
from skrec.callbacks import Callback
from skrec.datasets import iter_ctr_chunks

pd = pytest.importorskip("pandas")

STREAM = dict(batch_size=256, hash_buckets=512, hashed="all", wide_crosses=3,
              wide_cross_buckets=1 << 12, click_count_buckets=1 << 12,
              numeric_scaling="log", random_state=0, device="cpu", precision="fp32",
              learning_rate_init=0.01)


def _chunks(n=6000, size=1500, seed=0):
    return list(iter_ctr_chunks(n, size, n_categorical=5, n_numeric=2, max_cardinality=3000,
                                click_rate=0.2, as_frame=True, random_state=seed))


def test_partial_fit_over_chunks_with_hashed_fields():
    *train, test = _chunks()
    clf = CTRClassifier(**STREAM)
    seen = []
    for i, chunk in enumerate(train):
        clf.partial_fit(chunk.X, chunk.y)
        if i == 0:
            encoder, n_ids = clf.encoder_, clf.encoder_.n_ids_
        assert clf.encoder_ is encoder and clf.encoder_.n_ids_ == n_ids  # fixed layout
        seen.append(int(clf.cross_counts_.astype(np.int64).sum()))
    assert clf.n_iter_ == len(train) == len(clf.history_)
    # the crosses are counted over every chunk seen, and the mask follows the counts
    assert seen == sorted(seen) and seen[-1] > seen[0]
    mask = clf.module_.wide.cross_mask.numpy().astype(bool)
    np.testing.assert_array_equal(mask, clf.cross_counts_ >= clf.wide_cross_min_count)
    assert roc_auc_score(test.y, clf.predict_proba(test.X)[:, 1]) > 0.6
    # categories first seen in a later chunk get buckets of their own (hashed), not unknown
    new = test.X.iloc[:50].assign(C1=np.arange(10**6, 10**6 + 50))
    ids = clf.encoder_.transform(new).ids[:, 0]
    assert np.unique(ids).size > 40


def test_the_first_chunk_may_hold_one_class_when_classes_are_given():
    chunk = _chunks(2000, 1000)[0]
    ones = chunk.y == 0
    clf = CTRClassifier(**STREAM)
    with pytest.raises(ValueError, match="classes=\\[0, 1\\]"):
        clf.partial_fit(chunk.X[ones], chunk.y[ones])
    clf.partial_fit(chunk.X[ones], chunk.y[ones], classes=[0, 1])
    assert clf.classes_.tolist() == [0, 1]
    clf.partial_fit(chunk.X, chunk.y)
    with pytest.raises(ValueError, match="not among the model's classes"):
        clf.partial_fit(chunk.X, chunk.y + 5)
    with pytest.raises(ValueError, match="differ from the model's classes"):
        clf.partial_fit(chunk.X, chunk.y, classes=[0, 2])
    with pytest.raises(ValueError, match="exactly|two classes|Only binary"):
        CTRClassifier(**STREAM).partial_fit(chunk.X, chunk.y, classes=[0, 1, 2])


class _Epochs(Callback):
    def __init__(self):
        self.records = []

    def on_epoch_end(self, trainer, record):
        self.records.append(dict(record))


def test_warm_start_callbacks_progress_and_history(tmp_path, capsys):
    chunks = _chunks(4000, 2000)
    spy = _Epochs()
    clf = CTRClassifier(**{**STREAM, "max_iter": 2, "verbose": 1, "callbacks": [spy]})
    clf.fit(chunks[0].X, chunks[0].y)
    encoder = clf.encoder_
    assert len(spy.records) == 2 == clf.n_iter_
    assert spy.records == clf.history_
    assert "val_log_loss" in capsys.readouterr().err  # the progress bar shows it
    clf.set_params(warm_start=True, verbose=0).fit(chunks[1].X, chunks[1].y)
    assert clf.encoder_ is encoder and clf.n_iter_ == 4 == len(clf.history_)
    with pytest.raises(ValueError, match="embed_dim=8.*built with 16"):
        clf.set_params(embed_dim=8).fit(chunks[1].X, chunks[1].y)
    refit = clf.set_params(warm_start=False).fit(chunks[1].X, chunks[1].y)
    assert refit.encoder_ is not encoder and refit.n_iter_ == 2
    tensorboard = pytest.importorskip("tensorboard")  # noqa: F841
    from skrec.callbacks import TensorBoard

    CTRClassifier(**{**STREAM, "max_iter": 1, "embed_dim": 8,
                     "callbacks": [TensorBoard(tmp_path / "run")]}).fit(chunks[0].X,
                                                                        chunks[0].y)
    assert list((tmp_path / "run").iterdir())
