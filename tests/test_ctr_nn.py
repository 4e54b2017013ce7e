"""The click-model torch blocks (skrec.nn.ctr) and their pruning adapter."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from skrec.ctr import FieldEncoder
from skrec.nn import build_module, module_config
from skrec.nn.ctr import (
    ARCHITECTURES,
    CrossNetwork,
    CTRModel,
    ExpertMixture,
    FactorizationMachine,
    FieldEmbedding,
    WidePart,
)

pd = pytest.importorskip("pandas")


def _batch(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "a": rng.integers(0, 6, n), "b": rng.choice(list("pqrs"), n),
        "tags": [list(rng.choice(["t1", "t2", "t3"], rng.integers(0, 3))) for _ in range(n)],
        "x": rng.normal(size=n),
    })
    enc = FieldEncoder().fit(X)
    return enc, enc.transform(X)


def _model(enc, **kw) -> CTRModel:
    torch.manual_seed(0)
    return CTRModel(enc.n_ids_, enc.n_categorical_, enc.n_multi_, enc.n_numeric_, **kw)


def _dense_x(enc, batch) -> np.ndarray:
    """The one-hot / multi-hot vector x of the wide part, built densely."""
    n = len(batch)
    x = np.zeros((n, enc.n_ids_))
    np.add.at(x, (np.repeat(np.arange(n), batch.ids.shape[1]), batch.ids.ravel()), 1.0)
    bags = batch.bags.toarray().reshape(n, batch.n_multi, enc.n_ids_).sum(axis=1)
    return x + bags


def test_field_embedding_pools_bags_and_scales_numeric():
    enc, b = _batch()
    emb = FieldEmbedding(enc.n_ids_, enc.n_categorical_, enc.n_multi_, enc.n_numeric_, 4)
    t = b.to_torch()
    out = emb(**t)
    assert out.shape == (len(b), 4, 4)
    W = emb.weight.detach().numpy()
    np.testing.assert_allclose(out[:, 0].detach(), W[b.ids[:, 0]], rtol=1e-6)
    bags = b.bags.toarray()
    counts = np.maximum(np.diff(b.bags.indptr), 1)[:, None]  # entries per bag
    np.testing.assert_allclose(out[:, 2].detach(), (bags / counts) @ W, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(out[:, 3].detach(),
                               b.numeric[:, :1] * emb.numeric_weight.detach().numpy(),
                               rtol=1e-6)


def test_wide_part_is_exactly_w1_x_plus_b1():
    enc, b = _batch()
    wide = WidePart(enc.n_ids_, enc.n_numeric_)
    torch.manual_seed(0)
    with torch.no_grad():
        wide.weight.normal_()
        wide.numeric_weight.normal_()
        wide.bias.fill_(0.3)
    out = wide(**b.to_torch()).detach().numpy()
    x = _dense_x(enc, b)
    expected = x @ wide.weight.detach().numpy()[:, 0] + b.numeric @ (
        wide.numeric_weight.detach().numpy()) + 0.3
    # float32 sums against float64: an absolute tolerance for outputs near 0
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_wide_crosses_are_hashed_pairs_of_ids():
    from skrec.nn.ctr import cross_ids

    ids = torch.tensor([[0, 5, 9], [0, 5, 8], [1, 5, 9]])
    h = cross_ids(ids, 1000)
    assert h.shape == (3, 3) and int(h.min()) >= 0 and int(h.max()) < 1000
    assert h[0, 0] == h[1, 0]  # the same (0, 5) pair, the same bucket
    assert h[0, 1] != h[1, 1] or h[0, 2] != h[1, 2]
    torch.testing.assert_close(cross_ids(ids, 1000), h)  # deterministic
    # pair (a, b) of fields (0, 1) and the same ids in fields (0, 2) fall in other buckets
    spread = cross_ids(torch.randint(0, 10**6, (20_000, 2)), 50)
    assert torch.bincount(spread[:, 0], minlength=50).min() > 300
    enc, b = _batch()
    wide = WidePart(enc.n_ids_, enc.n_numeric_, cross_buckets=97)
    with torch.no_grad():
        wide.cross_weight.normal_()
    t = b.to_torch()
    plain = WidePart(enc.n_ids_, enc.n_numeric_)
    expected = plain(**t) + wide.cross_weight[cross_ids(t["ids"], 97)].sum(dim=(1, 2))
    torch.testing.assert_close(wide(**t), expected)


def test_cross_counts_mask_rare_pairs():
    from skrec.nn.ctr import cross_ids

    ids = torch.tensor([[0, 5], [0, 5], [1, 6], [2, 7]])
    wide = WidePart(8, 0, cross_buckets=1 << 16)
    with torch.no_grad():
        wide.cross_weight.fill_(1.0)
    wide.set_cross_counts(ids, min_count=2)
    h = cross_ids(ids, 1 << 16)[:, 0]
    assert wide.cross_mask[h].tolist() == [1.0, 1.0, 0.0, 0.0]
    out = wide(ids, torch.zeros(4, 0))
    assert out.tolist() == [1.0, 1.0, 0.0, 0.0]  # only the pair seen twice is used
    assert "cross_mask" in wide.state_dict()


def test_fm_is_the_sum_over_field_pairs():
    emb = torch.randn(5, 4, 3)
    expected = sum((emb[:, i] * emb[:, j]).sum(-1) for i, j in itertools.combinations(range(4), 2))
    torch.testing.assert_close(FactorizationMachine()(emb), expected, rtol=1e-5, atol=1e-5)


def test_low_rank_cross_equals_full_rank_with_the_product():
    torch.manual_seed(0)
    low = CrossNetwork(6, 2, rank=3)
    full = CrossNetwork(6, 2)
    with torch.no_grad():
        for i in range(2):
            full.weights[i].weight.copy_(low.weights[i].weight @ low.down[i].weight)
            full.weights[i].bias.copy_(low.weights[i].bias)
    x = torch.randn(7, 6)
    torch.testing.assert_close(low(x), full(x), rtol=1e-5, atol=1e-5)
    # one layer by hand: x0 * (W x0 + b) + x0
    w = full.weights[0]
    one = CrossNetwork(6, 1)
    one.weights[0].load_state_dict(w.state_dict())
    torch.testing.assert_close(one(x), x * w(x) + x)


def test_single_expert_mixture_is_its_expert():
    torch.manual_seed(0)
    moe = ExpertMixture(5, 1, [8, 4])
    x = torch.randn(3, 5)
    w0, w1 = moe.weights[0][0], moe.weights[1][0]
    b0, b1 = moe.biases[0][0], moe.biases[1][0]
    expected = torch.relu(torch.relu(x @ w0 + b0) @ w1 + b1)
    torch.testing.assert_close(moe(x), expected)
    assert ExpertMixture(5, 3, [8]).eval()(x).shape == (3, 8)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("experts", [0, 3])
def test_architectures_forward_config_roundtrip_and_fp32_logit(architecture, experts):
    enc, b = _batch()
    kw = {"embed_dim": 8, "hidden": (16, 8), "n_experts": experts, "batch_norm": True}
    if architecture == "dcnv2":
        kw["cross_rank"] = 4
    model = _model(enc, architecture=architecture, **kw).eval()
    t = b.to_torch()
    logit = model(**t)
    assert logit.shape == (len(b),) and logit.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(**t).dtype == torch.float32
    rebuilt = build_module(module_config(model))
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval()(**t), logit)
    assert (model.fm is not None) == (architecture == "deepfm")
    assert (model.wide is not None) == (architecture in ("wide_deep", "deepfm"))


def test_training_learns_a_planted_signal():
    from sklearn.metrics import roc_auc_score

    from skrec.datasets import make_ctr

    data = make_ctr(6000, n_categorical=6, n_numeric=2, max_cardinality=50, click_rate=0.3,
                    as_frame=True, random_state=0)
    enc = FieldEncoder().fit(data.X)
    t = enc.transform(data.X).to_torch()
    y = torch.as_tensor(data.y, dtype=torch.float32)
    model = _model(enc, architecture="deepfm", embed_dim=8, hidden=(32,), dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(**t), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    auc = roc_auc_score(data.y, model.eval()(**t).detach().numpy())
    assert auc > 0.75


def _prune(model, amount, targets):
    import skrec.pruning.ctr  # noqa: F401  (registers the adapter)
    from skrec.pruning import structured_prune

    return structured_prune(model, amount, targets=targets)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_pruning_dead_units_is_exact_and_rebuilds(architecture):
    enc, b = _batch()
    kw = {"embed_dim": 8, "hidden": (16, 8), "batch_norm": True}
    if architecture == "dcnv2":
        kw["cross_rank"] = 4
    model = _model(enc, architecture=architecture, **kw).eval()
    # dead units: nothing reads the last half of each layer's outputs
    with torch.no_grad():
        model.deep.layers[1].weight[:, 8:] = 0
        model.head.weight[:, 4:] = 0
    t = b.to_torch()
    before = model(**t)
    _prune(model, 0.5, ["hidden"])
    assert model.deep.hidden == [8, 4]
    assert model.deep.norms[0].running_mean.shape == (8,)
    torch.testing.assert_close(model(**t), before)
    rebuilt = build_module(module_config(model))
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval()(**t), before)


def test_pruning_embedding_dimensions_and_experts():
    enc, b = _batch()
    t = b.to_torch()
    for architecture in ARCHITECTURES:
        kw = {"embed_dim": 8, "hidden": (16,), "n_experts": 4 if architecture == "wide_deep"
              else 0}
        if architecture == "dcnv2":
            kw["cross_rank"] = 4
        model = _model(enc, architecture=architecture, **kw).eval()
        if architecture != "transformer":  # no LayerNorm: removing a zero dimension is exact
            import skrec.pruning.ctr  # noqa: F401
            from skrec.pruning import pruning_groups

            group = next(g for g in pruning_groups(model) if g.name == "embedding")
            with torch.no_grad():  # dimensions 4..7 zero in every slice along the width
                for sl in group.slices:
                    idx = [c * 8 + k for c in range(sl.chunks) for k in range(4, 8)]
                    sl.param.data.index_fill_(sl.axis, torch.tensor(idx), 0.0)
            before = model(**t)
        _prune(model, 0.5, ["embedding"])
        assert model.embed_dim == 4
        if architecture != "transformer":
            torch.testing.assert_close(model(**t), before, rtol=1e-4, atol=1e-5)
        _prune(model, 0.5, None)  # every kind of unit
        if architecture == "wide_deep":
            assert model.deep.n_experts == 2
        rebuilt = build_module(module_config(model))
        rebuilt.load_state_dict(model.state_dict())
        torch.testing.assert_close(rebuilt.eval()(**t), model(**t))
        from skrec.pruning import model_summary

        summary = model_summary(model)
        assert summary["flops_per_user"] > 0 and summary["architecture"]["embed_dim"] == 4


def test_bad_architecture():
    with pytest.raises(ValueError, match="architecture"):
        CTRModel(10, 2, architecture="fm")
    with pytest.raises(ValueError, match="divisible"):
        CTRModel(10, 2, architecture="transformer", embed_dim=10, n_heads=3)


def test_gather_bags_of_an_empty_selection():
    from skrec.nn.ctr import gather_bags

    X = sp.csr_matrix(np.array([[1.0, 0, 1], [0, 1, 0]]))
    ids, offsets, w = gather_bags(torch.as_tensor(X.indices.astype(np.int64)),
                                  torch.as_tensor(X.indptr.astype(np.int64)),
                                  torch.as_tensor(X.data, dtype=torch.float32),
                                  torch.zeros(0, dtype=torch.int64), 1)
    assert ids.numel() == 0 and offsets.tolist() == [0]
