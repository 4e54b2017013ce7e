"""scikit-learn's estimator checks on the baselines (expected failures listed in _checks.py)."""

from __future__ import annotations

from _checks import expected_failed_checks  # tests/ is on sys.path (pytest prepend mode)
from sklearn.utils.estimator_checks import parametrize_with_checks

from skrec import EASERecommender, MarkovChainRecommender, PopularityRecommender


@parametrize_with_checks(
    [PopularityRecommender(), EASERecommender(), MarkovChainRecommender()],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
