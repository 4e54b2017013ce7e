"""The generic neural-estimator base serves estimators that are not recommenders.

A ten-line logistic regression in torch, built on :class:`skrec.training.NeuralEstimator`,
gets the whole machinery: accumulation, bf16, early stopping with the best weights restored,
warm start, the fitted counters, the one inference set-up and safe persistence.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data
from torch import nn

import skrec
from skrec.callbacks import Callback
from skrec.nn import register_module
from skrec.persistence import register_estimator
from skrec.training import NeuralEstimator, TrainingTask


@register_module
class _LogisticModule(nn.Module):
    def __init__(self, n_features: int):
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def config(self) -> dict:
        return {"n_features": self.linear.in_features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class _Rows:
    """Training rows: what the trainer's batches are made from."""

    def __init__(self, X, y):
        self.X, self.y = X, y
        self.n_rows = X.shape[0]


@register_estimator(name="tests.TinyLogisticRegression")
class TinyLogisticRegression(ClassifierMixin, NeuralEstimator):
    """A logistic regression on the neural-estimator base.

    Parameters
    ----------
    {training_parameters}
    """

    validation_metric: str = "loss"

    def fit(self, X, y):
        self._check_params()
        X, y = check_X_y(X, y, dtype=np.float32)
        continued = self._continues()
        self.classes_, y = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        return self._run((X, y.astype(np.float32)), epochs=self.max_iter, continued=continued)

    def predict_proba(self, X):
        check_is_fitted(self, "module_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        with self._serving() as setup:
            p = torch.sigmoid(setup.module(torch.as_tensor(X, device=setup.device)).float())
        p = p.cpu().numpy()
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]

    # the base's hooks
    def _build_module(self):
        return _LogisticModule(self.n_features_in_)

    def _n_rows(self, inputs):
        return inputs[0].shape[0]

    def _prepare(self, inputs):
        return _Rows(torch.as_tensor(inputs[0]), torch.as_tensor(inputs[1]))

    def _make_batch(self, data, rows, device):
        return (data.X[rows].to(device), data.y[rows].to(device)), len(rows)

    def _batch_loss(self, module, batch, state):
        x, y = batch
        return nn.functional.binary_cross_entropy_with_logits(module(x).float(), y,
                                                              reduction="sum")

    def _hold_out_validation(self, inputs, rng):
        X, y = inputs
        val = rng.permutation(X.shape[0])[: int(self.validation_fraction * X.shape[0])]
        keep = np.setdiff1d(np.arange(X.shape[0]), val)
        return (X[keep], y[keep]), (X[val], y[val])

    def _validation_scores(self, validation, dist):
        X, y = validation
        p = self.predict_proba(X)[:, 1].clip(1e-7, 1 - 1e-7)
        return {"val_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))}

    def _monitored(self, metric):
        return "val_loss", False


def _data(n=600, d=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d).astype(np.float32)
    y = (X @ rng.randn(d) + 0.3 * rng.randn(n) > 0).astype(int)
    return X, y


def test_a_non_recommender_trains_with_accumulation_and_bf16_and_early_stops():
    X, y = _data()
    est = TinyLogisticRegression(max_iter=60, batch_size=32, accumulation_steps=2,
                                 learning_rate_init=0.1, precision="bf16", n_iter_no_change=3,
                                 tol=1e-3,
                                 validation_fraction=0.2,
                                 random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 may be emulated on this CPU
        est.fit(X, y)
    assert est.precision_ == "bf16" and est.batch_size_ == 32
    assert est.n_iter_ < 60 and est.best_epoch_ is not None  # it stopped early
    assert est.n_iter_ == len(est.history_) and est.best_score_ == pytest.approx(
        est.history_[est.best_epoch_ - 1]["val_loss"])
    # 480 training rows: 15 micro-batches of 32, two per optimizer step: 8 steps an epoch
    assert all(h["steps"] == 8 for h in est.history_) and est.n_steps_ == 8 * est.n_iter_
    assert est.score(X, y) > 0.9
    assert isinstance(est._training_task(), TrainingTask)


def test_warm_start_continues_and_the_counters_follow():
    X, y = _data()
    est = TinyLogisticRegression(max_iter=2, early_stopping=False, random_state=0,
                                 precision="fp32", device="cpu").fit(X, y)
    weights = est.module_.linear.weight.detach().clone()
    est.set_params(warm_start=True).fit(X, y)
    assert est.n_iter_ == 4 and len(est.history_) == 4
    assert not torch.equal(weights, est.module_.linear.weight)
    fresh = clone(est).set_params(warm_start=False).fit(X, y)
    assert fresh.n_iter_ == 2


def test_it_saves_and_loads_and_serves_reduced_precision_copies():
    X, y = _data()
    est = TinyLogisticRegression(max_iter=3, early_stopping=False, random_state=0,
                                 precision="fp32", device="cpu").fit(X, y)
    buf = io.BytesIO()
    skrec.save(est, buf)
    back = skrec.load(io.BytesIO(buf.getvalue()))
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    assert back.history_ == est.history_
    p32 = est.predict_proba(X)
    p8 = est.set_params(inference_precision="int8").predict_proba(X)
    assert not np.array_equal(p8, p32) and np.abs(p8 - p32).max() < 0.05


class _Halving:
    """An LRSchedule: the learning rate halves at every epoch."""

    def __init__(self):
        self.calls = []

    def factor(self, state, progress):
        self.calls.append((state.n_steps, progress))
        return 0.5 ** state.n_iter


class ScheduledLogisticRegression(TinyLogisticRegression):
    """The logistic regression with a schedule and a bias of its own learning rate.

    Parameters
    ----------
    {training_parameters}
    """

    def _lr_schedule(self):
        self.schedule_ = _Halving()
        return self.schedule_

    def _param_groups(self, module):
        return [{"params": [module.linear.weight]},
                {"params": [module.linear.bias], "lr": 0.5, "weight_decay": 0.0}]


def test_a_schedule_and_parameter_groups_reach_the_optimizer():
    X, y = _data()
    est = ScheduledLogisticRegression(max_iter=3, batch_size=100, early_stopping=False,
                                      learning_rate_init=0.1, weight_decay=0.01,
                                      random_state=0, precision="fp32", device="cpu")

    seen = []

    class Spy(Callback):
        def on_epoch_end(self, trainer, record):
            seen.append([(g["lr"], g["weight_decay"]) for g in trainer.optimizer.param_groups])

    est.set_params(callbacks=[Spy()]).fit(X, y)
    # 600 rows in batches of 100: 6 steps an epoch, the factor of epoch e is 0.5 ** (e - 1)
    assert [h["lr_factor"] for h in est.history_] == [1.0, 0.5, 0.25]
    assert seen == [[(0.1 * f, 0.01), (0.5 * f, 0.0)] for f in (1.0, 0.5, 0.25)]
    steps, progress = zip(*est.schedule_.calls)
    assert list(steps) == list(range(18)) and progress[0] == 0.0
    assert progress[6] == pytest.approx(6 / 18)


class PlateauLogisticRegression(TinyLogisticRegression):
    """The logistic regression with the learning rate divided at each validation plateau.

    Parameters
    ----------
    {training_parameters}
    """

    def _lr_schedule(self):
        from skrec.training import PlateauDecay

        self.schedule_ = PlateauDecay(decay=0.1, max_decays=2)
        return self.schedule_


def test_plateau_decay_lowers_the_rate_and_restarts_from_the_best_weights():
    X, y = _data()
    restored = []

    class Spy(Callback):
        def on_epoch_end(self, trainer, record):
            stopper = trainer.early_stopping
            weights = trainer.module.linear.weight.detach()
            restored.append(stopper.best_state is not None and torch.equal(
                weights, stopper.best_state["linear.weight"]))

    # a learning rate so large that epochs stop improving: plateaus come early
    est = PlateauLogisticRegression(max_iter=40, batch_size=16, learning_rate_init=3.0,
                                    n_iter_no_change=3, tol=0.0, random_state=0,
                                    precision="fp32", device="cpu", callbacks=[Spy()]).fit(X, y)
    factors = [h["lr_factor"] for h in est.history_]
    best = [h["epoch"] for h in est.history_ if h["val_loss"] == min(
        r["val_loss"] for r in est.history_[: h["epoch"]])]
    plateaus = [h["epoch"] for h in est.history_ if h["epoch"] not in best]
    assert plateaus and est.schedule_.n_decays == min(len(plateaus), 2)
    # an epoch after the k-th plateau (k <= 2) runs at 0.1 ** k; the epochs before at 1
    for h in est.history_:
        k = min(sum(p < h["epoch"] for p in plateaus), 2)
        assert h["lr_factor"] == pytest.approx(0.1 ** k)
    # after each decaying plateau the module holds the best weights again
    decaying = plateaus[:2]
    assert all(restored[e - 1] for e in decaying)
    assert factors[0] == 1.0
