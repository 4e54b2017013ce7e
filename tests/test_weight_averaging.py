"""Weight averaging over epochs: the trainer's exponential moving average of the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skrec import AERecommender, SeqRecommender
from skrec.callbacks import Callback
from skrec.datasets import make_interactions
from skrec.training import WeightAverage

SEQ = dict(d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=12, batch_size=16,
           random_state=0, device="cpu", precision="fp32")
AE = dict(hidden_sizes=(16,), latent_dim=8, batch_size=16, random_state=0, device="cpu",
          precision="fp32")


class _RecordWeights(Callback):
    """The module's own (latest) weights after every epoch."""

    def __init__(self):
        self.states = []

    def on_epoch_end(self, trainer, record):
        self.states.append({k: v.detach().clone()
                            for k, v in trainer.module.state_dict().items()})


def _ema(states, weight):
    out = {k: v.clone() for k, v in states[0].items()}
    for state in states[1:]:
        for k, v in state.items():
            if v.is_floating_point():
                out[k] = (1 - weight) * out[k] + weight * v
            else:
                out[k] = v.clone()
    return out


def _assert_state(module, expected):
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6)


def test_weight_average_folds_epochs_and_swaps_in_and_out():
    module = torch.nn.Linear(2, 1)
    avg = WeightAverage(0.25)
    with avg.applied(module):  # nothing averaged yet: the module's own weights
        pass
    values = [1.0, 3.0, 7.0]
    for v in values:
        with torch.no_grad():
            module.weight.fill_(v)
        avg.update(module)
    expected = (1.0 * 0.75 + 3.0 * 0.25) * 0.75 + 7.0 * 0.25
    with avg.applied(module):
        assert torch.allclose(module.weight, torch.full_like(module.weight, expected))
    assert torch.equal(module.weight, torch.full_like(module.weight, 7.0))  # its own again


@pytest.mark.parametrize("make", [
    lambda cb, **kw: SeqRecommender(**SEQ, callbacks=[cb], **kw),
    lambda cb, **kw: AERecommender(**AE, callbacks=[cb], **kw),
], ids=["seq", "ae"])
def test_the_fitted_model_is_the_average_of_the_epochs(make):
    X = make_interactions(n_users=120, n_items=30, random_state=0)
    record = _RecordWeights()
    rec = make(record, max_iter=4, early_stopping=False, weight_averaging=0.4).fit(X)
    assert len(record.states) == 4
    _assert_state(rec.module_, _ema(record.states, 0.4))
    # the latest weights differ from the average: averaging did something
    assert not torch.equal(next(iter(record.states[-1].values())),
                           next(iter(rec.module_.state_dict().values())))


def test_early_stopping_selects_and_restores_an_averaged_epoch():
    X = make_interactions(n_users=150, n_items=30, random_state=1)
    record = _RecordWeights()
    rec = SeqRecommender(**SEQ, callbacks=[record], max_iter=12, n_iter_no_change=2,
                         learning_rate_init=0.05, weight_averaging=0.5).fit(X)
    assert rec.best_epoch_ is not None and rec.best_epoch_ <= rec.n_iter_
    _assert_state(rec.module_, _ema(record.states[: rec.best_epoch_], 0.5))


def test_no_averaging_keeps_the_latest_weights():
    X = make_interactions(n_users=120, n_items=30, random_state=0)
    for weight in (None, 1.0):
        record = _RecordWeights()
        rec = AERecommender(**AE, callbacks=[record], max_iter=3, early_stopping=False,
                            weight_averaging=weight).fit(X)
        _assert_state(rec.module_, record.states[-1])


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, np.nan, "half"])
def test_bad_weight_averaging_is_refused(bad):
    X = make_interactions(n_users=50, n_items=20, random_state=0)
    with pytest.raises((ValueError, TypeError), match="weight_averaging"):
        AERecommender(**AE, max_iter=1, weight_averaging=bad).fit(X)
