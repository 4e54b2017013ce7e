"""skrec.save / skrec.load: every estimator round-trips; bad files get clear errors."""

from __future__ import annotations

import io
import json
import os
import pickle
import stat

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator

import skrec
from skrec import (
    AERecommender,
    EASERecommender,
    MarkovChainRecommender,
    PopularityRecommender,
    SeqRecommender,
)
from skrec.datasets import make_interactions
from skrec.model_selection import leave_last_out_split
from skrec.nn import module_config
from skrec.persistence import (
    FORMAT_VERSION,
    LoadLimits,
    ModelFileError,
    register_estimator,
    registered_estimators,
)
from skrec.persistence._container import _pack, _unpack
from skrec.preprocessing import InteractionEncoder

SEQ = dict(d_model=8, n_layers=2, n_heads=2, d_ff=16, max_len=12, max_iter=2, batch_size=16,
           random_state=0, device="cpu", precision="fp32")
AE = dict(hidden_sizes=(16,), latent_dim=8, max_iter=2, batch_size=16, random_state=0,
          device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def data():
    X = make_interactions(n_users=120, n_items=30, mean_length=10, random_state=0)
    return leave_last_out_split(X)


def _estimators():
    return [
        PopularityRecommender(),
        EASERecommender(l2=50.0),
        MarkovChainRecommender(smoothing=0.05),
        SeqRecommender(**SEQ),
        SeqRecommender(**{**SEQ, "loss": "sampled", "n_negatives": 8}),
        AERecommender(**AE),
        AERecommender(**{**AE, "variational": False}),
    ]


@pytest.fixture(scope="module")
def fitted(data):
    X, _ = data
    return [est.fit(X) for est in _estimators()]


def _round_trip(est, tmp_path=None):
    if tmp_path is None:
        buf = io.BytesIO()
        skrec.save(est, buf)
        return skrec.load(io.BytesIO(buf.getvalue()))
    path = tmp_path / "model.skrec"
    skrec.save(est, path)
    return skrec.load(path)


def _same(a, b) -> bool:
    """Deep equality of restored values (NaN equals NaN, arrays and tensors elementwise)."""
    if isinstance(a, torch.nn.Module):
        return module_config(a) == module_config(b) and all(
            _same(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())
        )
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if sp.issparse(a):
        return a.format == b.format and a.shape == b.shape and (a != b).nnz == 0
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("i", range(len(_estimators())),
                         ids=[type(e).__name__ + str(i) for i, e in enumerate(_estimators())])
def test_every_estimator_round_trips_with_identical_predictions(fitted, data, i, tmp_path):
    est = fitted[i]
    X, _ = data
    back = _round_trip(est, tmp_path)
    assert type(back) is type(est)
    assert back.get_params() == est.get_params()
    assert vars(back).keys() == vars(est).keys()
    for key, value in vars(est).items():
        assert _same(value, vars(back)[key]), key
    ids, scores = est.recommend(X, k=7)
    ids2, scores2 = back.recommend(X, k=7)
    assert np.array_equal(ids, ids2) and np.array_equal(scores, scores2)
    assert np.array_equal(est.predict_scores(X[:20]), back.predict_scores(X[:20]))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_unfitted_estimator_round_trips():
    back = _round_trip(SeqRecommender(d_model=32, prune=0.5))
    assert back.get_params() == SeqRecommender(d_model=32, prune=0.5).get_params()
    assert not hasattr(back, "n_features_in_")


def test_loaded_model_keeps_training(fitted, data):
    X, _ = data
    back = _round_trip(fitted[3])
    back.set_params(warm_start=True, early_stopping=False, max_iter=1).fit(X)
    assert back.n_iter_ == fitted[3].n_iter_ + 1


@pytest.mark.parametrize("make", [lambda: SeqRecommender(**SEQ), lambda: AERecommender(**AE)],
                         ids=["seq", "ae"])
def test_pruned_model_round_trips_and_keeps_its_unpruned_base(make, data):
    X, _ = data
    est = make().fit(X).prune_(0.5, X=X, fine_tune_epochs=1)
    back = _round_trip(est)
    assert module_config(back.module_) == module_config(est.module_)
    assert back.module_._skrec_pruning_base == est.module_._skrec_pruning_base
    assert back.pruning_report_["groups"] == est.pruning_report_["groups"]
    assert np.array_equal(back.predict(X), est.predict(X))
    # A later prune_ still counts against the unpruned model, in both.
    est.prune_(0.75)
    back.prune_(0.75)
    assert module_config(back.module_) == module_config(est.module_)
    assert back.pruning_report_["groups"] == est.pruning_report_["groups"]


def test_pruned_transformer_with_per_block_heads(data):
    X, _ = data
    est = SeqRecommender(**{**SEQ, "n_heads": 4}).fit(X)
    est.prune_(0.5, targets=["heads", "ffn"])
    heads = [b.attn.n_heads for b in est.module_.encoder.blocks]
    back = _round_trip(est)
    assert [b.attn.n_heads for b in back.module_.encoder.blocks] == heads
    assert np.array_equal(back.predict_scores(X), est.predict_scores(X))


@pytest.mark.parametrize("kind", ["seq", "ae"])
@pytest.mark.parametrize("feats", ["sparse", "dense"])
def test_model_with_item_features_round_trips_after_add_items(data, kind, feats):
    X, _ = data
    rng = np.random.RandomState(0)
    F = rng.rand(X.shape[1] + 3, 6)
    F = sp.csr_matrix(F * (F > 0.6)) if feats == "sparse" else F
    est = (SeqRecommender(**SEQ, item_features=F[:-3]) if kind == "seq"
           else AERecommender(**AE, item_features=F[:-3])).fit(X)
    est.add_items(F[-3:])  # a grown catalogue: new items scored from their features
    back = _round_trip(est)
    X_new = sp.hstack([X, sp.csr_matrix((X.shape[0], 3))], format="csr")
    assert back.n_features_in_ == X.shape[1] + 3
    assert np.array_equal(back.predict_scores(X_new), est.predict_scores(X_new))
    assert _same(back.item_features, est.item_features)


def test_model_saved_from_a_gpu_state_loads_on_cpu(fitted, data, monkeypatch):
    X, _ = data
    est = fitted[3]
    gpu = pickle.loads(pickle.dumps(est))
    gpu.device_, gpu.precision_ = torch.device("cuda", 0), "bf16"
    buf = io.BytesIO()
    skrec.save(gpu, buf)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    back = skrec.load(io.BytesIO(buf.getvalue()))
    assert back.device_.type == "cpu" and back.precision_ == "fp32"
    assert all(p.device.type == "cpu" for p in back.module_.parameters())
    assert np.array_equal(back.predict(X), est.predict(X))


def test_load_does_not_move_the_global_rng(fitted):
    buf = io.BytesIO()
    skrec.save(fitted[3], buf)
    state = torch.get_rng_state()
    skrec.load(io.BytesIO(buf.getvalue()))
    assert torch.equal(torch.get_rng_state(), state)


def test_interaction_encoder_round_trips_string_and_mixed_ids():
    log = {"user": np.array(["u1", "u2", "u1", "ü3"]), "item": np.array(["a", "b", "ç", "a"])}
    enc = InteractionEncoder().fit(log)
    back = _round_trip(enc)
    assert back.items_.dtype == enc.items_.dtype and np.array_equal(back.items_, enc.items_)
    assert np.array_equal(back.transform_items(["ç", "a"]), enc.transform_items(["ç", "a"]))
    items = np.empty(2, dtype=object)
    items[:] = [(1, "a"), (0, "b")]
    objects = InteractionEncoder().fit({"user": np.array([1, 2]), "item": items})
    assert objects.items_.dtype == object
    assert list(_round_trip(objects).items_) == list(objects.items_)


def test_file_is_a_valid_safetensors_file(fitted, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "m.safetensors"
    skrec.save(fitted[3], path)
    tensors = st.load_file(str(path))
    weight = fitted[3].module_.items.id_emb.weight.detach().numpy()
    assert np.array_equal(tensors["module_.items.id_emb.weight"], weight)
    assert np.array_equal(tensors["item_popularity_"], fitted[3].item_popularity_)


# ---------------------------------------------------------------- values
@register_estimator
class _Holder(BaseEstimator):
    """A registered toy estimator whose attributes exercise every supported value type."""

    def __init__(self, option=None, random_state=None):
        self.option = option
        self.random_state = random_state


def test_supported_values_round_trip():
    h = _Holder(option={"a": (1, 2.5, None), 3: "int key", "$x": [True]},
                random_state=np.random.RandomState(7))
    h.random_state.standard_normal()  # a cached Gaussian in the state
    h.floats_ = [float("nan"), float("inf"), -float("inf"), 1e-310]
    h.scalars_ = (np.float32(1.5), np.int64(-3), np.bool_(True), np.uint8(7))
    h.arrays_ = {
        "f16": np.arange(5, dtype=np.float16), "u32": np.arange(3, dtype=np.uint32),
        "bool": np.array([[True, False]]), "empty": np.zeros((0, 4)),
        "big_endian": np.arange(4, dtype=">i4"), "strided": np.arange(10.0)[::3],
        "dates": np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[s]"),
        "objects": np.array([1, "x", None, 2.5], dtype=object),
        "unicode": np.array([["ab", "çé"], ["", "z"]]),
    }
    h.sparse_ = [sp.random(5, 4, density=0.5, format=f, random_state=0)
                 for f in ("csr", "csc", "coo", "lil")] + [sp.csr_array(np.eye(3))]
    h.tensors_ = [torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), torch.tensor(3.0),
                  torch.ones(0, 2), torch.nn.Parameter(torch.ones(2), requires_grad=False)]
    h.meta_ = [torch.device("cuda", 1), torch.float16, np.dtype("int16")]
    h._cache = lambda: None  # private: not stored
    back = _round_trip(h)
    assert not hasattr(back, "_cache")
    assert back.option == h.option
    assert _same(back.floats_, h.floats_)
    assert all(type(a) is type(b) and a == b for a, b in zip(back.scalars_, h.scalars_))
    for key, arr in h.arrays_.items():
        got = back.arrays_[key]
        assert got.dtype.kind == arr.dtype.kind and got.shape == arr.shape, key
        assert list(got.ravel()) == list(arr.ravel()), key
    for a, b in zip(h.sparse_, back.sparse_):
        assert type(a) is type(b) and (a != b).nnz == 0
    for a, b in zip(h.tensors_, back.tensors_):
        assert type(a) is type(b) and a.dtype == b.dtype and torch.equal(a, b)
    assert back.tensors_[3].requires_grad is False
    assert back.meta_ == h.meta_
    assert back.random_state.standard_normal() == h.random_state.standard_normal()


@pytest.mark.parametrize("value, words", [
    (lambda x: x, "callable"),
    (np.random.default_rng(0), "Generator"),
    ({1, 2}, "set"),
    (torch.nn.Linear(2, 2), "no config"),
    (np.array([1 + 2j]), "complex"),
])
def test_values_that_are_not_data_get_a_clear_error(value, words):
    with pytest.raises(TypeError, match=words) as info:
        skrec.save(_Holder(option=value), io.BytesIO())
    assert "params.option" in str(info.value)


def test_unregistered_estimator_is_refused_at_save():
    class Custom(EASERecommender):
        pass

    with pytest.raises(TypeError, match="not a registered estimator"):
        skrec.save(Custom(), io.BytesIO())
    assert "SeqRecommender" in registered_estimators()


def test_an_estimator_held_by_another_round_trips_and_is_checked():
    encoder = InteractionEncoder().fit({"user": ["u1", "u2"], "item": ["a", "b"]})
    holder = _Holder(option=EASERecommender(l2=3.0))  # an estimator as a parameter too
    holder.encoder_ = encoder
    holder.encoders_ = [encoder, _Holder(option=1)]
    back = _round_trip(holder)
    assert type(back.encoder_) is InteractionEncoder and back.encoder_ is not encoder
    assert back.encoder_.items_.tolist() == encoder.items_.tolist()
    assert back.option.l2 == 3.0 and back.encoders_[1].option == 1

    def forge(payload):  # the held estimator names a class that is not registered
        payload["attributes"]["encoder_"]["$estimator"]["estimator"] = "os.system"

    buf = io.BytesIO()
    skrec.save(holder, buf)
    with pytest.raises(ModelFileError, match="encoder_.*not registered|not registered"):
        _load(_rewrite(buf.getvalue(), forge))

    def deep(payload):  # estimators held inside estimators, deeper than the limit allows
        entry = payload["attributes"]["encoder_"]["$estimator"]
        for _ in range(40):
            entry = {"estimator": payload["estimator"], "params": {},
                     "attributes": {"inner_": {"$estimator": entry}}}
        payload["attributes"]["encoder_"]["$estimator"] = entry

    with pytest.raises(ModelFileError, match="deeper"):
        _load(_rewrite(buf.getvalue(), deep))


def test_an_unregistered_held_estimator_is_named_at_save():
    from sklearn.preprocessing import OneHotEncoder

    with pytest.raises(TypeError, match="params.option.*OneHotEncoder.*not a registered"):
        skrec.save(_Holder(option=OneHotEncoder()), io.BytesIO())


# ---------------------------------------------------------------- bad files
@pytest.fixture(scope="module")
def blob(data):
    X, _ = data
    buf = io.BytesIO()
    skrec.save(EASERecommender(l2=50.0).fit(X), buf)
    return buf.getvalue()


def _rewrite(blob: bytes, edit) -> bytes:
    """The same file after ``edit(payload)``, with a valid checksum (a crafted file)."""
    payload, tensors = _unpack(bytearray(blob))
    edit(payload)
    return _pack(json.dumps(payload), tensors)


def _load(raw: bytes):
    return skrec.load(io.BytesIO(raw))


def test_truncated_files_are_refused(blob):
    header_end = 8 + int.from_bytes(blob[:8], "little")
    for cut in (0, 5, 100, header_end - 1, header_end + 10, len(blob) - 1):
        with pytest.raises(ModelFileError, match="truncated|too short"):
            _load(blob[:cut])


def test_modified_files_fail_the_checksum(blob):
    tampered = bytearray(blob)
    tampered[-3] ^= 0xFF  # a weight
    with pytest.raises(ModelFileError, match="checksum"):
        _load(bytes(tampered))
    text = blob.replace(b'\\"l2\\":50.0', b'\\"l2\\":90.0')  # a parameter, same length
    assert text != blob
    with pytest.raises(ModelFileError, match="checksum"):
        _load(text)
    with pytest.raises(ModelFileError, match="unexpected bytes"):
        _load(blob + b"\0" * 8)


def test_foreign_files_are_refused(blob, tmp_path):
    for raw in (b"", b"not a model at all, just text", pickle.dumps(EASERecommender()),
                b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"{" * 16):
        with pytest.raises(ModelFileError, match="not a skrec model|too short"):
            _load(raw)
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "plain.safetensors"
    st.save_file({"w": np.ones(3, dtype=np.float32)}, str(path))
    with pytest.raises(ModelFileError, match="without skrec metadata"):
        skrec.load(path)


def _with_header_version(blob: bytes, version: bytes) -> bytes:
    header = blob[8 : 8 + int.from_bytes(blob[:8], "little")]
    current = f'"skrec.format_version":"{FORMAT_VERSION}"'.encode()
    edited = header.replace(current, b'"skrec.format_version":' + version)
    assert edited != header
    edited += b" " * (-len(edited) % 8)
    return len(edited).to_bytes(8, "little") + edited + blob[8 + len(header):]


def test_other_format_version_is_refused(blob):
    with pytest.raises(ModelFileError, match=r"version 3; this skrec .* reads versions 1, 2"):
        _load(_with_header_version(blob, b'"3"'))
    # compared by type too: an int 2 is not the string "2" that skrec writes
    with pytest.raises(ModelFileError, match="stored as int 2"):
        _load(_with_header_version(blob, b"2"))


def test_version_1_files_still_load(blob, data):
    """The layout of version 1 is a subset of version 2's: old files load unchanged."""
    def edit(payload):
        payload["format_version"] = 1

    raw = _with_header_version(_rewrite(blob, edit), b'"1"')
    back = _load(raw)
    X, _ = data
    assert np.array_equal(back.predict(X), _load(blob).predict(X))


def test_unknown_estimator_class_is_refused(blob):
    def edit(payload):
        payload["estimator"] = "os.system"

    with pytest.raises(ModelFileError, match="not registered"):
        _load(_rewrite(blob, edit))


def test_unknown_module_type_and_value_tag_are_refused(fitted):
    buf = io.BytesIO()
    skrec.save(fitted[3], buf)

    def module_type(payload):
        payload["attributes"]["module_"]["$module"]["config"]["type"] = "subprocess.Popen"

    with pytest.raises(ModelFileError, match="Unknown module type"):
        _load(_rewrite(buf.getvalue(), module_type))

    def tag(payload):
        payload["attributes"]["n_iter_"] = {"$pickle": "gASV..."}

    with pytest.raises(ModelFileError, match="unknown value type"):
        _load(_rewrite(buf.getvalue(), tag))

    def shapes(payload):
        payload["attributes"]["module_"]["$module"]["config"]["items"]["d_model"] = 4

    with pytest.raises(ModelFileError, match="module"):
        _load(_rewrite(buf.getvalue(), shapes))


@pytest.mark.parametrize("name", ["predict", "_private", "not an identifier"])
def test_attributes_that_would_shadow_methods_are_refused(blob, name):
    def edit(payload):
        payload["attributes"][name] = 1

    with pytest.raises(ModelFileError, match="cannot have"):
        _load(_rewrite(blob, edit))


def test_parameters_unknown_to_this_version_are_refused(blob):
    def edit(payload):
        payload["params"]["future_option"] = 1

    with pytest.raises(ModelFileError, match="parameters do not fit"):
        _load(_rewrite(blob, edit))


# ---------------------------------------------------------------- item features stored once
def _tensor_names(raw: bytes) -> dict[str, list[int]]:
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


@pytest.mark.parametrize("feats", ["sparse", "dense"])
@pytest.mark.parametrize("kind", ["seq", "ae"])
def test_item_features_are_stored_once(data, kind, feats):
    """The module's feature rows are rebuilt from the parameter; only the rows that add_items
    appended are stored with the module, and the loaded model is bitwise the saved one."""
    X, _ = data
    rng = np.random.RandomState(1)
    n_feat = 200 if feats == "sparse" else 6
    F = sp.random(X.shape[1] + 3, n_feat, density=0.02, format="csr", random_state=rng)
    F = F if feats == "sparse" else rng.rand(X.shape[1] + 3, n_feat)
    est = (SeqRecommender(**SEQ, item_features=F[:-3]) if kind == "seq"
           else AERecommender(**AE, item_features=F[:-3])).fit(X)
    est.add_items(F[-3:])
    proj = est.module_.items.features if kind == "seq" else est.module_.features
    assert proj.sparse == (feats == "sparse")  # both storages of the module are exercised
    buf = io.BytesIO()
    skrec.save(est, buf)
    names = _tensor_names(buf.getvalue())
    prefix = "module_.items.features." if kind == "seq" else "module_.features."
    if feats == "sparse":
        assert names[prefix + "crow"] == [4]  # the 3 added rows only
        assert names[prefix + "col"] == [int(proj.col.numel() - F[:-3].nnz)]
    else:
        assert names[prefix + "dense"] == [3, n_feat]
    back = skrec.load(io.BytesIO(buf.getvalue()))
    assert _same(back.get_params()["item_features"], est.get_params()["item_features"])
    state, back_state = est.module_.state_dict(), back.module_.state_dict()
    assert state.keys() == back_state.keys()
    for name, t in state.items():
        assert t.dtype == back_state[name].dtype and torch.equal(t, back_state[name]), name
    X_new = sp.hstack([X, sp.csr_matrix((X.shape[0], 3))], format="csr")
    assert np.array_equal(back.predict_scores(X_new), est.predict_scores(X_new))
    back.add_items(F[-2:])  # the loaded model keeps growing like the original
    est.add_items(F[-2:])
    for name, t in est.module_.state_dict().items():
        assert torch.equal(t, back.module_.state_dict()[name]), name


def test_features_changed_after_fit_are_stored_in_full(data):
    """set_params(item_features=...) after fit: the module's rows are not the parameter's, so
    they are stored in full, and both come back."""
    X, _ = data
    F = np.random.RandomState(0).rand(X.shape[1], 4)
    est = SeqRecommender(**SEQ, item_features=F).fit(X)
    est.set_params(item_features=F * 2)
    buf = io.BytesIO()
    skrec.save(est, buf)
    assert _tensor_names(buf.getvalue())["module_.items.features.dense"] == [X.shape[1], 4]
    back = skrec.load(io.BytesIO(buf.getvalue()))
    assert np.array_equal(back.item_features, F * 2)
    assert torch.equal(back.module_.items.features.dense, est.module_.items.features.dense)


def test_forged_feature_parameter_cannot_blow_up_the_module(data):
    """Rows rebuilt from the parameter are checked against the module config and the budget
    before they are built: a 1e9-row sparse parameter cannot become a dense buffer."""
    X, _ = data
    F = np.random.RandomState(0).rand(X.shape[1], 4)
    buf = io.BytesIO()
    skrec.save(SeqRecommender(**SEQ, item_features=F).fit(X), buf)

    def edit(payload):
        payload["attributes"]["module_"]["$module"]["derived"]["items.features"]["rows"] = 5

    with pytest.raises(ModelFileError, match=r"module_\.derived\.items\.features"):
        _load(_rewrite(buf.getvalue(), edit))


# ---------------------------------------------------------------- bundles
def test_bundle_round_trips_in_order(fitted, data, tmp_path):
    X, _ = data
    log = {"user": np.array(["a", "b", "a"]), "item": np.array(["x", "y", "z"])}
    enc = InteractionEncoder().fit(log)
    path = tmp_path / "bundle.skrec"
    skrec.save({"model": fitted[3], "encoder": enc, "ease": fitted[1]}, path)
    back = skrec.load(path)
    assert list(back) == ["model", "encoder", "ease"]
    assert isinstance(back["encoder"], InteractionEncoder)
    assert np.array_equal(back["encoder"].items_, enc.items_)
    assert np.array_equal(back["model"].predict(X), fitted[3].predict(X))
    assert np.array_equal(back["ease"].predict(X), fitted[1].predict(X))
    st = pytest.importorskip("safetensors.numpy")
    assert "model/module_.items.id_emb.weight" in st.load_file(str(path))


def test_bundle_errors_name_the_entry(fitted):
    class Custom(EASERecommender):
        pass

    with pytest.raises(TypeError, match="bundle entry 'bad'.*not a registered"):
        skrec.save({"good": fitted[1], "bad": Custom()}, io.BytesIO())
    with pytest.raises(TypeError, match="names of a bundle"):
        skrec.save({1: fitted[1]}, io.BytesIO())
    with pytest.raises(ValueError, match="empty dict"):
        skrec.save({}, io.BytesIO())
    buf = io.BytesIO()
    skrec.save({"a": fitted[0], "b": fitted[1]}, buf)

    def edit(payload):
        payload["bundle"]["b"]["attributes"]["n_features_in_"] = 3

    with pytest.raises(ModelFileError, match=r"bundle\['b'\]: .*n_features_in_"):
        _load(_rewrite(buf.getvalue(), edit))


# ---------------------------------------------------------------- saving safely
def test_save_never_writes_through_a_planted_link(fitted, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    model = tmp_path / "model.skrec"
    # links at the names the former implementation used, for this and nearby process ids
    for pid in range(os.getpid() - 5, os.getpid() + 5):
        (tmp_path / f".model.skrec.{pid}.tmp").symlink_to(victim)
    skrec.save(fitted[1], model)
    assert victim.read_text() == "precious"
    assert model.is_file() and not model.is_symlink()
    # a link at the model's own path is replaced by the file, not written through
    link = tmp_path / "linked.skrec"
    link.symlink_to(victim)
    skrec.save(fitted[1], link)
    assert victim.read_text() == "precious"
    assert link.is_file() and not link.is_symlink()
    assert skrec.load(link).l2 == fitted[1].l2
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
    assert not leftovers


def test_save_creates_its_temporary_file_exclusively(fitted, tmp_path, monkeypatch):
    """The temporary file comes from mkstemp (O_CREAT | O_EXCL, a random name, in the target
    folder); an interrupted save leaves neither it nor a changed target behind."""
    import tempfile as tempfile_module

    calls = []
    real_mkstemp = tempfile_module.mkstemp

    def spy(*args, **kwargs):
        calls.append(kwargs.get("dir"))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile_module, "mkstemp", spy)
    model = tmp_path / "model.skrec"
    model.write_bytes(b"old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        skrec.save(fitted[1], model)
    assert calls == [model.parent]
    assert model.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.skrec"]


def test_saved_file_gets_the_usual_permissions(fitted, tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    path = tmp_path / "model.skrec"
    skrec.save(fitted[1], path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_text_mode_file_objects_are_refused(fitted, tmp_path):
    with pytest.raises(TypeError, match="binary"):
        skrec.save(fitted[1], io.StringIO())
    path = tmp_path / "m.skrec"
    skrec.save(fitted[1], path)
    with open(path, encoding="latin-1") as f, pytest.raises(TypeError, match="binary"):
        skrec.load(f)


# ---------------------------------------------------------------- limits
def test_load_limits_are_enforced_and_can_be_raised(blob, tmp_path):
    path = tmp_path / "m.skrec"
    path.write_bytes(blob)
    with pytest.raises(ModelFileError, match="max_file_bytes"):
        skrec.load(path, limits=LoadLimits(max_file_bytes=len(blob) - 1))
    with pytest.raises(ModelFileError, match="max_header_bytes"):
        skrec.load(path, limits=LoadLimits(max_header_bytes=64))
    with pytest.raises(ModelFileError, match="max_decoded_bytes"):
        skrec.load(path, limits=LoadLimits(max_decoded_bytes=1000))
    assert skrec.load(path, limits=LoadLimits(max_file_bytes=len(blob))).l2 == 50.0

    def edit(payload):
        value = 0
        for _ in range(5):
            value = [value]
        payload["attributes"]["deep_"] = value

    nested = _rewrite(blob, edit)
    with pytest.raises(ModelFileError, match="deep_.*max_depth"):
        _load_limited(nested, LoadLimits(max_depth=4))
    assert _load_limited(nested, LoadLimits(max_depth=8)).deep_ == [[[[[0]]]]]


def _load_limited(raw: bytes, limits):
    return skrec.load(io.BytesIO(raw), limits=limits)


@pytest.mark.parametrize("kwargs", [{"max_file_bytes": 0}, {"max_depth": 1.5},
                                    {"max_decoded_bytes": -1}, {"max_header_bytes": True}])
def test_invalid_limits_are_refused(kwargs):
    with pytest.raises(ValueError, match="LoadLimits"):
        LoadLimits(**kwargs)


def test_limits_of_another_type_are_refused(blob):
    with pytest.raises(TypeError, match="LoadLimits"):
        skrec.load(io.BytesIO(blob), limits={"max_depth": 3})


def test_more_sparse_formats_round_trip():
    h = _Holder(option=[sp.random(6, 4, density=0.5, format=f, random_state=0)
                        for f in ("bsr", "dia", "dok")] + [sp.bsr_matrix(np.eye(4),
                                                                        blocksize=(2, 2))])
    back = _round_trip(h)
    for a, b in zip(h.option, back.option):
        assert type(a) is type(b) and (a != b).nnz == 0
    assert back.option[3].blocksize == (2, 2)
