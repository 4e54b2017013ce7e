"""Pruning: structured slicing (shapes, exactness), magnitude sparsity, fine-tuning, the API."""

from __future__ import annotations

import copy
import pickle

import joblib
import numpy as np
import pytest
import torch
from _modules import causal_transformer
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from skrec import AERecommender, SeqRecommender
from skrec.baselines import PopularityRecommender
from skrec.datasets import make_interactions
from skrec.model_selection import leave_last_out_split
from skrec.nn import MultVAE
from skrec.pruning import model_summary, pruning_groups

SEQ = dict(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=16, max_iter=8, batch_size=32,
           dropout=0.2, validation_fraction=0.1, random_state=0, device="cpu", precision="fp32")
AE = dict(hidden_sizes=(32,), latent_dim=16, max_iter=8, batch_size=32, random_state=0,
          device="cpu", precision="fp32")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def data():
    X = make_interactions(n_users=200, n_items=40, mean_length=10, random_state=0)
    return leave_last_out_split(X)


@pytest.fixture(scope="module")
def seq(data):
    return SeqRecommender(**SEQ).fit(data[0])


@pytest.fixture(scope="module")
def vae(data):
    return AERecommender(**AE).fit(data[0])


# ---------------------------------------------------------------- shapes
def test_structured_transformer_shapes_and_parameter_count(seq, data):
    X, _ = data
    rec = copy.deepcopy(seq).prune_(0.5)
    m = rec.module_
    # d_model 16 -> 8; 4 heads -> 2 (jointly ranked); d_ff 32 -> 16 per block; head_dim kept
    assert m.d_model == 8 and m.items.id_emb.weight.shape == (41, 8)
    assert sum(b.attn.n_heads for b in m.encoder.blocks) == 2
    assert [b.ff1.out_features for b in m.encoder.blocks] == [16, 16]
    for b in m.encoder.blocks:
        assert b.ln1.normalized_shape == (8,) and b.attn.q_proj.in_features == 8
        assert b.attn.q_proj.out_features == b.attn.n_heads * 8
    report = rec.pruning_report_
    assert report["after"]["parameters"] == n_params(m) < report["before"]["parameters"]
    assert report["after"]["flops_per_user"] < report["before"]["flops_per_user"] / 2
    # as many parameters as a transformer built with those widths (when heads stay balanced)
    if [b.attn.n_heads for b in m.encoder.blocks] == [1, 1]:
        fresh = causal_transformer(40, d_model=8, n_layers=2, n_heads=1, d_ff=16, max_len=16)
        assert n_params(fresh) == n_params(m)
    assert rec.predict(X, k=5).shape == (X.shape[0], 5)
    # constructor parameters untouched (sklearn rule); the module carries the new shapes
    assert rec.get_params() == seq.get_params()


def test_structured_targets_and_heads_may_all_go(seq, data):
    X, _ = data
    rec = copy.deepcopy(seq).prune_(0.75, targets=("heads",))
    m = rec.module_
    # 4 heads, floor(0.75 * 4) = 3 removed
    assert sum(b.attn.n_heads for b in m.encoder.blocks) == 1
    assert m.d_model == 16 and [b.ff1.out_features for b in m.encoder.blocks] == [32, 32]
    groups = {g["name"]: g for g in rec.pruning_report_["groups"]}
    assert groups["embedding"]["after"] == 16
    assert min(b.attn.n_heads for b in m.encoder.blocks) == 0  # that block's attention adds nothing
    assert np.isfinite(rec.predict_scores(X)).all()


@pytest.mark.parametrize("variational", [True, False])
def test_structured_autoencoder_shapes(data, variational):
    X, _ = data
    rec = AERecommender(variational=variational, **{**AE, "max_iter": 2}).fit(X)
    rec.prune_(0.5)
    m = rec.module_
    fresh = MultVAE(40, hidden_sizes=(16,), latent_dim=8, variational=variational)
    assert n_params(m) == n_params(fresh)
    assert m.latent_dim == 8 and m.mu.out_features == 8 and m.decoder[0].in_features == 8
    if variational:
        assert m.logvar.weight.shape == (8, 16)
    assert rec.predict(X, k=3).shape == (X.shape[0], 3)


def test_removing_dead_units_is_exact(seq, vae, data):
    X, _ = data
    rec = copy.deepcopy(seq)
    m = rec.module_
    with torch.no_grad():  # a dead FFN unit in each block; dead heads: 1 in block 0, 2 in 1
        for b in m.encoder.blocks:
            b.ff1.weight[5].zero_()
            b.ff1.bias[5] = 0.0
            b.ff2.weight[:, 5].zero_()
        hd = m.encoder.blocks[0].attn.head_dim
        blocks = m.encoder.blocks
        for attn, dead in ((blocks[0].attn, slice(hd, None)), (blocks[1].attn, slice(None))):
            for p in (attn.q_proj, attn.k_proj, attn.v_proj):
                p.weight[dead].zero_()
                p.bias[dead].zero_()
            attn.out_proj.weight[:, dead].zero_()
        m.encoder.blocks[1].attn.out_proj.bias.normal_()  # what a head-less attention still adds
    before = rec.predict_scores(X)
    rec.prune_(1 / 32, targets=("ffn",))  # floor(32/32) = 1 unit per block
    rec.prune_(3 / 4, targets=("heads",))  # 3 of 4 heads: block 1 loses all its heads
    assert [b.ff1.out_features for b in m.encoder.blocks] == [31, 31]
    assert [b.attn.n_heads for b in m.encoder.blocks] == [1, 0]
    np.testing.assert_allclose(rec.predict_scores(X), before, rtol=1e-4, atol=1e-4)

    ae = copy.deepcopy(vae)
    with torch.no_grad():
        enc = ae.module_.encoder[0]
        enc.weight[7].zero_()
        enc.bias[7] = 0.0
        ae.module_.mu.weight[:, 7].zero_()
        ae.module_.logvar.weight[:, 7].zero_()
        dec = ae.module_.decoder  # "hidden" also prunes the decoder's hidden layer
        dec[0].weight[3].zero_()
        dec[0].bias[3] = 0.0
        dec[1].weight[:, 3].zero_()
    before = ae.predict_scores(X)
    ae.prune_(1 / 32, targets=("hidden",))
    assert ae.module_.encoder[0].out_features == ae.module_.decoder[0].out_features == 31
    np.testing.assert_allclose(ae.predict_scores(X), before, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- amount semantics
@pytest.mark.parametrize("method", ["structured", "magnitude"])
def test_zero_amount_is_bit_identical(seq, vae, data, method):
    X, _ = data
    for est in (seq, vae):
        rec = copy.deepcopy(est).prune_(0.0, method)
        assert np.array_equal(rec.predict_scores(X), est.predict_scores(X))
        assert rec.pruning_report_["after"]["parameters"] == n_params(est.module_)


def test_amounts_do_not_compound_and_never_grow_back(seq):
    rec = copy.deepcopy(seq).prune_(0.5)
    state = copy.deepcopy(rec.module_.state_dict())
    rec.prune_(0.5).prune_(0.25)  # no-ops: counted against the unpruned widths
    after = rec.module_.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    rec.prune_(0.75)
    blocks = rec.module_.encoder.blocks
    assert rec.module_.d_model == 4 and [b.ff1.out_features for b in blocks] == [8, 8]


def test_magnitude_sparsity_equals_amount_and_survives_fine_tuning(seq, data):
    X, _ = data
    rec = copy.deepcopy(seq).prune_(0.3, "magnitude")
    weights = [m.weight for m in rec.module_.modules()
               if isinstance(m, torch.nn.Linear | torch.nn.Embedding)]
    n = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(0.3 * n)
    assert rec.pruning_report_["after"]["sparsity"] == pytest.approx(round(0.3 * n) / n)
    assert rec.pruning_report_["after"]["parameters"] == n_params(seq.module_)  # no shrink
    masks = [w == 0 for w in weights]
    rec.prune_(0.5, "magnitude", X=X, fine_tune_epochs=2)
    assert rec.pruning_report_["fine_tune_epochs"] >= 1
    weights = [m.weight for m in rec.module_.modules()
               if isinstance(m, torch.nn.Linear | torch.nn.Embedding)]
    assert sum(int((w == 0).sum()) for w in weights) == round(0.5 * n)
    assert all(bool(w[m].eq(0).all()) for w, m in zip(weights, masks))  # old zeros stay zero
    assert not any(p._backward_hooks for p in rec.module_.parameters())  # hooks removed


# ---------------------------------------------------------------- fine-tuning and quality
@pytest.fixture(scope="module")
def planted():
    X = make_interactions(n_users=300, n_items=60, mean_length=12, random_state=0)
    X, y = leave_last_out_split(X)
    base = SeqRecommender(**{**SEQ, "max_iter": 30}).fit(X)  # early stopping ends it
    return X, y, base


def test_pruned_and_fine_tuned_quality_stays_close(planted):
    X, y, base = planted
    full = base.score(X, y)
    assert full > PopularityRecommender().fit(X).score(X, y) + 0.03  # something to lose
    rec = copy.deepcopy(base).prune_(0.5, targets=("heads", "ffn"), X=X, fine_tune_epochs=10)
    report = rec.pruning_report_
    assert report["importance"] == "taylor" and report["fine_tune_epochs"] >= 1
    assert len(rec.history_) == len(base.history_) + report["fine_tune_epochs"]
    assert rec.score(X, y) >= 0.95 * full
    # halving the embedding width too costs more on this tiny model (16 -> 8 dimensions;
    # 0.82 of the full model's NDCG@10 when written, on 300 test users)
    rec = copy.deepcopy(base).prune_(0.5, X=X, fine_tune_epochs=15)
    assert rec.module_.d_model == 8
    assert rec.score(X, y) >= 0.8 * full


def test_taylor_importance_needs_and_uses_x(seq, data):
    X, _ = data
    with pytest.raises(ValueError, match="taylor"):
        copy.deepcopy(seq).prune_(0.5, importance="taylor")
    rec = copy.deepcopy(seq).prune_(0.5, X=X, importance="taylor", fine_tune_epochs=0)
    assert rec.pruning_report_["importance"] == "taylor"
    assert rec.module_.d_model == 8 and rec.n_iter_ == seq.n_iter_


# ---------------------------------------------------------------- the API
@pytest.mark.parametrize("amount", [-0.1, 1.0, 1.5, float("nan"), "half", True, None])
def test_invalid_amount(seq, amount):
    with pytest.raises(ValueError, match="amount"):
        copy.deepcopy(seq).prune_(amount)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "random"}, "method"),
        ({"importance": "hessian"}, "importance"),
        ({"targets": ("hidden",)}, "targets"),
        ({"targets": ()}, "targets"),
        ({"fine_tune_epochs": -1}, "fine_tune_epochs"),
    ],
)
def test_invalid_options(seq, kwargs, match):
    with pytest.raises(ValueError, match=match):
        copy.deepcopy(seq).prune_(0.5, **kwargs)


@pytest.mark.parametrize("prune", [1.0, "yes", {"method": "magnitude"}, {"amount": 0.5, "x": 1},
                                   {"amount": 0.5, "method": "random"}])
def test_invalid_prune_parameter_fails_before_training(data, prune):
    with pytest.raises(ValueError, match="prune|amount"):
        SeqRecommender(**SEQ, prune=prune).fit(data[0])


def test_prune_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        SeqRecommender().prune_(0.5)
    with pytest.raises(NotFittedError):
        AERecommender().prune_(0.5, "magnitude")


@pytest.mark.parametrize("method", ["structured", "magnitude"])
def test_pickle_and_joblib_round_trip(seq, vae, data, tmp_path, method):
    X, _ = data
    for est in (seq, vae):
        rec = copy.deepcopy(est).prune_(0.5, method)
        loaded = pickle.loads(pickle.dumps(rec))
        assert np.array_equal(loaded.predict_scores(X), rec.predict_scores(X))
        assert loaded.pruning_report_ == rec.pruning_report_
        joblib.dump(rec, tmp_path / "m.joblib")
        assert np.array_equal(joblib.load(tmp_path / "m.joblib").predict(X), rec.predict(X))
        fresh = clone(rec)
        assert fresh.get_params() == est.get_params() and not hasattr(fresh, "module_")


def test_fit_with_prune_parameter_matches_prune_after_fit(data):
    X, _ = data
    spec = {"amount": 0.5, "fine_tune_epochs": 2}
    a = SeqRecommender(**{**SEQ, "max_iter": 3}, prune=spec).fit(X)
    b = SeqRecommender(**{**SEQ, "max_iter": 3}).fit(X).prune_(0.5, X=X, fine_tune_epochs=2)
    assert a.module_.d_model == 8
    assert np.array_equal(a.predict_scores(X), b.predict_scores(X))
    # prune=0 prunes and fine-tunes nothing: the same model as prune=None
    c = SeqRecommender(**{**SEQ, "max_iter": 3}, prune=0.0).fit(X)
    d = SeqRecommender(**{**SEQ, "max_iter": 3}).fit(X)
    assert np.array_equal(c.predict_scores(X), d.predict_scores(X))
    # a fresh fit starts from the full widths and forgets the old report
    b.set_params(max_iter=1).fit(X)
    assert b.module_.d_model == 16 and not hasattr(b, "pruning_report_")


def test_warm_start_and_partial_fit_keep_the_pruned_shapes(data):
    X, _ = data
    rec = AERecommender(**{**AE, "max_iter": 2}, warm_start=True,
                        prune={"amount": 0.5, "fine_tune_epochs": 1}).fit(X)
    widths = model_summary(rec.module_)["architecture"]
    n_iter = rec.n_iter_
    rec.fit(X)  # continues the pruned module; the target is already met: no compounding
    assert model_summary(rec.module_)["architecture"] == widths
    assert rec.n_iter_ == n_iter + 2
    rec.partial_fit(X[:50])
    assert model_summary(rec.module_)["architecture"] == widths
    assert rec.predict(X[:4]).shape == (4, 10)


def test_grid_search_over_prune(data):
    X, y = data
    grid = GridSearchCV(
        SeqRecommender(**{**SEQ, "max_iter": 2}),
        {"prune": [None, {"amount": 0.5, "fine_tune_epochs": 1}]},
        cv=2,
    ).fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 2
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    pruned = clone(grid.estimator).set_params(prune=0.5).fit(X)
    assert pruned.module_.d_model == 8


def test_bf16_model_prunes_and_predicts(data):
    X, _ = data
    tiny = {**SEQ, "d_model": 8, "d_ff": 16, "max_iter": 1, "precision": "bf16"}
    rec = SeqRecommender(**tiny).fit(X[:40])
    rec.prune_(0.5, X=X[:40], fine_tune_epochs=1)
    assert rec.precision_ == "bf16" and rec.module_.d_model == 4
    assert np.isfinite(rec.predict_scores(X[:5])).all()
    loaded = pickle.loads(pickle.dumps(rec))
    assert np.array_equal(loaded.predict_scores(X[:5]), rec.predict_scores(X[:5]))


def test_pruning_groups_and_summary_describe_the_module():
    m = causal_transformer(10, d_model=8, n_layers=1, n_heads=2, d_ff=4, max_len=5)
    names = [g.name for g in pruning_groups(m)]
    assert names == ["blocks.0.heads", "blocks.0.ffn", "embedding"]
    s = model_summary(m)
    assert s["parameters"] == n_params(m)
    assert s["architecture"] == {"d_model": 8, "n_heads": [2], "d_ff": [4]}
    with pytest.raises(TypeError):
        pruning_groups(torch.nn.Linear(2, 2))


def test_pruning_embedding_dimensions_keeps_the_input_scale_of_the_built_width(seq, data):
    """The item vectors are scaled by sqrt(d_model) of the model as built: the pruned model's
    first block reads exactly the kept dimensions of what it read before (a scale recomputed
    from the pruned width would shrink the items against the positions)."""
    X, _ = data
    rec = copy.deepcopy(seq)
    seqs = torch.tensor([[0, 0, 3, 7, 1], [2, 9, 4, 4, 5]])
    inputs = []

    def grab(module, args):
        inputs.append(args[0].detach().clone())

    before_pos = rec.module_.encoder.pos_emb.weight.detach().clone()
    for model in (rec.module_,):
        handle = model.encoder.blocks[0].register_forward_pre_hook(grab)
        model.eval()(seqs)
        handle.remove()
    rec.prune_(0.5, targets=("embedding",))
    enc = rec.module_.encoder
    assert rec.module_.d_model == 8 and enc.input_scale == 4.0  # sqrt(16), as built
    after_pos = enc.pos_emb.weight.detach()
    kept = [int((before_pos - after_pos[:, [j]]).abs().sum(0).argmin()) for j in range(8)]
    handle = enc.blocks[0].register_forward_pre_hook(grab)
    rec.module_.eval()(seqs)
    handle.remove()
    torch.testing.assert_close(inputs[1], inputs[0][..., kept])
