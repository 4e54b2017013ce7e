"""Serving a click model: candidates of one request in one call, the exported scoring graph
(torch.export and ONNX, parity with predict_proba), reduced precisions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skrec import CTRClassifier
from skrec.serving import export_onnx, export_program, graph_inputs, scoring_graph

pd = pytest.importorskip("pandas")

FAST = dict(batch_size=128, max_iter=2, click_count_buckets=1 << 10, min_frequency=1,
            random_state=0, device="cpu", precision="fp32")


def _frame(n=1200, seed=0):
    rng = np.random.RandomState(seed)
    X = pd.DataFrame({
        "user": rng.randint(0, 50, n), "hour": rng.randint(0, 24, n),
        "ad": rng.choice([f"ad{i}" for i in range(30)], n), "price": rng.gamma(2.0, 1.0, n),
        "tags": [list(rng.choice(["a", "b", "c", "d"], rng.randint(0, 3), replace=False))
                 for _ in range(n)],
    })
    y = ((X["user"] % 3 == 0) ^ X["ad"].isin(["ad1", "ad2", "ad3"])).astype(int).to_numpy()
    return X, y


@pytest.fixture(scope="module")
def model():
    X, y = _frame()
    return CTRClassifier(**FAST, negative_sampling_rate=0.5).fit(X, y), X


def test_candidates_of_one_request_in_one_call(model):
    clf, X = model
    request = {"user": 7, "hour": 20, "tags": ["a", "c"]}
    ads = X[["ad", "price"]].iloc[:40].reset_index(drop=True)
    full = ads.assign(user=7, hour=20, tags=[["a", "c"]] * 40)
    np.testing.assert_allclose(clf.score_candidates(request, ads),
                               clf.predict_proba(full)[:, 1], rtol=1e-6)
    codes = np.column_stack([X["user"], X["hour"]]).astype(np.int64)
    y = (codes[:, 0] % 2).astype(int)
    arr = CTRClassifier(**FAST).fit(codes, y)
    np.testing.assert_allclose(arr.score_candidates({0: 3}, codes[:5, 1:]),
                               arr.predict_proba(np.column_stack([np.full(5, 3),
                                                                  codes[:5, 1]]))[:, 1])
    with pytest.raises(ValueError, match="neither the request nor the candidates"):
        clf.score_candidates({"user": 7}, ads)


@pytest.mark.parametrize("architecture", ["wide_deep", "deepfm", "dcnv2"])
def test_shared_request_fields_are_computed_once(architecture, monkeypatch):
    X, y = _frame()
    X = X.drop(columns="tags")
    clf = CTRClassifier(**FAST, architecture=architecture).fit(X, y)
    request = {"user": 7, "hour": 20}
    ads = X[["ad", "price"]].iloc[:40].reset_index(drop=True)
    full = ads.assign(user=7, hour=20)[list(X.columns)]
    expected = clf.predict_proba(full)[:, 1]
    module = clf.module_
    batch = clf._with_counts(clf.encoder_.transform(full)).to_torch()
    ids, numeric = batch["ids"], batch["numeric"]
    if architecture != "dcnv2":  # the MLP-first architectures never run the full forward
        monkeypatch.setattr(module, "forward", lambda *a, **k: pytest.fail("full forward"))
    np.testing.assert_allclose(clf.score_candidates(request, ads), expected, rtol=1e-5)
    with torch.no_grad():
        shared = (ids[0] == ids).all(dim=0)
        assert shared.any() and not shared.all()
        logits = module.forward_shared(ids, numeric, shared=shared).numpy()
        np.testing.assert_allclose(1 / (1 + np.exp(-logits)), expected, rtol=1e-5)
    monkeypatch.undo()
    with torch.no_grad():  # no column shared: the full forward
        np.testing.assert_allclose(module.forward_shared(ids, numeric, shared=~(ids == ids)),
                                   module(ids, numeric), rtol=1e-6)
    with torch.no_grad():  # every column shared: all candidates the same row
        same = ids[:1].repeat(5, 1), numeric[:1].repeat(5, 1)
        np.testing.assert_allclose(
            module.forward_shared(*same, shared=torch.ones(ids.shape[1], dtype=torch.bool)),
            module(*same), rtol=1e-5)


def test_exported_program_and_onnx_match_predict_proba(model, tmp_path):
    clf, X = model
    rows = X.iloc[:64]
    expected = clf.predict_proba(rows)[:, 1]
    graph = scoring_graph(clf)
    assert graph.input_names == ["ids", "numeric", "bag_ids", "bag_offsets", "bag_weights"]
    inputs = graph_inputs(clf, rows)
    tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
    np.testing.assert_allclose(graph(**tensors).detach().numpy(), expected, rtol=1e-5, atol=1e-7)
    program = export_program(clf)
    np.testing.assert_allclose(program.module()(**tensors).detach().numpy(), expected, rtol=1e-5,
                               atol=1e-7)
    other = {k: torch.as_tensor(v) for k, v in graph_inputs(clf, X.iloc[100:107]).items()}
    np.testing.assert_allclose(program.module()(**other).detach().numpy(),
                               clf.predict_proba(X.iloc[100:107])[:, 1], rtol=1e-5, atol=1e-7)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / "click.onnx"
    export_onnx(clf, path)
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == graph.input_names
    (proba,) = session.run(None, inputs)
    np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="int8"):
        export_program(clf, precision="int8")


def test_a_model_of_category_codes_exports_ids_only(tmp_path):
    X, y = _frame(600, seed=1)
    codes = np.column_stack([X["user"], X["hour"]]).astype(np.int64)
    clf = CTRClassifier(**FAST, architecture="deepfm").fit(codes, y)
    inputs = graph_inputs(clf, codes[:20])
    assert list(inputs) == ["ids"]
    program = export_program(clf)
    np.testing.assert_allclose(program.module()(ids=torch.as_tensor(inputs["ids"])).detach().numpy(),
                               clf.predict_proba(codes[:20])[:, 1], rtol=1e-5, atol=1e-7)
