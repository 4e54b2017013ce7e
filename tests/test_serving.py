"""Serving: the exported scoring graph matches the eager model; reduced-precision inference."""

from __future__ import annotations

import io
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

import skrec
from skrec import AERecommender, EASERecommender, SeqRecommender
from skrec.datasets import load_movielens, make_interactions
from skrec.serving import export_onnx, export_program, graph_inputs, scoring_graph

SEQ = dict(d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=12, max_iter=2, batch_size=16,
           random_state=0, device="cpu", precision="fp32")
AE = dict(hidden_sizes=(16,), latent_dim=8, max_iter=2, batch_size=16, random_state=0,
          device="cpu", precision="fp32")

#: Exported graphs against the eager model: the brief's bound on scores.
SCORE_TOL = 1e-4


@pytest.fixture(scope="module")
def X():
    X = make_interactions(n_users=150, n_items=40, mean_length=10, random_state=0).tolil()
    X[3, :] = 0  # a cold user
    return X.tocsr()


@pytest.fixture(scope="module", params=["seq", "gru", "masked", "ae"])
def rec(request, X):
    est = {
        "seq": lambda: SeqRecommender(**SEQ),
        "gru": lambda: SeqRecommender(**SEQ, encoder="gru"),
        "masked": lambda: SeqRecommender(**SEQ, objective="masked"),
        "ae": lambda: AERecommender(**AE),
    }[request.param]()
    return est.fit(X)


def _check_same_ranking(ids, scores, ref_ids, ref_scores, tol=SCORE_TOL):
    finite = np.isfinite(ref_scores)
    assert np.array_equal(np.isfinite(scores), finite)
    assert np.abs(scores[finite] - ref_scores[finite]).max() <= tol
    assert np.array_equal(ids, ref_ids)


def _run(graph, history, exclude):
    with torch.inference_mode():
        out = graph(torch.as_tensor(history), torch.as_tensor(exclude))
    return out.numpy() if isinstance(out, torch.Tensor) else [t.numpy() for t in out]


def test_scoring_graph_matches_recommend(rec, X):
    ref_ids, ref_scores = rec.recommend(X, k=10)
    history, exclude = graph_inputs(rec, X)
    ids, scores = _run(scoring_graph(rec, k=10), history, exclude)
    _check_same_ranking(ids, scores, ref_ids, ref_scores)
    assert (ids[3] >= 0).all()  # the cold user gets the popular items
    assert np.array_equal(ids[3], rec.predict(X[3], k=10)[0])
    # Without filtering, seen items come back, as with filter_seen=False.
    history, exclude = graph_inputs(rec, X, filter_seen=False)
    ids, scores = _run(scoring_graph(rec, k=10), history, exclude)
    _check_same_ranking(ids, scores, *rec.recommend(X, k=10, filter_seen=False))
    full = _run(scoring_graph(rec, k=None), *graph_inputs(rec, X))
    assert np.allclose(full, rec.predict_scores(X, filter_seen=True), atol=SCORE_TOL)


def test_graph_leaves_the_estimator_alone(rec, X):
    before = rec.predict_scores(X)
    graph = scoring_graph(rec)
    graph.module.float().zero_grad()
    with torch.no_grad():
        next(graph.module.parameters()).add_(1.0)
    assert np.array_equal(rec.predict_scores(X), before)


def test_exported_program_matches_with_dynamic_shapes(rec, X):
    program = export_program(rec, k=5)
    module = program.module()
    history, exclude = graph_inputs(rec, X)
    with torch.no_grad():
        for rows in (slice(0, 1), slice(0, 7), slice(None)):
            ids, scores = (t.numpy() for t in module(torch.as_tensor(history[rows]),
                                                      torch.as_tensor(exclude[rows])))
            _check_same_ranking(ids, scores, *rec.recommend(X[rows], k=5))
        one = torch.as_tensor(history[4:8, -1:])  # histories of length 1
        if program_graph_is_static(rec):  # padded to the full length
            ids, _ = module(F.pad(one, (history.shape[1] - 1, 0), value=-1), one)
        else:
            ids, _ = module(one, one)
        ref = rec.predict(sp.csr_matrix((np.ones(4), (np.arange(4), one[:, 0].numpy())),
                                        shape=(4, X.shape[1])), k=5)
        assert np.array_equal(ids.numpy(), ref)


def program_graph_is_static(rec) -> bool:
    return scoring_graph(rec).static_length


def test_export_of_a_model_that_reads_one_item(X):
    rec = SeqRecommender(**{**SEQ, "max_len": 1}).fit(X)
    history, exclude = graph_inputs(rec, X)
    assert history.shape[1] == 1
    with torch.no_grad():
        ids, _ = export_program(rec, k=5).module()(torch.as_tensor(history),
                                                   torch.as_tensor(exclude))
    assert np.array_equal(ids.numpy(), rec.predict(X, k=5))


@pytest.mark.parametrize("kind", ["seq", "ae"])
@pytest.mark.parametrize("feats", ["sparse", "dense", "dense-mlp"])
def test_models_with_item_features_export_and_serve_in_reduced_precision(X, kind, feats):
    rng = np.random.RandomState(0)
    F = rng.rand(X.shape[1], 6)
    # sparse: one non-zero of up to 40 columns per item (this sparse stays sparse in the model)
    F = sp.csr_matrix((rng.rand(X.shape[1]), (np.arange(X.shape[1]),
                                              rng.randint(0, 40, X.shape[1])))
                      ) if feats == "sparse" else F
    hidden = 8 if feats == "dense-mlp" else None
    est = (SeqRecommender(**SEQ, item_features=F, feature_hidden=hidden) if kind == "seq"
           else AERecommender(**AE, item_features=F, feature_hidden=hidden)).fit(X)
    ref = est.predict_scores(X)
    for precision in ("bf16", "int8"):  # the feature projection stays fp32 in the copies
        scores = pickle.loads(pickle.dumps(est)).set_params(
            inference_precision=precision).predict_scores(X)
        assert np.abs(scores - ref).max() <= QUANT_TOL[precision][0] * np.abs(ref).max()
    assert est.module_.features.sparse == (feats == "sparse")
    if kind == "ae" and feats == "sparse":  # a sparse product in the graph: a clear refusal
        with pytest.raises(ValueError, match="dense item_features"):
            export_program(est)
        return
    history, exclude = graph_inputs(est, X)
    with torch.no_grad():
        ids, scores = export_program(est, k=10).module()(torch.as_tensor(history),
                                                        torch.as_tensor(exclude))
    _check_same_ranking(ids.numpy(), scores.numpy(), *est.recommend(X, k=10))


def test_graph_requires_a_neural_model_and_a_valid_k(X, rec):
    with pytest.raises(TypeError, match="no exportable scoring graph"):
        scoring_graph(EASERecommender().fit(X))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        scoring_graph(rec, k=0)
    assert scoring_graph(rec, k=1000).k == X.shape[1]  # at most the catalogue


def _onnx_session(path):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options)


@pytest.fixture(scope="module")
def movielens_or_synthetic():
    """ML-100K when it is there (the brief's check), else synthetic data."""
    from conftest import _ml100k_dir

    path = _ml100k_dir()
    if (path / "u.data").is_file():
        return load_movielens(path).X
    return make_interactions(n_users=300, n_items=200, mean_length=30, random_state=0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["seq", "ae"])
def test_onnx_export_matches_eager(kind, movielens_or_synthetic, tmp_path):
    """Max |score difference| <= 1e-4 and identical top-10 lists (on ML-100K when present).

    The model trains on a few users (one epoch): parity does not need a good model, and every
    user is scored.
    """
    pytest.importorskip("onnxscript")
    X = movielens_or_synthetic
    common = dict(max_iter=1, early_stopping=False, random_state=0, device="cpu",
                  precision="fp32")
    rec = (SeqRecommender(d_model=32, **common) if kind == "seq"
           else AERecommender(hidden_sizes=(64,), latent_dim=32, **common)).fit(X[:100])
    path = tmp_path / "model.onnx"
    export_onnx(rec, path, k=10)
    session = _onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["history", "exclude"]
    assert [o.name for o in session.get_outputs()] == ["ids", "scores"]
    history, exclude = graph_inputs(rec, X)
    ids, scores = session.run(None, {"history": history, "exclude": exclude})
    _check_same_ranking(ids, scores, *rec.recommend(X, k=10))
    ids, _ = session.run(None, {"history": history[:1], "exclude": exclude[:1]})
    assert np.array_equal(ids, rec.predict(X[:1], k=10))


def _short_histories(n_users: int, n_items: int, length: int = 3) -> sp.csr_matrix:
    """Rows of ``length`` items each (values 1..length: the order), all shorter than max_len."""
    rng = np.random.default_rng(0)
    cols = np.stack([rng.choice(n_items, length, replace=False) for _ in range(n_users)])
    rows = np.repeat(np.arange(n_users), length)
    values = np.tile(np.arange(1.0, length + 1), n_users)
    return sp.csr_matrix((values, (rows, cols.ravel())), shape=(n_users, n_items))


@pytest.mark.slow
def test_gru_graph_takes_short_histories_padded_to_max_len(X, tmp_path):
    """A GRU graph is exported for histories of exactly max_len: graph_inputs pads short
    histories to it (not to the longest row), so the program and the ONNX model accept them.
    The ONNX file is written at the opset asked for (21, not the default)."""
    rec = SeqRecommender(**SEQ, encoder="gru").fit(X)
    X_short = _short_histories(6, X.shape[1])
    history, exclude = graph_inputs(rec, X_short)
    assert history.shape == (6, SEQ["max_len"])
    assert (history[:, : SEQ["max_len"] - 3] == -1).all()
    with torch.no_grad():
        ids, scores = (t.numpy() for t in export_program(rec, k=5).module()(
            torch.as_tensor(history), torch.as_tensor(exclude)))
    _check_same_ranking(ids, scores, *rec.recommend(X_short, k=5))
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    export_onnx(rec, tmp_path / "gru.onnx", k=5, opset_version=21)
    model = onnx.load(tmp_path / "gru.onnx")
    assert {op.domain: op.version for op in model.opset_import}[""] == 21
    ids, scores = _onnx_session(tmp_path / "gru.onnx").run(
        None, {"history": history, "exclude": exclude})
    _check_same_ranking(ids, scores, *rec.recommend(X_short, k=5))


@pytest.mark.parametrize("opset", ["x", 2.0, True, 7, 17, 10**4])
def test_bad_opset_version_is_a_value_error(X, opset, tmp_path):
    """Not a torch TypeError, and not a file silently written at another opset."""
    pytest.importorskip("onnxscript")
    rec = SeqRecommender(**{**SEQ, "max_iter": 1}).fit(X[:20])
    with pytest.raises(ValueError, match="opset_version"):
        export_onnx(rec, tmp_path / "m.onnx", opset_version=opset)
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_export_without_the_extra_names_the_install(rec, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails
    with pytest.raises(ImportError, match=r'pip install "skrec\[onnx\]"'):
        export_onnx(rec, tmp_path / "m.onnx")


# ---------------------------------------------------------------- reduced precision
#: Reduced-precision inference against fp32 on these tiny models: the largest score change
#: relative to the largest |score|, and the mean overlap of the top-10 lists.
QUANT_TOL = {"bf16": (0.02, 0.9), "fp16": (0.01, 0.9), "int8": (0.05, 0.8)}


@pytest.mark.parametrize("precision", ["bf16", "fp16", "int8"])
def test_reduced_precision_inference_stays_close_to_fp32(rec, X, precision):
    ref = rec.predict_scores(X)
    ref_ids = rec.predict(X)
    est = pickle.loads(pickle.dumps(rec)).set_params(inference_precision=precision)
    scores = est.predict_scores(X)
    rel_tol, min_overlap = QUANT_TOL[precision]
    assert np.abs(scores - ref).max() <= rel_tol * np.abs(ref).max()
    ids = est.predict(X)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref_ids)])
    assert overlap >= min_overlap
    assert not np.array_equal(scores, ref)  # it did run in reduced precision
    assert rec.inference_precision == "auto"  # the original is untouched


def test_inference_copy_follows_the_weights(X):
    est = SeqRecommender(**{**SEQ, "inference_precision": "bf16", "early_stopping": False})
    est.fit(X)
    first = est.predict_scores(X)
    assert np.array_equal(est.predict_scores(X), first)  # served from the cached copy
    est.partial_fit(X)  # in-place updates of the weights
    fresh = pickle.loads(pickle.dumps(est))  # no cache
    assert "_serving_copies" not in vars(fresh)
    assert np.array_equal(est.predict_scores(X), fresh.predict_scores(X))
    assert not np.array_equal(est.predict_scores(X), first)


def test_int8_inference_of_a_pruned_model_with_headless_blocks(X):
    est = SeqRecommender(**SEQ).fit(X).prune_(0.9, targets=["heads"])
    assert 0 in [b.attn.n_heads for b in est.module_.encoder.blocks]
    ref = est.predict_scores(X)
    scores = est.set_params(inference_precision="int8").predict_scores(X)
    assert np.abs(scores - ref).max() <= QUANT_TOL["int8"][0] * np.abs(ref).max()


def test_int8_saved_and_loaded_serves_the_same(X):
    est = AERecommender(**{**AE, "inference_precision": "int8"}).fit(X)
    buf = io.BytesIO()
    skrec.save(est, buf)
    back = skrec.load(io.BytesIO(buf.getvalue()))
    assert back.inference_precision == "int8"
    assert np.array_equal(back.predict_scores(X), est.predict_scores(X))


def test_bad_inference_precision(X, monkeypatch):
    est = SeqRecommender(**SEQ).fit(X)
    with pytest.raises(ValueError, match="inference_precision must be one of"):
        est.set_params(inference_precision="int4").predict(X)
    with pytest.raises(ValueError, match="inference_precision must be one of"):
        SeqRecommender(**{**SEQ, "inference_precision": "half"}).fit(X)
    est.set_params(inference_precision="int8")
    est.device_ = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="CPU only"):
        est.predict(X)
