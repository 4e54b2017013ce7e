"""Fixed fits give the recorded weights, history and recommendations, bit for bit.

The golden file was recorded before the training machinery became a package
(``skrec/training/``): refactorings of the trainer, the estimator bases and the inference
set-up must not change a single bit of a fit. See ``tests/_fingerprints.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _fingerprints import GOLDEN, cases, compute, environment

_GOLDEN = json.loads(GOLDEN.read_text())
_EXACT = _GOLDEN["environment"] == environment()


@pytest.mark.parametrize("name", sorted(cases()))
def test_fit_matches_the_recorded_fingerprint(name):
    expected = _GOLDEN["cases"][name]
    got = compute([name])[name]
    if _EXACT:
        assert got == expected
    else:  # other CPU kernels round differently: the first epoch's loss still agrees
        np.testing.assert_allclose(got["first_loss"], expected["first_loss"], rtol=1e-4)
