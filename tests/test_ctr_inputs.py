"""CTRClassifier's inputs: the three forms end to end, unknown, rare and hashed categories, and
bad input (a clear error naming the problem, or the documented handling; nothing modified)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from skrec import CTRClassifier

pd = pytest.importorskip("pandas")

FAST = dict(batch_size=128, max_iter=6, click_count_buckets=1 << 10, min_frequency=1,
            random_state=0, device="cpu", precision="fp32", learning_rate_init=0.01)


def _world(n: int = 2400, seed: int = 0):
    """Impressions whose click depends on the app, the user's city and the tags."""
    rng = np.random.RandomState(seed)
    app = rng.choice([f"app{i}" for i in range(12)], n)
    city = rng.choice(["paris", "lyon", "nice", "lille"], n)
    hour = rng.randint(0, 24, n)
    price = rng.gamma(2.0, 1.0, n)
    tags = [list(rng.choice(["game", "news", "kids", "shop"], rng.randint(0, 3),
                            replace=False)) for _ in range(n)]
    score = (np.isin(app, ["app1", "app3", "app5"]) * 2.0 + (city == "paris") * 1.0
             + np.array([("game" in t) * 1.5 for t in tags]) - 0.3 * price
             + rng.normal(0, 0.5, n))
    y = (score > np.median(score)).astype(int)
    X = pd.DataFrame({"app": app, "city": pd.Categorical(city), "hour": hour,
                      "price": price, "tags": tags})
    return X, y


@pytest.fixture(scope="module")
def world():
    return _world()


@pytest.fixture(scope="module")
def frame_model(world):
    X, y = world
    return CTRClassifier(**FAST).fit(X[:2000], y[:2000])


def test_a_dataframe_of_categorical_numeric_and_list_columns(world, frame_model):
    X, y = world
    kinds = [(f["name"], f["kind"]) for f in frame_model.encoder_.fields_]
    assert kinds == [("app", "categorical"), ("city", "categorical"), ("hour", "categorical"),
                     ("tags", "multi"), ("price", "numeric")]
    assert roc_auc_score(y[2000:], frame_model.predict_proba(X[2000:])[:, 1]) > 0.75


def test_an_integer_code_matrix_and_a_sparse_one_hot_matrix(world):
    X, y = world
    cols = ["app", "city", "hour"]
    codes = OrdinalEncoder().fit_transform(X[cols])  # float64 codes
    clf = CTRClassifier(**FAST).fit(codes[:2000], y[:2000])
    assert [f["kind"] for f in clf.encoder_.fields_] == ["categorical"] * 3
    assert roc_auc_score(y[2000:], clf.predict_proba(codes[2000:])[:, 1]) > 0.65
    # a code the model never saw is the field's unknown id, not an error
    unseen = codes[2000:2001].copy()
    unseen[0, 0] = 99
    assert np.isfinite(clf.predict_proba(unseen)).all()
    ohe = OneHotEncoder(handle_unknown="ignore").fit(X[cols][:2000])
    onehot = ohe.transform(X[cols])
    for layout in (ohe, [12, 4, 24]):
        clf = CTRClassifier(**FAST, field_layout=layout).fit(onehot[:2000], y[:2000])
        assert clf.encoder_.n_categorical_ == 3
        assert roc_auc_score(y[2000:], clf.predict_proba(onehot[2000:])[:, 1]) > 0.65
    # an all-zero row of a field (an unknown category dropped by the encoder) reads missing
    assert np.isfinite(clf.predict_proba(sp.csr_matrix((1, onehot.shape[1])))).all()
    with pytest.raises(ValueError, match="field_layout"):
        CTRClassifier(**FAST).fit(onehot, y)


def test_unknown_and_rare_categories_share_a_learned_vector(world):
    X, y = world
    X = X.copy()
    X.loc[:2, "app"] = ["rare1", "rare2", "rare3"]  # seen once each
    clf = CTRClassifier(**{**FAST, "min_frequency": 2}).fit(X, y)
    row = X.iloc[[10]]
    variants = [row.assign(app=a) for a in ("rare1", "rare2", "never seen", "nor this")]
    probs = [clf.predict_proba(v)[0, 1] for v in variants]
    assert np.allclose(probs, probs[0])  # one unknown vector: rare and unseen alike
    assert not np.isclose(clf.predict_proba(row.assign(app="app1"))[0, 1], probs[0])
    emb = clf.module_.embedding.weight.detach()
    unknown = clf.encoder_.fields_[0]["offset"]
    assert emb[unknown].abs().sum() > 10 * emb[unknown + 1].abs().sum()  # it was trained


def test_hashed_fields(world):
    X, y = world
    clf = CTRClassifier(**{**FAST, "hash_buckets": 64, "hashed": "all"}).fit(X, y)
    assert all(f["hashed"] for f in clf.encoder_.fields_ if f["kind"] != "numeric")
    assert clf.encoder_.n_ids_ == 4 * (64 + 2)  # bounded whatever the number of categories
    new = X.iloc[:3].assign(app=["x1", "x2", "x3"])  # new values get buckets of their own
    assert len(set(clf.encoder_.transform(new).ids[:, 0].tolist())) == 3
    assert roc_auc_score(y, clf.predict_proba(X)[:, 1]) > 0.75


def test_labels_that_are_not_binary_are_refused(world):
    X, y = world
    with pytest.raises(ValueError, match="Only binary classification.*3 classes"):
        CTRClassifier(**FAST).fit(X, y + (np.arange(y.size) % 3 == 0))
    with pytest.raises(ValueError, match="Unknown label type"):
        CTRClassifier(**FAST).fit(X, np.linspace(0, 1, y.size))
    with pytest.raises(ValueError, match="two classes.*classes=\\[0, 1\\]"):
        CTRClassifier(**FAST).fit(X, np.zeros(y.size))
    with pytest.raises(ValueError, match="2400 rows but y has 10"):
        CTRClassifier(**FAST).fit(X, y[:10])


def test_nan_in_numeric_fields(world, frame_model):
    X, _ = world
    row = X.iloc[[5]]
    mean = frame_model.encoder_.numeric_mean_[0]
    with_nan = frame_model.predict_proba(row.assign(price=np.nan))
    np.testing.assert_allclose(with_nan, frame_model.predict_proba(row.assign(price=mean)),
                               rtol=1e-6)  # documented: a NaN in a column that had none
    # at fit reads as the training mean
    strict = CTRClassifier(**{**FAST, "numeric_nan": "error", "max_iter": 1})
    with pytest.raises(ValueError, match="'price' holds 1 NaN"):
        strict.fit(X.assign(price=np.where(np.arange(len(X)) == 3, np.nan, X["price"])),
                   np.arange(len(X)) % 2)
    # numeric_nan="indicator": a missing price is told apart from an average one
    y = np.arange(len(X)) % 2
    holes = X.assign(price=np.where(y == 1, np.nan, X["price"]))  # missing <=> click
    flagged = CTRClassifier(**{**FAST, "numeric_nan": "indicator"}).fit(holes, y)
    assert flagged.encoder_.n_categorical_ == frame_model.encoder_.n_categorical_ + 1
    p_nan = flagged.predict_proba(row.assign(price=np.nan))[0, 1]
    p_mean = flagged.predict_proba(row.assign(price=mean))[0, 1]
    assert p_nan > 0.5 > p_mean
    plain = CTRClassifier(**{**FAST, "numeric_nan": "mean", "max_iter": 1}).fit(holes, y)
    assert plain.encoder_.n_categorical_ == frame_model.encoder_.n_categorical_


def test_columns_unseen_missing_reordered_or_of_another_dtype(world, frame_model):
    X, _ = world
    part = X[2000:2100]
    expected = frame_model.predict_proba(part)
    np.testing.assert_array_equal(frame_model.predict_proba(part[part.columns[::-1]]),
                                  expected)  # matched by name
    with pytest.raises(ValueError, match="'extra'.*not seen at fit"):
        frame_model.predict_proba(part.assign(extra=1))
    with pytest.raises(ValueError, match="lacks the column.*'city'"):
        frame_model.predict_proba(part.drop(columns="city"))
    with pytest.raises(ValueError, match="'hour' holds string values"):
        frame_model.predict_proba(part.assign(hour=part["hour"].astype(str)))
    with pytest.raises(ValueError, match="numeric column 'price'"):
        frame_model.predict_proba(part.assign(price="cheap"))
    with pytest.raises(ValueError, match="frame input"):
        frame_model.predict_proba(part.to_numpy())


def test_empty_chunks_and_inputs_left_untouched(world):
    X, y = world
    X_before, y_before = X.copy(deep=True), y.copy()
    clf = CTRClassifier(**{**FAST, "max_iter": 1})
    with pytest.raises(ValueError, match="0 sample"):
        clf.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="0 sample.*first chunk"):
        clf.partial_fit(X[:0], y[:0])
    clf.partial_fit(X[:500], y[:500])
    weights = [p.detach().clone() for p in clf.module_.parameters()]
    n_steps = clf.n_steps_
    clf.partial_fit(X[:0], y[:0])  # documented: an empty chunk changes nothing
    assert clf.n_steps_ == n_steps
    assert all(np.array_equal(a, b.detach()) for a, b in zip(weights,
                                                            clf.module_.parameters()))
    assert clf.predict_proba(X[:0]).shape == (0, 2)
    clf.fit(X, y, sample_weight=np.ones(len(y)), X_val=X[:100], y_val=y[:100])
    clf.predict_proba(X)
    clf.score_candidates({"app": "app1", "city": "paris", "hour": 3}, X[["price", "tags"]][:5])
    pd.testing.assert_frame_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)
