"""Hostile model files: a seeded sample of the forgeries of ``benchmarks/load_bounds.py``.

Every class of issue 23 (the RNG state's invariants, declared sizes against the bytes
present and the module config, shared references, overflowing numbers, nesting, lone
surrogates, attribute types, fitted-state consistency, versions and file kinds) is forged
from small honest models with a recomputed checksum; ``skrec.load`` must refuse each with a
``ModelFileError`` whose message names the field (a ``TypeError`` for a text-mode file
object). The files that once drove huge allocations are loaded again in a subprocess under a
hard address-space limit, which also measures how much memory refusing them took. The full
sweep, each case in its own limited process with its peak memory and time, is
``python benchmarks/load_bounds.py --sweep``.
"""

from __future__ import annotations

import os
import random
import re
import sys
import threading
from pathlib import Path

import pytest

import skrec
from skrec.persistence import ModelFileError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _import_load_bounds():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import load_bounds
    finally:
        sys.path.remove(str(BENCHMARKS))
    return load_bounds


LB = _import_load_bounds()


def _sample() -> list:
    """One case of every family, and a seeded sample of the other variants."""
    every = LB.cases()
    first = LB.representatives(every)
    rest = [c for c in every if c not in first]
    return first + random.Random(0).sample(rest, min(20, len(rest)))


SAMPLE = _sample()


@pytest.fixture(scope="module")
def lb():
    return LB


@pytest.fixture(scope="module")
def blobs():
    return LB.honest_blobs()


def _load(target):
    if callable(target):  # a text-mode file object
        with target() as f:
            return skrec.load(f)
    return skrec.load(target)


def test_the_sample_covers_every_kind(lb):
    kinds = {"rng state", "declared sizes", "shared references", "overflow", "nesting", "text",
             "types", "consistency", "version and kind"}
    assert {c.kind for c in lb.cases()} == kinds == {c.kind for c in SAMPLE}


def test_honest_files_load(blobs, tmp_path):
    for name, blob in blobs.items():
        path = tmp_path / f"{name}.skrec"
        path.write_bytes(blob)
        skrec.load(path)


@pytest.mark.parametrize("case", SAMPLE, ids=[c.name for c in SAMPLE])
def test_forged_file_is_refused_naming_the_field(lb, blobs, tmp_path, case):
    if case.name == "a FIFO" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    target = lb.materialize(case, blobs, tmp_path)
    with pytest.raises(case.error) as info:
        _load(target)
    assert re.search(case.field, str(info.value)), (case.name, str(info.value))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_loading_a_fifo_returns_at_once(tmp_path):
    """Without a writer, opening a FIFO for reading blocks forever unless O_NONBLOCK."""
    path = tmp_path / "model.fifo"
    os.mkfifo(path)
    outcome = []

    def target():
        try:
            skrec.load(path)
        except ModelFileError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "skrec.load blocked on a FIFO"
    assert outcome and "FIFO" in outcome[0]


#: Forgeries that made the old loader allocate gigabytes to terabytes from a tiny file.
_HEAVY = ("sparse shape [1000000000, 40]", "seq config items.n_items=10000000000",
          "ae config n_items=20000000", "seq config encoder.n_layers=5000",
          "ae config hidden_sizes=[100000000]", "seq config items.features.nnz=1000000000",
          "strings dtype <U500000000", "one 64 KiB string and 100,000 empty ones",
          "one string array referenced 4,000 times", "1 TiB sparse file",
          "3,000,000 empty lists in the JSON")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc")
def test_heavy_forgeries_are_refused_within_a_memory_limit(lb, blobs, tmp_path):
    """Each file is refused with a ModelFileError in a process that may not grow by more than
    1 GiB, and refusing it raises the peak RSS by less than 16 x the file + 64 MiB."""
    by_name = {c.name: c for c in lb.cases()}
    targets, held = [], []
    for i, name in enumerate(_HEAVY):
        folder = tmp_path / str(i)
        folder.mkdir()
        target = lb.materialize(by_name[name], blobs, folder)
        targets.append(target)
        st = os.stat(target)
        held.append(min(st.st_size, st.st_blocks * 512))  # a sparse file's holes hold nothing
    warmup = tmp_path / "warmup.skrec"
    warmup.write_bytes(blobs["seq"])
    results = lb.measure(targets, warmup, limit_mib=1024)
    assert len(results) == len(_HEAVY), results
    for name, size, result in zip(_HEAVY, held, results):
        assert result["error"] == "ModelFileError", (name, result)
        assert result["extra_rss_mib"] < (16 * size + (64 << 20)) / 2**20, (name, result, size)
