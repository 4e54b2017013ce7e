"""Incremental serving: SequenceSession and the transformer's next_state / step.

Every result of a session is checked against a full recompute: ``recommend`` on the matrix row
of the session's history.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _modules import causal_transformer
from sklearn.exceptions import NotFittedError

from skrec import SeqRecommender
from skrec.datasets import make_interactions
from skrec.nn import TransformerEncoder
from skrec.session import SequenceSession

TINY = dict(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=8, max_iter=2, batch_size=32,
            random_state=0, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def X():
    return make_interactions(n_users=200, n_items=60, mean_length=12, random_state=0)


@pytest.fixture(scope="module")
def rec(X):
    return SeqRecommender(**TINY).fit(X)


def _check_against_full_recompute(rec, session, ids, scores, **kw):
    ref_ids, ref_scores = rec.recommend(session._row(), k=ids.shape[0], **kw)
    assert np.array_equal(ids, ref_ids[0])
    np.testing.assert_allclose(scores, ref_scores[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- the encoder's step
@pytest.mark.parametrize("n_heads, input_scale", [(2, 1.0), ([0, 2], 1.0), (2, 4.0)])
def test_step_after_next_state_equals_the_last_position_of_a_full_pass(n_heads, input_scale):
    torch.manual_seed(0)
    enc = TransformerEncoder(16, 2, n_heads, 32, max_len=6, dropout=0.1, causal=True,
                             head_dim=8, input_scale=input_scale)
    enc.reset_parameters()
    enc.eval()
    for L in range(6):  # 0 .. max_len - 1 earlier items
        x = torch.randn(3, L + 1, 16)
        full = enc(x, torch.ones(3, L + 1, dtype=torch.bool), last_only=True)
        step = enc.step(x[:, -1:], enc.next_state(x[:, :-1]))
        torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)


def test_next_state_is_independent_of_the_next_item_and_checks_its_input():
    torch.manual_seed(0)
    model = causal_transformer(30, d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=4).eval()
    enc = model.encoder
    with pytest.raises(ValueError, match="at most max_len - 1"):
        enc.next_state(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="state has 0 blocks"):
        enc.step(torch.randn(1, 1, 8), [])
    with pytest.raises(ValueError, match="one new position"):
        enc.blocks[0].attn(torch.randn(1, 2, 8), None, past=(torch.zeros(1, 2, 1, 4),) * 2)
    bidirectional = TransformerEncoder(8, 1, 2, 16, 4, 0.0, causal=False)
    with pytest.raises(ValueError, match="causal"):
        bidirectional.next_state(torch.randn(1, 2, 8))


# ---------------------------------------------------------------- the session
def test_each_event_matches_a_full_recompute(rec):
    session = rec.start_session([3, 17, 42])
    assert isinstance(session, SequenceSession) and session.incremental
    rng = np.random.default_rng(0)
    for t in range(20):  # beyond max_len=8: the window slides
        item = int(rng.integers(60))
        ids, scores = session.add(item, k=10)
        _check_against_full_recompute(rec, session, ids, scores)
        if t % 3:  # prepared between events or not: the same answers
            session.prepare()
    assert len(session) == len(set(session.history)) > rec.max_len


def test_an_item_seen_before_moves_to_the_end(rec):
    session = rec.start_session([5, 6, 7])
    ids, scores = session.add(5)
    assert session.history.tolist() == [6, 7, 5]
    _check_against_full_recompute(rec, session, ids, scores)
    session.prepare()
    ids, scores = session.add(9)  # and the next event is incremental again
    _check_against_full_recompute(rec, session, ids, scores)


def test_empty_history_filtering_and_candidates(rec):
    session = rec.start_session()
    ids, scores = session.recommend(k=5)
    _check_against_full_recompute(rec, session, ids, scores)  # popularity, as recommend
    ids, scores = session.add(11, k=70)  # more than the catalogue: clamped to it, the
    assert ids.shape == (60,) and (ids == -1).sum() == 1  # seen item padded with -1
    _check_against_full_recompute(rec, session, ids, scores)
    ids, scores = session.add(12, k=5, filter_seen=False)
    _check_against_full_recompute(rec, session, ids, scores, filter_seen=False)
    allowed = np.arange(20, 40)
    ids, scores = session.add(13, k=5, items=allowed)
    assert set(ids) <= set(allowed)
    _check_against_full_recompute(rec, session, ids, scores, items=allowed)


@pytest.mark.parametrize("params", [dict(n_layers=0), dict(max_len=1), dict(precision="bf16"),
                                    dict(encoder="gru"), dict(objective="masked")])
def test_other_shapes_and_precisions(params, X):
    rec = SeqRecommender(**dict(TINY, **params)).fit(X)
    session = rec.start_session([1, 2])
    rng = np.random.default_rng(1)
    for _ in range(6):
        ids, scores = session.add(int(rng.integers(60)))
        ref_ids, ref_scores = rec.recommend(session._row())
        tol = 0.05 if rec.precision_ == "bf16" else 1e-5  # bf16 rounding of another order
        np.testing.assert_allclose(scores, ref_scores[0], rtol=tol, atol=tol)
        if rec.precision_ == "fp32":
            assert np.array_equal(ids, ref_ids[0])
        session.prepare()


def test_pruned_model(X):
    rec = SeqRecommender(**TINY).fit(X)
    rec.prune_(0.5, targets=("heads", "ffn"), fine_tune_epochs=0)
    session = rec.start_session([4, 8, 15])
    for item in (16, 23, 42):
        ids, scores = session.add(item)
        _check_against_full_recompute(rec, session, ids, scores)


def test_session_errors(rec):
    with pytest.raises(NotFittedError):
        SeqRecommender().start_session([1])
    with pytest.raises(ValueError, match="outside"):
        rec.start_session([1, 60])
    with pytest.raises(TypeError, match="1-D sequence"):
        rec.start_session([[1, 2]])
    session = rec.start_session([1])
    with pytest.raises(ValueError, match="outside"):
        session.add(-1)
    with pytest.raises(TypeError, match="integer item index"):
        session.add(2.5)
    with pytest.raises(ValueError):
        session.add(2, k=0)
    assert session.history.tolist() == [1]  # nothing was added by the failed calls


def test_a_model_with_item_features(X):
    feats = np.random.RandomState(0).randn(X.shape[1], 5)
    rec = SeqRecommender(**dict(TINY, item_features=feats)).fit(X)
    session = rec.start_session([2, 3])
    for item in (4, 5, 6):
        ids, scores = session.add(item)
        _check_against_full_recompute(rec, session, ids, scores)
        session.prepare()
