"""Encoders x objectives of SeqRecommender: the GRU encoder (GRU4Rec), the masked-item
objective (BERT4Rec), their pruning, and every combination through the shared machinery."""

from __future__ import annotations

import copy
import json
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV

from skrec import SeqRecommender
from skrec.baselines import PopularityRecommender
from skrec.datasets import make_interactions
from skrec.model_selection import leave_last_out_split
from skrec.nn import (
    GRUEncoder,
    ItemEmbedding,
    SequenceModel,
    TransformerEncoder,
    build_module,
    module_config,
)
from skrec.objectives import OBJECTIVES
from skrec.objectives.base import SeqData
from skrec.pruning import model_summary, pruning_groups
from skrec.pruning._core import _slice_group, _weight_importance
from skrec.pruning.adapters import PruningGroup, _Slice

# fp32: exact comparisons must not depend on whether this CPU has native bf16.
TINY = dict(d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=12, max_iter=2, batch_size=16,
            random_state=0, device="cpu", precision="fp32")
#: The valid encoder x objective combinations.
COMBOS = [("transformer", "causal"), ("gru", "causal"), ("transformer", "masked")]


@pytest.fixture(scope="module")
def small():
    X = make_interactions(n_users=120, n_items=30, mean_length=10, random_state=0)
    return leave_last_out_split(X)


def gru_model(n_items=50, d=16, n_layers=2, dropout=0.0) -> SequenceModel:
    torch.manual_seed(0)
    return SequenceModel(ItemEmbedding(n_items, d), GRUEncoder(d, n_layers, dropout=dropout),
                         max_len=20).eval()


# ---------------------------------------------------------------- the GRU encoder
def test_gru_last_only_matches_the_full_forward():
    m = gru_model()
    seq = torch.randint(1, 51, (5, 12))
    seq[1, :5] = 0
    seq[2, :11] = 0  # a single item
    seq[3] = 0  # no item at all
    torch.testing.assert_close(m.last_hidden(seq), m(seq)[:, -1])
    full = torch.randint(1, 51, (3, 12))  # no padding: the unpacked path
    torch.testing.assert_close(m.last_hidden(full), m(full)[:, -1])


def test_gru_traceable_path_matches_the_packed_path():
    """The path that torch.export traces (no packing, no data-dependent branch)."""
    m = gru_model()
    seq = torch.randint(1, 51, (4, 12))
    seq[1, :5] = 0
    seq[2] = 0
    x = m.items(seq)
    valid = seq != 0
    enc = m.encoder
    for last_only in (False, True):
        torch.testing.assert_close(enc._run_rotated(x, valid, last_only),
                                   enc._run_packed(x, valid, last_only))


def test_gru_runs_each_row_from_its_first_item():
    m = gru_model()
    seq = torch.randint(1, 51, (1, 8))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), seq], dim=1)
    torch.testing.assert_close(m(padded)[:, 4:], m(seq))
    torch.testing.assert_close(m.last_hidden(padded), m.last_hidden(seq))
    # ... whatever else is in the batch
    batch = torch.cat([padded, torch.randint(1, 51, (1, 12))])
    torch.testing.assert_close(m(batch)[:1, 4:], m(seq))


def test_gru_is_causal():
    m = gru_model()
    seq = torch.randint(1, 51, (1, 10))
    other = seq.clone()
    other[0, 7:] = torch.randint(1, 51, (3,))
    torch.testing.assert_close(m(seq)[:, :7], m(other)[:, :7])
    assert not torch.allclose(m(seq)[:, 7:], m(other)[:, 7:])


def test_gru_needs_a_causal_objective_and_a_layer():
    params = dict(d_model=8, n_layers=1, n_heads=2, d_ff=8, max_len=5, dropout=0.1)
    assert GRUEncoder.from_params(**params, causal=True).causal
    with pytest.raises(ValueError, match="left to right only"):
        GRUEncoder.from_params(**params, causal=False)
    with pytest.raises(ValueError, match="n_layers >= 1"):
        GRUEncoder.from_params(**{**params, "n_layers": 0}, causal=True)


def test_gru_config_rebuilds_the_encoder():
    enc = GRUEncoder(8, 2, hidden_size=[6, 5], dropout=0.25)
    cfg = json.loads(json.dumps(module_config(enc)))
    assert cfg == {"type": "GRUEncoder", "d_model": 8, "n_layers": 2, "hidden_size": [6, 5],
                   "dropout": 0.25}
    rebuilt = build_module(cfg)
    rebuilt.load_state_dict(enc.state_dict())
    assert [g.hidden_size for g in rebuilt.layers] == [6, 5]


# ---------------------------------------------------------------- chunked pruning slices
def test_chunked_slices_select_a_unit_in_every_chunk():
    lin = torch.nn.Linear(2, 3 * 4, bias=False)  # 3 chunks of 4 units, as a GRU's gates
    with torch.no_grad():
        lin.weight.copy_(torch.arange(24.0).reshape(12, 2))
        lin.weight[[1, 5, 9]] = 0.0  # unit 1 in every chunk
    group = PruningGroup("g", "hidden", 4, 1, [_Slice(lin, "weight", 0, chunks=3)])
    score = _weight_importance(group)
    rows = lin.weight.detach().double().pow(2).sum(1).reshape(3, 4).sum(0)
    torch.testing.assert_close(score, rows / rows.sum())
    assert int(score.argmin()) == 1
    expected = lin.weight.detach()[[0, 2, 3, 4, 6, 7, 8, 10, 11]].clone()
    _slice_group(group, np.array([0, 2, 3]))
    torch.testing.assert_close(lin.weight.detach(), expected)


# ---------------------------------------------------------------- GRU pruning
@pytest.fixture(scope="module")
def gru_fitted(small):
    X, _ = small
    return SeqRecommender(**{**TINY, "encoder": "gru", "d_model": 16, "n_layers": 2,
                             "max_iter": 3}).fit(X)


def test_gru_pruning_groups_and_summary(gru_fitted):
    m = gru_fitted.module_
    groups = pruning_groups(m)
    assert [g.name for g in groups] == ["layers.0.hidden", "layers.1.hidden", "embedding"]
    s = model_summary(m)
    assert s["architecture"] == {"d_model": 16, "hidden_size": [16, 16]}
    assert s["parameters"] == sum(p.numel() for p in m.parameters())
    assert s["flops_per_user"] > 0


def test_removing_dead_gru_units_is_exact(gru_fitted, small):
    X, _ = small
    rec = copy.deepcopy(gru_fitted)
    enc = rec.module_.encoder
    with torch.no_grad():  # unit 3 of layer 0 and unit 5 of layer 1 are read by nothing
        enc.layers[0].weight_hh_l0[:, 3] = 0.0
        enc.layers[1].weight_ih_l0[:, 3] = 0.0
        enc.layers[1].weight_hh_l0[:, 5] = 0.0
        enc.out_proj.weight[:, 5] = 0.0
    before = rec.predict_scores(X)
    rec.prune_(1 / 16, targets=("hidden",), importance="weight")
    assert [(g.input_size, g.hidden_size) for g in enc.layers] == [(16, 15), (15, 15)]
    assert enc.layers[1].weight_ih_l0.shape == (45, 15) and enc.out_proj.in_features == 15
    assert all(len(g._flat_weights) == 4 and g._flat_weights[1].shape == (45, 15)
               for g in enc.layers)  # nn.GRU runs on the sliced weights
    np.testing.assert_allclose(rec.predict_scores(X), before, rtol=1e-5, atol=1e-5)


def test_gru_structured_pruning_shapes_config_and_fine_tuning(gru_fitted, small):
    X, _ = small
    rec = copy.deepcopy(gru_fitted).prune_(0.5, X=X, fine_tune_epochs=1)
    m = rec.module_
    assert rec.pruning_report_["importance"] == "taylor"
    assert m.d_model == 8 and [g.hidden_size for g in m.encoder.layers] == [8, 8]
    fresh = SequenceModel(ItemEmbedding(30, 8), GRUEncoder(8, 2), max_len=12)
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in fresh.parameters())
    rebuilt = build_module(json.loads(json.dumps(module_config(m))))
    rebuilt.load_state_dict(m.state_dict())
    expected = rec.predict_scores(X[:10])
    rec.module_ = rebuilt.eval()
    np.testing.assert_array_equal(rec.predict_scores(X[:10]), expected)
    with pytest.raises(ValueError, match="targets"):
        copy.deepcopy(gru_fitted).prune_(0.5, targets=("heads",))


# ---------------------------------------------------------------- the masked objective
def masked_data(seed=0):
    rng = np.random.RandomState(seed)
    lengths = np.array([10, 1, 4, 0, 7])
    seqs = np.zeros((5, 10), dtype=np.int64)
    for i, n in enumerate(lengths):
        seqs[i, 10 - n :] = rng.randint(1, 21, n)
    return SeqData(seqs, lengths, None)


#: The objectives' required parameters (an estimator passes its own).
OBJ = dict(loss="ce", n_negatives=8, gbce_t=0.75, max_len=10)


def test_masked_batches_mask_a_fraction_of_each_sequence_reproducibly():
    obj = OBJECTIVES["masked"](**OBJ, mask_prob=0.3)
    data = masked_data()
    rows = np.arange(5)
    torch.manual_seed(3)
    (seq, masked, _), n_targets = obj.make_batch(data, rows, torch.device("cpu"))
    # round(0.3 * length) items, at least one, never more than the row has
    assert masked.sum(1).tolist() == [3, 1, 1, 0, 2] and n_targets == 7
    assert not masked[seq == 0].any()  # padding is never masked
    torch.manual_seed(3)
    (_, again, _), _ = obj.make_batch(data, rows, torch.device("cpu"))
    assert torch.equal(masked, again)  # the seeded torch generator decides
    draws = set()
    for _ in range(30):  # and every position of a row gets masked sometimes
        (_, m, _), _ = obj.make_batch(data, rows, torch.device("cpu"))
        draws |= set(np.flatnonzero(m[0].numpy()))
    assert draws == set(range(10))


def test_last_item_masking():
    obj = OBJECTIVES["masked"](**OBJ, mask_prob=0.3, last_item_prob=1.0)
    (seq, masked, _), n_targets = obj.make_batch(masked_data(), np.arange(5), torch.device("cpu"))
    assert masked[:, -1].tolist() == [True, True, True, False, True] and n_targets == 4
    assert masked[:, :-1].sum() == 0


def test_masked_loss_counts_the_masked_positions_only():
    torch.manual_seed(0)
    enc = TransformerEncoder(8, 1, 2, 16, 10, 0.0, causal=False)
    module = SequenceModel(ItemEmbedding(20, 8, n_special=1), enc, max_len=10).eval()
    obj = OBJECTIVES["masked"](**OBJ, mask_prob=0.3)
    batch, n_targets = obj.make_batch(masked_data(), np.arange(5), torch.device("cpu"))
    seq, masked, _ = batch
    inputs = seq.masked_fill(masked, 21)  # the mask token follows the 20 items
    logits = module.score_hidden(module(inputs)[masked])
    expected = F.cross_entropy(logits, seq[masked] - 1, reduction="sum")
    torch.testing.assert_close(obj.batch_loss(module, batch), expected)
    assert n_targets == int(masked.sum())


def test_masked_inference_appends_the_mask_token(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "objective": "masked"}).fit(X)
    m = rec.module_
    assert m.items.n_special == 1 and not m.encoder.causal
    from skrec._histories import ordered_sequences

    seq = torch.as_tensor(ordered_sequences(X[:4], TINY["max_len"] - 1))
    seq = torch.cat([seq, torch.full((4, 1), m.items.special_token())], dim=1)
    with torch.inference_mode():
        expected = m.score_hidden(m(seq)[:, -1]).numpy()
    np.testing.assert_allclose(rec.predict_scores(X[:4]), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- every combination
@pytest.mark.parametrize("encoder, objective", COMBOS)
def test_combination_with_sampled_losses_and_sparse_item_gradients(encoder, objective, small):
    X, y = small
    for loss in ("sampled", "gbce"):
        rec = SeqRecommender(**{**TINY, "encoder": encoder, "objective": objective,
                                "loss": loss, "n_negatives": 8}).fit(X)
        assert rec._objective().sparse_grads(rec.module_)
        assert np.isfinite(rec.history_[-1]["loss"]) and 0.0 <= rec.score(X, y) <= 1.0


@pytest.mark.parametrize("encoder, objective", COMBOS)
def test_combination_fits_predicts_and_is_reproducible(encoder, objective, small, tmp_path):
    X, y = small
    params = {**TINY, "encoder": encoder, "objective": objective}
    rec = SeqRecommender(**params).fit(X)
    ids = rec.predict(X, k=5)
    assert ids.shape == (X.shape[0], 5) and 0.0 <= rec.score(X, y) <= 1.0
    seen = X[np.arange(X.shape[0])[:, None], np.maximum(ids, 0)].toarray()
    assert not seen[ids >= 0].any()
    again = SeqRecommender(**params).fit(X)
    np.testing.assert_array_equal(again.predict_scores(X), rec.predict_scores(X))
    other = SeqRecommender(**{**params, "random_state": 1}).fit(X)
    assert not np.array_equal(other.predict_scores(X), rec.predict_scores(X))
    back = pickle.loads(pickle.dumps(rec))
    np.testing.assert_array_equal(back.predict_scores(X), rec.predict_scores(X))


@pytest.mark.parametrize("encoder, objective", COMBOS)
def test_combination_warm_start_partial_fit_and_early_stopping(encoder, objective, small):
    X, _ = small
    params = {**TINY, "encoder": encoder, "objective": objective}
    rec = SeqRecommender(**{**params, "warm_start": True}).fit(X)
    rec.fit(X)
    assert rec.n_iter_ == 4
    rec.partial_fit(X[:50])
    assert rec.n_iter_ == 5 and len(rec.history_) == 5
    es = SeqRecommender(**{**params, "max_iter": 30, "n_iter_no_change": 2,
                           "learning_rate_init": 0.05}).fit(X)
    assert es.n_iter_ < 30 and es.best_epoch_ is not None
    assert np.isfinite([h["val_loss"] for h in es.history_]).all()


@pytest.mark.parametrize("encoder, objective", COMBOS)
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_combination_low_precision_and_accumulation(encoder, objective, precision, small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "encoder": encoder, "objective": objective,
                            "precision": precision, "accumulation_steps": 2,
                            "max_iter": 1}).fit(X[:40])
    assert rec.precision_ == precision and np.isfinite(rec.history_[0]["loss"])
    assert np.isfinite(rec.predict_scores(X[:5])).all()


def _params_after_one_update(X, **params):
    est = SeqRecommender(**{**TINY, "dropout": 0.0, "max_iter": 1, "early_stopping": False,
                            "clip_grad_norm": None, **params}).fit(X)
    return torch.cat([p.detach().flatten() for p in est.module_.parameters()])


def test_gru_accumulation_gives_the_gradient_of_one_big_batch(small):
    X, _ = small  # 120 users: 4 micro-batches of 30 == one batch of 120
    one = _params_after_one_update(X, encoder="gru", batch_size=120)
    acc = _params_after_one_update(X, encoder="gru", batch_size=30, accumulation_steps=4)
    torch.testing.assert_close(acc, one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("encoder, objective, targets", [
    ("transformer", "masked", ("heads", "ffn", "embedding")),
    ("gru", "causal", ("hidden", "embedding")),
])
def test_combination_prunes(encoder, objective, targets, small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "encoder": encoder, "objective": objective,
                            "d_model": 16}).fit(X)
    assert rec.module_.items.n_special == (objective == "masked")
    rec.prune_(0.5, X=X, fine_tune_epochs=1)
    report = rec.pruning_report_
    assert report["targets"] == list(targets)
    assert report["after"]["parameters"] < report["before"]["parameters"]
    assert rec.module_.d_model == 8 and np.isfinite(rec.predict_scores(X[:5])).all()
    if objective == "masked":  # the mask token survives the embedding slicing
        assert rec.module_.items.id_emb.weight.shape == (32, 8)
    rebuilt = build_module(json.loads(json.dumps(module_config(rec.module_))))
    rebuilt.load_state_dict(rec.module_.state_dict())
    expected = rec.predict_scores(X[:5])
    rec.module_ = rebuilt.eval()
    np.testing.assert_array_equal(rec.predict_scores(X[:5]), expected)


def test_masked_taylor_importance_is_reproducible(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "objective": "masked", "d_model": 16}).fit(X)
    a = copy.deepcopy(rec).prune_(0.5, X=X, fine_tune_epochs=0)
    torch.manual_seed(123)  # the caller's generator state does not matter
    b = copy.deepcopy(rec).prune_(0.5, X=X, fine_tune_epochs=0)
    np.testing.assert_array_equal(a.predict_scores(X), b.predict_scores(X))


# ---------------------------------------------------------------- choosing by name
def test_grid_search_compares_encoders_and_objectives(small):
    X, y = small
    X, y = X[:60], y[:60]
    grid = {"encoder": ["transformer", "gru"], "objective": ["causal", "masked"]}
    base = SeqRecommender(**{**TINY, "max_iter": 1, "early_stopping": False})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = GridSearchCV(base, grid, cv=2).fit(X, y)
    scores = dict(zip(map(lambda p: (p["encoder"], p["objective"]),
                          search.cv_results_["params"]),
                      search.cv_results_["mean_test_score"]))
    assert np.isnan(scores[("gru", "masked")])  # the invalid combination fails, reported
    assert all(np.isfinite(v) for k, v in scores.items() if k != ("gru", "masked"))
    failed = [w for w in caught if issubclass(w.category, FitFailedWarning)]
    assert failed and "left to right only" in str(failed[0].message)
    with pytest.raises(ValueError, match="left to right only"):
        GridSearchCV(base, {"encoder": ["gru"], "objective": ["masked"]}, cv=2,
                     error_score="raise").fit(X, y)


def test_a_model_is_not_continued_or_served_with_another_objective(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "warm_start": True}).fit(X)
    rec.set_params(objective="masked")
    with pytest.raises(ValueError, match="cannot continue.*objective='masked'"):
        rec.fit(X)
    with pytest.raises(ValueError, match="another objective"):
        rec.predict(X[:3])
    with pytest.raises(ValueError, match="cannot continue.*objective='masked'"):
        rec.partial_fit(X)
    rec.set_params(objective="causal")
    assert rec.predict(X[:3]).shape == (3, 10)
    rec.set_params(warm_start=False, objective="masked").fit(X)  # a fresh fit is fine
    assert rec.module_.items.n_special == 1


@pytest.mark.parametrize("mask_prob", [0.0, -0.1, 1.5, float("nan"), "half", True])
def test_bad_mask_prob(mask_prob, small):
    X, _ = small
    with pytest.raises(ValueError, match="mask_prob"):
        SeqRecommender(**{**TINY, "objective": "masked", "mask_prob": mask_prob}).fit(X)


def test_mask_prob_one_masks_every_item(small):
    X, _ = small
    rec = SeqRecommender(**{**TINY, "objective": "masked", "mask_prob": 1.0,
                            "max_iter": 1}).fit(X)
    assert np.isfinite(rec.history_[0]["loss"])


# ---------------------------------------------------------------- they learn
@pytest.mark.parametrize("encoder, objective", COMBOS[1:])
def test_beats_popularity_on_planted_sequences(encoder, objective):
    X = make_interactions(n_users=400, n_items=80, mean_length=15, random_state=3)
    X_train, y = leave_last_out_split(X)
    rec = SeqRecommender(encoder=encoder, objective=objective, d_model=32, n_layers=1,
                         n_heads=2, d_ff=64, max_len=20, max_iter=20, batch_size=32,
                         learning_rate_init=3e-3, dropout=0.1, random_state=0,
                         device="cpu").fit(X_train)
    pop = PopularityRecommender().fit(X_train).score(X_train, y)
    assert rec.score(X_train, y) > pop + 0.03


@pytest.mark.parametrize("encoder, objective", COMBOS[1:])
def test_combination_with_item_features(encoder, objective, small):
    X, _ = small
    feats = np.random.RandomState(0).randn(X.shape[1], 5)
    rec = SeqRecommender(**{**TINY, "encoder": encoder, "objective": objective,
                            "item_features": feats, "d_model": 16}).fit(X)
    assert np.isfinite(rec.predict_scores(X[:5])).all()
    rec.prune_(0.5, X=X, fine_tune_epochs=1)
    assert rec.module_.d_model == 8 and np.isfinite(rec.predict_scores(X[:5])).all()
    rebuilt = build_module(json.loads(json.dumps(module_config(rec.module_))))
    rebuilt.load_state_dict(rec.module_.state_dict())
    expected = rec.predict_scores(X[:5])
    rec.module_ = rebuilt.eval()
    np.testing.assert_array_equal(rec.predict_scores(X[:5]), expected)
