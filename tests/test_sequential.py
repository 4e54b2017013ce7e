"""SeqRecommender: the contract, the shared trainer's features, and quality on planted data."""

from __future__ import annotations

import os
import pickle
import signal
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _checks import expected_failed_checks
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from skrec import SeqRecommender
from skrec._histories import merge_in_order, ordered_sequences
from skrec.baselines import MarkovChainRecommender, PopularityRecommender
from skrec.callbacks import Callback
from skrec.datasets import make_interactions
from skrec.metrics import hit_rate_at_k, ndcg_scorer
from skrec.model_selection import leave_last_out_split
from skrec.objectives import OBJECTIVES

# fp32: the exactness tests below must not depend on whether this CPU has native bf16
# (precision="auto" picks bf16 on CPUs with AVX-512 BF16 or AMX).
TINY = dict(d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=12, max_iter=2, batch_size=16,
            random_state=0, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def small():
    X = make_interactions(n_users=120, n_items=30, mean_length=10, random_state=0)
    return leave_last_out_split(X)


@parametrize_with_checks(
    [SeqRecommender(**TINY)], expected_failed_checks=expected_failed_checks
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ---------------------------------------------------------------- sequences from CSR rows
def test_ordered_sequences_order_ties_and_truncation():
    # row 0: values 3, 1, 2 on items 4, 0, 2 -> order 0, 2, 4; row 1: tie on value 5 -> by index
    X = sp.csr_matrix(([3.0, 1.0, 2.0, 5.0, 5.0], ([0, 0, 0, 1, 1], [4, 0, 2, 3, 1])),
                      shape=(3, 6))
    seqs = ordered_sequences(X, 5)
    assert seqs.tolist() == [[1, 3, 5], [0, 2, 4], [0, 0, 0]]
    assert ordered_sequences(X, 2).tolist() == [[3, 5], [2, 4], [0, 0]]


def test_merge_in_order_puts_y_after_x():
    X = sp.csr_matrix(([10.0, 20.0], ([0, 0], [1, 2])), shape=(1, 4))
    y = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 4))  # small value, but after X
    merged = merge_in_order(X, y)
    assert ordered_sequences(merged, 5).tolist() == [[2, 3, 1]]
    # an item in both keeps its later (y) position
    y2 = sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 4))
    assert ordered_sequences(merge_in_order(X, y2), 5).tolist() == [[3, 2]]


# ---------------------------------------------------------------- contract
def test_predict_shapes_fold_in_and_cold_users(small):
    X, y = small
    rec = SeqRecommender(**TINY).fit(X)
    ids = rec.predict(X, k=5)
    assert ids.shape == (X.shape[0], 5)
    seen = X[np.arange(X.shape[0])[:, None], np.maximum(ids, 0)].toarray()
    assert not seen[ids >= 0].any(), "seen items must be excluded"
    new_users = sp.csr_matrix(X[:3].toarray())  # fold-in: any row works
    cold = sp.csr_matrix((2, X.shape[1]))
    assert np.array_equal(rec.predict(new_users), rec.predict(X[:3]))
    pop = PopularityRecommender().fit(X).predict(cold)
    assert np.array_equal(rec.predict(cold), pop)
    assert 0.0 <= rec.score(X, y) <= 1.0


def test_fit_with_y_trains_on_the_union(small):
    X, y = small
    rec = SeqRecommender(**TINY).fit(X, y)
    assert rec.item_popularity_.sum() == X.nnz + y.nnz
    y_next = np.asarray(y.argmax(axis=1)).ravel()
    rec2 = SeqRecommender(**TINY).fit(X, y_next)  # 1-D next items
    assert np.array_equal(rec.predict(X), rec2.predict(X))


def test_history_and_fitted_attributes(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "max_iter": 3}).fit(X)
    assert rec.n_iter_ == len(rec.history_) <= 3
    for key in ("loss", "val_ndcg@10", "seconds", "targets_per_s", "peak_memory_mb"):
        assert key in rec.history_[0]
    assert rec.precision_ == "fp32" and rec.device_.type == "cpu"


def test_determinism(small):
    X, _ = small
    a = SeqRecommender(**TINY).fit(X).predict_scores(X)
    b = SeqRecommender(**TINY).fit(X).predict_scores(X)
    assert np.array_equal(a, b)
    c = SeqRecommender(**{**TINY, "random_state": 1}).fit(X).predict_scores(X)
    assert not np.array_equal(a, c)


def test_pickle_and_joblib_round_trip(small, tmp_path):
    X, _ = small
    rec = SeqRecommender(**TINY).fit(X)
    expected = rec.recommend(X, k=7)
    back = pickle.loads(pickle.dumps(rec))
    assert all(np.array_equal(a, b) for a, b in zip(back.recommend(X, k=7), expected))
    joblib.dump(rec, tmp_path / "rec.joblib")
    again = joblib.load(tmp_path / "rec.joblib")
    assert np.array_equal(again.predict(X, k=7), expected[0])


def test_gpu_trained_state_loads_on_cpu(small, monkeypatch):
    X, _ = small
    rec = SeqRecommender(**TINY).fit(X)
    state = rec.__getstate__()
    assert all(p.device.type == "cpu" for p in state["module_"].parameters())
    state["device_"] = torch.device("cuda")
    state["precision_"] = "fp16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    clone_ = SeqRecommender.__new__(SeqRecommender)
    clone_.__setstate__(state)
    assert clone_.device_.type == "cpu" and clone_.precision_ == "fp32"
    assert np.array_equal(clone_.predict(X), rec.predict(X))


def test_warm_start_and_partial_fit(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "warm_start": True, "early_stopping": False}).fit(X)
    rec.fit(X)
    assert rec.n_iter_ == 4
    rec.partial_fit(X[:50])
    assert rec.n_iter_ == 5 and len(rec.history_) == 5
    fresh = SeqRecommender(**TINY).partial_fit(X)
    assert fresh.n_iter_ == 1
    with pytest.raises(ValueError, match="features"):
        rec.partial_fit(X[:, :10])


# ---------------------------------------------------------------- the shared trainer
def _params_after_one_update(X, **params):
    est = SeqRecommender(**{**TINY, "dropout": 0.0, "max_iter": 1, "early_stopping": False,
                            "clip_grad_norm": None, **params})
    est.fit(X)
    return torch.cat([p.detach().flatten() for p in est.module_.parameters()])


def test_accumulation_gives_the_gradient_of_one_big_batch(small):
    X, _ = small  # 120 users: 4 micro-batches of 30 == one batch of 120, exactly
    one = _params_after_one_update(X, batch_size=120, accumulation_steps=1)
    acc = _params_after_one_update(X, batch_size=30, accumulation_steps=4)
    torch.testing.assert_close(acc, one, rtol=1e-5, atol=1e-6)
    # the last, partial window still steps: 120 users in windows of 2 x 50 -> 2 steps
    est = SeqRecommender(**{**TINY, "batch_size": 50, "accumulation_steps": 2,
                            "max_iter": 1, "early_stopping": False}).fit(X)
    assert est.history_[0]["steps"] == 2


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_on_cpu(precision, small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "precision": precision, "max_iter": 1}).fit(X[:40])
    assert rec.precision_ == precision
    assert np.isfinite(rec.history_[0]["loss"])
    assert rec.predict(X[:5]).shape == (5, 10)


def test_precision_auto_resolves_to_something_supported(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "precision": "auto", "max_iter": 1}).fit(X[:30])
    assert rec.precision_ in ("fp32", "bf16")


def test_non_finite_loss_stops_with_a_clear_error(small, monkeypatch):
    X, _ = small
    monkeypatch.setattr(OBJECTIVES["causal"], "batch_loss",
                        lambda self, module, batch, state=None: torch.tensor(
                            float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match="loss became nan"):
        SeqRecommender(**TINY).fit(X)


@pytest.mark.parametrize("loss", ["sampled", "gbce"])
def test_sampled_losses_train(loss, small):
    X, y = small
    rec = SeqRecommender(**{**TINY, "loss": loss, "n_negatives": 8, "max_iter": 3}).fit(X)
    assert all(np.isfinite(h["loss"]) for h in rec.history_)
    assert rec.predict(X).shape == (X.shape[0], 10)


def _smoothed(values, weight):
    out, s = [], None
    for v in values:
        s = v if s is None else weight * v + (1 - weight) * s
        out.append(s)
    return np.array(out)


def test_early_stopping_on_the_smoothed_validation_loss(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "max_iter": 30, "n_iter_no_change": 2,
                            "learning_rate_init": 0.05}).fit(X)
    assert rec.n_iter_ < 30
    losses = [h["val_loss"] for h in rec.history_]
    assert np.isfinite(losses).all() and min(losses) > 0
    # The restored epoch maximises the smoothed -val_loss (first maximum wins).
    monitor = _smoothed(-np.array(losses), SeqRecommender._early_stopping_smoothing)
    assert rec.best_epoch_ == int(np.argmax(monitor)) + 1
    assert rec.n_iter_ == rec.best_epoch_ + 2
    assert rec.best_score_ == rec.history_[rec.best_epoch_ - 1]["val_loss"]  # the monitored


def test_early_stopping_restores_the_weights_of_the_best_epoch(small):
    X, _ = small
    params = {**TINY, "max_iter": 30, "n_iter_no_change": 2, "learning_rate_init": 0.05}
    rec = SeqRecommender(**params).fit(X)
    again = SeqRecommender(**{**params, "max_iter": rec.best_epoch_,
                              "n_iter_no_change": 1000}).fit(X)
    # Same seed, same batches: the model after best_epoch_ epochs is the one restored.
    for a, b in zip(rec.module_.parameters(), again.module_.parameters()):
        torch.testing.assert_close(a, b)


def test_auto_validation_metric_follows_the_number_of_validation_users(small, monkeypatch):
    X, _ = small
    params = {**TINY, "max_iter": 4, "n_iter_no_change": 2, "learning_rate_init": 0.05}
    assert SeqRecommender().validation_metric == "auto"
    n_val = int(round(SeqRecommender().validation_fraction * X.shape[0]))
    few = SeqRecommender(**params).fit(X)  # far fewer than 1,000 validation users: the loss
    assert few.validation_metric_ == "loss"
    assert few.best_score_ == few.history_[few.best_epoch_ - 1]["val_loss"]
    monkeypatch.setattr(SeqRecommender, "_auto_metric_min_users", n_val)
    many = SeqRecommender(**params).fit(X)  # as many as the rule asks for: NDCG@10
    assert many.validation_metric_ == "ndcg@10"
    assert many.best_score_ == many.history_[many.best_epoch_ - 1]["val_ndcg@10"]
    fixed = SeqRecommender(**{**params, "validation_metric": "loss"}).fit(X)
    assert fixed.validation_metric_ == "loss"  # an explicit metric is kept


def test_auto_loss_follows_the_catalogue_size(small, monkeypatch):
    X, _ = small
    params = {**TINY, "max_iter": 1}
    assert SeqRecommender().loss == "auto"
    assert SeqRecommender(**params).fit(X).loss_ == "ce"  # a small catalogue: full softmax
    monkeypatch.setattr(SeqRecommender, "_auto_sampled_min_items", X.shape[1])
    rec = SeqRecommender(**params).fit(X)
    assert rec.loss_ == "sampled" and rec._objective().loss == "sampled"
    assert SeqRecommender(**{**params, "loss": "gbce"}).fit(X).loss_ == "gbce"


def test_validation_metric_can_be_a_ranking_metric(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "max_iter": 12, "n_iter_no_change": 3,
                            "validation_metric": "recall@5", "learning_rate_init": 0.05}).fit(X)
    recalls = np.array([h["val_recall@5"] for h in rec.history_])
    assert ((0 <= recalls) & (recalls <= 1)).all()
    monitor = _smoothed(recalls, SeqRecommender._early_stopping_smoothing)
    # The restored epoch is within tol of the best smoothed recall, and no later than it.
    assert monitor[rec.best_epoch_ - 1] >= monitor.max() - rec.tol
    assert rec.best_score_ == recalls[rec.best_epoch_ - 1]
    assert rec.best_epoch_ <= int(np.argmax(monitor)) + 1
    assert rec.n_iter_ == 12 or rec.n_iter_ == rec.best_epoch_ + 3


@pytest.mark.parametrize(
    "params, match",
    [
        ({"d_model": 10, "n_heads": 3}, "divisible"),
        ({"loss": "hinge"}, "loss must be .auto. or one of"),
        ({"encoder": "lstm9"}, "encoder must be one of"),
        ({"objective": "nsp"}, "objective must be one of"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"accumulation_steps": 0}, "accumulation_steps"),
        ({"dropout": 1.0}, "dropout"),
        ({"max_iter": 0}, "max_iter"),
        ({"learning_rate_init": -1.0}, "learning_rate_init"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_metric": "auc"}, "validation_metric"),
        ({"validation_metric": "ndcg@0"}, "validation_metric"),
        ({"device": "tpu9"}, "device"),
    ],
)
def test_bad_parameters(params, match, small):
    X, _ = small
    with pytest.raises(ValueError, match=match):
        SeqRecommender(**{**TINY, **params}).fit(X)


def test_bad_input_is_rejected_without_modification(small):
    X, _ = small
    rec = SeqRecommender(**TINY).fit(X)
    bad = X.copy()
    bad.data[0] = -1.0
    before = bad.copy()
    with pytest.raises(ValueError, match="negative"):
        rec.fit(bad)
    assert (bad != before).nnz == 0
    with pytest.raises(ValueError, match="features"):
        rec.predict(X[:, :5])


# ---------------------------------------------------------------- sklearn integration
def test_grid_search_over_precision_and_accumulation(small):
    X, y = small
    X, y = X[:60], y[:60]
    grid = {"accumulation_steps": [1, 2], "precision": ["fp32", "bf16"]}
    base = SeqRecommender(**{**TINY, "max_iter": 1, "early_stopping": False})
    search = GridSearchCV(base, grid, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    scored = GridSearchCV(base, {"accumulation_steps": [1, 2]}, cv=2, scoring=ndcg_scorer,
                          n_jobs=2).fit(X, y)
    assert 0.0 <= scored.best_score_ <= 1.0


def test_in_a_pipeline_and_cloned(small):
    X, y = small
    pipe = make_pipeline(FunctionTransformer(accept_sparse=True), SeqRecommender(**TINY))
    pipe.fit(X)
    assert pipe.predict(X[:4], k=3).shape == (4, 3)
    rec = clone(SeqRecommender(**TINY))
    assert not hasattr(rec, "module_") and rec.get_params()["d_model"] == 8


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_and_cpu_reload(precision, small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "device": "cuda", "precision": precision}).fit(X)
    assert rec.device_.type == "cuda"
    back = pickle.loads(pickle.dumps(rec))
    assert np.array_equal(back.predict(X), rec.predict(X))


# ---------------------------------------------------------------- quality
def test_beats_markov_chain_on_planted_sequences():
    X = make_interactions(n_users=800, n_items=150, mean_length=25, random_state=3)
    X_train, y = leave_last_out_split(X)
    rec = SeqRecommender(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=30, max_iter=40,
                         batch_size=64, learning_rate_init=3e-3, n_iter_no_change=5,
                         dropout=0.1, random_state=0, device="cpu").fit(X_train)
    seq_hr = hit_rate_at_k(y, rec.predict(X_train))
    markov_hr = hit_rate_at_k(y, MarkovChainRecommender().fit(X_train).predict(X_train))
    pop_hr = hit_rate_at_k(y, PopularityRecommender().fit(X_train).predict(X_train))
    assert seq_hr > markov_hr + 0.03 > pop_hr


def test_verbose_shows_progress_bars_with_the_validation_values(small, capsys):
    X, _ = small
    SeqRecommender(**{**TINY, "verbose": 2}).fit(X)
    err = capsys.readouterr().err
    assert "SeqRecommender" in err and "epoch" in err
    assert "val_loss=" in err and "val_ndcg@10=" in err
    # verbose=2 adds the steps; in text that is not a terminal, as one bar per epoch with
    # no cursor-moving escape codes (which nested bars would leave in a log)
    assert "epoch 1/2" in err and "step" in err and "\x1b[" not in err
    SeqRecommender(**TINY).fit(X)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- guard rails of the trainer
def test_emulated_low_precision_on_cpu_warns_once_per_fit(small, monkeypatch):
    import skrec.training.precision as training

    X, _ = small
    monkeypatch.setattr(training, "cpu_supports_bf16", lambda: False)
    with pytest.warns(UserWarning, match="precision='bf16' is emulated.*precision='auto'") as rec:
        SeqRecommender(**{**TINY, "precision": "bf16", "max_iter": 1}).fit(X[:40])
    assert sum("emulated" in str(w.message) for w in rec) == 1
    monkeypatch.setattr(training, "cpu_supports_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SeqRecommender(**{**TINY, "precision": "bf16", "max_iter": 1}).fit(X[:40])


def test_fp16_epoch_without_a_finite_step_raises(small, monkeypatch):
    X, _ = small
    # a NaN loss that reaches every weight: the fp16 gradient scaler skips every step
    monkeypatch.setattr(OBJECTIVES["causal"], "batch_loss",
                        lambda self, module, batch, state=None: float("nan") * sum(
                            p.float().sum() for p in module.parameters()))
    with pytest.raises(FloatingPointError, match="non-finite loss.*precision='fp16'"):
        SeqRecommender(**{**TINY, "precision": "fp16"}).fit(X)


def test_warm_start_with_another_catalogue_is_refused_and_changes_nothing(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "warm_start": True}).fit(X)
    state = {k: v.clone() for k, v in rec.module_.state_dict().items()}
    before = (rec.n_features_in_, rec.item_popularity_.copy(), rec.n_iter_)
    wider = sp.hstack([X, sp.csr_matrix((X.shape[0], 3))], format="csr")
    with pytest.raises(ValueError, match="warm_start=True continues.*30 items.*33 columns"):
        rec.fit(wider)
    assert rec.n_features_in_ == before[0] and rec.n_iter_ == before[2]
    np.testing.assert_array_equal(rec.item_popularity_, before[1])
    assert all(torch.equal(state[k], v) for k, v in rec.module_.state_dict().items())
    assert rec.predict(X[:3]).max() < X.shape[1]


@pytest.mark.parametrize("device", ["meta", "xla", "mps", "cuda:7", 3])
def test_unsupported_devices_are_refused_at_fit(device, small):
    X, _ = small
    if device == "mps" and torch.backends.mps.is_available():  # pragma: no cover
        pytest.skip("this machine has MPS")
    with pytest.raises(ValueError, match="device"):
        SeqRecommender(**{**TINY, "device": device}).fit(X)


@pytest.mark.parametrize("verbose", ["loud", -1, 1.5])
def test_bad_verbose_is_refused_before_training(verbose, small, capsys):
    X, _ = small
    with pytest.raises(ValueError, match="verbose must be"):
        SeqRecommender(**{**TINY, "verbose": verbose}).fit(X)
    assert capsys.readouterr().err == ""  # no progress bar was started


class _CtrlCDuring(Callback):
    """Send SIGINT to this process after the first step of an epoch, as Ctrl-C would."""

    def __init__(self, epoch):
        self.epoch, self.current, self.sent = epoch, 0, False

    def on_epoch_begin(self, trainer, epoch):
        self.current = epoch

    def on_step_end(self, trainer, loss, n_targets):
        if self.current == self.epoch and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_after_the_step_restores_the_best_weights_and_warns(small, monkeypatch):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "max_iter": 50, "n_iter_no_change": 50})
    ctrl_c = _CtrlCDuring(3)
    original = rec._callbacks
    monkeypatch.setattr(rec, "_callbacks", lambda label=None: [*original(label), ctrl_c])
    handler = signal.getsignal(signal.SIGINT)
    with pytest.warns(UserWarning, match="interrupted.*best epoch"):
        rec.fit(X)
    assert rec.n_iter_ == 3 and rec.history_[-1].get("interrupted")
    assert rec.best_epoch_ in (1, 2)
    assert "val_loss" not in rec.history_[-1]  # the partial epoch is not validated
    assert rec.predict(X[:5]).shape == (5, 10)  # usable
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler restored


@pytest.mark.parametrize("n_users, expected", [(1, 32), (943, 32), (2000, 32), (2300, 64),
                                               (6040, 128), (31013, 128)])
def test_auto_batch_size_rule(n_users, expected):
    assert SeqRecommender()._resolve_batch_size(n_users) == expected
    assert SeqRecommender(batch_size=7)._resolve_batch_size(n_users) == 7


def test_auto_batch_size_is_resolved_at_fit_and_kept_by_continued_training():
    from skrec.datasets import make_interactions

    X = make_interactions(n_users=120, n_items=30, mean_length=6, random_state=0)
    common = dict(d_model=8, n_heads=1, d_ff=8, max_len=6, max_iter=1, random_state=0,
                  precision="fp32")
    rec = SeqRecommender(**common).fit(X)
    assert rec.batch_size == "auto" and rec.batch_size_ == 32
    assert rec.history_[-1]["steps"] == 4  # 120 users in batches of 32
    rec.set_params(batch_size=16).partial_fit(X[:10])
    assert rec.batch_size_ == 32  # continued training keeps the model's batch size
    assert SeqRecommender(**{**common, "batch_size": 16}).fit(X).batch_size_ == 16
    with pytest.raises(ValueError, match="batch_size"):
        SeqRecommender(**{**common, "batch_size": "big"}).fit(X)
