"""Click-prediction data: the Frappe_x1 files, and a synthetic Criteo-like impression stream."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._local import find_local_data

__all__ = ["iter_ctr_chunks", "load_frappe", "make_ctr"]

FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost",
                 "weather", "country", "city")
_FRAPPE_SPLITS = ("train", "valid", "test")


def find_frappe(*, search_from: str | os.PathLike | None = None,
                instead: str | None = None) -> Path | None:
    """The Frappe folder already on this machine (no download), for :func:`load_frappe`.

    Looked up as :func:`find_movielens` looks (``$SKREC_DATA_DIR``, the skrec data cache,
    a ``shared/data/frappe`` folder next to any parent of ``search_from``), for a ``frappe``
    folder holding ``x1/train.csv``. Frappe has no official download: build the Frappe_x1
    split from the BARS benchmark's files (see :func:`load_frappe`).

    Parameters
    ----------
    search_from : str or path-like, default=None
        Where the upward search for ``shared/data`` starts (an example passes its own
        ``__file__``); the working directory when ``None``.
    instead : str, default=None
        What the caller uses when the data are not found (e.g. ``"synthetic impressions"``):
        then a banner on standard output and a ``UserWarning`` say so loudly, so that numbers
        computed on the substitute are never mistaken for Frappe ones.

    Returns
    -------
    path : pathlib.Path or None
        The ``frappe`` folder (pass it to :func:`load_frappe`), or ``None``.
    """
    found = find_local_data("frappe", "x1/train.csv", search_from=search_from, instead=instead,
                            label="Frappe",
                            how_to_get="Put the BARS Frappe_x1 files in a frappe/x1 folder")
    return found


def load_frappe(path: str | os.PathLike, *, as_frame: bool = True) -> Bunch:
    """Load the Frappe_x1 click-prediction split (train / valid / test CSV files).

    Frappe (Baltrunas et al., 2015) is a context-aware log of mobile app usage; Frappe_x1 is
    the split of the NFM and AFN papers and of the BARS benchmark: each row is one impression
    (user, app, and 8 context fields), labelled 1 (the app was used) or 0 (a sampled negative).

    Parameters
    ----------
    path : str or path-like
        The folder holding ``train.csv``, ``valid.csv`` and ``test.csv`` (header ``label,user,
        item,daytime,weekday,isweekend,homework,cost,weather,country,city``), or a folder
        holding such an ``x1/`` folder.
    as_frame : bool, default=True
        Return the features as pandas DataFrames of integer columns (pandas needed); with
        ``False``, as int64 arrays of shape ``(n_samples, 10)``.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X_train``, ``y_train``, ``X_valid``, ``y_valid``, ``X_test``, ``y_test`` (labels as
        int64 arrays of 0/1), ``feature_names`` (the 10 fields) and ``DESCR``. Values are the
        files' global feature ids (each field's ids one range after the other), so every
        column is a categorical field.

    Raises
    ------
    FileNotFoundError
        When a file is missing.
    ValueError
        When a file has another header or non-integer values.
    """
    folder = Path(path)
    if not (folder / "train.csv").is_file() and (folder / "x1" / "train.csv").is_file():
        folder = folder / "x1"
    out = Bunch(feature_names=list(FRAPPE_FIELDS))
    header = "label," + ",".join(FRAPPE_FIELDS)
    for split in _FRAPPE_SPLITS:
        file = folder / f"{split}.csv"
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found; expected the Frappe_x1 files "
                                    "train.csv, valid.csv and test.csv.")
        with open(file, encoding="utf-8") as fh:
            first = fh.readline().strip()
        if first != header:
            raise ValueError(f"{file} has the header {first!r}; expected {header!r}.")
        try:
            arr = np.loadtxt(file, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
        except ValueError as exc:
            raise ValueError(f"{file} holds non-integer values: {exc}") from None
        if arr.shape[1] != len(FRAPPE_FIELDS) + 1:
            raise ValueError(f"{file} has {arr.shape[1]} columns; expected 11.")
        y, X = arr[:, 0], arr[:, 1:]
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"{file} has labels other than 0 and 1.")
        if as_frame:
            import pandas as pd

            X = pd.DataFrame(X, columns=list(FRAPPE_FIELDS))
        out[f"X_{split}"], out[f"y_{split}"] = X, y
    out["DESCR"] = (
        "Frappe_x1 (Baltrunas, Church, Karatzoglou, Oliver 2015; the BARS benchmark split): "
        "impressions of mobile apps in context, 2 sampled negatives per positive. Research "
        "use with acknowledgement only, no redistribution, no commercial use.")
    return out


# ---------------------------------------------------------------------------------------------
# Synthetic Criteo-like impressions
# ---------------------------------------------------------------------------------------------

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * _M1
        h = h ^ (h >> np.uint64(27))
        h = h * _M2
        return h ^ (h >> np.uint64(31))


def _hash_normal(*keys: np.ndarray | int) -> np.ndarray:
    """A standard normal value that is a fixed function of the integer ``keys`` (no table)."""
    with np.errstate(over="ignore"):
        h = np.uint64(0x9E3779B97F4A7C15)
        for k in keys:
            h = _mix(np.asarray(k).astype(np.int64).view(np.uint64) ^ (h * np.uint64(31)))
        u1 = ((h >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
        u2 = ((_mix(h) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


class _CTRWorld:
    """The fixed generative story: cardinalities, skews, effects, interactions, bias."""

    def __init__(self, seed: int, n_categorical: int, n_numeric: int, max_cardinality: int,
                 click_rate: float):
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.n_cat, self.n_num = n_categorical, n_numeric
        self.cards = np.unique(np.geomspace(3, max_cardinality, n_categorical).round()).astype(
            np.int64)
        if self.cards.size < n_categorical:  # tiny max_cardinality: repeat sizes
            self.cards = np.resize(self.cards, n_categorical)
        rng.shuffle(self.cards)
        self.skew = rng.uniform(1.5, 4.0, n_categorical)  # larger = more mass on few values
        self.main = rng.uniform(0.3, 0.8, n_categorical) / np.sqrt(n_categorical / 8)
        n_pairs = max(1, n_categorical // 3)
        self.pairs = np.array([rng.choice(n_categorical, 2, replace=False)
                               for _ in range(n_pairs)])
        self.pair_scale = 0.6 / np.sqrt(n_pairs / 4)
        self.num_w = rng.normal(0, 0.4, n_numeric)
        self.num_mu = rng.uniform(0, 3, n_numeric)
        self.num_nan = rng.uniform(0, 0.2, n_numeric)
        self.bias = 0.0
        # the bias that gives the wanted click rate, on a sample of the stream
        logit = self._logit(*self._features(np.random.default_rng([seed, 2**31]), 50_000))
        lo, hi = -20.0, 20.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if (1 / (1 + np.exp(-(logit + mid)))).mean() > click_rate:
                hi = mid
            else:
                lo = mid
        self.bias = (lo + hi) / 2

    def _features(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        u = rng.random((n, self.n_cat))
        cat = np.minimum((self.cards * u ** self.skew).astype(np.int64), self.cards - 1)
        num = rng.lognormal(self.num_mu, 1.0, (n, self.n_num)).round()
        num[rng.random((n, self.n_num)) < self.num_nan] = np.nan
        return cat, num

    def _logit(self, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
        f = np.arange(self.n_cat)
        z = (self.main * _hash_normal(self.seed, f, cat)).sum(axis=1)
        for a, b in self.pairs:
            z += self.pair_scale * _hash_normal(self.seed + 1, a * 1000 + b, cat[:, a],
                                                cat[:, b])
        lnum = np.nan_to_num(np.log1p(num), nan=0.0)
        z += (lnum - self.num_mu) @ self.num_w
        if self.n_num:
            z += 0.5 * np.sin(lnum[:, 0])
        return z + self.bias

    def chunk(self, index: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        cat, num = self._features(rng, n)
        p = 1 / (1 + np.exp(-self._logit(cat, num)))
        y = (rng.random(n) < p).astype(np.int64)
        return cat, num, y


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


def _seed(random_state) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().entropy % 2**31)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    raise ValueError(f"random_state must be None or an int; got {random_state!r}.")


def _output(cat: np.ndarray, num: np.ndarray, y: np.ndarray, as_frame: bool):
    names_c = [f"C{i + 1}" for i in range(cat.shape[1])]
    names_n = [f"I{i + 1}" for i in range(num.shape[1])]
    if as_frame:
        import pandas as pd

        X = pd.DataFrame(dict(zip(names_c, cat.T)) | dict(zip(names_n, num.T)))
    else:
        X = np.hstack([cat.astype(np.float64), num])
    return Bunch(X=X, y=y, categorical=names_c if as_frame else list(range(cat.shape[1])),
                 numeric=names_n if as_frame else list(range(cat.shape[1], X.shape[1])))


def _world(n_categorical, n_numeric, max_cardinality, click_rate, random_state) -> _CTRWorld:
    n_categorical = _check_int(n_categorical, "n_categorical", 1)
    n_numeric = _check_int(n_numeric, "n_numeric", 0)
    max_cardinality = _check_int(max_cardinality, "max_cardinality", 3)
    if not isinstance(click_rate, numbers.Real) or not 0 < click_rate < 1:
        raise ValueError(f"click_rate must be in (0, 1); got {click_rate!r}.")
    return _CTRWorld(_seed(random_state), n_categorical, n_numeric, max_cardinality,
                     float(click_rate))


def make_ctr(n_samples: int = 100_000, *, n_categorical: int = 26, n_numeric: int = 13,
             max_cardinality: int = 1_000_000, click_rate: float = 0.03, as_frame: bool = False,
             random_state=None) -> Bunch:
    """Synthetic Criteo-like impressions with a planted, learnable click signal.

    Categorical fields have cardinalities spread geometrically from 3 to
    ``max_cardinality`` and skewed (power-law) value frequencies, so a few values of each field
    are frequent and most are rare; numeric fields are heavy-tailed counts with missing values
    (NaN). The click log-odds are a sum of per-value effects of every categorical field,
    pairwise interactions of a third of the fields (pairs of values), a linear and a
    non-linear effect of the log counts, and a bias set so that about ``click_rate`` of the
    impressions are clicks. The effects are fixed functions of the values (hashes), so the
    world costs no memory whatever the cardinalities, and :func:`iter_ctr_chunks` streams more
    impressions of the same world.

    Parameters
    ----------
    n_samples : int, default=100_000
        Number of impressions.
    n_categorical : int, default=26
        Categorical fields (``C1..``), integer ids ``0 .. cardinality - 1``.
    n_numeric : int, default=13
        Numeric fields (``I1..``), float counts with NaN.
    max_cardinality : int, default=1_000_000
        Cardinality of the largest field.
    click_rate : float, default=0.03
        Target share of clicks.
    as_frame : bool, default=False
        A pandas DataFrame (integer categorical columns, float numeric columns) instead of one
        float64 array ``(n_samples, n_categorical + n_numeric)`` (categorical codes first).
    random_state : int, default=None
        Seed of the world and of the draws.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``X``, ``y`` (int64 0/1), ``categorical`` and ``numeric`` (the columns of each kind:
        names for a frame, indices for an array: pass them as ``FieldEncoder(numeric=...)``).
    """
    n_samples = _check_int(n_samples, "n_samples", 1)
    world = _world(n_categorical, n_numeric, max_cardinality, click_rate, random_state)
    cat, num, y = world.chunk(0, n_samples)
    return _output(cat, num, y, as_frame)


def iter_ctr_chunks(n_samples: int, chunk_size: int = 100_000, *, n_categorical: int = 26,
                    n_numeric: int = 13, max_cardinality: int = 10_000_000,
                    click_rate: float = 0.03, as_frame: bool = False,
                    random_state=None) -> Iterator[Bunch]:
    """Stream ``n_samples`` synthetic impressions in chunks, with bounded memory.

    The chunks are impressions of one world (see :func:`make_ctr`): chunk ``i`` is drawn with
    the seed ``(random_state, i + 1)``, so a stream is reproducible and any chunk can be
    regenerated alone. Memory is that of one chunk, whatever ``n_samples``.

    Parameters
    ----------
    n_samples : int
        Total impressions (the last chunk may be shorter).
    chunk_size : int, default=100_000
        Impressions per chunk.
    n_categorical, n_numeric, max_cardinality, click_rate, as_frame, random_state
        As in :func:`make_ctr` (``max_cardinality`` defaults to 10^7 here).

    Yields
    ------
    chunk : sklearn.utils.Bunch
        As returned by :func:`make_ctr`.
    """
    n_samples = _check_int(n_samples, "n_samples", 1)
    chunk_size = _check_int(chunk_size, "chunk_size", 1)
    world = _world(n_categorical, n_numeric, max_cardinality, click_rate, random_state)
    for i, start in enumerate(range(0, n_samples, chunk_size)):
        cat, num, y = world.chunk(i + 1, min(chunk_size, n_samples - start))
        yield _output(cat, num, y, as_frame)
