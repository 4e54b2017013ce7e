"""New items in your own ids: ``InteractionEncoder.add_items`` grows the encoder and its model
together, so that the new items are recommended, saved, loaded and served at once."""

from __future__ import annotations

import copy
import http.client
import importlib.util
import io
import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import skrec
from skrec import AERecommender, EASERecommender, SeqRecommender
from skrec.datasets import make_interactions
from skrec.preprocessing import InteractionEncoder

N_ITEMS, N_GENRES = 20, 4
SEQ = dict(d_model=8, n_layers=1, n_heads=2, d_ff=16, max_len=8, max_iter=2, batch_size=16,
           random_state=0, device="cpu", precision="fp32")
AE = dict(hidden_sizes=(16,), latent_dim=8, max_iter=2, batch_size=16, random_state=0,
          device="cpu", precision="fp32")


def _genres(codes) -> np.ndarray:
    """One-hot genre rows (the genre of item code c is c % N_GENRES)."""
    return np.eye(N_GENRES)[np.asarray(codes) % N_GENRES]


@pytest.fixture(scope="module")
def log():
    """An event log in string ids, with times, in no particular row order."""
    X = make_interactions(n_users=60, n_items=N_ITEMS, mean_length=6, random_state=0).tocoo()
    perm = np.random.RandomState(0).permutation(X.nnz)
    return {"user": np.array([f"u{r:02d}" for r in X.row])[perm],
            "item": np.array([f"sku-{c:02d}" for c in X.col])[perm],
            "ts": X.data[perm]}


@pytest.fixture(scope="module")
def fitted(log):
    """{kind: (encoder, model)} fitted once; tests work on deep copies."""
    out = {}
    for kind, make in (("seq", lambda F: SeqRecommender(item_features=F, **SEQ)),
                       ("ae", lambda F: AERecommender(item_features=F, **AE))):
        enc = InteractionEncoder(time_col="ts")
        X = enc.fit_transform(log)
        codes = np.array([int(i.split("-")[1]) for i in enc.items_])
        out[kind] = (enc, make(_genres(codes)).fit(X))
    return out


def _pair(fitted, kind="seq"):
    return copy.deepcopy(fitted[kind])


def _state(enc, model):
    """What must not change when add_items fails."""
    return (enc.items_.copy(), enc.n_items_, model.n_features_in_,
            model.item_popularity_.copy(),
            {k: v.clone() for k, v in model.module_.state_dict().items()})


def _assert_unchanged(enc, model, before):
    items, n_items, n_model, popularity, state = before
    assert enc.items_.dtype == items.dtype and enc.items_.tolist() == items.tolist()
    assert enc.n_items_ == n_items and model.n_features_in_ == n_model
    np.testing.assert_array_equal(model.item_popularity_, popularity)
    after = model.module_.state_dict()
    assert after.keys() == state.keys()
    for name, value in state.items():
        torch.testing.assert_close(after[name], value, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["seq", "ae"])
def test_new_items_are_recommended_in_your_ids_at_once(fitted, log, kind):
    enc, model = _pair(fitted, kind)
    new_ids = np.array(["new-a", "new-b", "new-c"])
    assert enc.add_items(model, new_ids, _genres([0, 1, 2])) is enc
    assert enc.items_[-3:].tolist() == new_ids.tolist() and enc.n_items_ == N_ITEMS + 3
    assert model.n_features_in_ == N_ITEMS + 3
    assert enc.transform_items(["new-b", "sku-05", "new-a"]).tolist() == [N_ITEMS + 1, 5, N_ITEMS]

    # recommended to known users, in your ids, among the new items only or the whole catalogue
    users = ["u03", "u10"]
    recs = enc.recommend(model, log, users=users, k=3, items=new_ids, as_frame=False)
    assert recs["user"].tolist() == ["u03"] * 3 + ["u10"] * 3
    assert sorted(recs["item"][:3].tolist()) == sorted(new_ids.tolist())
    every = enc.recommend(model, log, users=users, k=N_ITEMS + 3, filter_seen=False,
                          as_frame=False)
    assert set(new_ids) <= set(every["item"].tolist())
    # the same scores as the model's own recommend on the wider matrix
    X = enc.transform(log, users=users)
    assert X.shape == (2, N_ITEMS + 3)
    ids, scores = model.recommend(X, k=3, items=enc.transform_items(new_ids))
    assert recs["item"].tolist() == enc.items_[ids.ravel()].tolist()
    np.testing.assert_allclose(recs["score"], scores.ravel(), rtol=1e-6)

    # events on the new items land in their columns (a user who bought one)
    newer = {"user": np.array(["u99", "u99"]), "item": np.array(["sku-01", "new-b"]),
             "ts": np.array([1.0, 2.0])}
    row = enc.transform(newer, users=["u99"])
    assert row.indices.tolist() == [1, N_ITEMS + 1] and row.data.tolist() == [1.0, 2.0]
    similar = enc.similar_items(model, ["new-a"], k=2, as_frame=False)
    assert similar["item"].tolist() == ["new-a", "new-a"]


def test_the_new_items_are_scored_from_their_features(fitted):
    enc, model = _pair(fitted, "ae")
    # new items have no id yet: two with identical feature rows get identical scores
    enc.add_items(model, ["twin-1", "twin-2"], _genres([3, 3]))
    X = enc.transform({"user": np.array(["x"]), "item": np.array(["sku-00"]),
                       "ts": np.array([1.0])}, users=["x"])
    scores = model.predict_scores(X)[0]
    assert scores[N_ITEMS] == pytest.approx(scores[N_ITEMS + 1], abs=1e-6)


@pytest.mark.parametrize("ids, features, error, match", [
    (["n1", "n1"], _genres([0, 1]), ValueError, "more than once"),
    (["n1", "sku-03"], _genres([0, 1]), ValueError,
     r"1 of the new item ids are already known to this encoder, e\.g\. \['sku-03'\]"),
    ([5, 6], _genres([0, 1]), ValueError, "numbers vs strings"),
    (np.array(["n1", None], dtype=object), _genres([0, 1]), ValueError, "missing"),
    ([["n1", "n2"]], _genres([0, 1]), ValueError, "1-D"),
    (["n1", "n2"], _genres([0]), ValueError, "1 rows but item_ids has 2 ids"),
    (["n1"], np.ones((1, N_GENRES + 1)), ValueError, "fitted with 4"),
    (["n1"], np.full((1, N_GENRES), np.nan), ValueError, "NaN"),
    (["n1"], [["a", "b", "c", "d"]], TypeError, "numbers"),
])
def test_add_items_checks_everything_before_changing_either(fitted, ids, features, error, match):
    enc, model = _pair(fitted)
    before = _state(enc, model)
    with pytest.raises(error, match=match):
        enc.add_items(model, ids, features)
    _assert_unchanged(enc, model, before)


def test_add_items_refuses_models_that_cannot_take_them(fitted, log):
    enc, model = _pair(fitted)
    X = enc.transform(log)
    ease = EASERecommender(l2=1.0).fit(X)
    with pytest.raises(TypeError, match="EASERecommender cannot add items"):
        enc.add_items(ease, ["n1"], _genres([0]))
    plain = SeqRecommender(**SEQ).fit(X)
    before = _state(enc, plain)
    with pytest.raises(ValueError, match="fitted without item_features"):
        enc.add_items(plain, ["n1"], _genres([0]))
    _assert_unchanged(enc, plain, before)
    other = AERecommender(**AE).fit(X[:, :10])
    with pytest.raises(ValueError, match="fitted on 10 items but this encoder has 20"):
        enc.add_items(other, ["n1"], _genres([0]))
    # the model grown alone: the encoder says what happened and what to call instead
    model.add_items(_genres([0]))
    with pytest.raises(ValueError, match=r"last 1 items have no id here \(added with "
                                         r"model\.add_items\?\)\. Add new items with "
                                         r"encoder\.add_items"):
        enc.recommend(model, log, users=["u01"])
    with pytest.raises(ValueError, match="model.add_items"):
        enc.add_items(model, ["n1"], _genres([0]))


def test_no_new_item_changes_nothing(fitted):
    enc, model = _pair(fitted)
    before = _state(enc, model)
    assert enc.add_items(model, [], np.zeros((0, N_GENRES))) is enc
    _assert_unchanged(enc, model, before)


def test_new_ids_keep_their_exact_values_and_dtype():
    X = make_interactions(n_users=30, n_items=8, mean_length=5, n_topics=2,
                          random_state=0).tocoo()
    log = {"user": X.row, "item": X.col.astype(np.int64) + 2**62}
    enc = InteractionEncoder()
    model = AERecommender(item_features=_genres(np.arange(8)), **AE).fit(enc.fit_transform(log))
    enc.add_items(model, [2**62 + 100], _genres([1]))
    assert enc.items_.dtype == np.int64 and enc.items_[-1] == 2**62 + 100
    # a uint64 id that int64 cannot hold: the ids become exact Python ints
    enc.add_items(model, np.array([2**63 + 7], dtype=np.uint64), _genres([2]))
    assert enc.items_.dtype == object and enc.items_[-1] == 2**63 + 7
    assert enc.transform_items([2**63 + 7, 2**62 + 100, 2**62]).tolist() == [9, 8, 0]
    assert enc.transform_items([2**63 + 6], handle_unknown="ignore").tolist() == [-1]
    back = skrec.load(_saved(enc))
    assert back.items_.tolist() == enc.items_.tolist()
    assert back.transform_items([2**63 + 7]).tolist() == [9]
    # strings of a wider width than the vocabulary's
    enc = InteractionEncoder().fit({"user": [1, 2], "item": ["ab", "cd"]})
    model = AERecommender(item_features=_genres([0, 1]), **AE).fit(
        enc.transform({"user": [1, 2], "item": ["ab", "cd"]}))
    enc.add_items(model, ["a-much-longer-id"], _genres([1]))
    assert enc.items_.tolist() == ["ab", "cd", "a-much-longer-id"]


def _saved(obj) -> io.BytesIO:
    buf = io.BytesIO()
    skrec.save(obj, buf)
    return io.BytesIO(buf.getvalue())


def test_the_lookup_cache_is_neither_pickled_nor_saved(fitted):
    enc, model = _pair(fitted)
    enc.add_items(model, ["new-z", "new-a"], _genres([0, 1]))  # items_ is no longer sorted
    assert enc.transform_items(["new-a"]).tolist() == [N_ITEMS + 1]  # builds the cache
    assert "_id_index" in vars(enc)
    again = pickle.loads(pickle.dumps(enc))
    assert "_id_index" not in vars(again)
    assert again.transform_items(["new-z", "sku-19"]).tolist() == [N_ITEMS, 19]
    back = skrec.load(_saved(enc))
    assert back.items_.tolist() == enc.items_.tolist()
    assert back.transform_items(["new-a", "sku-00"]).tolist() == [N_ITEMS + 1, 0]
    loaded_model = skrec.load(_saved(model))
    assert loaded_model.n_features_in_ == N_ITEMS + 2
    X = back.transform({"user": np.array(["q"]), "item": np.array(["new-z"]),
                        "ts": np.array([1.0])}, users=["q"])
    assert sp.issparse(X) and X.indices.tolist() == [N_ITEMS]
    np.testing.assert_allclose(loaded_model.predict_scores(X), model.predict_scores(X),
                               rtol=1e-6)


# ---------------------------------------------------------------- end to end, as in a notebook
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "recommendation_service.py"


def _service_module():
    spec = importlib.util.spec_from_file_location("recommendation_service", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _post(port: int, payload: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/recommend", body=json.dumps(payload).encode())
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_from_a_log_to_new_items_served_in_your_ids(log, tmp_path):
    # 1. An event log in your ids -> the matrix, with the item ids of its columns.
    encoder = InteractionEncoder(time_col="ts")
    X = encoder.fit_transform(log)
    genre = {f"sku-{c:02d}": c % N_GENRES for c in range(N_ITEMS)}  # your catalogue's data

    # 2. A model with item features (one row per column, in encoder.items_ order).
    F = _genres([genre[i] for i in encoder.items_])
    model = SeqRecommender(item_features=F, **SEQ).fit(X)

    # 3. Two new products arrive, with their features: add them in your ids, no retraining.
    encoder.add_items(model, ["new-a", "new-b"], _genres([1, 2]))

    # 4. They are recommended to a user at once, in your ids (from the user's latest events,
    #    as many as the model reads: what the service is sent below).
    mine = log["user"] == "u07"
    latest = np.argsort(log["ts"][mine], kind="stable")[-SEQ["max_len"]:]
    history = {k: v[mine][latest] for k, v in log.items()}
    recs = encoder.recommend(model, history, users=["u07"], k=N_ITEMS + 2, as_frame=False)
    assert {"new-a", "new-b"} <= set(recs["item"].tolist())
    top_new = encoder.recommend(model, history, users=["u07"], k=1, items=["new-a", "new-b"],
                                as_frame=False)["item"][0]

    # 5. Saved together in one file, 6. loaded back as the same pair.
    path = tmp_path / "shop.skrec"
    skrec.save({"encoder": encoder, "model": model}, path)
    parts = skrec.load(path)
    assert list(parts) == ["encoder", "model"]
    assert parts["encoder"].items_.tolist() == encoder.items_.tolist()
    again = parts["encoder"].recommend(parts["model"], history, users=["u07"], k=N_ITEMS + 2,
                                       as_frame=False)
    assert again["item"].tolist() == recs["item"].tolist()
    np.testing.assert_allclose(again["score"], recs["score"], rtol=1e-5, atol=1e-6)

    # 7. Served by the example service from that file, in your ids.
    example = _service_module()
    service = example.load_service(path)
    server = example.make_server(service, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        item_ids = history["item"].tolist()  # oldest first
        status, answer = _post(port, {"item_ids": item_ids, "k": N_ITEMS + 2})
        assert status == 200
        assert answer["item_ids"] == recs["item"].tolist()
        np.testing.assert_allclose(answer["scores"], recs["score"], rtol=1e-5, atol=1e-6)
        # a history that holds a new item: known to the service, and not recommended again
        status, answer = _post(port, {"item_ids": [*item_ids[1:], top_new], "k": N_ITEMS})
        assert status == 200 and top_new not in answer["item_ids"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_pair_saved_apart_is_checked_when_served(fitted, tmp_path):
    example = _service_module()
    enc, model = _pair(fitted)
    skrec.save(enc, tmp_path / "encoder-before.skrec")
    enc.add_items(model, ["new-a"], _genres([0]))
    skrec.save(enc, tmp_path / "encoder.skrec")
    skrec.save(model, tmp_path / "model.skrec")
    # two files saved after add_items: served as today
    service = example.load_service(tmp_path / "model.skrec", tmp_path / "encoder.skrec")
    assert service.recommend({"item_ids": ["new-a"], "k": 2})["items"]
    # the encoder saved before it: refused, with what to do
    with pytest.raises(ValueError, match=r"encoder knows 20 items, the model 21: they were "
                                         r"not saved together \(save both in one file"):
        example.load_service(tmp_path / "model.skrec", tmp_path / "encoder-before.skrec")
