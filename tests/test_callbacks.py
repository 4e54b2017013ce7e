"""The ``callbacks`` training parameter and the TensorBoard callback."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
from sklearn.base import clone

from skrec import AERecommender, SeqRecommender
from skrec.callbacks import Callback, TensorBoard
from skrec.datasets import make_interactions

TINY = dict(d_model=16, n_heads=2, d_ff=32, n_layers=1, max_len=20, precision="fp32",
            batch_size=32, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def X():
    return make_interactions(n_users=80, n_items=30, mean_length=8, random_state=0)


class Recorder(Callback):
    """Remembers the hooks it saw, and what the estimator held at each."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, trainer):
        self.calls.append(("begin", trainer.rank, trainer.world_size))

    def on_epoch_begin(self, trainer, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_step_end(self, trainer, loss, n_targets):
        self.calls.append(("step", n_targets > 0))

    def on_epoch_end(self, trainer, record):
        # called after the trainer recorded the epoch: the record is already in the history
        self.calls.append(("epoch_end", record["epoch"],
                           trainer.state.history[-1] is record))

    def on_train_end(self, trainer):
        self.calls.append(("end",))


def test_callbacks_see_every_hook_after_the_built_in_ones(X):
    rec = Recorder()
    est = SeqRecommender(**TINY, max_iter=2, early_stopping=False, callbacks=[rec]).fit(X)
    calls = est.callbacks[0].calls
    assert est.callbacks[0] is rec  # fit does not replace the parameter
    assert calls[0] == ("begin", 0, 1) and calls[-1] == ("end",)
    assert [c for c in calls if c[0] == "epoch_end"] == [("epoch_end", 1, True),
                                                        ("epoch_end", 2, True)]
    n_steps = sum(h["steps"] for h in est.history_)
    assert calls.count(("step", True)) == n_steps
    # partial_fit (and pruning's fine-tuning) are training runs too
    est.partial_fit(X)
    assert calls[-1] == ("end",) and ("epoch_end", 3, True) in calls


def test_callbacks_are_cloned_and_pickled_with_the_estimator(X):
    rec = Recorder()
    est = AERecommender(hidden_sizes=(), latent_dim=8, max_iter=1, random_state=0,
                        precision="fp32", callbacks=[rec])
    twin = clone(est)
    assert twin.callbacks[0] is not rec and isinstance(twin.callbacks[0], Recorder)
    twin.fit(X)
    assert rec.calls == []  # the clone has its own copy
    restored = pickle.loads(pickle.dumps(twin))
    assert restored.callbacks[0].calls == twin.callbacks[0].calls
    np.testing.assert_array_equal(restored.predict(X[:5]), twin.predict(X[:5]))


@pytest.mark.parametrize("bad", [Recorder(), "history", [Recorder(), print], {"a": 1}])
def test_bad_callbacks_are_rejected_with_a_clear_error(bad, X):
    with pytest.raises(TypeError, match="callbacks must be None or a list of"):
        SeqRecommender(**TINY, max_iter=1, callbacks=bad).fit(X)


def test_tensorboard_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # "import tensorboard" fails
    with pytest.raises(ImportError, match=r'pip install "skrec\[tensorboard\]"'):
        TensorBoard("runs")


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def test_tensorboard_logs_the_history_and_the_learning_rate(X, tmp_path):
    pytest.importorskip("tensorboard")
    est = SeqRecommender(**TINY, max_iter=3, learning_rate_init=2e-3,
                         callbacks=[TensorBoard(tmp_path / "run", prefix="seq/")]).fit(X)
    scalars = _scalars(tmp_path / "run")
    keys = ("loss", "val_loss", "val_ndcg@10", "seconds", "targets_per_s", "steps",
            "peak_memory_mb")
    assert {f"seq/{k}" for k in keys} | {"seq/learning_rate"} <= set(scalars)
    epochs = [h["epoch"] for h in est.history_]
    for key in keys:
        assert [s for s, _ in scalars[f"seq/{key}"]] == epochs
        np.testing.assert_allclose([v for _, v in scalars[f"seq/{key}"]],
                                   [h[key] for h in est.history_], rtol=1e-6)
    assert scalars["seq/learning_rate"] == [(e, pytest.approx(2e-3)) for e in epochs]
    # a later run continues the curves at the next epochs
    est.partial_fit(X)
    assert [s for s, _ in _scalars(tmp_path / "run")["seq/loss"]] == [*epochs, epochs[-1] + 1]


def test_tensorboard_estimator_clones_and_pickles(X, tmp_path):
    pytest.importorskip("tensorboard")
    cb = TensorBoard(tmp_path / "ae")
    est = AERecommender(hidden_sizes=(), latent_dim=8, max_iter=2, random_state=0,
                        precision="fp32", callbacks=[cb])
    assert "TensorBoard(log_dir=" in repr(est)
    fitted = clone(est).fit(X)
    assert cb._writer is None and fitted.callbacks[0]._writer is None  # closed after the run
    assert "beta" in _scalars(tmp_path / "ae")  # the estimator's own record fields too
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored.callbacks[0].log_dir == cb.log_dir


def test_progress_bar_ends_at_the_epochs_run_when_early_stopping_ends_training(X, monkeypatch):
    """A Jupyter bar closed short of its total is drawn red (failed): when early stopping
    ends the run, the epoch bar's total becomes the epochs run; a full run keeps max_iter."""
    import tqdm.auto
    from tqdm import tqdm as text_tqdm

    closed = []

    class RecordingBar(text_tqdm):
        def close(self):
            if self.unit == "epoch" and not self.disable:
                closed.append((self.n, self.total))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    est = SeqRecommender(**TINY, max_iter=40, early_stopping=True, n_iter_no_change=1,
                         verbose=1).fit(X)
    assert est.n_iter_ < 40  # stopped early
    assert closed[-1] == (est.n_iter_, est.n_iter_)
    SeqRecommender(**TINY, max_iter=2, early_stopping=False, verbose=1).fit(X)
    assert closed[-1] == (2, 2)
