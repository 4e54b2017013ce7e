"""The InteractionEncoder's methods that use a fitted model in the user's own ids:
recommend, similar_items, add_items."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._feature_validation import check_item_features
from .._validation import check_k
from ._columns import _as_frame, _ids
from ._ids import _as_1d_ids, _cast_exact, _encode_ids, _IdIndex, _py, _unique_sorted

if TYPE_CHECKING:  # pragma: no cover
    from ._encoder import InteractionEncoder


class ModelMethods:
    """Mixin of :class:`~skrec.preprocessing.InteractionEncoder`: a fitted model served, and
    grown, in original user and item ids."""

    def _check_model(self, model: Any) -> None:
        check_is_fitted(self, ("users_", "items_"))
        if not hasattr(model, "recommend"):
            raise TypeError(
                f"model must be a skrec recommender (with recommend); got {type(model).__name__}."
            )
        check_is_fitted(model)
        n_model = getattr(model, "n_features_in_", None)
        if isinstance(n_model, int) and n_model > self.n_items_:
            raise ValueError(
                f"The model has {n_model} items but this encoder has {self.n_items_}: the "
                f"model's last {n_model - self.n_items_} items have no id here (added with "
                "model.add_items?). Add new items with encoder.add_items(model, item_ids, "
                "item_features), which adds them to both; start again from the model as it was "
                "before model.add_items (saved or refitted)."
            )
        if n_model != self.n_items_:
            raise ValueError(
                f"The model was fitted on {n_model} items but this encoder has {self.n_items_}: "
                "fit the model on this encoder's matrix (model.fit(enc.fit_transform(log)))."
            )

    def add_items(self, model: Any, item_ids: Any, item_features: Any) -> InteractionEncoder:
        """Add new items, in your ids, to this encoder and to its model together.

        The new items get the next column indices, in the order of ``item_ids``: ``items_``
        and ``n_items_`` grow here, and ``model.add_items(item_features)`` grows the model
        (see :meth:`skrec.SeqRecommender.add_items`), so :meth:`recommend`,
        :meth:`similar_items`, :meth:`transform` and a service built on the pair know them at
        once, without retraining. The model scores them from their feature rows until it is
        trained on interactions with them. Save the pair together
        (``skrec.save({"encoder": encoder, "model": model}, path)``).

        Everything is checked before either object changes: when this raises, the encoder
        and the model are both left as they were.

        Parameters
        ----------
        model : SeqRecommender or AERecommender
            Fitted on this encoder's matrix, with ``item_features``. It is modified in place.
        item_ids : array-like of shape (n_new_items,)
            Ids of the new items: distinct, none already known, comparable with
            :attr:`items_` (numbers with numbers, strings with strings; ids that the dtype of
            :attr:`items_` cannot hold exactly, such as uint64 ids beyond an int64
            vocabulary, make :attr:`items_` an object array of Python scalars).
        item_features : {array-like, sparse matrix} of shape (n_new_items, n_item_features)
            Their feature rows, in the order of ``item_ids``, built exactly as the
            ``item_features`` the model was fitted with (the same fitted transformers).

        Returns
        -------
        self : InteractionEncoder
            This encoder, with the new items as its last columns.

        Raises
        ------
        TypeError
            If ``model`` cannot add items (a model without ``add_items``, such as EASE).
        ValueError
            If the model and this encoder do not have the same items, the model was fitted
            without item features, an id is missing, repeated or already known, ids are
            strings for a vocabulary of numbers (or the reverse), or ``item_features`` does
            not have one valid row per id and the model's feature columns.

        Examples
        --------
        >>> import numpy as np
        >>> from skrec import AERecommender
        >>> from skrec.preprocessing import InteractionEncoder
        >>> log = {"user": np.array(["ann", "ann", "bob", "bob"]),
        ...        "item": np.array(["tea", "cake", "tea", "jam"])}
        >>> enc = InteractionEncoder()
        >>> X = enc.fit_transform(log)  # columns: cake, jam, tea
        >>> F = np.eye(3)  # one feature row per column (here: one-hot kinds)
        >>> model = AERecommender(max_iter=2, item_features=F, random_state=0).fit(X)
        >>> _ = enc.add_items(model, ["scone"], np.array([[1.0, 0.0, 0.0]]))
        >>> enc.items_.tolist(), model.n_features_in_
        (['cake', 'jam', 'tea', 'scone'], 4)
        >>> "scone" in enc.recommend(model, log, users=["bob"], k=3)["item"].tolist()
        True
        """
        self._check_model(model)
        if not callable(getattr(model, "add_items", None)):
            raise TypeError(
                f"{type(model).__name__} cannot add items without retraining; a SeqRecommender "
                "or AERecommender fitted with item_features=... can (it scores new items from "
                "their features)."
            )
        if getattr(getattr(model, "module_", None), "features", None) is None:
            raise ValueError(
                f"This {type(model).__name__} was fitted without item_features: a new item "
                "cannot be represented. Fit it with item_features=... to add items later."
            )
        new = _ids(_as_1d_ids(item_ids, "item_ids"), None, "new item")
        items = self._grown_items(new)
        feats = check_item_features(item_features, n_features=model.n_item_features_)
        if feats.shape[0] != new.shape[0]:
            raise ValueError(
                f"item_features has {feats.shape[0]} rows but item_ids has {new.shape[0]} ids: "
                "give one feature row per new item, in the order of item_ids."
            )
        if new.size:
            model.add_items(feats)  # checks the rows again, then grows: nothing here can fail
            self.items_ = items
            self.n_items_ = int(items.shape[0])
        return self

    def _grown_items(self, new: np.ndarray) -> np.ndarray:
        """:attr:`items_` followed by the ``new`` ids (checked: distinct and unknown)."""
        if new.size == 0:  # (an empty list is float64 for numpy: no dtype to check)
            return self.items_
        twice = _IdIndex(new).duplicates()
        if twice.size:
            raise ValueError(
                f"item_ids holds some ids more than once, e.g. {twice[:5].tolist()}."
            )
        names = ("the new item ids", "the item ids of this encoder")
        _, known = self._index("items_").find(new, names)
        if known.any():
            raise ValueError(
                f"{int(known.sum())} of the new item ids are already known to this encoder, e.g. "
                f"{new[known][:5].tolist()}: each new id must be new."
            )
        vocab = self.items_
        if vocab.dtype != object and new.dtype != object:
            values, exact = _cast_exact(new, vocab.dtype, names)
            if exact.all():
                if vocab.dtype.kind in "US":
                    return np.concatenate([vocab, new])  # the wider of the two string widths
                return np.concatenate([vocab, values])
        out = np.empty(vocab.size + new.size, dtype=object)  # Python scalars: exact
        out[:] = [_py(v) for v in vocab.tolist()] + [_py(v) for v in new.tolist()]
        return out

    def _candidate_indices(self, items: Any) -> np.ndarray | None:
        """Column indices of the candidate item ids; unknown ids are dropped with a warning."""
        if items is None:
            return None
        idx = _encode_ids(self._index("items_"), _as_1d_ids(items, "items"), "item", "ignore")
        n_unknown = int((idx < 0).sum())
        if n_unknown:
            warnings.warn(
                f"{n_unknown} candidate item id(s) in items were not seen at fit time and "
                "cannot be recommended; they are ignored.",
                UserWarning,
                stacklevel=3,
            )
        return idx[idx >= 0]

    def recommend(
        self,
        model: Any,
        log: Any,
        users: Any = None,
        k: int = 10,
        *,
        filter_seen: bool = True,
        items: Any = None,
        batch_size: int | None = None,
        as_frame: bool | None = None,
    ):
        """Recommend items to users of an event log, in original ids: one row per (user, rank).

        Each user's row is built from their events in ``log`` (fold-in, as
        ``transform(log, users=users)``), so the same call serves

        - **known users**: pass their history (the training log, plus any newer events);
        - **new users**, not seen at fit time, from whatever events ``log`` holds for them;
        - **unknown users** with no event at all: they get the most popular items.

        Parameters
        ----------
        model : fitted skrec recommender
            Fitted on this encoder's matrix (same items, same column order).
        log : pandas.DataFrame or mapping of str to array-like of shape (n_events,)
            Events of the users to serve (may hold other users too, and may be empty). Events
            of items not seen at fit time are dropped with a ``UserWarning``.
        users : array-like of shape (n_users,), default=None
            User ids to serve, in this order, known or not. Default: the distinct users of
            ``log``, sorted.
        k : int, default=10
            Recommendations per user.
        filter_seen : bool, default=True
            Leave out the items of each user's events in ``log``.
        items : array-like of item ids, default=None
            Recommend only among these (original) item ids; ids not seen at fit time are
            ignored with a ``UserWarning``.
        batch_size : int, default=None
            Users scored at once (see the model's ``recommend``).
        as_frame : bool, default=None
            Return a ``pandas.DataFrame`` (``True``) or a dict of numpy arrays (``False``).
            ``None``: a DataFrame when pandas is importable, else a dict.

        Returns
        -------
        recommendations : pandas.DataFrame or dict of str to ndarray
            Columns ``user_col``, ``"rank"`` (1 = best), ``item_col`` and ``"score"``; users
            in the order of ``users``, ranks increasing. A user gets fewer than ``k`` rows
            when fewer candidates remain.

        See Also
        --------
        similar_items : Item-to-item recommendations in original ids.
        skrec.base.BaseRecommender.recommend : The same on matrices and indices.

        Examples
        --------
        >>> import pandas as pd
        >>> from skrec import EASERecommender
        >>> from skrec.preprocessing import InteractionEncoder
        >>> log = pd.DataFrame({"user": ["ann", "ann", "bob", "bob", "cy"],
        ...                     "item": ["tea", "cake", "tea", "jam", "cake"],
        ...                     "time": [1, 2, 1, 3, 5]})
        >>> enc = InteractionEncoder(time_col="time")
        >>> model = EASERecommender(l2=1.0).fit(enc.fit_transform(log))
        >>> recs = enc.recommend(model, log, users=["ann", "newcomer"], k=2)
        >>> recs.columns.tolist()
        ['user', 'rank', 'item', 'score']
        >>> recs[["user", "rank", "item"]].to_numpy().tolist()
        [['ann', 1, 'jam'], ['newcomer', 1, 'cake'], ['newcomer', 2, 'tea']]
        """
        self._check_model(model)
        if users is None:
            cols = self._read(log, allow_empty=True)
            users = _unique_sorted(cols["user"], "user")[0]
        X = self._transform(log, users, stacklevel=3)
        row_ids = _ids(_as_1d_ids(users, "users"), None, "users")
        if row_ids.size == 0:  # nobody to serve: an empty table with the usual columns
            empty = np.zeros((0, check_k(k, limit=model.n_features_in_)), dtype=np.int64)
            return self._ranked_frame(row_ids, empty, empty.astype(np.float32), self.user_col,
                                      self.item_col, as_frame)
        ids, scores = model.recommend(
            X, k, filter_seen=filter_seen, items=self._candidate_indices(items),
            batch_size=batch_size,
        )
        return self._ranked_frame(row_ids, ids, scores, self.user_col, self.item_col, as_frame)

    def similar_items(
        self,
        model: Any,
        item_ids: Any,
        k: int = 10,
        *,
        filter_self: bool = True,
        items: Any = None,
        batch_size: int | None = None,
        as_frame: bool | None = None,
    ):
        """Items most similar to each of ``item_ids``, in original ids.

        Maps the ids to columns, calls ``model.similar_items`` (see
        :meth:`skrec.base.BaseRecommender.similar_items` for what "similar" means for each
        model) and maps the results back.

        Parameters
        ----------
        model : fitted skrec recommender
            Fitted on this encoder's matrix; one with ``similar_items`` (not
            ``PopularityRecommender``).
        item_ids : array-like of item ids, or one id
            Original ids of the query items; each must have been seen at fit time.
        k : int, default=10
            Similar items per query item.
        filter_self : bool, default=True
            Leave each query item out of its own list.
        items : array-like of item ids, default=None
            Return only these (original) item ids; ids not seen at fit time are ignored with
            a ``UserWarning``.
        batch_size : int, default=None
            Query items scored at once.
        as_frame : bool, default=None
            Return a ``pandas.DataFrame`` (``True``) or a dict of numpy arrays (``False``).
            ``None``: a DataFrame when pandas is importable, else a dict.

        Returns
        -------
        similar : pandas.DataFrame or dict of str to ndarray
            Columns ``item_col`` (the query), ``"rank"`` (1 = most similar),
            ``"similar_" + item_col`` (``"similar_item"`` when ``item_col`` is not a string)
            and ``"score"``.

        Raises
        ------
        ValueError
            If an id in ``item_ids`` was not seen at fit time.
        AttributeError
            If ``model`` has no item-item similarity (``PopularityRecommender``).
        """
        self._check_model(model)
        query_ids = _as_1d_ids(item_ids, "item_ids")
        query = self.transform_items(query_ids)
        ids, scores = model.similar_items(
            query, k, filter_self=filter_self, items=self._candidate_indices(items),
            batch_size=batch_size,
        )
        name = self.item_col
        other = f"similar_{name}" if isinstance(name, str) else "similar_item"
        return self._ranked_frame(self.items_[query], ids, scores, name, other, as_frame)

    def _ranked_frame(self, row_ids, ids, scores, row_col, item_col, as_frame):
        """Long format of top-k results: one row per (row, rank), padding left out."""
        n_rows, k = ids.shape
        keep = ids >= 0
        r, c = np.nonzero(keep)
        out = {
            row_col: row_ids[r],
            "rank": (c + 1).astype(np.int64),
            item_col: self.items_[ids[keep]],
            "score": scores[keep],
        }
        return _as_frame(out, as_frame)
