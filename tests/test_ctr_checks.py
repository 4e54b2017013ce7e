"""scikit-learn's estimator checks on CTRClassifier (expected failures listed with reasons)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from skrec import CTRClassifier

#: Small and fast, as scikit-learn's own tests set MLPClassifier for the checks; a learning
#: rate that fits the checks' small blobs in a few epochs.
CHECKED = CTRClassifier(max_iter=20, batch_size=32, learning_rate_init=0.05,
                        click_count_buckets=64, min_frequency=1, random_state=0, device="cpu",
                        precision="fp32")

EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_sample_weight_equivalence_on_dense_data": (
        "training is stochastic (shuffled mini-batches, dropout, a validation hold-out): a "
        "row of weight 2 and the row repeated give the same expected gradient, not the same "
        "model; tests/test_ctr_classifier.py tests what the weights do"
    ),
}


@parametrize_with_checks([CHECKED], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible_classifier(estimator, check):
    check(estimator)
