"""One inference set-up for every prediction path, and continued runs of the model built.

``recommend``, ``predict``, ``similar_items``, sequence sessions and the scoring graph all
serve through ``NeuralEstimator._inference``: the same module (the fitted one, or its cached
bf16/int8 copy) under the same autocast. Continued training (``warm_start``, ``partial_fit``,
fine-tuning) refuses to train a module that the current parameters do not describe.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from skrec import AERecommender, SeqRecommender
from skrec.datasets import make_interactions
from skrec.serving import export_program, graph_inputs, scoring_graph

SEQ = dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=12, max_iter=2,
           batch_size=32, random_state=0, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def X():
    return make_interactions(n_users=120, n_items=40, mean_length=9, random_state=0)


@pytest.fixture(scope="module")
def rec(X):
    return SeqRecommender(**SEQ).fit(X)


def _session_scores(est, history, item, k):
    session = est.start_session(history)
    session.prepare()
    return session.add(item, k=k)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_sessions_score_with_the_copy_that_recommend_serves(rec, X, precision):
    est = rec.set_params(inference_precision=precision)
    try:
        history = [3, 17, 5, 22, 9]
        n = est.n_features_in_
        ids, scores = _session_scores(est, history, 30, k=n)
        row = est.start_session(history + [30])._row()
        ref_ids, ref_scores = est.recommend(row, k=n)
        keep = ids >= 0
        if precision == "fp32":  # the same module, the same numbers up to rounding
            assert np.array_equal(ids, ref_ids[0])
            np.testing.assert_allclose(scores[keep], ref_scores[0][keep], atol=1e-5)
            return
        # the session's scores are those of recommend at this precision: closer to them than
        # recommend's fp32 scores are
        fp32_ids, fp32_scores = est.set_params(inference_precision="fp32").recommend(row, k=n)
        order = np.argsort(ids[keep])
        ref = dict(zip(ref_ids[0], ref_scores[0]))
        fp32 = dict(zip(fp32_ids[0], fp32_scores[0]))
        items = ids[keep][order]
        mine = scores[keep][order]
        gap_same = np.abs(mine - np.array([ref[i] for i in items])).max()
        gap_fp32 = np.abs(np.array([fp32[i] for i in items])
                          - np.array([ref[i] for i in items])).max()
        if precision == "bf16":
            assert gap_same < gap_fp32
            return
        # int8 quantizes activations per tensor, with a scale taken from the rows in the
        # tensor: a session step (one position) and recommend (the whole sequence) round
        # differently, so compare with the fp32 session instead: the session serves a copy
        # that is not the fp32 module, and its scores stay near recommend's int8 scores
        fp32_session_ids, fp32_session = _session_scores(est, history, 30, k=n)
        fp32_mine = dict(zip(fp32_session_ids, fp32_session))
        assert np.abs(mine - np.array([fp32_mine[i] for i in items])).max() > 0
        assert gap_same < 10 * max(gap_fp32, 1e-4)
    finally:
        rec.set_params(inference_precision="auto")


def test_the_serving_copy_follows_edits_through_data(X):
    est = SeqRecommender(**{**SEQ, "inference_precision": "bf16"}).fit(X)
    first = est.predict_scores(X[:10])
    est.module_.items.id_emb.weight.data.mul_(-1)  # torch does not version .data edits
    second = est.predict_scores(X[:10])
    assert not np.allclose(first, second)
    fresh = SeqRecommender(**{**SEQ, "inference_precision": "bf16"}).fit(X)
    fresh.module_.load_state_dict(est.module_.state_dict())
    np.testing.assert_array_equal(fresh.predict_scores(X[:10]), second)


@pytest.mark.parametrize("change", [{"encoder": "gru"}, {"d_model": 32}, {"n_layers": 2},
                                    {"dropout": 0.1}, {"max_len": 20}])
def test_a_changed_architecture_is_not_continued(X, change):
    est = SeqRecommender(**SEQ).fit(X)
    state = {k: v.clone() for k, v in est.module_.state_dict().items()}
    n_iter = est.n_iter_
    est.set_params(**change)
    name = next(iter(change))
    with pytest.raises(ValueError, match=f"cannot continue.*{name}="):
        est.set_params(warm_start=True).fit(X)
    with pytest.raises(ValueError, match=f"cannot continue.*{name}="):
        est.partial_fit(X)
    assert est.n_iter_ == n_iter  # nothing was trained
    for key, value in est.module_.state_dict().items():
        assert torch.equal(value, state[key])
    est.set_params(warm_start=False).fit(X)  # a fresh fit builds the new architecture
    assert est.module_params_[name] == (list(change[name]) if isinstance(change[name], tuple)
                                        else change[name])


def test_an_autoencoder_with_other_widths_is_not_continued(X):
    est = AERecommender(hidden_sizes=(16,), latent_dim=8, max_iter=1, random_state=0,
                        precision="fp32", device="cpu").fit(X)
    est.set_params(hidden_sizes=(32,))
    with pytest.raises(ValueError, match=r"hidden_sizes=\[32\]"):
        est.partial_fit(X)


@pytest.mark.parametrize("encoder", [["gru"], {"gru": 1}, None, 3])
def test_a_malformed_encoder_name_is_named(X, encoder):
    with pytest.raises(ValueError, match="encoder must be one of"):
        SeqRecommender(**{**SEQ, "encoder": encoder}).fit(X)


@pytest.mark.parametrize("bogus", ["bogus", ["bf16"], None])
def test_every_path_validates_the_inference_precision(rec, X, bogus):
    est = rec.set_params(inference_precision=bogus)
    try:
        for call in (lambda: est.similar_items([1, 2]), lambda: est.start_session([1]).add(2),
                     lambda: est.predict(X[:2]), lambda: export_program(est)):
            with pytest.raises(ValueError, match="inference_precision must be one of"):
                call()
    finally:
        rec.set_params(inference_precision="auto")


def test_the_scoring_graph_ranks_as_recommend_at_each_precision(rec, X):
    history, exclude = graph_inputs(rec, X[:20])
    for precision in ("fp32", "bf16", "int8"):
        est = rec.set_params(inference_precision=precision)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ids, _ = scoring_graph(est, k=5)(torch.as_tensor(history), torch.as_tensor(exclude))
        np.testing.assert_array_equal(ids.numpy(), est.predict(X[:20], k=5))
    with pytest.raises(ValueError, match="int8 scoring graph cannot be exported"):
        export_program(rec.set_params(inference_precision="int8"))
    rec.set_params(inference_precision="auto")
