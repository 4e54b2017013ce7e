"""Item side features: fusion with the ids, cold-start items, add_items, sklearn integration."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from skrec import AERecommender, SeqRecommender
from skrec.datasets import make_interactions
from skrec.model_selection import leave_last_out_split
from skrec.nn import build_module, module_config

SEQ = dict(d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=12, max_iter=3, batch_size=16,
           random_state=0, device="cpu", precision="fp32")
AE = dict(hidden_sizes=(16,), latent_dim=8, max_iter=3, batch_size=16, random_state=0,
          device="cpu", precision="fp32")
N_ITEMS, N_COLD = 30, 5


def _features(kind: str, n: int = N_ITEMS, seed: int = 0):
    rng = np.random.RandomState(seed)
    if kind == "sparse":  # multi-hot attributes (dense enough to be stored dense)
        return sp.csr_matrix((rng.rand(n, 12) < 0.25).astype(np.float64))
    if kind == "very-sparse":  # e.g. TF-IDF of titles: two of 64 words per item
        cols = rng.randint(0, 64, (n, 2))
        return sp.csr_matrix((rng.rand(2 * n) + 0.5, (np.repeat(np.arange(n), 2),
                                                      cols.ravel())), shape=(n, 64))
    return rng.randn(n, 6)  # dense vectors (e.g. text embeddings)


@pytest.fixture(scope="module")
def data():
    X = make_interactions(n_users=120, n_items=N_ITEMS, mean_length=8, random_state=0)
    X = X.tolil()
    X[:, N_ITEMS - N_COLD :] = 0  # the last items have no interaction: cold
    X = X.tocsr()
    X.eliminate_zeros()
    return X


def _est(kind, **params):
    return SeqRecommender(**{**SEQ, **params}) if kind == "seq" else AERecommender(
        **{**AE, **params})


@pytest.mark.parametrize("kind", ["seq", "ae"])
@pytest.mark.parametrize("feats", ["very-sparse", "sparse", "dense"])
def test_cold_items_are_scored_from_their_features(kind, feats, data):
    F = _features(feats)
    before = F.copy()
    est = _est(kind, item_features=F).fit(data)
    assert est.n_item_features_ == F.shape[1]
    cold = np.arange(N_ITEMS - N_COLD, N_ITEMS)
    scores = est.predict_scores(data[:20])
    assert np.isfinite(scores).all()
    # cold items get different scores (from different features), not one constant
    assert np.ptp(scores[:, cold], axis=1).min() > 0
    ids, _ = est.recommend(data[:20], k=3, items=cold)
    assert np.isin(ids, cold).all()
    # their id embeddings are unused: changing them changes nothing
    module = est.module_
    if kind == "ae":  # the input needs no id mask: their input columns hold zeros
        for layer in module._first_layers():
            assert not layer.weight[:, cold].any()
    with torch.no_grad():
        if kind == "seq":
            module.items.id_emb.weight[cold + 1] += 5.0
        else:
            module.decoder[-1].weight[cold] += 5.0
    np.testing.assert_allclose(est.predict_scores(data[:20]), scores, rtol=1e-5, atol=1e-5)
    # the caller's matrix is untouched
    if sp.issparse(F):
        assert (F != before).nnz == 0
    else:
        np.testing.assert_array_equal(F, before)


@pytest.mark.parametrize("kind", ["seq", "ae"])
def test_features_change_the_model_and_train(kind, data):
    plain = _est(kind).fit(data)
    with_f = _est(kind, item_features=_features("sparse")).fit(data)
    assert np.isfinite([h["loss"] for h in with_f.history_]).all()
    assert not np.allclose(plain.predict_scores(data[:5]), with_f.predict_scores(data[:5]))


@pytest.mark.parametrize("kind", ["seq", "ae"])
@pytest.mark.parametrize("feats", ["very-sparse", "sparse", "dense"])
def test_add_items_grows_the_catalogue_without_training(kind, feats, data):
    F = _features(feats)
    est = _est(kind, item_features=F).fit(data)
    new = _features(feats, n=4, seed=1)
    if feats == "sparse":  # rows of any format join the model's storage (dense here)
        new = new.toarray()
    state = {k: v.clone() for k, v in est.module_.state_dict().items()}
    est.add_items(new)
    assert est.n_features_in_ == N_ITEMS + 4 and est.item_popularity_.shape == (N_ITEMS + 4,)
    wider = sp.hstack([data, sp.csr_matrix((data.shape[0], 4))], format="csr")
    ids = est.recommend(wider[:10], k=2, items=np.arange(N_ITEMS, N_ITEMS + 4))[0]
    assert np.isin(ids, np.arange(N_ITEMS, N_ITEMS + 4)).all()
    # the old items keep their scores exactly (the model did not change)
    after = est.module_.state_dict()
    for name, old in state.items():
        if old.shape == after[name].shape:
            torch.testing.assert_close(after[name], old)
    with pytest.raises(ValueError, match="features"):
        est.predict(data)  # the catalogue is wider now
    est.partial_fit(wider)  # trains on the new catalogue
    assert est.predict(wider[:3]).max() < N_ITEMS + 4
    with pytest.raises(ValueError, match="columns"):
        est.add_items(np.ones((2, F.shape[1] + 1)))


def test_add_items_needs_a_model_with_features(data):
    est = _est("seq").fit(data)
    with pytest.raises(ValueError, match="item_features"):
        est.add_items(np.ones((1, 3)))


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.ones((N_ITEMS + 1, 3)), ValueError, "rows, but the catalogue has 30 items"),
        (np.full((N_ITEMS, 3), np.nan), ValueError, "NaN"),
        (np.array([["a"] * 3] * N_ITEMS), TypeError, "numbers"),
        (np.ones(N_ITEMS), ValueError, "2-D"),
        # what is wrong, not "NaN or infinite" nor "use precision='fp32'"
        (np.full((N_ITEMS, 3), 1e39), ValueError, "beyond float32's range"),
        (sp.csr_matrix(np.full((N_ITEMS, 3), -1e39)), ValueError, "beyond float32's range"),
        (np.full((N_ITEMS, 3), 1e30), ValueError, "so large that training overflows float32"),
    ],
)
def test_bad_feature_matrices_get_clear_errors(bad, error, match, data):
    with pytest.raises(error, match=match):
        _est("seq", item_features=bad).fit(data)


def test_grid_search_never_slices_the_item_features():
    # n_items == n_users: a per-sample fit parameter would be silently sliced by the splitter
    X, y = leave_last_out_split(make_interactions(n_users=40, n_items=40, mean_length=6,
                                                  random_state=1))
    F = _features("sparse", n=40)
    base = SeqRecommender(**{**SEQ, "max_iter": 1, "early_stopping": False,
                             "item_features": F})
    search = GridSearchCV(base, {"id_dropout": [0.0, 0.5]}, cv=2, n_jobs=2).fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.module_.features.n_rows == 40
    assert clone(base).get_params()["item_features"] is not F  # cloned, never sliced


@pytest.mark.parametrize("kind", ["seq", "ae"])
@pytest.mark.parametrize("hidden", [None, 8])
def test_pickling_warm_start_pruning_and_configs_keep_the_features(kind, hidden, data):
    F = _features("sparse")
    est = _est(kind, item_features=F, feature_hidden=hidden, warm_start=True).fit(data)
    assert (est.module_.features.out is None) == (hidden is None)
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict(data[:10]), est.predict(data[:10]))
    est.fit(data)  # warm start continues the featured model
    assert est.n_iter_ == 2 * SEQ["max_iter"] or est.n_iter_ > SEQ["max_iter"]
    est.prune_(0.5, X=data, fine_tune_epochs=1)  # the projection shrinks with the width
    assert np.isfinite(est.predict_scores(data[:5])).all()
    cfg = json.loads(json.dumps(module_config(est.module_)))
    rebuilt = build_module(cfg)
    rebuilt.load_state_dict(est.module_.state_dict())
    expected = est.predict_scores(data[:10])
    est.module_ = rebuilt.eval()
    np.testing.assert_array_equal(est.predict_scores(data[:10]), expected)


@pytest.mark.parametrize("kind", ["seq", "ae"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_features_train_in_low_precision(kind, precision, data):
    est = _est(kind, item_features=_features("sparse"), precision=precision, max_iter=1)
    est.fit(data)
    assert np.isfinite(est.history_[0]["loss"]) and np.isfinite(est.predict_scores(data[:3])).all()


@pytest.mark.parametrize("kind", ["seq", "ae"])
def test_sparse_storage_is_chosen_by_density_and_computes_the_same(kind, data):
    """Sparse features denser than 1/16 are stored dense, sparser ones stay sparse; either
    storage trains and scores the same model as the dense matrix, up to float rounding and
    a constant per user (the softmax ignores it, so Adam moves it on rounding noise)."""
    for feats, sparse in (("sparse", False), ("very-sparse", True)):
        F = _features(feats)
        as_sparse = _est(kind, item_features=F).fit(data)
        as_dense = _est(kind, item_features=F.toarray()).fit(data)
        assert as_sparse.module_.features.sparse is sparse
        assert not as_dense.module_.features.sparse
        a, b = as_sparse.predict_scores(data[:20]), as_dense.predict_scores(data[:20])
        np.testing.assert_allclose(a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("feats", ["very-sparse", "dense"])
def test_autoencoder_feature_products_match_their_definition(feats, data):
    """The autoencoder's first layer reads ``[h, profile]`` with the profile the mean feature
    row of the user's items, in either order of products, and its output layer scores
    ``(ids * mask) + feature vectors``: checked against the formulas, on one batch."""
    est = _est("ae", item_features=_features(feats), hidden_sizes=()).fit(data)
    m = est.module_.eval()
    x = torch.as_tensor(data[:6].toarray() > 0, dtype=torch.float32)
    F = torch.as_tensor(_features(feats).toarray() if feats != "dense" else _features(feats),
                        dtype=torch.float32)
    h = m.normalize(x)
    profile = (h @ F) / h.sum(1, keepdim=True)
    W, b = m.mu.weight.detach(), m.mu.bias.detach()
    expected = torch.cat([h, profile], 1) @ W.t() + b
    with torch.no_grad():
        for first in (True, False):
            m._profile_first = lambda batch, width, first=first: first
            mu, _ = m.encode(x)
            torch.testing.assert_close(mu, expected, rtol=1e-4, atol=1e-5)
        del m._profile_first
        vectors, scalars = m.features()
        last = m.decoder[-1]
        mask = torch.ones(N_ITEMS)
        mask[:3] = 0.0
        logits = m.decode(mu, mask)
        ref = (mu @ last.weight.t() + last.bias) * mask + mu @ vectors.t() + scalars
        torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["seq", "ae"])
def test_mlp_feature_map_scores_cold_items_and_bad_parameters(kind, data):
    F = _features("dense")
    est = _est(kind, item_features=F, feature_hidden=8).fit(data)
    proj = est.module_.features
    assert proj.out is not None and proj.weight.shape == (F.shape[1], 8)
    cold = np.arange(N_ITEMS - N_COLD, N_ITEMS)
    before = est.predict_scores(data[:10])[:, cold]
    assert np.isfinite(before).all() and np.ptp(before, axis=1).min() > 0
    F2 = F.copy()
    F2[cold] = F2[cold[::-1]]  # swap the cold items' feature rows: their scores swap
    est.module_.features.set_features(torch.as_tensor(F2, dtype=torch.float32))
    np.testing.assert_allclose(est.predict_scores(data[:10])[:, cold], before[:, ::-1],
                               rtol=1e-5, atol=1e-5)
    for bad in (0, 2.5, "8"):
        with pytest.raises(ValueError, match="feature_hidden"):
            _est(kind, item_features=F, feature_hidden=bad).fit(data)
    with pytest.raises(ValueError, match="id_dropout"):
        _est(kind, item_features=F, id_dropout=1.0).fit(data)


@pytest.mark.parametrize("kind", ["seq", "ae"])
def test_items_without_ids_are_left_out_of_the_training_softmax(kind, data):
    est = _est(kind, item_features=_features("dense"), id_dropout=0.0).fit(data)
    cold = np.arange(N_ITEMS - N_COLD, N_ITEMS)
    module = est.module_
    x = torch.zeros(2, N_ITEMS)
    x[:, :3] = 1.0
    for training in (True, False):
        module.train(training)
        if kind == "seq":
            logits = module.output_weights(module.item_table())[1].detach()[None]
        else:
            logits = module(x)[0].detach()
        at_cold = logits[:, cold]
        assert bool((at_cold <= -1e3).all()) == training  # only while training
    module.eval()
