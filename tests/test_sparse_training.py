"""Sampled losses train the item table with sparse gradients: only the rows a step touches.

The optimizer (:class:`skrec.nn.SparseAdamW`) is AdamW for dense gradients and lazy AdamW for
sparse ones; these tests check both against references, then the trainer's features (clipping,
fp16 loss scaling, accumulation, warm start, pruning, pickling) on the sparse path.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from _modules import causal_transformer

from skrec import SeqRecommender
from skrec.datasets import make_interactions
from skrec.model_selection import leave_last_out_split
from skrec.nn import (
    ItemEmbedding,
    SparseAdamW,
    clip_grad_norm_,
    gbce_loss,
    sampled_softmax_loss,
)
from skrec.objectives import OBJECTIVES

TINY = dict(d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=12, max_iter=2, batch_size=16,
            random_state=0, device="cpu", precision="fp32")


class DenseSeqRecommender(SeqRecommender):
    """The reference: sampled losses with dense gradients of the whole item table."""

    _sparse_item_grads = False


@pytest.fixture(scope="module")
def small():
    X = make_interactions(n_users=120, n_items=30, mean_length=10, random_state=0)
    return leave_last_out_split(X)


def _grads(model):
    out = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            out[name] = p.grad.to_dense() if p.grad.is_sparse else p.grad.clone()
    return out


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("loss", ["sampled", "gbce"])
def test_sparse_gradients_equal_the_dense_ones(loss):
    torch.manual_seed(0)
    model = causal_transformer(40, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=6,
                              dropout=0.0)
    seq = torch.tensor([[0, 0, 3, 5, 7, 5], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 9, 40]])
    probs = torch.rand(40)
    probs /= probs.sum()
    grads, losses = {}, {}
    for sparse in (False, True):
        objective = OBJECTIVES["causal"](loss=loss, n_negatives=16, gbce_t=0.75, max_len=6,
                                         sparse_grad=sparse)
        assert objective.sparse_grads(model) is sparse
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same negatives
        value = objective.batch_loss(model, (seq, probs if loss == "sampled" else None))
        value.backward()
        losses[sparse] = float(value.detach())
        grads[sparse] = _grads(model)
        if sparse:
            assert model.items.id_emb.weight.grad.is_sparse
            assert model.items.out_bias.grad.is_sparse
    assert losses[True] == pytest.approx(losses[False], rel=1e-6)
    assert grads[True].keys() == grads[False].keys()
    for name in grads[False]:
        torch.testing.assert_close(grads[True][name], grads[False][name], rtol=1e-5, atol=1e-7)


def test_full_softmax_keeps_dense_gradients():
    objective = OBJECTIVES["causal"](loss="ce", n_negatives=8, gbce_t=0.75, max_len=4)
    assert not objective.sparse_grads(None)
    model = causal_transformer(20, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=4)
    objective.batch_loss(model, (torch.tensor([[1, 2, 3, 4]]), None)).backward()
    assert not model.items.id_emb.weight.grad.is_sparse


def test_output_rows_are_the_rows_of_output_weights():
    items = ItemEmbedding(10, 4, n_special=1)
    items.reset_parameters()
    with torch.no_grad():
        items.out_bias.normal_()
    idx = torch.tensor([0, 9, 3, 3])
    weight, bias = items.output_weights()
    for sparse in (False, True):
        w, b = items.output_rows(idx, sparse_grad=sparse)
        assert torch.equal(w, weight[idx]) and torch.equal(b, bias[idx])
    no_bias = ItemEmbedding(10, 4, output_bias=False)
    assert torch.equal(no_bias.output_rows(idx)[1], torch.zeros(4))


def test_losses_accept_a_row_gather():
    torch.manual_seed(0)
    h, w, b = torch.randn(5, 4), torch.randn(30, 4), torch.randn(30)
    t = torch.tensor([0, 3, 29, 3, 7])
    probs = torch.rand(30)
    probs /= probs.sum()
    calls = []

    def rows(idx):
        calls.append(idx)
        return w[idx], b[idx]

    for fn, kw in ((sampled_softmax_loss, {"sampling_probs": probs}), (gbce_loss, {})):
        a = fn(h, w, b, t, n_negatives=8, generator=torch.Generator().manual_seed(3), **kw)
        c = fn(h, None, None, t, n_negatives=8, generator=torch.Generator().manual_seed(3),
               rows=rows, n_items=30, **kw)
        assert torch.equal(a, c)
    assert len(calls) == 2 and calls[0].shape == (5 + 8,)  # one gather: targets, negatives
    with pytest.raises(ValueError, match="weight and bias, or rows"):
        gbce_loss(h, None, None, t, n_negatives=8)
    with pytest.raises(ValueError, match="n_items is required"):
        gbce_loss(h, None, None, t, n_negatives=8, rows=rows)


# ---------------------------------------------------------------- the optimizer
@pytest.mark.parametrize("fused", [True, False])
def test_dense_gradients_get_exactly_adamw(fused):
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(7, 3)), torch.nn.Parameter(torch.randn(5))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt_a = torch.optim.AdamW(a, lr=0.01, weight_decay=0.1, fused=fused)
    opt_b = SparseAdamW(b, lr=0.01, weight_decay=0.1, fused=fused)
    for _ in range(4):
        grads = [torch.randn_like(p) for p in a]
        for params, opt in ((a, opt_a), (b, opt_b)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    for p, q in zip(a, b):
        assert torch.equal(p, q)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_sparse_steps_touch_their_rows_and_flush_gives_dense_adamw(weight_decay):
    # rows skipped for a few steps and for hundreds of steps, duplicates, weight decay
    torch.manual_seed(0)
    w0 = torch.randn(12, 3)
    dense, sparse = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    opt_d = torch.optim.AdamW([dense], lr=0.05, weight_decay=weight_decay)
    opt_s = SparseAdamW([sparse], lr=0.05, weight_decay=weight_decay)
    for step in range(400):
        rows = [1, 3, 3, 5] if step % 3 else [2, 7, 7, 7]
        if step in (0, 390):
            rows = rows + [11]  # row 11: touched twice, 390 steps apart
        idx = torch.tensor(rows)
        coef = torch.randn(len(rows), 3)
        dense.grad = sparse.grad = None
        (F.embedding(idx, dense) * coef).sum().backward()
        (F.embedding(idx, sparse, sparse=True) * coef).sum().backward()
        before = sparse.detach().clone()
        opt_d.step()
        opt_s.step()
        untouched = sorted(set(range(12)) - set(rows))
        assert torch.equal(sparse[untouched], before[untouched])  # a step writes its rows only
        if step % 97 == 0 or step == 399:
            opt_s.flush()
            torch.testing.assert_close(sparse, dense, rtol=1e-4, atol=1e-5)
    never = [0, 4, 6, 8, 9, 10]
    if not weight_decay:  # never touched: no momentum, no decay, as under AdamW
        assert torch.equal(sparse[never], w0[never])


def test_one_step_from_a_fresh_state_equals_dense_adamw():
    # m = v = 0: a row with a zero gradient does not move under dense AdamW either
    torch.manual_seed(0)
    dense = torch.nn.Embedding(20, 4)
    sparse = torch.nn.Embedding(20, 4, sparse=True)
    sparse.load_state_dict(dense.state_dict())
    idx = torch.tensor([2, 5, 5, 11])
    for emb, opt in ((dense, torch.optim.AdamW(dense.parameters(), lr=0.1, weight_decay=0.0)),
                     (sparse, SparseAdamW(sparse.parameters(), lr=0.1))):
        emb(idx).pow(2).sum().backward()
        opt.step()
    torch.testing.assert_close(sparse.weight, dense.weight)
    opt.flush()  # nothing to catch up after one step from zero moments
    torch.testing.assert_close(sparse.weight, dense.weight)


def test_a_parameter_may_switch_between_dense_and_sparse_gradients():
    torch.manual_seed(0)
    w0 = torch.randn(6, 2)
    emb, ref = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    opt, opt_ref = SparseAdamW([emb], lr=0.1), torch.optim.AdamW([ref], lr=0.1, weight_decay=0)
    for step, sparse in enumerate([True, True, False, True, False]):
        emb.grad = ref.grad = None
        idx = torch.tensor([step % 6, 1])
        F.embedding(idx, emb, sparse=sparse).sum().backward()
        F.embedding(idx, ref).sum().backward()
        opt.step()
        opt_ref.step()
    opt.flush()
    assert float(opt.state[emb]["step"]) == 5
    torch.testing.assert_close(emb, ref)


def test_clip_grad_norm_with_sparse_gradients_matches_dense_clipping():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 3))
    lin = torch.nn.Parameter(torch.randn(3))
    idx = torch.tensor([1, 4, 4, 7])
    ref = {}
    for sparse in (False, True):
        w.grad = lin.grad = None
        (F.embedding(idx, w, sparse=sparse) @ lin).pow(2).sum().mul(10).backward()
        norm = clip_grad_norm_([w, lin], 1.0)
        grads = [w.grad.to_dense() if w.grad.is_sparse else w.grad, lin.grad]
        ref[sparse] = (norm, [g.clone() for g in grads])
    torch.testing.assert_close(ref[True][0], ref[False][0])
    for a, b in zip(ref[True][1], ref[False][1]):
        torch.testing.assert_close(a, b)
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in ref[True][1]]))
    assert float(total) == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("fused", [True, False])
def test_grad_scaler_unscales_sparse_rows_and_skips_non_finite_steps(fused):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 3)
    ref = torch.nn.Embedding(10, 3)
    ref.load_state_dict(emb.state_dict())
    opt = SparseAdamW(emb.parameters(), lr=0.1, fused=fused)
    opt_ref = SparseAdamW(ref.parameters(), lr=0.1, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    idx = torch.tensor([1, 2, 2])
    scaler.scale(F.embedding(idx, emb.weight, sparse=True).sum()).backward()
    scaler.step(opt)
    scaler.update()
    F.embedding(idx, ref.weight, sparse=True).sum().backward()
    opt_ref.step()
    torch.testing.assert_close(emb.weight, ref.weight)
    # a non-finite gradient: no row moves, the state stays, the scale shrinks
    before = emb.weight.detach().clone()
    opt.zero_grad()
    out = F.embedding(idx, emb.weight, sparse=True) * torch.tensor([float("inf"), 1.0, 1.0])
    scaler.scale(out.sum()).backward()
    scaler.step(opt)
    scaler.update()
    assert torch.equal(emb.weight, before)
    assert float(opt.state[emb.weight]["step"]) == 1
    assert scaler.get_scale() < 1024.0


# ---------------------------------------------------------------- the estimator
@pytest.mark.parametrize("loss", ["sampled", "gbce"])
def test_sampled_training_follows_the_dense_path(loss, small):
    # several epochs of several steps: the same negatives and dropout draws on both paths,
    # and SparseAdamW's catch-up gives dense AdamW's weights at every epoch end. Adam turns
    # float rounding differences (summation orders) into ~lr/10 differences of the weights
    # over the steps; without the catch-up (lazy Adam) the rows differ ~10x more.
    X, _ = small
    kw = dict(TINY, loss=loss, n_negatives=8, max_iter=3, early_stopping=False,
              weight_decay=0.1, clip_grad_norm=1.0, accumulation_steps=2, batch_size=8)
    sparse = SeqRecommender(**kw).fit(X)
    dense = DenseSeqRecommender(**kw).fit(X)
    assert sparse.history_[0]["steps"] > 5
    for a, b in zip(sparse.history_, dense.history_):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    for (name, p), q in zip(sparse.module_.named_parameters(), dense.module_.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=3e-4, msg=name)


def test_a_sparse_step_updates_only_the_touched_rows_of_a_large_table():
    X = make_interactions(n_users=60, n_items=40, mean_length=8, random_state=0)
    X = sp.hstack([X, sp.csr_matrix((60, 1960))], format="csr")  # 1,960 items never seen
    rec = SeqRecommender(**dict(TINY, loss="gbce", n_negatives=4, max_iter=1,
                                early_stopping=False)).fit(X)
    module = rec.module_
    objective = rec._objective()
    data = objective.prepare((X, None))
    opt = SparseAdamW(module.parameters(), lr=0.01)
    batch, _ = objective.make_batch(data, np.arange(16), torch.device("cpu"))
    objective.batch_loss(module, batch).backward()
    grad_rows = module.items.id_emb.weight.grad.coalesce().indices()[0]
    before = module.items.id_emb.weight.detach().clone()
    opt.step()
    moved = (module.items.id_emb.weight.detach() != before).any(1).nonzero().squeeze(1)
    assert 0 < moved.numel() and set(moved.tolist()) <= set(grad_rows.tolist())
    assert grad_rows.numel() < 100  # of 2,001 rows


@pytest.mark.parametrize("loss", ["sampled", "gbce"])
def test_one_step_matches_the_dense_path(loss, small):
    X, _ = small
    kw = dict(TINY, loss=loss, n_negatives=8, max_iter=1, early_stopping=False,
              batch_size=X.shape[0])  # one step: lazy and dense AdamW coincide from m = v = 0
    sparse = SeqRecommender(**kw).fit(X)
    dense = DenseSeqRecommender(**kw).fit(X)
    assert sparse.history_[0]["steps"] == 1
    assert sparse.history_[0]["loss"] == pytest.approx(dense.history_[0]["loss"], rel=1e-6)
    for (name, p), q in zip(sparse.module_.named_parameters(), dense.module_.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("precision, clip", [("fp16", 1.0), ("fp16", None), ("bf16", 1.0)])
def test_sampled_training_with_low_precision_and_clipping(precision, clip, small):
    X, y = small
    rec = SeqRecommender(**dict(TINY, loss="sampled", n_negatives=8, precision=precision,
                                clip_grad_norm=clip, accumulation_steps=3)).fit(X)
    assert all(np.isfinite(h["loss"]) for h in rec.history_)
    assert rec.predict(X[:4]).shape == (4, 10)


def test_accumulation_window_sums_overlapping_sparse_rows(small):
    # two micro-batches that share rows: the window's gradient is their sum, coalesced
    X, _ = small
    kw = dict(TINY, loss="gbce", n_negatives=8, max_iter=1, early_stopping=False)
    rec = SeqRecommender(**dict(kw, accumulation_steps=2)).fit(X)
    assert rec.history_[0]["steps"] == -(-X.shape[0] // (2 * TINY["batch_size"]))
    model = rec.module_
    objective = rec._objective()
    data = objective.prepare((X, None))
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    for rows in (np.arange(0, 10), np.arange(5, 15)):
        batch, _ = objective.make_batch(data, rows, torch.device("cpu"))
        objective.batch_loss(model, batch).backward()
    g_sparse = model.items.id_emb.weight.grad
    assert g_sparse.is_sparse and not g_sparse.is_coalesced()
    dense_obj = OBJECTIVES["causal"](loss="gbce", n_negatives=8, gbce_t=0.75,
                                       max_len=model.max_len, sparse_grad=False)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    for rows in (np.arange(0, 10), np.arange(5, 15)):
        batch, _ = dense_obj.make_batch(data, rows, torch.device("cpu"))
        dense_obj.batch_loss(model, batch).backward()
    torch.testing.assert_close(g_sparse.to_dense(), model.items.id_emb.weight.grad)


def test_warm_start_partial_fit_and_switching_loss(small):
    X, y = small
    rec = SeqRecommender(**dict(TINY, loss="sampled", n_negatives=8)).fit(X)
    rec.partial_fit(X)
    assert rec.n_iter_ == 3
    rec.set_params(warm_start=True, loss="ce")  # dense gradients on the same module
    rec.fit(X)
    rec.set_params(loss="gbce")
    rec.fit(X)
    assert all(np.isfinite(h["loss"]) for h in rec.history_)


def test_pickle_round_trip_after_sparse_training(small):
    X, _ = small
    rec = SeqRecommender(**dict(TINY, loss="gbce", n_negatives=8)).fit(X)
    back = pickle.loads(pickle.dumps(rec))
    assert np.array_equal(back.predict(X), rec.predict(X))
    back.partial_fit(X)  # and it trains on


def test_pruning_with_taylor_importance_and_fine_tuning(small):
    X, _ = small
    rec = SeqRecommender(**dict(TINY, d_model=16, loss="sampled", n_negatives=8)).fit(X)
    # the Taylor importance |w * dL/dw| of the sparse path is the dense path's
    dense = DenseSeqRecommender(**dict(TINY, d_model=16, loss="sampled", n_negatives=8))
    dense.__dict__.update({k: v for k, v in rec.__dict__.items() if k.endswith("_")})
    scores = {}
    for est in (rec, dense):
        torch.manual_seed(0)
        scores[est] = est._taylor_scores(X, 3)
    params = list(rec.module_.parameters())
    for p in params:
        torch.testing.assert_close(scores[rec][id(p)], scores[dense][id(p)])
    rec.prune_(0.25, targets=("embedding",), X=X, importance="taylor", fine_tune_epochs=1)
    assert rec.module_.d_model == 12
    assert rec.module_.items.id_emb.weight.shape[1] == 12
    assert rec.predict(X[:3]).shape == (3, 10)


def test_item_features_keep_the_dense_table_path(small):
    # with side features every item's vector is computed at each step: no sparse gathers
    X, _ = small
    feats = np.random.RandomState(0).randn(X.shape[1], 5)
    rec = SeqRecommender(**dict(TINY, loss="sampled", n_negatives=8, item_features=feats,
                                id_dropout=0.2)).fit(X)
    objective = rec._objective()
    assert not objective.sparse_grads(rec.module_)
    assert all(np.isfinite(h["loss"]) for h in rec.history_)
    with pytest.raises(ValueError, match="without item features"):
        rec.module_.items(torch.tensor([[1, 2]]), sparse_grad=True)
    items = rec.module_.items.eval()
    table = items.table()
    idx = torch.tensor([0, 4, 4])
    w, b = items.output_rows(idx, table)
    weight, bias = items.output_weights(table)
    assert torch.equal(w, weight[idx]) and torch.equal(b, bias[idx])
