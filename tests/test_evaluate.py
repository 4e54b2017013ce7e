"""The evaluation table (model_selection.evaluate) and skrec metric names in GridSearchCV."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from skrec import EASERecommender, MarkovChainRecommender, PopularityRecommender
from skrec.datasets import make_interactions
from skrec.metrics import (
    RecScorer,
    coverage,
    get_rec_scorer,
    make_rec_scorer,
    make_scorers,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)
from skrec.model_selection import evaluate, leave_last_out_split, user_holdout_split

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def split():
    return leave_last_out_split(make_interactions(n_users=150, n_items=40, random_state=0))


# ---------------------------------------------------------------- make_scorers / GridSearchCV
def test_make_scorers_builds_named_rec_scorers():
    scorers = make_scorers(["ndcg@10", "recall@20", "coverage@5", make_rec_scorer("mrr", 3)])
    assert list(scorers) == ["ndcg@10", "recall@20", "coverage@5", "mrr@3"]
    assert scorers["recall@20"] == make_rec_scorer("recall", 20)
    assert all(isinstance(s, RecScorer) for s in scorers.values())
    assert make_scorers("hit_rate@4") == {"hit_rate@4": make_rec_scorer("hit_rate", 4)}
    assert pickle.loads(pickle.dumps(scorers)) == scorers


@pytest.mark.parametrize(
    "bad, match",
    [([], "empty"), (["ndcg@10", "ndcg@10"], "twice"), (["map@10"], "Unknown metric"),
     (["ndcg@x"], "Could not parse"), (3, "metric name")],
)
def test_make_scorers_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        make_scorers(bad)


def test_sklearn_string_scoring_fails_and_make_scorers_is_the_route(split):
    X, y = split
    grid = {"l2": [5.0, 500.0]}
    with pytest.raises(ValueError):  # sklearn's own registry has no ranking metrics
        GridSearchCV(EASERecommender(), grid, scoring="ndcg@10", cv=2).fit(X, y)
    search = GridSearchCV(
        EASERecommender(), grid, scoring=make_scorers(["ndcg@10", "recall@20", "coverage@10"]),
        refit="ndcg@10", cv=2,
    ).fit(X, y)
    for key in ("ndcg@10", "recall@20", "coverage@10"):
        values = search.cv_results_[f"mean_test_{key}"]
        assert values.shape == (2,) and np.all((values >= 0) & (values <= 1))
    best = int(np.argmax(search.cv_results_["mean_test_ndcg@10"]))
    assert search.best_params_ == search.cv_results_["params"][best]
    # a single skrec name works directly as a scorer object
    single = GridSearchCV(EASERecommender(), grid, scoring=get_rec_scorer("ndcg@10"), cv=2)
    single.fit(X, y)
    np.testing.assert_allclose(single.cv_results_["mean_test_score"],
                               search.cv_results_["mean_test_ndcg@10"])


def test_coverage_scorer_reads_the_catalogue_from_the_estimator(split):
    X, y = split
    est = PopularityRecommender().fit(X)
    scorer = get_rec_scorer("coverage@10")
    expected = coverage(est.predict(X, k=10), n_items=40, k=10)
    assert scorer(est, X, y) == pytest.approx(expected)
    y_1d = np.asarray(y.argmax(axis=1)).ravel()  # 1-D targets do not give the catalogue size
    assert scorer(est, X, y_1d) == pytest.approx(expected)
    with pytest.raises(ValueError, match="catalogue size"):
        scorer.metric_func(y_1d, est.predict(X), k=10)


# ---------------------------------------------------------------- evaluate
def test_evaluate_one_row_per_estimator_with_metrics_and_times(split):
    X, y = split
    models = {"pop": PopularityRecommender(), "ease": EASERecommender(l2=20.0),
              "markov": MarkovChainRecommender()}
    table = evaluate(models, X, y, metrics=["ndcg@10", "recall@20", "mrr@5", "coverage@10"])
    assert table.index.name == "estimator"
    assert table.index.tolist() == ["pop", "ease", "markov"]
    assert table.columns.tolist() == ["ndcg@10", "recall@20", "mrr@5", "coverage@10",
                                      "fit_time", "predict_time"]
    for name, est in models.items():  # fitted in place, values = the metric functions
        assert hasattr(est, "n_features_in_")
        ids = est.predict(X, k=20)
        row = table.loc[name]
        assert row["ndcg@10"] == pytest.approx(ndcg_at_k(y, ids, k=10))
        assert row["recall@20"] == pytest.approx(recall_at_k(y, ids, k=20))
        assert row["mrr@5"] == pytest.approx(mrr_at_k(y, ids, k=5))
        assert row["coverage@10"] == pytest.approx(coverage(ids, 40, k=10))
        assert row["fit_time"] > 0 and row["predict_time"] > 0


def test_evaluate_list_names_prefitted_and_dict_output(split):
    X, y = split
    ease = EASERecommender(l2=20.0).fit(X)
    table = evaluate([ease, EASERecommender(l2=1.0).fit(X), PopularityRecommender().fit(X)],
                     X, y, metrics="ndcg@10", fit=False)
    assert table.index.tolist() == ["EASERecommender", "EASERecommender (2)",
                                    "PopularityRecommender"]
    assert table["fit_time"].isna().all()
    out = evaluate({"ease": ease}, X, y, metrics=["ndcg@10"], fit=False, as_frame=False)
    assert out["estimator"] == ["ease"] and list(out) == ["estimator", "ndcg@10", "fit_time",
                                                          "predict_time"]
    with pytest.raises(NotFittedError):
        evaluate([EASERecommender()], X, y, fit=False)


def test_evaluate_strong_generalization_with_X_fit():
    X_all = make_interactions(n_users=200, n_items=40, random_state=1)
    X_train, X_fold_in, y_test = user_holdout_split(X_all, test_size=0.25, random_state=0)
    table = evaluate({"ease": EASERecommender(l2=20.0)}, X_fold_in, y_test, X_fit=X_train,
                     metrics=["recall@10"])
    ref = EASERecommender(l2=20.0).fit(X_train).score(X_fold_in, y_test)  # ndcg, as a sanity
    assert 0 <= table.loc["ease", "recall@10"] <= 1 and ref >= 0


def test_evaluate_with_a_cut_off_beyond_the_catalogue(split):
    """"ndcg@99999999999" ranks the whole catalogue (40 items): same value as ndcg@40, and
    nothing of width 10**11 is allocated."""
    X, y = split
    ease = EASERecommender(l2=20.0).fit(X)
    table = evaluate({"ease": ease}, X, y, metrics=["ndcg@99999999999", "ndcg@40"], fit=False)
    assert table.loc["ease", "ndcg@99999999999"] == pytest.approx(table.loc["ease", "ndcg@40"])
    assert get_rec_scorer("recall@99999999999")(ease, X, y) == pytest.approx(
        recall_at_k(y, ease.predict(X, k=40), k=40))


def test_evaluate_errors(split):
    X, y = split
    with pytest.raises(ValueError, match="Unknown metric"):
        evaluate([PopularityRecommender()], X, y, metrics=["auc@10"])
    with pytest.raises(TypeError, match="not a recommender"):
        evaluate({"x": object()}, X, y)
    with pytest.raises(ValueError, match="empty"):
        evaluate({}, X, y)
    with pytest.raises(ValueError, match="rows"):
        evaluate([PopularityRecommender()], X, y[:10])
    with pytest.raises(TypeError, match="InteractionEncoder"):
        evaluate([PopularityRecommender()], pd.DataFrame(X.toarray()), y)
