"""AERecommender (Mult-VAE / Mult-DAE): the contract, the trainer's features, streaming, quality."""

from __future__ import annotations

import pickle

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

from skrec import AERecommender
from skrec.baselines import PopularityRecommender
from skrec.datasets import make_interactions
from skrec.metrics import ndcg_at_k
from skrec.model_selection import random_holdout_split, user_holdout_split
from skrec.nn import FeatureProjection, MultVAE, multinomial_elbo_loss

TINY = dict(hidden_sizes=(16,), latent_dim=8, max_iter=2, batch_size=16, random_state=0,
            device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def small():
    X = make_interactions(n_users=120, n_items=30, mean_length=8, random_state=0)
    return random_holdout_split(X, 0.2, random_state=0)


@parametrize_with_checks(
    [AERecommender(**TINY), AERecommender(variational=False, **TINY)],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ---------------------------------------------------------------- the torch module and loss
def test_module_is_a_list_of_linear_layers():
    vae = MultVAE(50, hidden_sizes=(20, 10), latent_dim=4)
    layers = vae.linear_layers()
    assert all(isinstance(layer, torch.nn.Linear) for layer in layers)
    shapes = [(layer.in_features, layer.out_features) for layer in layers]
    assert shapes == [(50, 20), (20, 10), (10, 4), (10, 4), (4, 10), (10, 20), (20, 50)]
    dae = MultVAE(50, hidden_sizes=(), latent_dim=4, variational=False)
    assert dae.logvar is None
    assert [(m.in_features, m.out_features) for m in dae.linear_layers()] == [(50, 4), (4, 50)]


def test_loss_is_the_summed_multinomial_nll_plus_beta_kl():
    torch.manual_seed(0)
    logits, x = torch.randn(3, 6), (torch.rand(3, 6) > 0.5).float()
    mu, logvar = torch.randn(3, 2), torch.randn(3, 2)
    nll = -(torch.log_softmax(logits, 1) * x).sum()
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum()
    torch.testing.assert_close(multinomial_elbo_loss(logits, x), nll)
    torch.testing.assert_close(multinomial_elbo_loss(logits, x, mu, logvar, 0.3), nll + 0.3 * kl)
    half = multinomial_elbo_loss(logits.bfloat16(), x, mu, logvar, 0.3)
    assert half.dtype == torch.float32  # logits upcast before the log-softmax


def test_scores_are_deterministic_and_ignore_dropout():
    vae = MultVAE(20, hidden_sizes=(8,), latent_dim=4, dropout=0.5).train()
    x = (torch.rand(5, 20) > 0.6).float()
    torch.testing.assert_close(vae.scores(x), vae.scores(x))
    assert vae.training  # scores() did not switch the mode
    mu, _ = vae.eval().encode(x)
    torch.testing.assert_close(vae.scores(x), vae.decode(mu))
    # L2 normalisation: a row's scale does not matter
    torch.testing.assert_close(vae.scores(2 * x), vae.scores(x))


def test_output_layer_reads_a_linear_or_mlp_feature_map():
    """Each item's logit is ``h . (id row * mask + f(x_i)) + id bias * mask + b(x_i)``, with
    ``f`` linear or a small MLP; a map without the scalar term is refused."""
    torch.manual_seed(0)
    feats = torch.randn(20, 6)
    for hidden in (None, 5):
        proj = FeatureProjection(20, 6, 4, hidden=hidden, scalar=True)
        proj.set_features(feats)
        vae = MultVAE(20, hidden_sizes=(), latent_dim=4, features=proj).eval()
        z = torch.randn(3, 4)
        mask = (torch.arange(20) % 3 > 0).float()
        h = feats @ proj.weight + proj.bias
        if hidden is None:
            vectors, scalars = h, (feats @ proj.scalar.weight.t()).squeeze(1) + proj.scalar.bias
        else:
            g = torch.nn.functional.gelu(h)
            vectors, scalars = proj.out(g), proj.scalar(g).squeeze(1)
        last = vae.decoder[-1]
        ref = (z @ last.weight.t() + last.bias) * mask + z @ vectors.t() + scalars
        with torch.no_grad():
            torch.testing.assert_close(vae.decode(z, mask), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="scalar=True"):
        MultVAE(20, hidden_sizes=(), latent_dim=4,
                features=FeatureProjection(20, 6, 4, hidden=5, scalar=False))


# ---------------------------------------------------------------- contract
@pytest.mark.parametrize("variational", [True, False])
def test_predict_fold_in_new_and_cold_users(variational, small):
    X, y = small
    X_fit, X_new = X[:90], X[90:]
    rec = AERecommender(variational=variational, **TINY).fit(X_fit)
    ids = rec.predict(X_new, k=5)
    assert ids.shape == (X_new.shape[0], 5)
    assert not X_new[np.arange(X_new.shape[0])[:, None], ids].toarray().any()
    # a user's recommendations depend on their row only, not on the other rows of the batch
    assert np.array_equal(rec.predict(X_new[3:4], k=5), ids[3:4])
    # binary input: the stored values (order) do not matter
    X_bin = X_new.copy()
    X_bin.data[:] = 1.0
    assert np.array_equal(rec.predict(X_bin, k=5), ids)
    cold = sp.csr_matrix((2, X.shape[1]))
    pop = PopularityRecommender().fit(X_fit).predict(cold)
    assert np.array_equal(rec.predict(cold), pop)
    assert 0.0 <= rec.score(X[90:], y[90:]) <= 1.0


def test_history_and_fitted_attributes(small):
    X, _ = small
    rec = AERecommender(**{**TINY, "max_iter": 3}).fit(X)
    assert rec.n_iter_ == len(rec.history_) <= 3
    for key in ("loss", "val_ndcg@10", "seconds", "targets_per_s", "peak_memory_mb", "beta"):
        assert key in rec.history_[0]
    assert rec.precision_ == "fp32" and rec.device_.type == "cpu"
    assert isinstance(rec.module_, MultVAE)
    assert "beta" not in AERecommender(variational=False, **TINY).fit(X).history_[0]


def test_validation_holds_out_a_fifth_of_the_validation_users_items(small):
    X, _ = small
    rec = AERecommender(**TINY)
    X_hist, y_val = rec._validation_split(X[:30], np.random.RandomState(0))
    assert (X_hist + y_val != X[:30]).nnz == 0
    assert y_val.nnz == pytest.approx(0.2 * X[:30].nnz, rel=0.15)


def test_determinism(small):
    X, _ = small
    a = AERecommender(**TINY).fit(X).predict_scores(X)
    b = AERecommender(**TINY).fit(X).predict_scores(X)
    assert np.array_equal(a, b)
    c = AERecommender(**{**TINY, "random_state": 1}).fit(X).predict_scores(X)
    assert not np.array_equal(a, c)


def test_pickle_and_joblib_round_trip(small, tmp_path):
    X, _ = small
    rec = AERecommender(**TINY).fit(X)
    expected = rec.recommend(X, k=7)
    back = pickle.loads(pickle.dumps(rec))
    assert all(np.array_equal(a, b) for a, b in zip(back.recommend(X, k=7), expected))
    assert np.array_equal(back.predict_scores(X), rec.predict_scores(X))
    joblib.dump(rec, tmp_path / "rec.joblib")
    again = joblib.load(tmp_path / "rec.joblib")
    assert np.array_equal(again.predict(X, k=7), expected[0])
    assert again.n_steps_ == rec.n_steps_


def test_fit_with_y_trains_on_the_union(small):
    X, y = small
    a = AERecommender(**TINY).fit(X, y).predict_scores(X)
    b = AERecommender(**TINY).fit(X + y).predict_scores(X)
    np.testing.assert_array_equal(a, b)


def test_empty_training_rows_are_skipped(small):
    X, _ = small
    X = sp.vstack([X, sp.csr_matrix((7, X.shape[1]))], format="csr")
    rec = AERecommender(**{**TINY, "early_stopping": False, "max_iter": 1}).fit(X)
    assert rec.history_[0]["targets_per_s"] > 0
    assert rec.history_[0]["steps"] == int(np.ceil((X.shape[0] - 7) / 16))


# ---------------------------------------------------------------- annealing and the step count
def test_kl_weight_is_annealed_per_optimizer_step(small):
    X, _ = small  # 120 users, batches of 16 -> 8 batches -> 4 windows of 2 per epoch
    params = {**TINY, "early_stopping": False, "accumulation_steps": 2, "beta": 0.4,
              "anneal_steps": 20, "warm_start": True}
    rec = AERecommender(**params).fit(X)
    assert rec.n_steps_ == 8 and rec.history_[-1]["steps"] == 4
    assert rec.current_beta() == pytest.approx(0.4 * 8 / 20)
    rec.fit(X)  # warm start continues the count
    assert rec.n_steps_ == 16
    rec.partial_fit(X[:40])  # 3 batches -> 2 windows
    assert rec.n_steps_ == 18
    back = pickle.loads(pickle.dumps(rec))
    back.partial_fit(X)
    assert back.n_steps_ == 22 and back.current_beta() == pytest.approx(0.4)
    rec.set_params(warm_start=False).fit(X)  # a cold fit restarts the schedule
    assert rec.n_steps_ == 8
    assert AERecommender(**{**TINY, "anneal_steps": 0, "beta": 0.3}).current_beta() == 0.3
    assert AERecommender(**{**TINY, "variational": False}).fit(X).current_beta() == 0.0


def test_each_window_sees_one_beta(small, monkeypatch):
    X, _ = small
    seen = []
    original = AERecommender._batch_loss

    def spy(self, module, batch, state):
        seen.append((state.n_steps, self._beta_at(state.n_steps)))
        return original(self, module, batch, state)

    monkeypatch.setattr(AERecommender, "_batch_loss", spy)
    AERecommender(**{**TINY, "early_stopping": False, "max_iter": 1, "accumulation_steps": 3,
                     "anneal_steps": 10}).fit(X)
    # 8 micro-batches in windows of 3, 3, 2: the step count moves only between windows
    assert [s for s, _ in seen] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert [b for _, b in seen] == pytest.approx([0.2 * s / 10 for s, _ in seen])


# ---------------------------------------------------------------- the shared trainer
def _params_after_training(X, **params):
    est = AERecommender(**{**TINY, "dropout": 0.0, "max_iter": 2, "early_stopping": False,
                           **params})
    est.fit(X)
    return torch.cat([p.detach().flatten() for p in est.module_.parameters()]), est


def test_accumulation_gives_the_update_of_one_big_batch(small):
    X, _ = small  # 120 users: windows of 4 x 10 users == batches of 40, exactly
    one, est_one = _params_after_training(X, variational=False, batch_size=40)
    acc, est_acc = _params_after_training(X, variational=False, batch_size=10,
                                          accumulation_steps=4)
    assert est_one.n_steps_ == est_acc.n_steps_ == 6
    torch.testing.assert_close(acc, one, rtol=1e-4, atol=1e-6)
    assert not torch.equal(one, _params_after_training(X, variational=False, batch_size=10)[0])


def test_accumulation_equivalence_for_the_vae_with_annealing(small, monkeypatch):
    # Deterministic Mult-VAE: no dropout, zero reparameterisation noise. The KL weight moves
    # every step (anneal_steps=4), so equality also needs one step count per window.
    X, _ = small
    monkeypatch.setattr(MultVAE, "_noise", lambda self, std: torch.zeros_like(std))
    kw = {"variational": True, "beta": 1.0, "anneal_steps": 4}
    one, _ = _params_after_training(X, batch_size=40, **kw)
    acc, _ = _params_after_training(X, batch_size=20, accumulation_steps=2, **kw)
    torch.testing.assert_close(acc, one, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_on_cpu(precision, small):
    X, _ = small
    rec = AERecommender(**{**TINY, "precision": precision, "max_iter": 1}).fit(X[:48])
    assert rec.precision_ == precision
    assert np.isfinite(rec.history_[0]["loss"])
    scores = rec.predict_scores(X[:5])
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    assert rec.predict(X[:5]).shape == (5, 10)


def test_early_stopping_restores_the_best_epoch(small):
    X, _ = small
    rec = AERecommender(**{**TINY, "max_iter": 40, "n_iter_no_change": 2,
                           "learning_rate_init": 0.05}).fit(X)
    scores = [h["val_ndcg@10"] for h in rec.history_]
    assert rec.n_iter_ < 40
    # No smoothing for the autoencoder: the first epoch within tol of the best NDCG@10.
    assert rec.best_score_ >= max(scores) - rec.tol
    assert rec.best_score_ == scores[rec.best_epoch_ - 1]
    assert rec.n_iter_ == rec.best_epoch_ + 2
    assert all(np.isfinite(h["val_loss"]) for h in rec.history_)


def test_early_stopping_on_the_validation_loss(small):
    X, _ = small
    rec = AERecommender(**{**TINY, "max_iter": 40, "n_iter_no_change": 2,
                           "validation_metric": "loss", "learning_rate_init": 0.05}).fit(X)
    losses = [h["val_loss"] for h in rec.history_]
    assert losses[rec.best_epoch_ - 1] <= min(losses) + rec.tol
    assert rec.best_score_ == losses[rec.best_epoch_ - 1]
    assert rec.n_iter_ == rec.best_epoch_ + 2


def test_warm_start_and_partial_fit(small):
    X, _ = small
    rec = AERecommender(**{**TINY, "warm_start": True, "early_stopping": False}).fit(X)
    rec.fit(X)
    assert rec.n_iter_ == 4
    rec.partial_fit(X[:50])
    assert rec.n_iter_ == 5 and len(rec.history_) == 5
    assert AERecommender(**TINY).partial_fit(X).n_iter_ == 1
    with pytest.raises(ValueError, match="features"):
        rec.partial_fit(X[:, :10])


# ---------------------------------------------------------------- large sparse input
def test_large_sparse_matrix_is_streamed_never_densified(monkeypatch):
    n_users, n_items, batch_size = 20_000, 5_000, 512
    rng = np.random.default_rng(0)
    X = sp.random(n_users, n_items, density=1e-3, format="csr", random_state=rng,
                  data_rvs=lambda n: np.ones(n))
    largest = []

    def guarded_toarray(self, *args, **kwargs):
        largest.append(self.shape[0])
        raise AssertionError(f"toarray() called on a {self.shape} sparse matrix")

    for cls in {type(X), sp.csr_matrix, sp.csr_array, sp.coo_matrix, sp.csc_matrix}:
        monkeypatch.setattr(cls, "toarray", guarded_toarray)
        monkeypatch.setattr(cls, "todense", guarded_toarray)
    original = AERecommender._make_batch

    def watched(self, data, rows, device):
        batch, n = original(self, data, rows, device)
        largest.append(batch[0].shape[0])  # (items, user features)
        return batch, n

    monkeypatch.setattr(AERecommender, "_make_batch", watched)
    rec = AERecommender(hidden_sizes=(8,), latent_dim=4, max_iter=1, batch_size=batch_size,
                        early_stopping=False, random_state=0, device="cpu",
                        precision="fp32").fit(X)
    assert rec.history_[0]["steps"] == int(np.ceil((np.diff(X.indptr) > 0).sum() / batch_size))
    assert max(largest) <= batch_size
    assert rec.predict(X[:3]).shape == (3, 10)


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden_sizes": (16, 0)}, "hidden_sizes"),
        ({"hidden_sizes": "wide"}, "hidden_sizes"),
        ({"hidden_sizes": None}, "hidden_sizes"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"beta": -1.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"anneal_steps": -1}, "anneal_steps"),
        ({"anneal_steps": 2.5}, "anneal_steps"),
        ({"variational": "yes"}, "variational"),
        ({"precision": "fp8"}, "precision must be one of"),
        ({"accumulation_steps": 0}, "accumulation_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_iter": 0}, "max_iter"),
        ({"learning_rate_init": 0.0}, "learning_rate_init"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_metric": "mse"}, "validation_metric"),
        ({"device": "tpu9"}, "device"),
    ],
)
def test_bad_parameters(params, match, small):
    X, _ = small
    rec = AERecommender(**{**TINY, **params})
    with pytest.raises(ValueError, match=match):
        rec.fit(X)
    assert not hasattr(rec, "module_")


def test_hidden_sizes_accepts_an_int_and_a_list(small):
    X, _ = small
    rec = AERecommender(**{**TINY, "hidden_sizes": 12}).fit(X)
    assert rec.module_.encoder[0].out_features == 12
    rec = AERecommender(**{**TINY, "hidden_sizes": [12, 6]}).fit(X)
    assert [m.out_features for m in rec.module_.encoder] == [12, 6]


# ---------------------------------------------------------------- sklearn integration
def test_grid_search_over_precision_and_accumulation(small):
    X, y = small
    X, y = X[:60], y[:60]
    grid = {"accumulation_steps": [1, 2], "precision": ["fp32", "bf16"]}
    base = AERecommender(**{**TINY, "max_iter": 1, "early_stopping": False})
    search = GridSearchCV(base, grid, cv=2).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_in_a_pipeline_and_cloned(small):
    X, _ = small
    pipe = make_pipeline(FunctionTransformer(accept_sparse=True), AERecommender(**TINY))
    pipe.fit(X)
    assert pipe.predict(X[:4], k=3).shape == (4, 3)
    rec = clone(AERecommender(**TINY))
    assert not hasattr(rec, "module_") and rec.get_params()["latent_dim"] == 8


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_and_cpu_reload(precision, small):
    X, _ = small
    rec = AERecommender(**{**TINY, "device": "cuda", "precision": precision}).fit(X)
    assert rec.device_.type == "cuda" and rec.module_.mu.weight.is_cuda
    back = pickle.loads(pickle.dumps(rec))
    assert np.array_equal(back.predict(X), rec.predict(X))
    state = rec.__getstate__()
    assert all(p.device.type == "cpu" for p in state["module_"].parameters())


# ---------------------------------------------------------------- quality
@pytest.mark.parametrize("variational", [True, False])
def test_beats_popularity_on_held_out_users(variational):
    X = make_interactions(n_users=600, n_items=120, mean_length=20, random_state=1)
    X_train, X_fold_in, y_test = user_holdout_split(X, test_size=0.25, random_state=0)
    rec = AERecommender(variational=variational, hidden_sizes=(64,), latent_dim=32,
                        max_iter=40, batch_size=64, n_iter_no_change=5, random_state=0,
                        device="cpu", precision="fp32").fit(X_train)
    ae = ndcg_at_k(y_test, rec.predict(X_fold_in))
    pop = ndcg_at_k(y_test, PopularityRecommender().fit(X_train).predict(X_fold_in))
    assert ae > pop + 0.1
