"""Every script in examples/ runs to the end in its fast mode (SKREC_EXAMPLES_FAST=1).

Each runs in a fresh interpreter, as a user would run it, with the non-interactive matplotlib
backend and one thread. The MovieLens examples use ../shared/data/ml-100k when present and
synthetic data otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
#: Generous bound for one example in fast mode (they take a few seconds to ~15 s on 2 cores).
TIMEOUT_S = 180


def test_examples_exist():
    assert EXAMPLES, "no examples found"


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_in_fast_mode(script, tmp_path):
    env = dict(os.environ)
    env.update(
        SKREC_EXAMPLES_FAST="1",
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONWARNINGS="ignore::DeprecationWarning",
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,  # examples must not depend on the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, (
        f"{script.name} failed (exit {proc.returncode}) after {seconds:.1f} s\n"
        f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-5000:]}"
    )
    assert proc.stdout.strip(), f"{script.name} printed nothing"
