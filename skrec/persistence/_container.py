"""The container: the safetensors layout with a checksum, read in bounded chunks."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import os
import re
import stat
from typing import Any

import numpy as np

from ._base import (
    _CHUNK,
    _DTYPES,
    _MAX_HEADER_BYTES,
    _READABLE_VERSIONS,
    FORMAT,
    FORMAT_VERSION,
    LoadLimits,
    ModelFileError,
    _Budget,
    _fail,
    _fields,
    _int,
    _shape,
    _text,
)

# --------------------------------------------------------------------------------------------
# The container: the safetensors layout, plus a checksum
# --------------------------------------------------------------------------------------------


def _hasher(payload: str, index: dict[str, Any]):
    h = hashlib.sha256()
    h.update(payload.encode("utf-8"))
    h.update(b"\n")
    h.update(json.dumps(index, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    h.update(b"\n")
    return h


def _bytes_of(arr: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a C-contiguous array (no copy)."""
    return arr.reshape(-1).view(np.uint8)


def _layout(payload: str, arrays: dict[str, tuple[str, np.ndarray]]
            ) -> tuple[bytes, list[np.ndarray]]:
    """The file's header (length prefix included) and its tensors' bytes, in file order."""
    # Larger elements first, so that every tensor starts at a multiple of its element size.
    order = sorted(arrays, key=lambda k: (-arrays[k][1].dtype.itemsize, k))
    index, chunks, offset = {}, [], 0
    for key in order:
        code, arr = arrays[key]
        raw = _bytes_of(np.ascontiguousarray(arr))
        index[key] = {"dtype": code, "shape": [int(n) for n in arr.shape],
                      "data_offsets": [offset, offset + raw.size]}
        chunks.append(raw)
        offset += raw.size
    h = _hasher(payload, index)
    for raw in chunks:
        h.update(raw)
    meta = {
        "format": FORMAT,
        "skrec.format_version": str(FORMAT_VERSION),
        "skrec.payload": payload,
        "skrec.sha256": h.hexdigest(),
    }
    header = json.dumps({"__metadata__": meta, **index}, separators=(",", ":")).encode("utf-8")
    if len(header) > _MAX_HEADER_BYTES:
        raise ValueError(f"the metadata of this estimator takes {len(header)} bytes, more than "
                         f"the {_MAX_HEADER_BYTES} a file may hold.")
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header, chunks


def _pack(payload: str, arrays: dict[str, tuple[str, np.ndarray]]) -> bytes:
    """The file's bytes (in one buffer: for tests and small files)."""
    header, chunks = _layout(payload, arrays)
    return header + b"".join(c.tobytes() for c in chunks)


class _Source:
    """Bounded reads from a regular file (opened without blocking) or a binary file object."""

    def __init__(self, source: Any) -> None:
        self.owned = False
        if hasattr(source, "read"):
            if isinstance(source, io.TextIOBase):
                raise TypeError("skrec.load needs a binary file object (open the file with "
                                "mode 'rb'), not a text-mode one.")
            self.f, self.size = source, None
            return
        path = os.fspath(source)
        flags = os.O_RDONLY
        for name in ("O_NONBLOCK", "O_CLOEXEC", "O_NOCTTY", "O_BINARY"):
            flags |= getattr(os, name, 0)
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO does not wait for a writer
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                what = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                        else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
                raise ModelFileError(f"{os.fsdecode(path)!r} is {what}; skrec.load reads "
                                     "regular files only.")
            self.size = os.fstat(fd).st_size
            self.f = os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        self.owned = True

    def close(self) -> None:
        if self.owned:
            self.f.close()

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end of the file)."""
        out = bytearray()
        while len(out) < n:
            chunk = self.f.read(min(n - len(out), _CHUNK))
            if chunk is None:
                raise ModelFileError("the file object has no data ready (a non-blocking "
                                     "stream?); skrec.load reads files and blocking streams.")
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError("skrec.load needs a binary file object (open the file with "
                                f"mode 'rb'); its read() returned {type(chunk).__name__}.")
            if not chunk:
                break
            if len(chunk) > n - len(out):
                raise ModelFileError("the file object returned more bytes than were asked for.")
            out += chunk
        return bytes(out)

    def read_data(self, n: int, hasher) -> bytearray:
        """Exactly ``n`` bytes, hashed as they come; a ModelFileError if the file ends first."""
        if self.size is not None:  # a regular file whose size was checked: one buffer
            buf = bytearray(n)
            view, pos = memoryview(buf), 0
            while pos < n:
                got = self.f.readinto(view[pos : pos + _CHUNK])
                if not got:
                    break
                hasher.update(view[pos : pos + got])
                pos += got
        else:  # a stream: the buffer grows with the bytes that really arrive
            buf = bytearray()
            while len(buf) < n:
                chunk = self.read(min(_CHUNK, n - len(buf)))
                if not chunk:
                    break
                hasher.update(chunk)
                buf += chunk
            pos = len(buf)
        if pos < n:
            raise ModelFileError(f"the file is truncated: its tensors need {n} bytes of data, "
                                 f"the file holds {pos}.")
        return buf


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _json_cost(text: str | bytes) -> int:
    """An upper bound of the memory ``json.loads(text)`` takes (measured: 25 bytes per byte of
    ``[],[],...``, 2-4 for numbers and strings)."""
    if isinstance(text, str):
        containers, commas = text.count("[") + text.count("{"), text.count(",")
    else:
        containers, commas = text.count(b"[") + text.count(b"{"), text.count(b",")
    return 64 * containers + 24 * commas + 2 * len(text)


def _parse_json(text: str | bytes, what: str, budget: _Budget, field: str) -> Any:
    budget.charge(_json_cost(text), field)
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise ModelFileError(f"{what} is nested too deeply.") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise ModelFileError(f"{what} is not valid JSON ({str(exc)[:120]}).") from None


#: How skrec.save starts a header: the metadata, whose payload is one JSON string.
_HEADER_START = re.compile(r'\{"__metadata__":\{"format":"skrec-model",'
                           r'"skrec\.format_version":[^,]{1,40},"skrec\.payload":"')


def _parse_header(raw: bytes, budget: _Budget) -> Any:
    """The header's JSON. Its payload is one string (the skrec metadata, parsed later): in a
    header laid out as skrec writes it, that string is read on its own, so that only the
    containers outside it are charged as containers; any other header is charged in full."""
    what, field = "not a skrec model file: its header", "the file's header"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{what} is not valid JSON ({exc}).") from None
    start = _HEADER_START.match(text)
    if start is None:
        return _parse_json(text, what, budget, field)
    budget.charge(2 * len(text), field)
    begin = start.end() - 1
    try:
        payload, end = json.JSONDecoder().raw_decode(text, begin)  # a string: no container
    except ValueError as exc:
        raise ModelFileError(f"{what} is not valid JSON ({str(exc)[:120]}).") from None
    header = _parse_json(text[:begin] + '""' + text[end:], what, budget, field)
    if type(header) is dict and type(header.get("__metadata__")) is dict:
        header["__metadata__"]["skrec.payload"] = payload
    return header


def _check_index(header: dict[str, Any]) -> tuple[dict[str, tuple[str, tuple, int, int]], int]:
    """Validate the safetensors tensor index: ``({key: (code, shape, begin, stop)}, end)``.

    Each entry's byte range must hold exactly its shape's elements, and the ranges must tile
    the data section from 0 without gaps or overlaps (as safetensors requires).
    """
    index = {}
    for key, entry in header.items():
        spot = f"tensor {key!r:.80}"
        _text(key, spot)
        entry = _fields(entry, ("dtype", "shape", "data_offsets"), spot)
        code = entry["dtype"]
        if type(code) is not str or code not in _DTYPES:
            raise _fail(spot, f"dtype {code!r:.20} is not a safetensors dtype.")
        shape = _shape(entry["shape"], f"{spot} shape")
        offsets = entry["data_offsets"]
        if type(offsets) is not list or len(offsets) != 2:
            raise _fail(spot, "data_offsets must be [begin, end].")
        begin, stop = (_int(o, f"{spot} data_offsets", 0, 2**62) for o in offsets)
        if stop - begin != math.prod(shape) * _DTYPES[code].itemsize:
            raise _fail(spot, f"its byte range [{begin}, {stop}) does not hold a {code} tensor "
                              f"of shape {list(shape)}.")
        index[key] = (code, shape, begin, stop)
    end = 0
    for key, (_, _, begin, stop) in sorted(index.items(), key=lambda kv: kv[1][2:]):
        if begin != end:
            raise _fail(f"tensor {key!r:.80}", "its bytes overlap another tensor's or leave a "
                                               "gap (corrupted or modified).")
        end = stop
    return index, end


def _read(source: Any, limits: LoadLimits) -> tuple[Any, dict[str, tuple[str, np.ndarray]],
                                                    _Budget, int]:
    """Read, bound, parse and verify a file: ``(payload, tensors, budget, version)``."""
    budget = _Budget(limits)
    src = _Source(source)
    try:
        head = src.read(8)
        if len(head) < 8:
            raise ModelFileError(f"not a skrec model file: {len(head)} bytes is too short (the "
                                 "file is empty or truncated).")
        n = int.from_bytes(head, "little")
        if n == 0 or n > limits.max_header_bytes:
            raise ModelFileError(
                f"not a skrec model file (no safetensors header at its start), or one whose "
                f"header ({n} bytes) is larger than LoadLimits.max_header_bytes "
                f"({limits.max_header_bytes})."
            )
        if src.size is not None and 8 + n > src.size:
            raise ModelFileError(f"the file is truncated: its header needs {8 + n} bytes, the "
                                 f"file has {src.size}.")
        raw = src.read(n)
        if len(raw) < n:
            raise ModelFileError(f"the file is truncated: its header needs {8 + n} bytes, the "
                                 f"file has {8 + len(raw)}.")
        budget.file_bytes = 8 + n
        header = _parse_header(raw, budget)
        del raw
        meta = header.pop("__metadata__", None) if type(header) is dict else None
        if type(meta) is not dict or meta.get("format") != FORMAT:
            raise ModelFileError("not a skrec model file (a safetensors file without skrec "
                                 "metadata?); skrec.load reads files written by skrec.save.")
        version = _check_meta(meta)
        index, end = _check_index(header)
        total = 8 + n + end
        if total > limits.max_file_bytes:
            raise ModelFileError(
                f"the file declares {total:,} bytes, more than LoadLimits.max_file_bytes "
                f"({limits.max_file_bytes:,}); if you trust it, raise the limit: "
                "skrec.load(path, limits=skrec.persistence.LoadLimits(max_file_bytes=...))."
            )
        if src.size is not None and src.size < total:
            raise ModelFileError(f"the file is truncated: its tensors need {end} bytes of data, "
                                 f"the file holds {src.size - 8 - n}.")
        if src.size is not None and src.size > total:
            raise ModelFileError(f"the file has {src.size - total} unexpected bytes after its "
                                 "tensors (corrupted or modified).")
        budget.file_bytes = total
        payload = meta["skrec.payload"]
        hasher = _hasher(payload, header)
        data = src.read_data(end, hasher)
        if src.read(1):
            raise ModelFileError("the file has unexpected bytes after its tensors (corrupted "
                                 "or modified).")
    finally:
        src.close()
    if not hmac.compare_digest(hasher.hexdigest(), meta["skrec.sha256"]):
        raise ModelFileError("checksum mismatch: the file was corrupted or modified after "
                             "skrec.save wrote it.")
    tensors = {}
    for key, (code, shape, begin, stop) in index.items():
        dtype = _DTYPES[code]
        arr = np.frombuffer(data, dtype=dtype, count=(stop - begin) // dtype.itemsize,
                            offset=begin).reshape(shape)
        if not arr.flags.aligned:  # pragma: no cover - skrec aligns every tensor
            budget.charge(arr.nbytes, f"tensor {key!r}")
            arr = arr.copy()
        tensors[key] = (code, arr)
    payload = _parse_json(payload, "the file's skrec metadata", budget,
                          "the file's skrec metadata")
    return payload, tensors, budget, version


def _check_meta(meta: dict[str, Any]) -> int:
    """The safetensors ``__metadata__`` of a skrec file: its format version (an int)."""
    _fields(meta, ("format", "skrec.format_version", "skrec.payload", "skrec.sha256"),
            "the file's __metadata__")
    version = meta["skrec.format_version"]
    if type(version) is not str:
        raise ModelFileError(
            f"not a file written by skrec.save: its format version is stored as "
            f"{type(version).__name__} {version!r:.20} (skrec.save writes a string)."
        )
    readable = {str(v): v for v in _READABLE_VERSIONS}
    if version not in readable:
        shown = version if version.isdigit() and len(version) < 10 else repr(version[:20])
        raise ModelFileError(
            f"the file uses skrec model format version {shown}; this skrec "
            f"({_skrec_version()}) reads versions {', '.join(readable)}. Load it with the "
            "skrec version that wrote it (see its metadata) and save it again, or refit."
        )
    _text(meta["skrec.payload"], "the file's skrec metadata")
    sha = meta["skrec.sha256"]
    if type(sha) is not str or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ModelFileError("the file's checksum is not a SHA-256 digest (corrupted or "
                             "modified).")
    return readable[version]


def _unpack(buf: bytes | bytearray) -> tuple[Any, dict[str, tuple[str, np.ndarray]]]:
    """Parse and verify a file's bytes: ``(payload, tensors)`` (for tests)."""
    payload, tensors, _, _ = _read(io.BytesIO(bytes(buf)), LoadLimits())
    return payload, tensors


def _skrec_version() -> str:
    from .. import __version__

    return __version__
