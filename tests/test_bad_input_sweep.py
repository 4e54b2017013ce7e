"""Property-based bad-input sweep (hypothesis) over the public estimators and functions.

Every public call gets odd and wrong arguments (NaN, inf, negative and huge values, wrong
shapes and dtypes, strings, None, DataFrames, lists of tuples, duplicate sparse entries,
out-of-range indices, bad ``k``/``batch_size``/``items``, bad hyper-parameters...) and must

* either succeed, or raise a ``ValueError``/``TypeError`` (``NotFittedError`` is both a
  ``ValueError`` and an ``AttributeError``) **raised by skrec's own code** (or by scikit-learn's
  parameter and fitted checks): an error from deep inside numpy, scipy or torch is not a clear
  answer. The trainer's ``FloatingPointError`` (a loss that became NaN, with a hint) is its
  documented answer to a diverging fit and is accepted too;
* refuse a table (DataFrame, Series, list of tuples) given where a matrix is expected;
* return well-formed results: rankings with indices in the catalogue, no repeats, ``-1``
  padding exactly where the score is ``-inf``, no seen item when filtered, finite scores;
* and leave every argument it was given unchanged.

Sized for CI: tiny data and models (``max_iter=1``, widths of 4-8, ``precision="fp32"``), 40
examples per target drawn the same way on every run (about 15 s in all), no example database.
Explore further with ``SKREC_SWEEP_EXAMPLES=300 SKREC_SWEEP_RANDOM=1`` (new random examples on
each run). The pure-torch modules of ``skrec.nn`` are not swept: like torch's own layers they
take tensors and raise torch's errors.

Known failures in files being refactored elsewhere are listed in ``KNOWN_BUGS`` with a minimal
reproduction each, tested as ``xfail`` at the end, and kept out of the sweep by ``assume``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

import skrec
from skrec import (
    AERecommender,
    EASERecommender,
    MarkovChainRecommender,
    PopularityRecommender,
    SeqRecommender,
)
from skrec import metrics as skm
from skrec import model_selection as skms
from skrec.datasets import load_movielens, load_movielens_titles, make_interactions
from skrec.preprocessing import InteractionEncoder

pd = pytest.importorskip("pandas")

SKREC_DIR = Path(skrec.__file__).resolve().parent
#: scikit-learn files whose errors are clear answers: fitted checks, set_params, random_state.
SKLEARN_OK = ("validation.py", "base.py", "metaestimators.py")
N_USERS, N_ITEMS = 8, 6
SETTINGS = settings(
    max_examples=int(os.environ.get("SKREC_SWEEP_EXAMPLES", "40")),
    deadline=None,
    database=None,
    # CI runs the same examples every time; SKREC_SWEEP_RANDOM=1 explores new ones.
    derandomize=os.environ.get("SKREC_SWEEP_RANDOM", "0") in ("", "0"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

TINY = {
    "Popularity": lambda: PopularityRecommender(),
    "EASE": lambda: EASERecommender(l2=5.0),
    "Markov": lambda: MarkovChainRecommender(),
    "Seq": lambda: SeqRecommender(d_model=4, n_heads=1, d_ff=4, n_layers=1, max_len=5,
                                  max_iter=1, n_negatives=3, precision="fp32", random_state=0),
    "AE": lambda: AERecommender(latent_dim=4, hidden_sizes=(), max_iter=1, anneal_steps=2,
                                precision="fp32", random_state=0),
}


# ------------------------------------------------------------------------------ checking
def _snapshot(obj):
    """A deep copy to compare with after the call (None when it cannot be copied)."""
    try:
        return copy.deepcopy(obj)
    except Exception:  # pragma: no cover - generators and the like
        return None


def _same(a, b) -> bool:
    if sp.issparse(a):
        if not sp.issparse(b) or a.format != b.format or a.shape != b.shape:
            return False
        if a.format in ("csr", "csc", "bsr"):
            return (np.array_equal(a.data, b.data, equal_nan=True)
                    and np.array_equal(a.indices, b.indices)
                    and np.array_equal(a.indptr, b.indptr))
        if a.format == "coo":
            return (np.array_equal(a.data, b.data, equal_nan=True)
                    and np.array_equal(a.row, b.row) and np.array_equal(a.col, b.col))
        return _same(a.toarray(), b.toarray())
    if isinstance(a, np.ndarray):
        if not isinstance(b, np.ndarray) or a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind in "fcmM":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.all(a == b)) if a.dtype != object else all(
            _same(x, y) for x, y in zip(a.ravel(), b.ravel())
        )
    if isinstance(a, pd.DataFrame | pd.Series):
        return a.equals(b) and list(getattr(a, "columns", [])) == list(getattr(b, "columns", []))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    if type(a).__eq__ is object.__eq__:  # no value to compare (a plain object())
        return True
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover
        return True


def _raised_by_skrec(exc: BaseException) -> bool:
    """Whether the innermost Python frame of the traceback is skrec's (or sklearn's checks).

    scikit-learn's ``check_random_state`` passes a bad seed on to numpy, whose "Seed must be
    between 0 and 2**32 - 1" is the answer every scikit-learn estimator gives: accepted.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return True
    if any(frame.name == "check_random_state" for frame in frames):
        return True
    path = Path(frames[-1].filename).resolve()
    if SKREC_DIR in path.parents:
        return True
    return "sklearn" in path.parts and path.name in SKLEARN_OK


def _is_table(obj) -> bool:
    """An event log where a matrix is expected: it must be refused (TypeError)."""
    return isinstance(obj, pd.DataFrame | pd.Series) or (
        isinstance(obj, list | tuple) and len(obj) > 0 and isinstance(obj[0], tuple)
    )


def _event(text: str) -> None:
    if currently_in_test_context():
        event(text)


def check_call(fn, *args, allow=(FloatingPointError,), refuse=False, **kwargs):
    """Call ``fn``; fail on an unclear error or a modified argument. Return the result.

    ``refuse``: the call must raise (a table given as a matrix: the TypeError pointing to the
    encoder, or a ValueError about another argument checked first).
    """
    before = [(a, _snapshot(a)) for a in (*args, *kwargs.values())]
    result = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(*args, **kwargs)
        assert not refuse, f"{fn.__name__} accepted a table where a matrix is expected"
        _event(f"{fn.__name__}: returned")  # --hypothesis-show-statistics shows the mix
    except (ValueError, TypeError, *allow) as exc:
        _event(f"{fn.__name__}: {type(exc).__name__}")
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        assert _raised_by_skrec(exc), (
            f"{type(exc).__name__} from outside skrec: {exc}\n"
            + "".join(traceback.format_exception(exc))
        )
    for original, snap in before:
        if snap is not None:
            assert _same(original, snap), f"{fn.__name__} modified its argument {snap!r:.200}"
    return result


def check_rankings(out, n_items: int = N_ITEMS) -> None:
    """Well-formed ``(ids, scores)``: indices in range, no repeats, -1 exactly with -inf."""
    if out is None:
        return
    ids, scores = out
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == scores.shape
    assert ((ids >= -1) & (ids < n_items)).all(), "item index outside the catalogue"
    pad = ids == -1
    assert np.isneginf(scores[pad]).all() and np.isfinite(scores[~pad]).all(), (
        "scores must be finite for items and -inf for padding"
    )
    ids2 = ids.reshape(-1, ids.shape[-1]) if ids.ndim else ids.reshape(1, 1)
    for row in ids2:
        real = row[row >= 0]
        assert np.unique(real).size == real.size, "an item repeated in one list"
        assert (row[real.size:] == -1).all(), "padding before an item"


def check_scores(out) -> None:
    if out is not None:
        assert not np.isnan(out).any() and not np.isposinf(out).any(), "NaN or +inf scores"


# ------------------------------------------------------------------------------ strategies
def _mostly(good, bad):
    """``good`` about three times out of four, so that most calls go deep."""
    return st.integers(0, 3).flatmap(lambda i: bad if i == 0 else good)


@st.composite
def valid_matrices(draw, n_items=None, n_users=None):
    n_users = n_users if n_users is not None else draw(st.integers(1, 6))
    n_items = n_items if n_items is not None else draw(st.integers(1, 7))
    density = draw(st.sampled_from([0.0, 0.25, 0.6, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    mask = rng.random((n_users, n_items)) < density
    kind = draw(st.sampled_from(["order", "timestamp", "ratings", "ones", "huge", "tiny"]))
    values = {
        "order": np.argsort(rng.random((n_users, n_items)), axis=1) + 1.0,
        "timestamp": 1.7e9 + rng.integers(0, 10**6, (n_users, n_items)),
        "ratings": rng.integers(1, 6, (n_users, n_items)).astype(float),
        "ones": np.ones((n_users, n_items)),
        "huge": np.full((n_users, n_items), 1e300) * rng.random((n_users, n_items)) + 1e290,
        "tiny": np.full((n_users, n_items), 5e-324),
    }[kind]
    dense = np.where(mask, values, 0.0)
    fmt = draw(st.sampled_from(["csr", "csc", "coo", "coo_dup", "lil", "dok", "dense", "int",
                                "f32", "bool", "list", "csr_array", "noncanonical", "zeros"]))
    if fmt == "csr":
        return sp.csr_matrix(dense)
    if fmt == "csc":
        return sp.csc_matrix(dense)
    if fmt == "coo":
        return sp.coo_matrix(dense)
    if fmt == "coo_dup":  # every entry stored twice, with a smaller copy
        coo = sp.coo_matrix(dense)
        return sp.coo_matrix(
            (np.concatenate([coo.data, coo.data / 2]), (np.tile(coo.row, 2), np.tile(coo.col, 2))),
            shape=coo.shape,
        )
    if fmt == "noncanonical":
        csr = sp.csr_matrix(dense)
        return sp.csr_matrix((csr.data[::-1].copy(), csr.indices[::-1].copy(), csr.indptr),
                             shape=csr.shape) if csr.nnz and n_users == 1 else csr
    if fmt == "lil":
        return sp.lil_matrix(dense)
    if fmt == "dok":
        return sp.dok_matrix(dense)
    if fmt == "int":
        return np.minimum(dense, 2**31 - 1).astype(np.int32)
    if fmt == "f32":
        with np.errstate(over="ignore"):
            return dense.astype(np.float32)
    if fmt == "bool":
        return dense > 0
    if fmt == "list":
        return dense.tolist()
    if fmt == "csr_array":
        return sp.csr_array(dense)
    if fmt == "zeros":  # explicitly stored zeros
        coo = sp.coo_matrix(dense)
        return sp.csr_matrix((np.zeros(coo.nnz), (coo.row, coo.col)), shape=dense.shape)
    return dense


@st.composite
def corrupted_matrices(draw, n_items=None):
    X = np.asarray(sp.csr_matrix(draw(valid_matrices(n_items))).toarray(), dtype=float)
    how = draw(st.sampled_from(["nan", "inf", "-inf", "neg", "1d", "3d", "no_rows", "no_cols",
                                "complex", "strings", "objects", "none_inside", "f16_overflow"]))
    if how in ("nan", "inf", "-inf", "neg"):
        X = X.copy()
        X.flat[draw(st.integers(0, X.size - 1))] = {"nan": np.nan, "inf": np.inf,
                                                    "-inf": -np.inf, "neg": -1.0}[how]
        return sp.csr_matrix(X) if draw(st.booleans()) else X
    if how == "1d":
        return X[0]
    if how == "3d":
        return X[None]
    if how == "no_rows":
        return sp.csr_matrix((0, X.shape[1]))
    if how == "no_cols":
        return np.zeros((X.shape[0], 0))
    if how == "complex":
        return X + 1j
    if how == "strings":
        return X.astype(str)
    if how == "objects":
        out = X.astype(object)
        out.flat[0] = {"a": 1}
        return out
    if how == "none_inside":
        out = X.astype(object)
        out.flat[0] = None
        return out
    with np.errstate(over="ignore"):
        return np.full(X.shape, 6e4, dtype=np.float16) * 10  # inf in float16


def _log_frame():
    return pd.DataFrame({"user": [1, 1, 2], "item": [3, 4, 3], "time": [1.0, 2.0, 3.0]})


NOT_MATRICES = st.sampled_from([
    None, "X", b"bytes", 3, 2.5, {}, [], [[]], [(0, 1, 2), (1, 2, 3)], ((1, 0), (0, 1)),
    {"user": [1], "item": [2]}, object(), np.array("x"), np.array(3.0),
]) | st.builds(_log_frame) | st.builds(lambda: _log_frame()["item"]) | st.builds(
    lambda: pd.DataFrame(np.eye(N_ITEMS)[:3])
)


def matrices(n_items=None):
    """Valid matrices three times out of four, bad ones otherwise."""
    return _mostly(valid_matrices(n_items), corrupted_matrices(n_items) | NOT_MATRICES)


def _shape(X) -> tuple[int, int] | None:
    """The 2-D shape of ``X`` if it has one (to draw matching targets)."""
    try:
        shape = X.shape if sp.issparse(X) else np.shape(X)
    except Exception:  # ragged lists and the like
        return None
    return tuple(shape) if len(shape) == 2 else None


def targets(n_rows=None, n_items=N_ITEMS):
    """Held-out items for ``n_rows`` users: mostly None or valid, sometimes wrong."""
    rows = N_USERS if n_rows is None else n_rows
    one_d = st.lists(st.integers(-3, N_ITEMS + 2), min_size=0, max_size=rows + 1).map(np.array)
    in_range = st.lists(st.integers(-1, n_items - 1), min_size=rows, max_size=rows)
    good = st.none() | valid_matrices(n_items, n_users=rows) | in_range.map(np.array)
    bad = one_d | valid_matrices(n_items) | NOT_MATRICES | st.sampled_from(
        [np.full(rows, np.nan), np.full(rows, 1.5), np.array(["a"] * rows),
         np.zeros((rows, 2)), "y", 3])
    return _mostly(good, bad)


KS = _mostly(st.integers(1, 12), st.integers(-2, 0) | st.sampled_from(
    [2.5, "3", None, True, np.int64(4), np.nan, [3], 10**4]))
BATCH = _mostly(st.none() | st.integers(1, 9), st.integers(-2, 0) | st.sampled_from(
    [2.5, "8", True, np.int32(2), 0.0]))
ITEMS = _mostly(
    st.none() | st.lists(st.integers(0, N_ITEMS - 1), max_size=8).map(np.array)
    | st.lists(st.booleans(), min_size=N_ITEMS, max_size=N_ITEMS).map(np.array),
    st.lists(st.integers(-2, N_ITEMS + 1), max_size=8).map(np.array)
    | st.lists(st.booleans(), min_size=N_ITEMS - 1, max_size=N_ITEMS + 1).map(np.array)
    | st.sampled_from([np.array([1.0, 2.0]), np.array(["a"]), np.zeros((2, 2), dtype=int),
                       "items", 3, [True, 1]]),
)
BOOLS = st.booleans()


# ------------------------------------------------------------------------------ known bugs
#: Bugs found by the sweep and not fixed yet: name -> (predicate on the sweep's inputs, reason).
#: Each gets an xfail reproduction at the end; the sweep skips its inputs. Empty: every finding
#: so far is fixed and has a regression test below.
KNOWN_BUGS: dict = {}


def _is_known_bug(name: str, call: str, **kw) -> bool:
    """Inputs that hit a bug listed in KNOWN_BUGS (out of this sweep's files): skipped."""
    return any(predicate(name, call, kw) for predicate, _ in KNOWN_BUGS.values())


# ------------------------------------------------------------------------------ fixtures
def _training_matrix():
    rng = np.random.default_rng(0)
    X = np.argsort(rng.random((N_USERS, N_ITEMS)), axis=1) + 1.0
    X[rng.random(X.shape) < 0.3] = 0.0
    X[:, 0] = np.where(X[:, 0] == 0, 7.0, X[:, 0])  # every user has an interaction
    return sp.csr_matrix(X)


@pytest.fixture(scope="module")
def fitted():
    X = _training_matrix()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: make().fit(X) for name, make in TINY.items()}


# ------------------------------------------------------------------------------ estimators
@pytest.mark.parametrize("name", list(TINY))
@SETTINGS
@given(data=st.data())
def test_fit_with_bad_data(name, data):
    X = data.draw(matrices(), label="X")
    shape = _shape(X) or (N_USERS, N_ITEMS)
    y = data.draw(targets(shape[0], max(shape[1], 1)), label="y")
    est = TINY[name]()
    assume(not _is_known_bug(name, "fit", X=X, y=y))
    refuse = _is_table(X) or _is_table(y)
    if check_call(est.fit, X, y, refuse=refuse) is not None:
        check_scores(check_call(est.predict_scores, sp.csr_matrix((2, est.n_features_in_))))


BAD_VALUES = st.sampled_from([-1, 0, 1, 2, 0.5, 1.5, -0.5, np.inf, -np.inf, np.nan, 1e300,
                              "x", None, True, False, [], (1, 2), {"a": 1}])
#: Hyper-parameters left out of the sweep, with the reason.
SKIP_PARAMS = {
    "device": "device validation belongs to the trainer refactor (issue 13, lead)",
    "verbose": "verbose validation belongs to the trainer refactor (issue 13, lead)",
}


@pytest.mark.parametrize("name", [n for n in TINY if n != "Popularity"])  # it has none
@SETTINGS
@given(data=st.data())
def test_fit_with_bad_hyper_parameters(name, data):
    est = TINY[name]()
    params = sorted(p for p in est.get_params() if p not in SKIP_PARAMS)
    param = data.draw(st.sampled_from(params))
    value = data.draw(BAD_VALUES)
    est.set_params(**{param: value})
    assume(not _is_known_bug(name, "param", param=param, value=value))
    X = _training_matrix()
    if check_call(est.fit, X) is not None:
        check_scores(check_call(est.predict_scores, X))
        check_rankings(check_call(est.recommend, X, 3))


@pytest.mark.parametrize("name", list(TINY))
@SETTINGS
@given(X=matrices(N_ITEMS), k=KS, filter_seen=BOOLS, items=ITEMS, batch_size=BATCH)
def test_recommend_and_predict(fitted, name, X, k, filter_seen, items, batch_size):
    est = fitted[name]
    assume(not _is_known_bug(name, "recommend", X=X, k=k, items=items, batch_size=batch_size))
    refuse = _is_table(X)
    out = check_call(est.recommend, X, k, filter_seen=filter_seen, items=items,
                     batch_size=batch_size, refuse=refuse)
    check_rankings(out)
    if out is not None and filter_seen:
        seen = sp.csr_matrix(np.asarray(sp.csr_matrix(X).toarray(), dtype=float))
        for u, row in enumerate(out[0]):
            assert not set(row[row >= 0]) & set(seen[u].indices), "a seen item recommended"
    check_call(est.predict, X, k, filter_seen=filter_seen, refuse=refuse)
    out = check_call(est.predict_scores, X, filter_seen=filter_seen, batch_size=batch_size,
                     refuse=refuse)
    if out is not None:
        assert out.shape[1] == N_ITEMS
        check_scores(out)


@pytest.mark.parametrize("name", list(TINY))
@SETTINGS
@given(data=st.data(), k=KS)
def test_score(fitted, name, data, k):
    X = data.draw(matrices(N_ITEMS), label="X")
    y = data.draw(targets((_shape(X) or (N_USERS,))[0]), label="y")
    refuse = _is_table(X) or _is_table(y)
    out = check_call(fitted[name].score, X, y, k, refuse=refuse)
    assert out is None or np.isnan(out) or 0.0 <= out <= 1.0


@pytest.mark.parametrize("name", [n for n in TINY if n != "Popularity"])
@SETTINGS
@given(item_ids=ITEMS | st.integers(-2, N_ITEMS + 1), k=KS, filter_self=BOOLS, items=ITEMS,
       batch_size=BATCH)
def test_similar_items(fitted, name, item_ids, k, filter_self, items, batch_size):
    out = check_call(fitted[name].similar_items, item_ids, k, filter_self=filter_self,
                     items=items, batch_size=batch_size)
    check_rankings(out)


def test_popularity_similar_items_is_a_clear_attribute_error(fitted):
    with pytest.raises(AttributeError):
        fitted["Popularity"].similar_items([0])


@pytest.mark.parametrize("name", ["Seq", "AE"])
@SETTINGS
@given(data=st.data())
def test_partial_fit(fitted, name, data):
    X = data.draw(matrices(N_ITEMS), label="X")
    y = data.draw(targets((_shape(X) or (N_USERS,))[0]), label="y")
    est = copy.deepcopy(fitted[name])
    assume(not _is_known_bug(name, "partial_fit", X=X, y=y))
    check_call(est.partial_fit, X, y)


@pytest.mark.parametrize("name", ["Seq", "AE"])
@SETTINGS
@given(amount=BAD_VALUES | st.floats(0, 0.99), method=st.sampled_from(
    ["structured", "magnitude", "random", None, 3]), X=st.none() | matrices(N_ITEMS),
    targets_=st.sampled_from([None, ("heads",), ("ffn",), ("embedding",), ("hidden",),
                              ("latent",), ("nope",), "heads", ()]),
    importance=st.sampled_from(["auto", "weight", "taylor", "x", None]),
    fine_tune_epochs=st.sampled_from([0, 1, -1, 1.5, None]))
def test_prune(fitted, name, amount, method, X, targets_, importance, fine_tune_epochs):
    est = copy.deepcopy(fitted[name])
    kw = dict(method=method, X=X, targets=targets_, importance=importance,
              fine_tune_epochs=fine_tune_epochs)
    assume(not _is_known_bug(name, "prune", amount=amount, **kw))
    check_call(est.prune_, amount, **kw)


# ------------------------------------------------------------------------------ functions
METRICS = [skm.ndcg_at_k, skm.recall_at_k, skm.precision_at_k, skm.hit_rate_at_k, skm.mrr_at_k]
RANKINGS = (
    st.lists(st.lists(st.integers(-2, N_ITEMS + 1), min_size=3, max_size=3), min_size=0,
             max_size=N_USERS + 1).map(lambda r: np.array(r, dtype=np.int64).reshape(-1, 3))
    | st.sampled_from([np.zeros((N_USERS, 0), dtype=int), np.full((N_USERS, 3), 1.5),
                       np.ones(N_USERS, dtype=int), None, "y_pred", [[1, 2], [3]]])
    | NOT_MATRICES
)


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@SETTINGS
@given(y_true=targets(), y_pred=RANKINGS, k=KS, average=BOOLS)
def test_metrics(metric, y_true, y_pred, k, average):
    out = check_call(metric, y_true, y_pred, k, average=average)
    if out is not None and average:
        assert np.isnan(out) or 0.0 <= out <= 1.0


@SETTINGS
@given(y_pred=RANKINGS, n_items=KS, k=KS)
def test_coverage(y_pred, n_items, k):
    out = check_call(skm.coverage, y_pred, n_items, k)
    assert out is None or 0.0 <= out <= 1.0


NAMES = st.sampled_from(["ndcg@10", "recall@0", "map@3", "ndcg@-1", "@3", "coverage", "",
                         "hit_rate@x", None, 3, ["ndcg@10", "ndcg@10"], [], ["mrr@2"],
                         ("recall@5", "ndcg")])


@SETTINGS
@given(name=NAMES, k=KS)
def test_scorer_factories(name, k):
    check_call(skm.get_rec_scorer, name)
    check_call(skm.make_rec_scorer, name, k)
    check_call(skm.make_scorers, name)


SPLIT_ARGS = st.sampled_from([0.2, 0.0, 1.0, 1, 2, -1, 0.5, np.nan, "0.3", None, 10**6, True])


@SETTINGS
@given(X=matrices(), n_last=KS, test_size=SPLIT_ARGS, fold_in=SPLIT_ARGS,
       seed=st.sampled_from([0, None, -1, "x", 2**40]), ordered=BOOLS,
       cut=st.sampled_from([None, 2.0, np.inf, np.nan, "t", 1e9]))
def test_splitters(X, n_last, test_size, fold_in, seed, ordered, cut):
    refuse = _is_table(X)
    check_call(skms.leave_last_out_split, X, n_last, refuse=refuse)
    check_call(skms.user_holdout_split, X, test_size=test_size, fold_in_size=fold_in,
               random_state=seed, ordered=ordered)
    check_call(skms.random_holdout_split, X, test_size=test_size, random_state=seed)
    check_call(skms.temporal_split, X, cut=cut)
    check_call(skms.temporal_split, X, test_size=test_size)


@SETTINGS
@given(data=st.data(), metrics=NAMES, fit=BOOLS,
       estimators=st.sampled_from(["list", "dict", "one", "empty", "junk", "unfitted"]))
def test_evaluate(fitted, data, metrics, fit, estimators):
    X = data.draw(matrices(N_ITEMS), label="X")
    y = data.draw(targets((_shape(X) or (N_USERS,))[0]), label="y")
    models = {
        "list": lambda: [copy.deepcopy(fitted["EASE"]), copy.deepcopy(fitted["Markov"])],
        "dict": lambda: {"pop": copy.deepcopy(fitted["Popularity"])},
        "one": lambda: copy.deepcopy(fitted["EASE"]),
        "empty": lambda: [],
        "junk": lambda: {"x": 3},
        "unfitted": lambda: [EASERecommender()],
    }[estimators]()
    check_call(skms.evaluate, models, X, y, metrics=metrics, fit=fit)


# ------------------------------------------------------------------------------ the encoder
IDS = st.sampled_from([
    ["a", "b"], [1, 2], [1.5, np.nan], [None, "a"], [], np.array([["a"]]), "a", 3,
    pd.Series(["a", "c"]), [("a", 1)], [{"x": 1}], np.array([1, 2], dtype=object),
])


@st.composite
def logs(draw):
    n = draw(_mostly(st.integers(1, 6), st.just(0)))
    good = draw(st.integers(0, 3)) > 0  # three logs out of four have valid columns
    users = draw(st.sampled_from([["a", "b", "c"], [1, 2, 3]] if good else [
        [1.0, np.nan, 2.0], [None, "a", "b"], [1, "a", 2.5]]))
    items = draw(st.sampled_from([[10, 20, 30], ["x", "y", "z"]] if good else [
        [np.nan, 1.0, 2.0], [1, "x", 2]]))
    times = draw(st.sampled_from(
        [[1, 2, 3], [5, 5, 5], list(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-02"]))]
        if good else [[0, -1, 5], [np.nan, 1, 2], ["t", "u", "v"],
                      list(pd.to_datetime(["2024-01-01", "2024-01-02", None]))]))
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    pick = rng.integers(0, 3, size=(3, n))
    frame = pd.DataFrame({
        "user": [users[i] for i in pick[0]],
        "item": [items[i] for i in pick[1]],
        "time": [times[i] for i in pick[2]],
        "w": rng.integers(0 if good else -1, 3, n),
    })
    how = draw(_mostly(st.sampled_from(["frame", "dict"]), st.sampled_from(
        ["dup_cols", "missing_col", "not_a_log", "ragged"])))
    if how == "dict":
        return {c: frame[c].to_numpy() for c in frame.columns}
    if how == "dup_cols":
        return frame.rename(columns={"w": "user"})
    if how == "missing_col":
        return frame.drop(columns=["item"])
    if how == "not_a_log":
        return draw(NOT_MATRICES)
    if how == "ragged":
        return {"user": frame["user"].to_numpy(), "item": frame["item"].to_numpy()[:-1],
                "time": frame["time"].to_numpy()}
    return frame


ENCODER_PARAMS = _mostly(
    st.sampled_from([{}, {"time_col": "time"}, {"values": "ones"},
                     {"time_col": "time", "values": "timestamp"},
                     {"weight_col": "w", "values": "weight"}]),
    st.fixed_dictionaries({
        "time_col": st.sampled_from([None, "time", "missing", "user"]),
        "weight_col": st.sampled_from([None, "w", "missing"]),
        "values": st.sampled_from(["order", "timestamp", "weight", "ones", "bogus", None]),
        "user_col": st.sampled_from(["user", "item", 0]),
    }),
)


@SETTINGS
@given(params=ENCODER_PARAMS, log=logs(), other=logs(), users=st.none() | IDS, ids=IDS,
       indices=st.sampled_from([[0, -1], [5, 1], [1.5], ["a"], [-2], np.array([[0]]), [],
                                [np.nan]]),
       k=KS)
def test_encoder(fitted, params, log, other, users, ids, indices, k):
    enc = InteractionEncoder(**params)
    check_call(enc.fit, log)
    X = check_call(enc.fit_transform, log)
    if not hasattr(enc, "items_"):
        return
    check_call(enc.transform, other, users=users)
    check_call(enc.transform_items, ids)
    check_call(enc.transform_users, ids, handle_unknown="ignore")
    check_call(enc.inverse_transform_items, indices, fill_value="?")
    check_call(enc.inverse_transform_users, indices)
    if X is not None:
        check_call(enc.inverse_transform, X)
        model = EASERecommender(l2=1.0).fit(X)
        check_call(enc.recommend, model, other, users=users, k=k, items=ids)
        check_call(enc.similar_items, model, ids, k=k, items=ids)
    check_call(enc.recommend, fitted["EASE"], log, k=k)  # a model of another catalogue


# ------------------------------------------------------------------------------ the rest
@SETTINGS
@given(n_users=KS, n_items=KS, mean_length=KS | st.sampled_from([0.5, np.inf]),
       seed=st.sampled_from([0, None, "x", -3]))
def test_make_interactions(n_users, n_items, mean_length, seed):
    check_call(make_interactions, n_users=n_users, n_items=n_items, mean_length=mean_length,
               random_state=seed)


def test_loaders_with_bad_paths(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\tthree\n")
    (tmp_path / "garbage.zip").write_bytes(b"PK not a zip")
    (tmp_path / "items.tsv").write_text("nothing\n")
    for path in (tmp_path, tmp_path / "nope", tmp_path / "garbage.zip", tmp_path / "u.data"):
        for loader in (load_movielens, load_movielens_titles):
            check_call(loader, path, allow=(FileNotFoundError,))
    for bad in (None, 3):
        check_call(load_movielens_titles, bad)


@SETTINGS
@given(history=st.sampled_from([None, [], [{"loss": 1.0}], [1, 2], "history", {},
                                [{"epoch": 1, "loss": np.nan}], [{"loss": "x"}]]),
       metrics=st.sampled_from([None, "loss", [], ["nope"], [3], "val_ndcg@10"]))
def test_plotting(history, metrics):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skrec.plotting import history_frame, plot_history

    check_call(history_frame, history)
    check_call(plot_history, history, metrics=metrics)
    plt.close("all")


# ------------------------------------------------------------------------------ known bugs
@pytest.mark.parametrize("Est", [SeqRecommender, AERecommender])
def test_fit_raises_when_the_last_step_diverges(Est):
    """Fixed finding: a finite loss whose update makes the weights non-finite."""
    X = _training_matrix()  # 8 users: one optimizer step per epoch
    est = TINY["Seq" if Est is SeqRecommender else "AE"]().set_params(learning_rate_init=1e300)
    with pytest.raises(FloatingPointError, match="weights became non-finite"):
        est.fit(X)


# ------------------------------------------------------------------------------ module level
@SETTINGS
@given(amount=BAD_VALUES | st.floats(0, 0.99), seq_len=st.sampled_from([None, 0, 3, -1, 2.5, "x"]),
       which=st.sampled_from(["Seq", "AE", "not a module"]),
       targets_=st.sampled_from([None, ("heads",), ("hidden",), ("nope",), "ffn"]))
def test_pruning_functions(fitted, amount, seq_len, which, targets_):
    from skrec.pruning import magnitude_prune, model_summary, pruning_groups, structured_prune

    module = copy.deepcopy(fitted[which].module_) if which != "not a module" else object()
    check_call(pruning_groups, module)
    if not _is_known_bug(which, "pruning_function"):
        check_call(model_summary, module, seq_len=seq_len)
    if not _is_known_bug(which, "pruning_amount", amount=amount):
        check_call(structured_prune, copy.deepcopy(module), amount, targets=targets_)
        if not _is_known_bug(which, "pruning_function"):
            check_call(magnitude_prune, copy.deepcopy(module), amount)


@SETTINGS
@given(value=st.sampled_from(["cpu", "auto", None, "gpu", "cuda:x", 3, -1, 2.5, [], "fp32",
                              "bf16", "fp8", "AUTO"]))
def test_device_and_precision_resolution(value, tmp_path_factory):
    import torch

    from skrec.datasets import fetch_movielens, get_data_home
    from skrec.training import resolve_device, resolve_precision

    check_call(resolve_device, value)
    check_call(resolve_precision, value, torch.device("cpu"))
    home = tmp_path_factory.mktemp("data")
    with contextlib.chdir(home):  # a relative value ("gpu") is a folder it creates
        check_call(get_data_home, value if value not in ("cpu", "auto", None) else home,
                   allow=(OSError,))
    check_call(fetch_movielens, value, data_home=home, download_if_missing=False,
               allow=(FileNotFoundError,))


@pytest.mark.parametrize("func", ["model_summary", "magnitude_prune"])
def test_pruning_functions_on_a_non_module(func):
    import skrec.pruning

    args = (object(),) if func == "model_summary" else (object(), 0.5)
    with pytest.raises(TypeError):
        getattr(skrec.pruning, func)(*args)


@pytest.mark.parametrize("amount", [np.inf, 2.0, np.nan, -1.0])
@pytest.mark.parametrize("func", ["structured_prune", "magnitude_prune"])
def test_module_level_pruning_amount(fitted, func, amount):
    import skrec.pruning

    with pytest.raises(ValueError, match="amount"):
        getattr(skrec.pruning, func)(copy.deepcopy(fitted["Seq"].module_), amount)
