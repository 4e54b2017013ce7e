"""precision="auto" picks what the CPU runs fast: exact flags, else a timed probe.

oneDNN reports bf16 "supported" on AVX-512 CPUs that only emulate it (several times slower
than fp32), so "auto" reads the CPU's instruction-set flags instead, and measures where they
cannot be read. The same rule serves inference, and an explicit low precision on an
emulating CPU warns with the measured slowdown.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import skrec.training.precision as precision
from skrec import SeqRecommender
from skrec.datasets import make_interactions

CPU = torch.device("cpu")


@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU has the given flags (``None``: unreadable), probe factors included."""

    def set_flags(value, factors=None):
        monkeypatch.setattr(precision, "_cpu_flags", lambda: value)
        if factors is not None:
            monkeypatch.setattr(precision, "low_precision_factor", lambda p: factors[p])

    return set_flags


@pytest.mark.parametrize("cpu_flags, native", [
    (frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni"}), False),  # the reported Xeon
    (frozenset({"avx2"}), False),
    (frozenset({"avx2", "avx512f", "avx512_bf16"}), True),  # Zen 4, Cooper Lake
    (frozenset({"avx512f", "amx_bf16", "amx_tile"}), True),  # Sapphire Rapids
    (frozenset({"fp", "asimd", "bf16"}), True),  # Arm with the BF16 extension
])
def test_auto_follows_the_instruction_set(flags, monkeypatch, cpu_flags, native):
    flags(cpu_flags)
    # what oneDNN says does not matter any more
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True,
                        raising=False)
    assert precision.cpu_supports_bf16() is native
    assert precision.resolve_precision("auto", CPU) == ("bf16" if native else "fp32")


@pytest.mark.parametrize("factor, expected", [(0.3, "bf16"), (3.7, "fp32")])
def test_without_flags_a_timed_probe_decides(flags, factor, expected):
    flags(None, factors={"bf16": factor, "fp16": factor})
    assert precision.resolve_precision("auto", CPU) == expected


def test_the_probe_measures_a_ratio_once_per_process():
    precision.low_precision_factor.cache_clear()
    first = precision.low_precision_factor("bf16")
    assert first > 0 and precision.low_precision_factor("bf16") == first  # cached


def test_an_emulated_explicit_precision_warns_with_the_measured_factor(flags):
    flags(frozenset({"avx2", "avx512f"}), factors={"bf16": 3.7, "fp16": 9.0})
    X = make_interactions(n_users=40, n_items=20, mean_length=5, random_state=0)
    with pytest.warns(UserWarning, match=r"precision='bf16' is emulated.*3\.7x the time"):
        SeqRecommender(d_model=8, n_layers=1, d_ff=8, max_len=6, max_iter=1,
                       precision="bf16", random_state=0, device="cpu").fit(X)


def test_inference_auto_serves_fp32_where_the_training_precision_is_emulated(flags):
    X = make_interactions(n_users=40, n_items=20, mean_length=5, random_state=0)
    rec = SeqRecommender(d_model=8, n_layers=1, d_ff=8, max_len=6, max_iter=1,
                         precision="fp32", random_state=0, device="cpu").fit(X)
    rec.precision_ = "bf16"  # as if trained on a bf16 machine
    flags(frozenset({"avx2"}))
    assert rec._inference().autocast_precision == "fp32"
    flags(frozenset({"avx512_bf16"}))
    assert rec._inference().autocast_precision == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec.predict(X[:3])
