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


#: The examples that read MovieLens 100K and fall back to synthetic data without it.
MOVIELENS_EXAMPLES = [p for p in EXAMPLES if p.name.startswith("plot_")
                     and "load_movielens" in p.read_text()]


def test_movielens_examples_say_when_they_use_synthetic_data():
    """Every example that looks for MovieLens has the loud fallback (one of them is run)."""
    names = {p.name for p in MOVIELENS_EXAMPLES}
    assert {"plot_movielens_sequential.py", "plot_autoencoder_strong_generalization.py",
            "plot_cold_start_features.py", "plot_original_ids_workflow.py"} <= names
    for path in MOVIELENS_EXAMPLES:
        text = path.read_text()  # the one lookup of skrec.datasets, told what replaces the data
        assert "find_movielens(" in text and "instead=" in text


def test_an_example_run_away_from_the_data_says_so_loudly(tmp_path):
    """A clone not beside the data: a banner on stdout and a warning on stderr that say the
    numbers are synthetic and name SKREC_DATA_DIR (it was a one-line print before). The
    warning is made an error, so the run stops right there."""
    script = tmp_path / "plot_original_ids_workflow.py"  # no shared/data above tmp_path
    script.write_text((EXAMPLES[0].parent / script.name).read_text())
    env = dict(os.environ, SKREC_EXAMPLES_FAST="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               SKREC_DATA_DIR=str(tmp_path / "nothing here"), SKREC_DATA=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-W", "error:MovieLens 100K NOT FOUND:UserWarning", str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode != 0  # stopped by the warning, at the fallback
    assert "MovieLens 100K NOT FOUND" in proc.stdout and "=" * 78 in proc.stdout
    assert "SKREC_DATA_DIR=" in proc.stdout and "holds no u.data" in proc.stdout
    assert "UserWarning: MovieLens 100K NOT FOUND" in proc.stderr
