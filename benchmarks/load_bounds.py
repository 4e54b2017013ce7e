"""Peak memory and time of ``skrec.load`` on forged model files, next to honest ones.

A checksum is not a signature: anyone can edit a skrec file's JSON and recompute its
SHA-256. This script forges files of every hostile class found in issue 23 from small honest
models (a pruned ``SeqRecommender`` with sparse item features and items added after fit, an
``AERecommender`` with dense ones, EASE, a Markov chain, an ``InteractionEncoder`` and a
bundle of both), loads them in **subprocesses under a hard address-space limit**
(``resource.setrlimit(RLIMIT_AS)``: a load that tried to allocate its way past the limit
fails there instead of taking the machine down), and records the outcome (the error and its
message, which must name the field), the peak resident memory the load added and its time.

The classes (``kind``): the Mersenne-Twister state of a ``random_state``; declared sizes
against the bytes present (sparse shapes, tensor shapes, the sizes in a module config,
string widths, object arrays, the header and the file); overflowing numbers; nesting;
lone surrogates; shared references; types of fitted attributes; the consistency of a fitted
estimator; the file's version and kind (FIFO, directory, device, text-mode file object).

Forgeries of one kind are loaded one after the other in one process (its peak RSS reset
before each load, through ``/proc/self/clear_refs``); a batch whose process dies is measured
again one file per process.

The goal (issue 23): every forged file is refused with a ``ModelFileError`` that names the
field (a ``TypeError`` for a text-mode file object), and loading any file costs at most a
small constant times its size plus the model it really holds, in memory and in time. The
``bound_mib`` column is the documented decoding budget, 16 x the file's size + 64 MiB.

Usage::

    python benchmarks/load_bounds.py            # one case per variant family (~70 loads)
    python benchmarks/load_bounds.py --sweep    # every variant (~100 loads)

The tests (``tests/test_persistence_hostile.py``) run a seeded sample of the same cases
in-process, and the heaviest ones under a memory limit.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # run as a script or imported by the tests
    sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import skrec  # noqa: E402
from skrec.persistence import FORMAT_VERSION, ModelFileError  # noqa: E402
from skrec.persistence._container import _hasher, _pack, _unpack  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Honest models
# ---------------------------------------------------------------------------------------------

_SEQ = dict(d_model=8, n_layers=2, n_heads=2, d_ff=16, max_len=12, max_iter=1, batch_size=32,
            device="cpu", precision="fp32")


def honest_blobs() -> dict[str, bytes]:
    """Small honest files (bytes) of every estimator kind, built deterministically."""
    from skrec import (
        AERecommender,
        EASERecommender,
        MarkovChainRecommender,
        SeqRecommender,
    )
    from skrec.datasets import make_interactions
    from skrec.preprocessing import InteractionEncoder

    X = make_interactions(n_users=150, n_items=40, mean_length=8, random_state=0)
    rng = np.random.RandomState(0)
    # sparse features kept sparse by the model (density < 1/16), 3 items added after fit
    F_sparse = sp.random(43, 120, density=0.03, format="csr", random_state=rng)
    F_dense = rng.rand(43, 5)
    seq = SeqRecommender(**_SEQ, random_state=np.random.RandomState(1),
                         item_features=F_sparse[:40]).fit(X)
    seq.add_items(F_sparse[40:])
    seq.prune_(0.5, targets=["heads", "ffn"])
    ae = AERecommender(hidden_sizes=(16,), latent_dim=8, max_iter=1, batch_size=32,
                       device="cpu", precision="fp32", random_state=0,
                       item_features=F_dense[:40]).fit(X)
    ease = EASERecommender(l2=50.0).fit(X)
    markov = MarkovChainRecommender().fit(X)
    log = {"user": np.array([f"u{i % 17}" for i in range(200)]),
           "item": np.array([f"item-{(i * 7) % 40}" for i in range(200)])}
    enc = InteractionEncoder().fit(log)
    out = {}
    for name, obj in (("seq", seq), ("ae", ae), ("ease", ease), ("markov", markov),
                      ("encoder", enc), ("bundle", {"encoder": enc, "model": ease})):
        buf = io.BytesIO()
        skrec.save(obj, buf)
        out[name] = buf.getvalue()
    return out


def large_honest_blob() -> bytes:
    """A larger honest file (EASE on 2,000 items: a 16 MB ``coef_``), for the scaling row."""
    from skrec import EASERecommender
    from skrec.datasets import make_interactions

    X = make_interactions(n_users=3000, n_items=2000, mean_length=20, random_state=0)
    buf = io.BytesIO()
    skrec.save(EASERecommender(l2=100.0).fit(X), buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Forging: edit a file and recompute its checksum
# ---------------------------------------------------------------------------------------------


def edit_payload(blob: bytes, edit: Callable[[dict, dict], None]) -> bytes:
    """``blob`` after ``edit(payload, tensors)``, repacked with a valid checksum."""
    payload, tensors = _unpack(blob)
    tensors = dict(tensors)
    edit(payload, tensors)
    return _pack(json.dumps(payload), tensors)


def split_file(blob: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join_file(header: dict, data: bytes, *, rehash: bool = True) -> bytes:
    """A file from a header dict and data bytes, the checksum recomputed over them."""
    meta = header.get("__metadata__")
    if rehash and isinstance(meta, dict) and isinstance(meta.get("skrec.payload"), str):
        index = {k: v for k, v in header.items() if k != "__metadata__"}
        h = _hasher(meta["skrec.payload"], index)
        h.update(data)
        meta["skrec.sha256"] = h.hexdigest()
    text = json.dumps(header, separators=(",", ":")).encode("utf-8", "surrogatepass")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


def edit_header(blob: bytes, edit: Callable[[dict], None], *, rehash: bool = True) -> bytes:
    header, data = split_file(blob)
    edit(header)
    return join_file(header, data, rehash=rehash)


def _module(payload: dict, name: str = "module_") -> dict:
    return payload["attributes"][name]["$module"]


def _config(payload: dict) -> dict:
    return _module(payload)["config"]


def _set_rng(field: str, value):
    def edit(payload, tensors):
        payload["params"]["random_state"]["$random_state"][field] = value
    return edit


def _rng_key(words: np.ndarray):
    def edit(payload, tensors):
        key = payload["params"]["random_state"]["$random_state"]["key"]["$ndarray"]
        tensors[key] = ("U32" if words.dtype == np.uint32 else "I64", words)
    return edit


def _set_config(path: tuple, value):
    def edit(payload, tensors):
        node = _config(payload)
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _set_attr(name: str, value):
    def edit(payload, tensors):
        payload["attributes"][name] = value
    return edit


def _set_sparse(attr: str, field: str, value):
    def edit(payload, tensors):
        payload["attributes"][attr]["$sparse"][field] = value
    return edit


def _set_strings(field: str, value):
    def edit(payload, tensors):
        payload["attributes"]["items_"]["$strings"][field] = value
    return edit


def _wide_strings(payload, tensors):
    """One 64 KiB id and 100,000 empty ones: a 6.5 GB unicode array from a 0.9 MB file."""
    body = payload["attributes"]["items_"]["$strings"]
    data = np.frombuffer(b"x" * 65536, dtype=np.uint8)
    offsets = np.concatenate([[0], np.full(100_001, 65536)]).astype(np.int64)
    tensors[body["data"]] = ("U8", data)
    tensors[body["offsets"]] = ("I64", offsets)
    body["shape"], body["dtype"] = [100_001], "<U65536"


def _shared_strings(payload, tensors):
    """One string array referenced 4,000 times from another attribute."""
    items = payload["attributes"]["items_"]
    payload["attributes"]["aliases_"] = [items] * 4000


def _shared_tensor(payload, tensors):
    payload["attributes"]["again_"] = payload["attributes"]["item_popularity_"]


def _unused_tensor(payload, tensors):
    tensors["stowaway"] = ("F32", np.zeros(1000, dtype=np.float32))


def _nested(depth: int):
    def edit(payload, tensors):
        value = 0
        for _ in range(depth):
            value = [value]
        payload["attributes"]["deep_"] = value
    return edit


def _payload_text(source: str, old: str, new: str) -> Callable:
    """The payload of ``source`` with ``old`` replaced by ``new`` in its JSON text (for JSON
    that json.dumps would not write: deep nesting, huge integers)."""
    def make(blobs, folder):
        payload, tensors = _unpack(blobs[source])
        text = json.dumps(payload)
        assert old in text
        return _pack(text.replace(old, new, 1), dict(tensors))
    return make


def _json_containers(payload, tensors):
    payload["attributes"]["lists_"] = [[]] * 3_000_000


def _drop_module(payload, tensors):
    module = payload["attributes"].pop("module_")["$module"]
    for key in module["state"].values():
        tensors.pop(key)


def _resize_tensor(attr: str, shape: tuple):
    def edit(payload, tensors):
        key = payload["attributes"][attr]["$ndarray"]
        code, arr = tensors[key]
        tensors[key] = (code, np.zeros(shape, dtype=arr.dtype))
    return edit


def _repeat_items(payload, tensors):
    """The encoder's last item id replaced by its first: an id twice (items_ may be in any
    order since InteractionEncoder.add_items appends, but its ids are distinct)."""
    body = payload["attributes"]["items_"]["$strings"]
    code, data = tensors[body["data"]]
    _, offsets = tensors[body["offsets"]]
    items = [bytes(data[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    items[-1] = items[0]
    new_offsets = np.concatenate([[0], np.cumsum([len(s) for s in items])]).astype(np.int64)
    tensors[body["data"]] = ("U8", np.frombuffer(b"".join(items), dtype=np.uint8))
    tensors[body["offsets"]] = ("I64", new_offsets)


def _bad_feature_index(payload, tensors):
    key = _module(payload)["state"]["items.features.col"]
    code, col = tensors[key]
    col = col.copy()
    col[-1] = 10**6
    tensors[key] = (code, col)


def _pruning_base(payload, tensors):
    attrs = _module(payload)["attributes"]
    base = attrs[""]["_skrec_pruning_base"]
    name = sorted(base)[0]
    base[name] = 10**12


def _header_tensor(key: str, field: str, value):
    def edit(header):
        header[key][field] = value
    return edit


def _header_version(value):
    def edit(header):
        header["__metadata__"]["skrec.format_version"] = value
    return edit


def _header_surrogate_key(header):
    header["\udc80"] = header.pop("item_popularity_")


def _header_overlap(header):
    entries = [v for k, v in header.items() if k != "__metadata__"]
    entries[1]["data_offsets"] = list(entries[0]["data_offsets"])
    entries[1]["shape"] = list(entries[0]["shape"])
    entries[1]["dtype"] = entries[0]["dtype"]


def _big_header(blob: bytes) -> bytes:
    return (2**40).to_bytes(8, "little") + blob[8:]


def _declares_more(blob: bytes) -> bytes:
    """The last tensor of the file declared 1 GiB long (the file holds a few KiB)."""
    def edit(header):
        entries = [v for k, v in header.items() if k != "__metadata__"]
        last = max(entries, key=lambda e: e["data_offsets"][1])
        begin = last["data_offsets"][0]
        last.update(dtype="U8", shape=[2**30], data_offsets=[begin, begin + 2**30])
    return edit_header(blob, edit)


def _sparse_tebibyte(blob: bytes, path: Path) -> Path:
    """A 1 TiB file that is almost all hole, whose header declares a 1 TiB tensor."""
    header, _ = split_file(blob)
    header["__metadata__"]["skrec.payload"] = json.dumps(
        {**json.loads(header["__metadata__"]["skrec.payload"]),
         "attributes": {"blob_": {"$ndarray": "blob_"}}})
    index = {"blob_": {"dtype": "U8", "shape": [2**40], "data_offsets": [0, 2**40]}}
    raw = join_file({"__metadata__": header["__metadata__"], **index}, b"", rehash=False)
    path.write_bytes(raw)
    os.truncate(path, len(raw) + 2**40)
    return path


@dataclass(frozen=True)
class Case:
    """One forged file: ``make`` returns its bytes (from the honest ``blobs``) or, given a
    folder, a path; loading it must raise ``error`` with a message matching ``field``."""

    name: str
    kind: str
    field: str
    make: Callable
    family: str = ""
    error: type = ModelFileError

    def build(self, blobs: dict[str, bytes], folder: Path):
        """The forged file: a path (special files) or bytes."""
        return self.make(blobs, folder)


def _bytes(source: str, forge: Callable[[bytes], bytes]) -> Callable:
    return lambda blobs, folder: forge(blobs[source])


def _payload(source: str, edit) -> Callable:
    return _bytes(source, lambda blob: edit_payload(blob, edit))


def _header(source: str, edit) -> Callable:
    return _bytes(source, lambda blob: edit_header(blob, edit))


def _fifo(blobs, folder: Path) -> Path:
    path = folder / "model.fifo"
    os.mkfifo(path)
    return path


def _directory(blobs, folder: Path) -> Path:
    path = folder / "model.dir"
    path.mkdir()
    return path


def _text_mode(blobs, folder: Path):
    path = folder / "model.skrec"
    path.write_bytes(blobs["ease"])
    return lambda: open(path, encoding="latin-1")


def cases() -> list[Case]:
    """Every forged case (the full sweep); ``family`` groups the variants of one forgery."""
    out: list[Case] = []

    def add(name, kind, field, make, family=None, error=ModelFileError):
        out.append(Case(name, kind, field, make, family or name, error))

    # -- the Mersenne-Twister state of a random_state parameter
    for pos in (2**31 - 1, -5, 625, 700, 100_000, 10**30):
        add(f"rng pos={pos}", "rng state", r"params\.random_state\.pos",
            _payload("seq", _set_rng("pos", pos)), "rng pos")
    for value in (2, -1, True):
        add(f"rng has_gauss={value!r}", "rng state", r"random_state\.has_gauss",
            _payload("seq", _set_rng("has_gauss", value)), "rng has_gauss")
    add("rng cached_gaussian=nan", "rng state", r"random_state\.cached_gaussian",
        _payload("seq", _set_rng("cached_gaussian", {"$float": "nan"})))
    add("rng bit_generator=PCG64", "rng state", r"random_state\.bit_generator",
        _payload("seq", _set_rng("bit_generator", "PCG64")))
    add("rng key of 623 words", "rng state", r"random_state\.key",
        _payload("seq", _rng_key(np.ones(623, dtype=np.uint32))), "rng key")
    add("rng key all zeros", "rng state", r"random_state\.key",
        _payload("seq", _rng_key(np.zeros(624, dtype=np.uint32))), "rng key")
    add("rng key int64", "rng state", r"random_state\.key",
        _payload("seq", _rng_key(np.ones(624, dtype=np.int64))), "rng key")

    # -- declared sizes against the bytes present and the module config
    for shape in ([10**9, 40], [40, 10**9], [2**63, 40], [2**64, 40], [-1, 40]):
        add(f"sparse shape {shape}", "declared sizes", r"transitions_",
            _payload("markov", _set_sparse("transitions_", "shape", shape)), "sparse shape")
    add("sparse shape [1e9, 40] (floats)", "declared sizes", r"transitions_\.shape",
        _payload("markov", _set_sparse("transitions_", "shape", [1e9, 40.0])))
    add("sparse shape [inf, 40]", "declared sizes", r"not valid JSON",
        _payload("markov", _set_sparse("transitions_", "shape", [float("inf"), 40])))
    for field, value in ((("items", "n_items"), 2 * 10**7), (("items", "n_items"), 10**10),
                         (("encoder", "n_layers"), 5000), (("encoder", "max_len"), 10**6),
                         (("max_len",), 10**9), (("encoder", "d_ff"), [10**7, 10**7]),
                         (("encoder", "n_heads"), [10**6, 1]),
                         (("items", "features", "nnz"), 10**9),
                         (("items", "features", "n_features"), 10**8),
                         (("items", "d_model"), 2**40)):
        add(f"seq config {'.'.join(field)}={value}", "declared sizes", r"module_",
            _payload("seq", _set_config(field, value)), f"seq config {field[-1]}")
    for field, value in ((("n_items",), 10**10), (("n_items",), 2 * 10**7),
                         (("hidden_sizes",), [10**8]), (("decoder_sizes",), [10**8]),
                         (("latent_dim",), 10**9), (("n_user_features",), 10**9)):
        add(f"ae config {'.'.join(field)}={value}", "declared sizes", r"module_",
            _payload("ae", _set_config(field, value)), f"ae config {field[-1]}")
    add("seq config n_layers=5000 (per-block lists)", "declared sizes", r"module_ \(config\)",
        _payload("seq", lambda p, t: (_set_config(("encoder", "n_layers"), 5000)(p, t),
                                      _set_config(("encoder", "n_heads"), [1] * 5000)(p, t),
                                      _set_config(("encoder", "d_ff"), [8] * 5000)(p, t))))
    add("strings dtype <U500000000", "declared sizes", r"items_",
        _payload("encoder", _set_strings("dtype", "<U500000000")), "strings dtype")
    add("strings dtype <U2", "declared sizes", r"items_",
        _payload("encoder", _set_strings("dtype", "<U2")), "strings dtype")
    add("strings shape [10**12]", "declared sizes", r"items_",
        _payload("encoder", _set_strings("shape", [10**12])), "strings shape")
    add("one 64 KiB string and 100,000 empty ones", "declared sizes", r"items_",
        _payload("encoder", _wide_strings))
    add("object array shape [10**12]", "declared sizes", r"values_",
        _payload("ease", _set_attr("values_", {"$object_array": {"shape": [10**12],
                                                                 "values": [1]}})))
    for shape in ([2**64], [2**32, 2**32], [2**31, 2**31, 4]):
        add(f"tensor shape {shape}", "declared sizes", r"tensor 'item_popularity_'",
            _header("ease", _header_tensor("item_popularity_", "shape", shape)),
            "tensor shape")
    add("tensor shape [Infinity]", "declared sizes", r"not valid JSON",
        _header("ease", _header_tensor("item_popularity_", "shape", [float("inf")])))
    add("tensor dtype F128", "declared sizes", r"tensor 'item_popularity_'",
        _header("ease", _header_tensor("item_popularity_", "dtype", "F128")))
    add("tensors overlap", "declared sizes", r"overlap", _header("ease", _header_overlap))
    add("header length 2**40", "declared sizes", r"max_header_bytes", _bytes("ease", _big_header))
    add("file declares 1 GiB it lacks", "declared sizes", r"truncated",
        _bytes("ease", _declares_more))
    add("1 TiB sparse file", "declared sizes", r"max_file_bytes",
        lambda blobs, folder: _sparse_tebibyte(blobs["ease"], folder / "huge.skrec"))
    add("3,000,000 empty lists in the JSON", "declared sizes", r"header|skrec metadata",
        _payload("ease", _json_containers))

    # -- shared references: every stored tensor is read once
    add("one string array referenced 4,000 times", "shared references", r"aliases_",
        _payload("encoder", _shared_strings))
    add("one tensor referenced twice", "shared references", r"again_",
        _payload("ease", _shared_tensor))
    add("a tensor nothing refers to", "shared references", r"stowaway",
        _payload("ease", _unused_tensor))

    # -- numbers that overflow their type
    for dtype, value in (("<i8", 10**100), ("<u8", -1), ("<i4", 2**31), ("|u1", 256),
                         ("<f4", 10**40), ("<f8", 10**400), ("<f8", "x"), ("<c16", 1),
                         ("<U5", 1), ("|b1", 1)):
        add(f"numpy scalar {dtype} {value!r:.12}", "overflow", r"scalar_",
            _payload("ease", _set_attr("scalar_", {"$numpy_scalar": dtype, "value": value})),
            "numpy scalar")
    add("an integer of 5,000 digits", "overflow", r"metadata is not valid JSON",
        _payload_text("ease", '"l2": 50.0', '"l2": ' + "9" * 5000))
    add("numpy dtype <U500000000", "overflow", r"dtype_",
        _payload("ease", _set_attr("dtype_", {"$numpy_dtype": "<U500000000"})))
    add("numpy dtype i4,f8 (structured)", "overflow", r"dtype_",
        _payload("ease", _set_attr("dtype_", {"$numpy_dtype": "i4,f8"})))

    # -- nesting
    for depth in (33, 600):
        add(f"values nested {depth} deep", "nesting", r"deep_", _payload("ease", _nested(depth)),
            "nesting")
    add("JSON nested 100,000 deep", "nesting", r"nested too deeply",
        _payload_text("ease", '"l2": 50.0', '"l2": ' + "[" * 100_000 + "]" * 100_000))

    # -- text
    add("lone surrogate in a value", "text", r"name_",
        _payload("ease", _set_attr("name_", "\ud800")))
    add("lone surrogate in a key", "text", r"meta_",
        _payload("ease", _set_attr("meta_", {"\udc00": 1})))
    add("lone surrogate in a tensor name", "text", r"tensor", _header("ease",
                                                                       _header_surrogate_key))

    # -- types of fitted attributes and of values
    add("device_ stored as a string", "types", r"device_", _payload("seq",
                                                                    _set_attr("device_", "cuda")))
    add("device meta:0", "types", r"device_",
        _payload("seq", _set_attr("device_", {"$device": "meta"})))
    add("precision_='fp8'", "types", r"precision_", _payload("seq",
                                                             _set_attr("precision_", "fp8")))
    add("n_features_in_ as a string", "types", r"n_features_in_",
        _payload("ease", _set_attr("n_features_in_", "40")))
    add("unknown value tag", "types", r"n_iter_",
        _payload("seq", _set_attr("n_iter_", {"$pickle": "gASV"})))
    add("tag with an extra key", "types", r"item_popularity_",
        _payload("ease", lambda p, t: p["attributes"]["item_popularity_"].update(x=1)))
    add("torch dtype via a module name", "types", r"dtype_",
        _payload("ease", _set_attr("dtype_", {"$torch_dtype": "nn"})))

    # -- consistency of a fitted estimator
    add("n_features_in_=30 on a 43-item model", "consistency", r"n_features_in_",
        _payload("seq", _set_attr("n_features_in_", 30)))
    add("module_ missing from a fitted model", "consistency", r"module_",
        _payload("seq", _drop_module))
    add("item_popularity_ of the wrong length", "consistency", r"item_popularity_",
        _payload("ease", _resize_tensor("item_popularity_", (39,))))
    add("EASE coef_ of the wrong shape", "consistency", r"coef_",
        _payload("ease", _resize_tensor("coef_", (40, 39))))
    add("encoder ids repeated", "consistency", r"items_", _payload("encoder", _repeat_items))
    add("n_items_ against items_", "consistency", r"n_items_",
        _payload("encoder", _set_attr("n_items_", 10**9)))
    add("feature index out of range", "consistency", r"module_\.items\.features",
        _payload("seq", _bad_feature_index))
    add("pruning record larger than 2**31", "consistency", r"_skrec_pruning_base",
        _payload("seq", _pruning_base))
    add("max_len parameter against the module", "consistency", r"max_len",
        _payload("seq", lambda p, t: p["params"].update(max_len=10**6)))
    add("objective against the module", "consistency", r"objective",
        _payload("seq", lambda p, t: p["params"].update(objective="masked")))
    add("bundle entry inconsistent", "consistency", r"bundle\['model'\]: .*n_features_in_",
        _payload("bundle", lambda p, t: p["bundle"]["model"]["attributes"].update(
            n_features_in_=7)))

    # -- the file's version and kind
    add("version stored as the int 1", "version and kind", r"stored as int",
        _header("ease", _header_version(1)))
    add(f"version {FORMAT_VERSION + 1}", "version and kind", r"format version",
        _header("ease", _header_version(str(FORMAT_VERSION + 1))))
    add("payload version disagrees", "version and kind", r"format version",
        _payload("ease", lambda p, t: p.update(format_version=1)))
    add("a FIFO", "version and kind", r"FIFO", _fifo)
    add("a directory", "version and kind", r"directory", _directory)
    add("/dev/zero", "version and kind", r"device", lambda blobs, folder: Path("/dev/zero"))
    add("a text-mode file object", "version and kind", r"binary", _text_mode,
        error=TypeError)
    return out


def representatives(all_cases: list[Case]) -> list[Case]:
    """The first case of each family."""
    seen, out = set(), []
    for case in all_cases:
        if case.family not in seen:
            seen.add(case.family)
            out.append(case)
    return out


def materialize(case: Case, blobs: dict[str, bytes], folder: Path):
    """The thing to pass to ``skrec.load``: a path (bytes are written to a file first) or,
    for the text-mode case, a callable that opens the file."""
    made = case.build(blobs, folder)
    if isinstance(made, bytes | bytearray):
        path = folder / f"case-{abs(hash(case.name))}.skrec"
        path.write_bytes(made)
        return path
    return made


# ---------------------------------------------------------------------------------------------
# Measuring one load in a subprocess under a hard memory limit
# ---------------------------------------------------------------------------------------------

_CHILD = r"""
import json, resource, sys, time
import skrec

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

limit, warmup, targets = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
skrec.load(warmup)  # the lazy imports of a first load are not the file's cost
vm = status("VmSize")
resource.setrlimit(resource.RLIMIT_AS, (vm + limit, vm + limit))
out = []
for target in targets:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = status("VmRSS")
    t0 = time.perf_counter()
    try:
        if target.startswith("text:"):
            with open(target[5:], encoding="latin-1") as f:
                skrec.load(f)
        else:
            skrec.load(target)
        result = {"error": None, "message": ""}
    except BaseException as exc:  # recorded, whatever it is (a MemoryError is a failure)
        result = {"error": type(exc).__name__, "message": str(exc)[:300]}
    result["seconds"] = time.perf_counter() - t0
    result["extra_rss_mib"] = max(0, status("VmHWM") - before) / 2**20
    out.append(result)
print("RESULT" + json.dumps(out))
"""


def measure(targets: list, warmup: Path, limit_mib: int, timeout: float = 300.0
            ) -> list[dict]:
    """Load each of ``targets`` (paths, or callables opening a text-mode file) one after the
    other in one subprocess whose address space may grow by at most ``limit_mib`` after
    imports and a warm-up load of ``warmup``: ``[{error, message, seconds, extra_rss_mib}]``
    (``extra_rss_mib``: the peak RSS during that load minus the RSS before it)."""
    args = []
    for target in targets:
        if callable(target):
            f = target()
            args.append("text:" + f.name)
            f.close()
        else:
            args.append(str(target))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    failed = {"seconds": float("nan"), "extra_rss_mib": float("nan")}
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(limit_mib << 20), str(warmup),
                               *args], capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired:
        return [{"error": "HANG", "message": f"no answer in {timeout:.0f} s", **failed}] * len(
            targets)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    return [{"error": f"CRASH (exit {proc.returncode})", "message": proc.stderr[-300:],
             **failed}] * len(targets)


def _held_bytes(target) -> int:
    """The bytes a file really holds (a sparse file's holes hold none); 0 for non-files."""
    if callable(target) or not isinstance(target, Path) or not target.is_file():
        return 0
    st = target.stat()
    return min(st.st_size, st.st_blocks * 512)


def _measure_batch(targets: list, warmup: Path, limit_mib: int) -> list[dict]:
    """:func:`measure` in one process; a batch whose process died is measured again one
    file per process, so that a crash is charged to the file that caused it."""
    results = measure(targets, warmup, limit_mib)
    if len(targets) > 1 and any(r["error"] in ("HANG",) or r["error"].startswith("CRASH")
                                for r in results if r["error"]):
        results = [measure([t], warmup, limit_mib)[0] for t in targets]
    return results


def run(all_cases: list[Case], blobs: dict[str, bytes], limit_mib: int) -> list[dict]:
    """Measure the honest files, then the forged ones, one process per kind of forgery."""
    import re

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warmup = folder / "warmup.skrec"
        warmup.write_bytes(blobs["seq"])
        paths = []
        for name, blob in blobs.items():
            paths.append(folder / f"honest-{name.replace(' ', '-')}.skrec")
            paths[-1].write_bytes(blob)
        for name, path, result in zip(blobs, paths, _measure_batch(paths, warmup, limit_mib)):
            rows.append(_row(f"honest {name}", "honest", _held_bytes(path), result,
                             ok=result["error"] is None))
        for kind in dict.fromkeys(c.kind for c in all_cases):
            batch = [c for c in all_cases if c.kind == kind]
            targets = []
            for i, case in enumerate(batch):
                sub = folder / f"{len(rows) + i}"
                sub.mkdir()
                targets.append(materialize(case, blobs, sub))
            for case, target, result in zip(batch, targets,
                                            _measure_batch(targets, warmup, limit_mib)):
                ok = (result["error"] == case.error.__name__
                      and re.search(case.field, result["message"]) is not None)
                rows.append(_row(case.name, case.kind, _held_bytes(target), result, ok))
                print(f"{case.name}: {result['error']} {result['message'][:100]}", flush=True)
            for target in targets:
                if isinstance(target, Path) and target.is_file() and target.parent != Path("/dev"):
                    target.unlink()
    return rows


def _row(name: str, kind: str, size: int, result: dict, ok: bool) -> dict:
    bound = (16 * size + (64 << 20)) / 2**20
    rss = result["extra_rss_mib"]
    return {
        "case": name, "kind": kind, "file_kib": round(size / 1024, 1),
        "outcome": result["error"] or "loaded", "message": result["message"][:160],
        "extra_rss_mib": round(rss, 1), "ms": round(1000 * result["seconds"], 1),
        "bound_mib": round(bound, 1),
        "within_bound": bool(rss <= bound),
        "as_expected": bool(ok),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> None:
    from _common import markdown_table, save_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", action="store_true", help="every variant, not one per family")
    parser.add_argument("--limit-mib", type=int, default=3072,
                        help="address space each load may add (RLIMIT_AS), MiB")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    load_start = round(os.getloadavg()[0], 1)  # the machine is shared: times depend on it
    blobs = honest_blobs()
    blobs["large ease"] = large_honest_blob()
    chosen = cases() if args.sweep else representatives(cases())
    t0 = time.perf_counter()
    rows = run(chosen, blobs, args.limit_mib)
    columns = ["case", "kind", "file_kib", "outcome", "extra_rss_mib", "ms", "bound_mib",
               "within_bound", "as_expected"]
    print(markdown_table(rows, columns))
    forged = [r for r in rows if r["kind"] != "honest"]
    summary = {
        "cases": len(forged),
        "as_expected": sum(r["as_expected"] for r in forged),
        "within_bound": sum(r["within_bound"] for r in rows),
        "max_extra_rss_mib_forged": max(r["extra_rss_mib"] for r in forged),
        "max_ms_forged": max(r["ms"] for r in forged),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary))
    if not args.no_save:
        save_json("load_bounds", {
            "note": ("skrec.load of forged files (issue 23), in subprocesses (one per kind of "
                     "forgery, the peak RSS reset before each load) under RLIMIT_AS = the "
                     f"address space after imports + {args.limit_mib} MiB; "
                     "extra_rss_mib: peak RSS minus RSS before the load; bound_mib: the "
                     "decoding budget, 16 x the file size + 64 MiB. "
                     + ("Full sweep." if args.sweep else "One case per variant family.")),
            "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(),
                        "load_average_1min": {"start": load_start,
                                              "end": round(os.getloadavg()[0], 1)},
                        "python": platform.python_version()},
            "summary": summary,
            "rows": rows,
            "table": markdown_table(rows, columns),
        })


if __name__ == "__main__":
    main()
