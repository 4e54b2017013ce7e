"""Shared fixtures: small deterministic data, the MovieLens-100K folder, a CUDA skip marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import scipy.sparse as sp
import torch

from skrec.datasets import make_interactions

# The tests train tiny models: one thread is faster for them than two, and it avoids the
# large slow-downs of OpenMP spin-waiting when the cores are shared (GridSearchCV's n_jobs=2).
torch.set_num_threads(1)

#: ``@requires_cuda`` skips a test on machines without a CUDA GPU.
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _ml100k_dir() -> Path:
    """Where the MovieLens-100K files are expected (``$SKREC_DATA_DIR`` or ../shared/data)."""
    root = os.environ.get("SKREC_DATA_DIR")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base if (base / "u.data").is_file() else base / "ml-100k"


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``@pytest.mark.cuda`` where no CUDA GPU is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def interactions() -> sp.csr_matrix:
    """A small deterministic interaction matrix: 300 users x 60 items, values = positions."""
    return make_interactions(n_users=300, n_items=60, mean_length=12, random_state=0)


@pytest.fixture
def X_small(interactions) -> sp.csr_matrix:
    """A fresh copy of :func:`interactions` that a test may modify."""
    return interactions.copy()


@pytest.fixture(scope="session")
def ml100k_path() -> Path:
    """Folder holding MovieLens-100K's ``u.data``; the test is skipped when it is absent.

    Looked up in ``$SKREC_DATA_DIR`` (the ``ml-100k`` folder itself or its parent), else in
    ``shared/data/ml-100k`` next to the repository. The data are never shipped with skrec.
    """
    path = _ml100k_dir()
    if not (path / "u.data").is_file():
        pytest.skip(f"MovieLens-100K not found at {path} (set SKREC_DATA_DIR)")
    return path
