"""The public functions: :func:`save` and :func:`load` of estimators and bundles."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ._base import (
    FORMAT,
    FORMAT_VERSION,
    LoadLimits,
    ModelFileError,
    _class_of,
    _fail,
    _fields,
    _text,
)
from ._container import _layout, _read, _skrec_version
from ._reader import _Reader
from ._writer import _check_save_text, _Writer

# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

_PAYLOAD_KEYS = ("format", "format_version", "estimator", "versions", "params", "attributes")
_BUNDLE_KEYS = ("format", "format_version", "versions", "bundle")
_ENTRY_KEYS = ("estimator", "params", "attributes")


def _encode_entry(estimator: Any, writer: _Writer) -> dict[str, Any]:
    """One estimator's ``{"estimator", "params", "attributes"}``, its arrays in ``writer``."""
    return writer.entry(estimator)


def _bundle_key(key: Any) -> str:
    if not isinstance(key, str) or not 1 <= len(key) <= 256:
        raise TypeError(f"the names of a bundle must be strings of 1 to 256 characters; got "
                        f"{key!r:.60}.")
    return _check_save_text(key, f"the bundle name {key!r:.60}")


def save(obj: Any, path: str | os.PathLike | BinaryIO) -> None:
    """Save an estimator (fitted or not), or a dict of them, to a file that :func:`load`
    reads without running code.

    Parameters
    ----------
    obj : estimator or dict of str to estimator
        A skrec estimator (or one registered with :func:`register_estimator`), or a *bundle*:
        a dict of such estimators by name, e.g. ``{"encoder": enc, "model": model}``, written
        into one file (what belongs together stays together); :func:`load` returns the same
        dict, in the same order.
    path : str, path-like or binary file object
        Where to write. A path is written atomically and safely: the bytes go to a temporary
        file created exclusively (``O_CREAT | O_EXCL``, an unpredictable name) in the same
        folder, which is then renamed over ``path``. An interrupted save never leaves a
        half-written model behind, a symbolic link planted in the folder is never followed,
        and ``path`` ends up a regular file (a link at ``path`` itself is replaced, not
        written through).

    Raises
    ------
    TypeError
        If an estimator's class is not registered, a parameter or attribute holds a value
        that cannot be stored as data (a callable, an unregistered torch module, ...), a
        bundle name is not a string, or ``path`` is a text-mode file object; the message
        names it.
    ValueError
        If a string holds a lone surrogate (it would not load), or the bundle is empty.

    See Also
    --------
    load : read the file back.

    Notes
    -----
    The file is a valid safetensors file: its tensors (the weights ``module_.<name>``, the
    arrays such as ``item_popularity_``; ``<name>/...`` in a bundle) can be read by any
    safetensors reader; the skrec metadata (a JSON document) and its SHA-256 checksum are in
    the header's ``__metadata__``. Weights are stored as CPU tensors whatever device they are
    on. A neural model's item features are stored once (the ``item_features`` parameter; the
    module's rows are rebuilt from it at load, the rows added by ``add_items`` are stored
    with the module).

    Examples
    --------
    >>> import io
    >>> import skrec
    >>> from skrec.baselines import EASERecommender
    >>> from skrec.datasets import make_interactions
    >>> X = make_interactions(n_users=100, n_items=20, random_state=0)
    >>> rec = EASERecommender(l2=50.0).fit(X)
    >>> f = io.BytesIO()
    >>> skrec.save(rec, f)
    >>> back = skrec.load(io.BytesIO(f.getvalue()))
    >>> back.l2, (back.predict(X[:3]) == rec.predict(X[:3])).all()
    (50.0, np.True_)

    Several estimators in one file:

    >>> f = io.BytesIO()
    >>> skrec.save({"ease": rec, "wider": EASERecommender(l2=500.0)}, f)
    >>> sorted(skrec.load(io.BytesIO(f.getvalue())))
    ['ease', 'wider']
    """
    if isinstance(path, io.TextIOBase):
        raise TypeError("skrec.save needs a binary file object (open the file with mode 'wb'), "
                        "not a text-mode one.")
    writer = _Writer()
    if isinstance(obj, dict):
        if not obj:
            raise ValueError("skrec.save got an empty dict: a bundle needs at least one "
                             "estimator.")
        entries = {}
        for key, estimator in obj.items():
            writer.prefix = f"{_bundle_key(key)}/"
            try:
                entries[key] = _encode_entry(estimator, writer)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"bundle entry {key!r}: {exc}") from None
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": _versions(),
                   "bundle": entries}
    else:
        entry = _encode_entry(obj, writer)
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION,
                   "estimator": entry["estimator"], "versions": _versions(),
                   "params": entry["params"], "attributes": entry["attributes"]}
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    header, chunks = _layout(text, writer.arrays)
    if hasattr(path, "write"):
        path.write(header)
        for chunk in chunks:
            path.write(chunk)
        return
    _write_atomically(Path(path), header, chunks)


def _umask() -> int:
    """The process's umask (from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - systems without /proc
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def _write_atomically(path: Path, header: bytes, chunks: list[np.ndarray]) -> None:
    """Write to an exclusively created temporary file beside ``path``, then rename it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # the mode an ordinary open() would give
        except (AttributeError, OSError):  # pragma: no cover - platforms without fchmod
            pass
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(header)
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _versions() -> dict[str, str]:
    import sklearn

    return {"skrec": _skrec_version(), "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "python": sys.version.split()[0]}


def _label(where: str) -> str:
    """``"bundle['model']: "`` for an entry of a bundle, ``""`` for a single estimator."""
    return f"{where.rstrip('.')}: " if where else ""


def _check_name(name: Any, where: str) -> str:
    if type(name) is not str or not name.isidentifier():
        raise _fail(where, f"{name!r:.60} is not a name an estimator can have.")
    return name


def _load_entry(entry: Any, reader: _Reader, where: str, depth: int = 0) -> Any:
    """Build, check and return one estimator of the file (``depth``: its nesting level, an
    estimator held by another one being one level below it)."""
    entry = _fields(entry, _ENTRY_KEYS, where.rstrip(".") or "the file's skrec metadata")
    cls = _class_of(entry["estimator"])
    params_json, attributes_json = entry["params"], entry["attributes"]
    if type(params_json) is not dict or type(attributes_json) is not dict:
        raise _fail(where.rstrip(".") or "the file", "params and attributes must be objects.")
    for name in params_json:
        _check_name(name, f"{where}params")
    for name in attributes_json:  # names first: nothing is decoded for a bad name
        ok = type(name) is str and name.isidentifier() and not name.startswith("_")
        member = getattr(cls, name, None) if ok else None
        if not ok or callable(member) or isinstance(member, property):
            raise ModelFileError(f"{_label(where)}the file sets an attribute {name!r:.60} "
                                 f"that a fitted {cls.__name__} cannot have.")
    params = {k: reader.decode(v, f"{where}params.{k}", depth + 1)
              for k, v in params_json.items()}
    outer, reader.params = reader.params, params
    try:
        attributes = {k: reader.decode(v, f"{where}{k}", depth + 1)
                      for k, v in attributes_json.items()}
    finally:
        reader.params = outer
    try:
        estimator = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{_label(where)}the file's parameters do not fit this version's {cls.__name__} "
            f"({exc})."
        ) from None
    state = dict(vars(estimator))
    state.update(attributes)
    estimator.__dict__.update(state)
    _check_fitted(estimator, where)
    setstate = getattr(estimator, "__setstate__", None)
    if setstate is not None:  # a model saved from a GPU is moved to the CPU here if needed
        try:
            setstate(state)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelFileError(f"{_label(where)}the file's {cls.__name__} cannot be "
                                 f"restored: {exc}") from None
    return estimator


def _check_fitted(estimator: Any, where: str) -> None:
    """The estimator's own consistency rules (``_check_fitted_state``), as a ModelFileError."""
    try:
        check = getattr(estimator, "_check_fitted_state", None)
        if callable(check):
            check()
    except ModelFileError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RuntimeError) as exc:
        raise ModelFileError(f"{_label(where)}the file's {type(estimator).__name__} does not "
                             f"fit together: {exc}") from None


def load(path: str | os.PathLike | BinaryIO, *, limits: LoadLimits | None = None) -> Any:
    """Load what :func:`save` wrote, without executing code from the file.

    The file is read as untrusted input (see :mod:`skrec.persistence`): only a regular file
    is opened, every declared size is checked against the bytes present and against the
    :class:`LoadLimits` before anything is allocated, every value against its schema, and the
    estimator's fitted attributes against each other before it is returned.

    Parameters
    ----------
    path : str, path-like or binary file object
        The file (a binary file object is read in bounded chunks from its current position).
    limits : LoadLimits, default=None
        What the file may take: its size, its header's size, the memory decoding may allocate
        beyond the file's bytes, the nesting depth of values. ``None``: ``LoadLimits()``
        (16 GiB files, decoding at most 16 x the file's size + 64 MiB).

    Returns
    -------
    obj : estimator or dict of str to estimator
        The estimator, with its parameters and fitted attributes (its torch modules are
        rebuilt from their configs, pruned shapes included, on the CPU; a model saved from a
        GPU loads on a machine without one and then serves on the CPU, in fp32); or, for a
        file saved from a dict, the same dict of estimators.

    Raises
    ------
    ModelFileError
        If the file is not a skrec model, uses another format version, is truncated, fails
        its checksum (corrupted or modified), passes a limit, holds a value that does not
        pass validation, names an estimator class or module type that is not registered, or
        holds an estimator whose fitted attributes do not fit together. The message names the
        field.
    TypeError
        If ``path`` is a text-mode file object.
    OSError
        If the file cannot be opened (``FileNotFoundError``, ...).

    See Also
    --------
    save : write the file.
    LoadLimits : raise a limit for a large file you trust.
    """
    if limits is None:
        limits = LoadLimits()
    elif not isinstance(limits, LoadLimits):
        raise TypeError(f"limits must be a skrec.persistence.LoadLimits; got "
                        f"{type(limits).__name__}.")
    payload, tensors, budget, version = _read(path, limits)
    reader = _Reader(tensors, budget, limits.max_depth, version)
    reader.load_entry = lambda entry, where, depth: _load_entry(entry, reader, where, depth)
    if type(payload) is not dict:
        raise ModelFileError("the file's skrec metadata is not an object.")
    bundle = "bundle" in payload and version >= 2
    _fields(payload, _BUNDLE_KEYS if bundle else _PAYLOAD_KEYS, "the file's skrec metadata")
    stored_version = payload["format_version"]
    if payload["format"] != FORMAT or type(stored_version) is not int or \
            stored_version != version:
        raise ModelFileError(f"the file's skrec metadata gives format version "
                             f"{stored_version!r:.20} where its header gives {version}.")
    versions = payload["versions"]
    if type(versions) is not dict or not all(type(v) is str for v in versions.values()):
        raise ModelFileError("the file's skrec metadata: versions must be an object of strings.")
    if bundle:
        entries = payload["bundle"]
        if type(entries) is not dict or not entries:
            raise ModelFileError("the file's bundle must be a non-empty object of estimators.")
        out = {}
        for key, entry in entries.items():
            spot = f"bundle[{_text(key, 'the bundle')!r:.60}]."
            out[key] = _load_entry(entry, reader, spot)
    else:
        out = _load_entry({k: payload[k] for k in _ENTRY_KEYS}, reader, "")
    reader.check_all_used()
    return out
