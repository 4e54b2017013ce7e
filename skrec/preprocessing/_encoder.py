"""InteractionEncoder: an event log to the user x item matrix of the data contract, and back."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._validation import check_interactions
from ._columns import (
    _VALUES,
    _as_frame,
    _column_names,
    _get_column,
    _ids,
    _looks_like_time,
    _numeric,
    _users_out_of_order,
)
from ._ids import _as_1d_ids, _decode_ids, _encode_ids, _IdIndex, _unique_sorted
from ._model_methods import ModelMethods


class InteractionEncoder(ModelMethods, TransformerMixin, BaseEstimator,
                         auto_wrap_output_keys=None):
    """Encode an event log (one row per event) as a user x item CSR interaction matrix.

    Rows of the output are users and columns are items, as in the rest of skrec. Each stored
    value is > 0 and, by default, gives the **order** of the interaction in the user's history
    (1 = first, n = last), which is what sequence models read.

    Parameters
    ----------
    user_col : hashable, default="user"
        Column holding the user ids.
    item_col : hashable, default="item"
        Column holding the item ids.
    time_col : hashable, default=None
        Column holding the event times: numbers (such as Unix seconds) or ``datetime64``
        (converted to float Unix seconds; tz-aware pandas columns are converted to UTC). When
        ``None``, events are ordered by their row position in the log.
    weight_col : hashable, default=None
        Column holding non-negative event weights, used when ``values="weight"``.
    values : {"order", "timestamp", "weight", "ones"}, default="order"
        What the stored values are:

        - ``"order"``: positions 1..n within each user, ordered by ``time_col`` and then by the
          event's row position in the log (a stable sort: ties keep the log's order); without
          ``time_col``, by row position alone.
        - ``"timestamp"``: the raw ``time_col`` value (must be > 0, since a stored value of 0
          is not an interaction).
        - ``"weight"``: ``weight_col``, summed over repeated (user, item) events.
        - ``"ones"``: 1.0 for every (user, item) pair.

    Attributes
    ----------
    users_ : ndarray of shape (n_users_,)
        Sorted unique user ids seen in :meth:`fit` (``np.unique``); row ``i`` of
        :meth:`transform`'s default output is user ``users_[i]``.
    items_ : ndarray of shape (n_items_,)
        Item ids in column order: column ``j`` is item ``items_[j]``. The distinct items seen
        in :meth:`fit`, sorted, then those added by :meth:`add_items`, in the order added.
    n_users_ : int
        Number of users seen in :meth:`fit`.
    n_items_ : int
        Number of items (the number of columns of every output): those seen in :meth:`fit`
        and those added by :meth:`add_items`.
    n_events_ : int
        Number of events (rows of the log) seen in :meth:`fit`.

    See Also
    --------
    skrec.datasets.load_movielens : builds MovieLens matrices through this encoder.

    Notes
    -----
    A CSR matrix cannot hold the same (user, item) pair twice. With ``values="order"`` or
    ``"timestamp"``, a repeated consumption keeps only its **last** occurrence (latest time,
    then latest row), and the orders 1..n count the distinct items kept, so each row's values
    are a permutation of ``1..nnz``. With ``"weight"`` the weights of repeats are summed; with
    ``"ones"`` the pair is stored once.

    Everything is vectorised (``np.lexsort``, ``np.searchsorted``): there is no Python loop over
    events or users.

    Examples
    --------
    >>> import numpy as np
    >>> from skrec.preprocessing import InteractionEncoder
    >>> log = {"user": np.array(["a", "a", "b", "a"]),
    ...        "item": np.array([10, 20, 10, 30]),
    ...        "time": np.array([5, 1, 3, 9])}
    >>> enc = InteractionEncoder(time_col="time")
    >>> X = enc.fit_transform(log)
    >>> X.toarray()
    array([[2., 1., 3.],
           [1., 0., 0.]])
    >>> enc.inverse_transform_items(np.array([[2, -1]]), fill_value=0)
    array([[30,  0]])
    """

    def __init__(
        self,
        user_col: Any = "user",
        item_col: Any = "item",
        time_col: Any = None,
        weight_col: Any = None,
        values: str = "order",
    ) -> None:
        self.user_col = user_col
        self.item_col = item_col
        self.time_col = time_col
        self.weight_col = weight_col
        self.values = values

    # -- sklearn plumbing ----------------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.dict = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.target_tags.required = False
        return tags

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_id_index", None)  # a cache, rebuilt on first use
        return state

    def _index(self, attr: str) -> _IdIndex:
        """The exact lookup of ``users_`` or ``items_``, built once per array."""
        vocab = getattr(self, attr)
        cache = self.__dict__.setdefault("_id_index", {})
        index = cache.get(attr)
        if index is None or index.vocab is not vocab:
            index = cache[attr] = _IdIndex(vocab)
        return index

    # -- reading the log -----------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.values not in _VALUES:
            raise ValueError(f"values must be one of {_VALUES}; got {self.values!r}.")
        if self.values == "timestamp" and self.time_col is None:
            raise ValueError('values="timestamp" needs time_col (the column of event times).')
        if self.values == "weight" and self.weight_col is None:
            raise ValueError('values="weight" needs weight_col (the column of event weights).')

    def _needed_columns(self) -> list:
        cols = [self.user_col, self.item_col]
        roles = ["user_col", "item_col"]
        if self.values in ("order", "timestamp") and self.time_col is not None:
            cols.append(self.time_col)
            roles.append("time_col")
        if self.values == "weight":
            cols.append(self.weight_col)
            roles.append("weight_col")
        for i in range(len(cols)):
            for j in range(i):
                if cols[i] == cols[j]:
                    raise ValueError(
                        f"{roles[j]} and {roles[i]} are both {cols[i]!r}; each role needs its "
                        "own column."
                    )
        return cols

    def _read(self, log: Any, *, allow_empty: bool) -> dict[str, np.ndarray | None]:
        """Validate ``log`` and return its needed columns as numpy arrays."""
        self._check_params()
        available = _column_names(log)
        needed = self._needed_columns()
        missing = [c for c in needed if c not in available]
        if missing:
            raise ValueError(
                f"log is missing column(s) {missing}; it has {available}. Set user_col, "
                "item_col, time_col or weight_col to the names used in the log."
            )
        repeated = [c for c in needed if sum(1 for a in available if a == c) > 1]
        if repeated:
            raise ValueError(
                f"log has duplicate column name(s) {repeated}: which one to read is ambiguous. "
                "Rename or drop the duplicates first (e.g. log.loc[:, "
                "~log.columns.duplicated()])."
            )
        users, users_na = _get_column(log, self.user_col)
        items, items_na = _get_column(log, self.item_col)
        n = users.shape[0]
        out: dict[str, np.ndarray | None] = {"time": None, "weight": None}
        if self.values in ("order", "timestamp") and self.time_col is not None:
            t, t_na = _get_column(log, self.time_col)
            out["time"] = (t, t_na)
        if self.values == "weight":
            w, w_na = _get_column(log, self.weight_col)
            out["weight"] = (w, w_na)
        lengths = {self.user_col: n, self.item_col: items.shape[0]}
        for key, col in (("time", self.time_col), ("weight", self.weight_col)):
            if out[key] is not None:
                lengths[col] = out[key][0].shape[0]
        if len(set(lengths.values())) > 1:
            raise ValueError(f"log columns have different lengths: {lengths}.")
        if n == 0 and not allow_empty:
            raise ValueError("log is empty (0 events); at least one event is required.")
        out["user"] = _ids(users, users_na, "user")
        out["item"] = _ids(items, items_na, "item")
        if out["time"] is not None:
            t = _numeric(*out["time"], self.time_col, allow_time=True)
            if self.values == "timestamp" and (t <= 0).any():
                raise ValueError(
                    f'values="timestamp" needs times > 0 (a stored 0 is not an interaction); '
                    f"column {self.time_col!r} has {int((t <= 0).sum())} value(s) <= 0. "
                    'Use values="order" instead.'
                )
            out["time"] = t
        if out["weight"] is not None:
            w = _numeric(*out["weight"], self.weight_col, allow_time=False)
            if (w < 0).any():
                raise ValueError(f"column {self.weight_col!r} contains negative weights.")
            out["weight"] = w
        return out

    # -- public API ----------------------------------------------------------------------------

    def fit(self, log: Any, y: None = None) -> InteractionEncoder:
        """Learn the user and item vocabularies of an event log.

        Parameters
        ----------
        log : pandas.DataFrame or mapping of str to array-like of shape (n_events,)
            The event log, one row per event, with at least ``user_col`` and ``item_col``
            (and ``time_col``/``weight_col`` when ``values`` needs them).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : InteractionEncoder
            The fitted encoder.

        Raises
        ------
        ValueError
            If a column is missing, ids are missing (NaN/None), the time or weight column is
            not numeric, or the log is empty.
        """
        cols = self._read(log, allow_empty=False)
        user_codes, _ = self._fit(cols)
        self._warn_unnamed_time(log, user_codes)
        return self

    def _warn_unnamed_time(self, log: Any, user_codes: np.ndarray) -> None:
        """Warn when events are ordered by row position although the log has a column that
        looks like event times (``values="order"`` without ``time_col``)."""
        if self.values != "order" or self.time_col is not None:
            return
        roles = [self.user_col, self.item_col, self.weight_col]
        for name in _column_names(log):
            if any(name is r or (type(name) is type(r) and name == r) for r in roles):
                continue
            why = _looks_like_time(log, name)
            if why is None:
                continue
            n_bad = _users_out_of_order(log, name, user_codes)
            if n_bad is None:
                order = "its values are not numbers or datetimes, so the row order was kept"
            elif n_bad:
                order = (f"for {n_bad} of {self.n_users_} user(s) the rows are not in "
                         f"{name!r} order, so their sequences are not in time order")
            else:
                order = (f"the rows are in {name!r} order here, but a log that is not sorted "
                         "would silently give sequences out of time order")
            warnings.warn(
                f"The log has a column {name!r} that looks like event times ({why}), but "
                f"time_col was not given: each user's events are ordered by their row position "
                f"in the log, and {order}. Pass time_col={name!r} to order them by it (or drop "
                "the column if it is not the time of the events).",
                UserWarning,
                stacklevel=3,
            )
            return

    def _fit(self, cols) -> tuple[np.ndarray, np.ndarray]:
        """Learn the vocabularies; return the codes of the log's users and items."""
        self.users_, user_codes = _unique_sorted(cols["user"], "user")
        self.items_, item_codes = _unique_sorted(cols["item"], "item")
        self.n_users_ = int(self.users_.shape[0])
        self.n_items_ = int(self.items_.shape[0])
        self.n_events_ = int(cols["user"].shape[0])
        return user_codes, item_codes

    def _check_fitted_state(self) -> None:
        """Raise a ValueError naming the attribute when the fitted vocabularies are not what
        :meth:`fit` and :meth:`add_items` make (1-D, distinct ids, counted); :func:`skrec.load`
        calls it. (``items_`` is in column order: sorted at fit, then the added items.)"""
        from .._fitted_state import check_array, check_int

        if not hasattr(self, "items_"):
            return
        self._check_params()
        for name in ("users", "items"):
            ids = check_array(self, f"{name}_", kinds="biufUSOMm", finite=True)
            if ids.ndim != 1:
                raise ValueError(f"{name}_ must be 1-D; got shape {ids.shape}.")
            try:
                twice = _IdIndex(ids).duplicates()
            except ValueError as exc:  # an unhashable object
                raise ValueError(f"{name}_: {exc}") from None
            if twice.size:
                raise ValueError(f"{name}_ must hold distinct ids; {twice[:3].tolist()} "
                                 "appear more than once.")
            check_int(self, f"n_{name}_", low=ids.shape[0], high=ids.shape[0])
        check_int(self, "n_events_", low=0)

    def transform(self, log: Any, users: Any = None) -> sp.csr_matrix:
        """Build the user x item interaction matrix of an event log.

        Parameters
        ----------
        log : pandas.DataFrame or mapping of str to array-like of shape (n_events,)
            The event log, one row per event. It may be empty.
        users : array-like of shape (n_rows,), default=None
            Ids of the users to build rows for, in this order. They need not have been seen in
            :meth:`fit` (fold-in: a new user's row is built from its events, and a user with no
            events gets an empty row). Ids must be unique. When ``None``, the rows are
            :attr:`users_`.

        Returns
        -------
        X : scipy.sparse.csr_matrix of shape (n_rows, n_items_), dtype float64
            The interactions; see the class docstring for what the values are.

        Warns
        -----
        UserWarning
            When events are dropped because their item was not seen in :meth:`fit` (the
            message gives their count), or, when ``users`` is ``None``, because their user was
            not seen in :meth:`fit`.
        """
        return self._transform(log, users, stacklevel=3)

    def _transform(self, log: Any, users: Any, *, stacklevel: int) -> sp.csr_matrix:
        """:meth:`transform`; its warnings point ``stacklevel`` frames up."""
        check_is_fitted(self, ("users_", "items_"))
        cols = self._read(log, allow_empty=True)
        user_ids, item_ids = cols["user"], cols["item"]
        n_events = user_ids.shape[0]

        if users is None:
            n_rows = self.n_users_
            row_idx, row_known = self._index("users_").find(
                user_ids, (f"the log's user ids (column {self.user_col!r})",
                           "the user ids seen at fit time"))
            n_unknown = int(n_events - row_known.sum())
            if n_unknown:
                n_users = _unique_sorted(user_ids[~row_known], "user")[0].size
                warnings.warn(
                    f"{n_unknown} event(s) of {n_users} user(s) "
                    "not seen at fit time were dropped; pass users=[...] to build rows for "
                    "new users.",
                    UserWarning,
                    stacklevel=stacklevel,
                )
        else:
            rows = _ids(_as_1d_ids(users, "users"), None, "users")
            n_rows = rows.shape[0]
            index = _IdIndex(rows)
            twice = index.duplicates()
            if twice.size:
                raise ValueError(f"users contains duplicate ids (e.g. {twice[:5].tolist()}); "
                                 "each row must be a distinct user.")
            row_idx, row_known = index.find(
                user_ids, (f"the log's user ids (column {self.user_col!r})",
                           "the ids given in users="))

        item_idx, item_known = self._index("items_").find(
            item_ids, (f"the log's item ids (column {self.item_col!r})",
                       "the item ids seen at fit time"))
        unknown_items = row_known & ~item_known
        n_unknown_items = int(unknown_items.sum())
        if n_unknown_items:
            n_items = _unique_sorted(item_ids[unknown_items], "item")[0].size
            warnings.warn(
                f"{n_unknown_items} event(s) with {n_items} "
                "item(s) not seen at fit time were dropped.",
                UserWarning,
                stacklevel=stacklevel,
            )
        keep = np.flatnonzero(row_known & item_known)
        return self._assemble(cols, keep, row_idx[keep], item_idx[keep], n_rows)

    def _assemble(self, cols, keep, r, c, n_rows: int) -> sp.csr_matrix:
        """Build the CSR matrix from the kept events ``keep`` (log positions, increasing)."""
        r = np.asarray(r, dtype=np.int64)
        c = np.asarray(c, dtype=np.int64)
        shape = (n_rows, self.n_items_)
        if self.values == "weight":
            X = sp.csr_matrix((cols["weight"][keep], (r, c)), shape=shape)  # sums repeats
            return check_interactions(X, name="X", allow_empty=True)
        # Sort events by (row, time, log position): stable sorts keep the log order on ties.
        t = cols["time"][keep] if cols["time"] is not None else None
        if t is not None:
            perm = np.argsort(t, kind="stable")
            perm = perm[np.argsort(r[perm], kind="stable")]
        else:
            perm = np.argsort(r, kind="stable")
        r, c = r[perm], c[perm]
        t = t[perm] if t is not None else None
        # Keep the last occurrence of each (row, item): a stable sort on the pair keeps the
        # sequence order inside each group, so the group's last element is the latest event.
        if r.size:
            grp = np.argsort(r * self.n_items_ + c, kind="stable")
            key = r[grp] * self.n_items_ + c[grp]
            is_last = np.ones(r.size, dtype=bool)
            is_last[:-1] = key[1:] != key[:-1]
            kept = np.zeros(r.size, dtype=bool)
            kept[grp[is_last]] = True
            r, c = r[kept], c[kept]
            t = t[kept] if t is not None else None
        if self.values == "order":
            starts = np.zeros(n_rows + 1, dtype=np.int64)
            np.cumsum(np.bincount(r, minlength=n_rows), out=starts[1:])
            data = (np.arange(r.shape[0]) - starts[r] + 1).astype(np.float64)
        elif self.values == "timestamp":
            data = t
        else:  # "ones"
            data = np.ones(r.shape[0], dtype=np.float64)
        X = sp.csr_matrix((data, (r, c)), shape=shape)
        return check_interactions(X, name="X", allow_empty=True)

    def fit_transform(self, log: Any, y: None = None, users: Any = None) -> sp.csr_matrix:
        """Fit the encoder on ``log`` and return its interaction matrix.

        Parameters
        ----------
        log : pandas.DataFrame or mapping of str to array-like of shape (n_events,)
            The event log, one row per event.
        y : None
            Ignored; present for API consistency.
        users : array-like of shape (n_rows,), default=None
            Rows to build, as in :meth:`transform`; default: the users of ``log``, sorted.

        Returns
        -------
        X : scipy.sparse.csr_matrix of shape (n_rows, n_items_), dtype float64
            The interactions.
        """
        if users is not None:
            return self.fit(log).transform(log, users=users)
        cols = self._read(log, allow_empty=False)
        user_codes, item_codes = self._fit(cols)
        self._warn_unnamed_time(log, user_codes)
        keep = np.arange(self.n_events_)
        return self._assemble(cols, keep, user_codes, item_codes, self.n_users_)

    def transform_items(self, ids: Any, *, handle_unknown: str = "error") -> np.ndarray:
        """Map original item ids to column indices.

        Parameters
        ----------
        ids : array-like of any shape
            Original item ids.
        handle_unknown : {"error", "ignore"}, default="error"
            What to do with ids not seen in :meth:`fit`: raise a ``ValueError``, or map them to
            ``-1``.

        Returns
        -------
        indices : ndarray of int64, same shape as ``ids``
            Column indices into :attr:`items_` (``-1`` for unknown ids when ignored).
        """
        check_is_fitted(self, "items_")
        return _encode_ids(self._index("items_"), ids, "item", handle_unknown)

    def transform_users(self, ids: Any, *, handle_unknown: str = "error") -> np.ndarray:
        """Map original user ids to row indices of :meth:`transform`'s default output.

        Row ``i`` of ``transform(log)`` (and of ``fit_transform``) is user ``users_[i]``. Use
        this to pick the rows of known users, e.g. ``X[enc.transform_users(["u1", "u7"])]``.
        A plain ``np.searchsorted(enc.users_, ids)`` would silently map an unknown id to a
        neighbour.

        Parameters
        ----------
        ids : array-like of any shape
            Original user ids.
        handle_unknown : {"error", "ignore"}, default="error"
            What to do with ids not seen in :meth:`fit`: raise a ``ValueError``, or map them to
            ``-1``. (To build rows for new users from their events, use
            ``transform(log, users=[...])``.)

        Returns
        -------
        indices : ndarray of int64, same shape as ``ids``
            Row indices into :attr:`users_` (``-1`` for unknown ids when ignored).

        Examples
        --------
        >>> from skrec.preprocessing import InteractionEncoder
        >>> enc = InteractionEncoder().fit({"user": ["b", "a", "c"], "item": [1, 2, 1]})
        >>> enc.transform_users(["c", "a"])
        array([2, 0])
        >>> enc.transform_users(["a", "zz"], handle_unknown="ignore")
        array([ 0, -1])
        """
        check_is_fitted(self, "users_")
        return _encode_ids(self._index("users_"), ids, "user", handle_unknown)

    def inverse_transform_items(self, indices: Any, fill_value: Any = None) -> np.ndarray:
        """Map column indices (such as ``predict``'s output) back to original item ids.

        Parameters
        ----------
        indices : array-like of int, any shape
            Column indices in ``[0, n_items_)``; ``-1`` marks padding (no item).
        fill_value : object, default=None
            Id to put where ``indices == -1``. When it does not fit the dtype of
            :attr:`items_` (``None`` never does), the result is an object array.

        Returns
        -------
        ids : ndarray, same shape as ``indices``
            Original item ids.
        """
        check_is_fitted(self, "items_")
        return _decode_ids(self.items_, indices, fill_value, "indices")

    def inverse_transform_users(self, indices: Any, fill_value: Any = None) -> np.ndarray:
        """Map row indices of :meth:`transform`'s default output back to original user ids.

        Parameters
        ----------
        indices : array-like of int, any shape
            Row indices in ``[0, n_users_)``; ``-1`` marks "no user".
        fill_value : object, default=None
            Id to put where ``indices == -1`` (an object array when it does not fit the dtype
            of :attr:`users_`).

        Returns
        -------
        ids : ndarray, same shape as ``indices``
            Original user ids.
        """
        check_is_fitted(self, "users_")
        return _decode_ids(self.users_, indices, fill_value, "indices")

    # -- serving in original ids --------------------------------------------------------------

    def inverse_transform(self, X: Any, users: Any = None, as_frame: bool | None = None):
        """Turn an interaction matrix back into an event log.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_rows, n_items_)
            Interactions, as returned by :meth:`transform`.
        users : array-like of shape (n_rows,), default=None
            Ids of the rows of ``X``; default :attr:`users_` (then ``X`` must have
            ``n_users_`` rows).
        as_frame : bool, default=None
            Return a ``pandas.DataFrame`` (``True``) or a dict of numpy arrays (``False``).
            ``None``: a DataFrame when pandas is importable, else a dict.

        Returns
        -------
        log : pandas.DataFrame or dict of str to ndarray
            One row per stored entry, with columns ``user_col``, ``item_col`` and a value
            column named ``time_col`` (for ``values="order"``/``"timestamp"`` with a
            ``time_col``), ``weight_col`` (for ``values="weight"``), or ``"value"``. Rows are
            sorted by user row, then by value (for order/timestamp) or item, so that
            :meth:`transform` of the result gives ``X`` back.
        """
        check_is_fitted(self, ("users_", "items_"))
        X = check_interactions(X, n_items=self.n_items_, name="X", allow_empty=True)
        if users is None:
            if X.shape[0] != self.n_users_:
                raise ValueError(
                    f"X has {X.shape[0]} rows but the encoder was fitted with {self.n_users_} "
                    "users; pass users=[...] to name the rows."
                )
            row_ids = self.users_
        else:
            row_ids = _as_1d_ids(users, "users")
            if row_ids.shape[0] != X.shape[0]:
                raise ValueError(f"users has {row_ids.shape[0]} ids but X has {X.shape[0]} rows.")
        r = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        c = X.indices.astype(np.int64)
        v = X.data
        if self.values in ("order", "timestamp"):
            perm = np.lexsort((c, v, r))
            r, c, v = r[perm], c[perm], v[perm]
        if self.values in ("order", "timestamp") and self.time_col is not None:
            value_name = self.time_col
        elif self.values == "weight":
            value_name = self.weight_col
        else:
            value_name = "value"
        out = {self.user_col: row_ids[r], self.item_col: self.items_[c], value_name: v}
        return _as_frame(out, as_frame)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns: the item ids as strings.

        Parameters
        ----------
        input_features : None
            Ignored; present for API consistency.

        Returns
        -------
        names : ndarray of str objects of shape (n_items_,)
            ``str(item_id)`` for each column.
        """
        check_is_fitted(self, "items_")
        return np.asarray([str(i) for i in self.items_.tolist()], dtype=object)
