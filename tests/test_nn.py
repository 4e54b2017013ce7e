"""The pure torch modules and losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _modules import causal_transformer

from skrec.nn import (
    ItemEmbedding,
    SequenceModel,
    TransformerEncoder,
    gbce_loss,
    sampled_softmax_loss,
    softmax_cross_entropy,
)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return causal_transformer(50, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=20,
                             dropout=0.0).eval()


def test_last_only_matches_the_full_forward(model):
    seq = torch.randint(1, 51, (4, 12))
    seq[1, :5] = 0
    seq[2, :11] = 0  # a single real item
    torch.testing.assert_close(model.last_hidden(seq), model(seq)[:, -1])


def test_left_padding_does_not_change_the_result(model):
    seq = torch.randint(1, 51, (1, 8))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), seq], dim=1)
    torch.testing.assert_close(model.last_hidden(padded), model.last_hidden(seq))


def test_fully_padded_rows_give_no_nan(model):
    seq = torch.zeros(3, 6, dtype=torch.long)
    seq[0, -1] = 3
    assert torch.isfinite(model(seq)).all()


def test_causality_future_items_do_not_leak(model):
    seq = torch.randint(1, 51, (1, 10))
    other = seq.clone()
    other[0, 7:] = torch.randint(1, 51, (3,))
    torch.testing.assert_close(model(seq)[:, :7], model(other)[:, :7])


def test_bidirectional_encoder_sees_the_future_but_not_the_padding():
    torch.manual_seed(0)
    enc = TransformerEncoder(16, n_layers=1, n_heads=2, d_ff=32, max_len=20, dropout=0.0,
                             causal=False)
    m = SequenceModel(ItemEmbedding(50, 16), enc, max_len=20).eval()
    seq = torch.randint(1, 51, (1, 10))
    other = seq.clone()
    other[0, 7:] = torch.randint(1, 51, (3,))
    assert not torch.allclose(m(seq)[:, :7], m(other)[:, :7])  # later items are seen
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), seq], dim=1)
    torch.testing.assert_close(m(padded)[:, 3:], m(seq))  # padding is never attended to


def test_item_embedding_ties_input_and_output_and_keeps_special_tokens_out():
    items = ItemEmbedding(7, 4, n_special=1)
    items.reset_parameters()
    weight, bias = items.output_weights()
    assert weight.shape == (7, 4) and bias.shape == (7,)
    torch.testing.assert_close(weight, items(torch.arange(1, 8)))
    assert items.special_token() == 8 and items(torch.tensor([8])).shape == (1, 4)
    assert float(items(torch.tensor([0])).detach().abs().sum()) == 0.0  # padding
    no_bias = ItemEmbedding(7, 4, output_bias=False)
    assert float(no_bias.output_weights()[1].detach().abs().sum()) == 0.0


def test_chunked_cross_entropy_equals_direct(model):
    torch.manual_seed(1)
    h = torch.randn(37, 8, requires_grad=True)
    w = torch.randn(50, 8, requires_grad=True)
    b = torch.randn(50, requires_grad=True)
    t = torch.randint(50, (37,))
    direct = F.cross_entropy(h @ w.t() + b, t, reduction="sum")
    grads = torch.autograd.grad(direct, (h, w, b))
    chunked = softmax_cross_entropy(h, w, b, t, max_logits=200)  # 4 rows per chunk
    grads_c = torch.autograd.grad(chunked, (h, w, b))
    torch.testing.assert_close(chunked, direct)
    for a, c in zip(grads, grads_c):
        torch.testing.assert_close(c, a)
    # the fused gradients follow the incoming gradient (loss scaling, accumulation)
    grads_c = torch.autograd.grad(0.25 * softmax_cross_entropy(h, w, b, t, max_logits=200),
                                  (h, w, b))
    for a, c in zip(grads, grads_c):
        torch.testing.assert_close(c, 0.25 * a)
    # inputs without gradients (a frozen bias, no grad at all) and low precision
    frozen = b.detach()
    g_h, g_w = torch.autograd.grad(softmax_cross_entropy(h, w, frozen, t, max_logits=200),
                                   (h, w))
    torch.testing.assert_close(g_h, grads[0])
    torch.testing.assert_close(g_w, grads[1])
    with torch.no_grad():
        torch.testing.assert_close(softmax_cross_entropy(h, w, b, t, max_logits=200), direct)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = softmax_cross_entropy(h, w, b, t, max_logits=200)
        low_grads = torch.autograd.grad(low, (h, w, b))
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, direct, rtol=2e-2, atol=0.5)
    for a, c in zip(grads, low_grads):
        assert c.dtype == a.dtype
        torch.testing.assert_close(c, a, rtol=5e-2, atol=5e-2)


def test_cross_entropy_upcasts_low_precision_logits():
    h = torch.randn(5, 4).bfloat16()
    w = torch.randn(9, 4).bfloat16()
    loss = softmax_cross_entropy(h, w, torch.zeros(9, dtype=torch.bfloat16), torch.arange(5))
    assert loss.dtype == torch.float32


def test_sampled_softmax_with_all_items_as_negatives_is_close_to_full_softmax():
    torch.manual_seed(0)
    n = 6
    h, w, b = torch.randn(4, 3), torch.randn(n, 3), torch.zeros(n)
    t = torch.tensor([0, 1, 2, 3])
    probs = torch.full((n,), 1.0 / n)
    gen = torch.Generator().manual_seed(0)
    sampled = sampled_softmax_loss(h, w, b, t, n_negatives=4000, sampling_probs=probs,
                                   generator=gen)
    # Every logit is corrected by log(n_neg * q) and accidental hits are masked: with many
    # draws the sampled denominator estimates the sum over the *other* items, so the loss is
    # sum_t [-s_t + log sum_{j != t} exp(s_j)] shifted by log(n_neg * q) per target.
    logits = h @ w.t()
    others = logits.masked_fill(torch.nn.functional.one_hot(t, n).bool(), float("-inf"))
    expected = (-logits.gather(1, t[:, None]).squeeze(1) + torch.logsumexp(others, 1)).sum()
    shift = 4 * math.log(4000 / n)
    assert float(sampled) - shift == pytest.approx(float(expected), rel=0.02)


def test_gbce_reduces_to_bce_with_t_zero():
    torch.manual_seed(0)
    h, w, b = torch.randn(3, 4), torch.randn(20, 4), torch.zeros(20)
    t = torch.tensor([1, 2, 3])
    gen = torch.Generator().manual_seed(0)
    loss = gbce_loss(h, w, b, t, n_negatives=5, t=0.0, generator=gen)
    gen = torch.Generator().manual_seed(0)
    neg = torch.randint(20, (5,), generator=gen)
    pos = (h * w[t]).sum(-1)
    negl = h @ w[neg].t()
    hit = neg[None] == t[:, None]
    alpha = 5 / 19
    beta = alpha * (1 / alpha)  # t = 0 -> beta = 1: plain BCE
    expected = -(beta * F.logsigmoid(pos) + F.logsigmoid(-negl).masked_fill(hit, 0).sum(1))
    torch.testing.assert_close(loss, expected.sum())
    assert math.isfinite(float(loss))


def test_module_configs_rebuild_pruned_models_exactly():
    import json

    import numpy as np

    from skrec import AERecommender, SeqRecommender
    from skrec.datasets import make_interactions
    from skrec.nn import build_module, module_config

    X = make_interactions(n_users=80, n_items=30, random_state=0)
    seq = SeqRecommender(d_model=8, n_layers=2, n_heads=2, d_ff=16, max_len=12, max_iter=1,
                         random_state=0, precision="fp32", device="cpu").fit(X)
    seq.prune_(0.75)  # 1 head of 4 left (one block keeps none); embedding dims 8 -> 2
    ae = AERecommender(hidden_sizes=(16,), latent_dim=8, max_iter=1, random_state=0,
                       precision="fp32", device="cpu").fit(X)
    ae.prune_(0.5, targets=("hidden",))
    for est in (seq, ae):
        cfg = json.loads(json.dumps(module_config(est.module_)))  # JSON round trip
        rebuilt = build_module(cfg)
        rebuilt.load_state_dict(est.module_.state_dict())  # shapes match exactly
        expected = est.predict_scores(X[:10])
        est.module_ = rebuilt.eval()
        np.testing.assert_array_equal(est.predict_scores(X[:10]), expected)
    cfg = module_config(seq.module_)
    assert sorted(cfg["encoder"]["n_heads"]) == [0, 1] and cfg["items"]["d_model"] == 2
    assert cfg["encoder"]["input_scale"] == 8**0.5  # of the width as built, not the pruned one
    with pytest.raises(ValueError, match="Unknown module type"):
        build_module({"type": "Nope"})


def test_inner_dropout_drops_attention_and_feed_forward_units_in_training_only():
    from skrec.nn import TransformerEncoder, build_module, module_config

    torch.manual_seed(0)
    enc = TransformerEncoder(16, 2, 2, 32, max_len=8, dropout=0.0, inner_dropout=0.5)
    x, valid = torch.randn(3, 8, 16), torch.ones(3, 8, dtype=torch.bool)
    enc.train()
    assert not torch.allclose(enc(x, valid), enc(x, valid))  # random masks
    enc.eval()
    torch.testing.assert_close(enc(x, valid), enc(x, valid))
    plain = TransformerEncoder(16, 2, 2, 32, max_len=8, dropout=0.0)
    plain.load_state_dict(enc.state_dict())
    torch.testing.assert_close(plain.eval()(x, valid), enc(x, valid))  # no new weights
    rebuilt = build_module(module_config(enc))
    assert rebuilt.inner_dropout == 0.5 and rebuilt.blocks[0].ff_drop.p == 0.5
    assert rebuilt.blocks[1].attn.dropout == 0.5


def test_input_scale_multiplies_the_items_not_the_positions_and_is_stored():
    from skrec.nn import TransformerEncoder, build_module, module_config

    torch.manual_seed(0)
    enc = TransformerEncoder.from_params(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=8,
                                         dropout=0.0, causal=True)
    assert enc.input_scale == 4.0  # sqrt(d_model): how the estimators build it (SASRec)
    x, valid = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    plain = TransformerEncoder(16, 1, 2, 32, max_len=8, dropout=0.0)
    plain.load_state_dict(enc.state_dict())
    enc.eval(), plain.eval()
    assert plain.input_scale == 1.0
    torch.testing.assert_close(enc(x, valid), plain(4.0 * x, valid))
    assert not torch.allclose(enc(x, valid), plain(x, valid))
    cfg = module_config(enc)
    assert cfg["input_scale"] == 4.0
    rebuilt = build_module(cfg)
    rebuilt.load_state_dict(enc.state_dict())
    torch.testing.assert_close(rebuilt.eval()(x, valid), enc(x, valid))
    # a config saved before the scale existed rebuilds the unscaled encoder it described
    old = {k: v for k, v in cfg.items() if k != "input_scale"}
    assert build_module(old).input_scale == 1.0


def test_l2_penalty_matches_autograd_of_the_squared_norm():
    from skrec.nn import l2_penalty

    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 4, generator=g, requires_grad=True)
    b = torch.randn(7, generator=g, requires_grad=True)
    (3.0 * l2_penalty([a, b])).backward()
    ga, gb = a.grad.clone(), b.grad.clone()
    a.grad = b.grad = None
    expected = 3.0 * 0.5 * (a.pow(2).sum() + b.pow(2).sum())
    expected.backward()
    with torch.no_grad():
        assert torch.allclose(l2_penalty([a, b]) * 3.0, expected, rtol=1e-6)
    assert torch.allclose(ga, a.grad) and torch.allclose(gb, b.grad)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # computed in fp32 under autocast
        assert l2_penalty([a]).dtype == torch.float32
    with pytest.raises(ValueError, match="at least one"):
        l2_penalty([])
