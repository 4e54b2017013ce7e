"""Scikit-learn estimator checks that cannot pass for a recommender, with the reason.

Import :func:`expected_failed_checks` in any test file that runs
:func:`sklearn.utils.estimator_checks.parametrize_with_checks` on a skrec estimator.
Only checks that genuinely fail are listed; the properties they would have tested
(``fit`` returns ``self``, read-only memmap input, parameters not mutated, sparse input)
are tested directly with valid recommender data in ``tests/test_base.py``.
"""

from __future__ import annotations

_Y_IS_ITEMS = (
    "y holds held-out item indices, not class labels: the check's labels (0..{max}) exceed "
    "its {n}-column catalogue, and an out-of-range item must raise ValueError"
)

#: Check name -> why it cannot pass for any skrec recommender.
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_estimators_overwrite_params": _Y_IS_ITEMS.format(max=2, n=2),
    "check_estimators_fit_returns_self": _Y_IS_ITEMS.format(max=2, n=2),
    "check_readonly_memmap_input": _Y_IS_ITEMS.format(max=2, n=2),
    "check_fit2d_1feature": _Y_IS_ITEMS.format(max=2, n=1),
    "check_estimator_sparse_matrix": (
        _Y_IS_ITEMS.format(max=3, n=3)
        + "; and predict returns (n_users, k) item indices, not one label per sample"
    ),
    "check_estimator_sparse_array": (
        _Y_IS_ITEMS.format(max=3, n=3)
        + "; and predict returns (n_users, k) item indices, not one label per sample"
    ),
}


def expected_failed_checks(estimator) -> dict[str, str]:
    """Return the estimator checks expected to fail for ``estimator``, with reasons.

    Parameters
    ----------
    estimator : BaseRecommender
        A skrec recommender instance.

    Returns
    -------
    checks : dict of str to str
        Check name -> reason, for ``parametrize_with_checks(expected_failed_checks=...)``.
    """
    return dict(EXPECTED_FAILED_CHECKS)
