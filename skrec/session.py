"""Incremental serving of one user's sequence: recommendations after each new event.

:meth:`SeqRecommender.start_session <skrec.SeqRecommender.start_session>` returns a
:class:`SequenceSession`, which holds a user's history and answers "top-k after this new
event" with the same results as :meth:`~skrec.SeqRecommender.recommend` on the matrix row of
the whole history, at a lower latency.

Why a cache needs care here: the transformer's positions are counted from the end (the last
item always has the same position embedding), so appending an item moves every earlier item one
position back and changes its keys and values in every block. Caching the keys and values of a
previous pass would be wrong. Instead, the session computes the earlier items' keys and values
directly in the layout they will have once one more item follows (:meth:`SequenceSession.prepare`,
a full pass, which does not depend on the next item because attention is causal), and the new
event then costs one position per block (:meth:`SequenceSession.add`). The full pass moves off
the critical path: run :meth:`~SequenceSession.prepare` after answering, while the user reads.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from ._validation import check_k
from .base import rank_top_k

if TYPE_CHECKING:  # pragma: no cover
    from .sequential import SeqRecommender

__all__ = ["SequenceSession"]


class SequenceSession:
    """One user's live item sequence, served incrementally by a fitted ``SeqRecommender``.

    Create it with :meth:`SeqRecommender.start_session
    <skrec.SeqRecommender.start_session>`. The history follows the matrix contract of
    ``X``: each item appears once, at its latest position, so adding an item that is already
    in the history moves it to the end. ``recommend`` and ``add`` return what
    :meth:`~skrec.SeqRecommender.recommend` returns for the matrix row of the history
    (same item ids; the same scores up to floating-point rounding: ``<= 1e-5`` apart in fp32).

    How an event is served: with a causal transformer encoder, :meth:`prepare` computes the
    keys and values of the current items in every block, laid out as they will be after one
    more item (positions are counted from the end, so they all move by one; see
    :meth:`skrec.nn.TransformerEncoder.next_state`); :meth:`add` then runs only the new
    position through the blocks (:meth:`skrec.nn.TransformerEncoder.step`) and scores the
    catalogue. :meth:`add` prepares on its own when needed, at the cost of a full pass;
    calling :meth:`prepare` between events (after sending the previous answer) takes that
    pass off the next event's latency. Other encoders and objectives, and an event that moves
    an item already in the history, are served by a full pass (the same result).

    The prepared state holds ``2 * n_layers * (max_len - 1) * d_model`` numbers (about 200 KB
    in fp32 with the defaults) per session.

    Parameters
    ----------
    recommender : SeqRecommender
        A fitted recommender; the session reads its current weights.
    history : array-like of int
        The user's items so far, oldest first (indices in ``[0, n_items)``).

    Attributes
    ----------
    history : ndarray of shape (n_events,)
        The items in order, each once.
    incremental : bool
        Whether events are served by the one-position step (a causal encoder that supports
        it) rather than a full pass.
    """

    def __init__(self, recommender: SeqRecommender, history=()):
        self._rec = recommender
        self.n_items = int(recommender.n_features_in_)
        self._history: list[int] = []
        self._seen: set[int] = set()
        for item in self._check_items(history, "history"):
            self._append(item)
        module = recommender.module_
        objective = recommender._objective()
        self.incremental = bool(
            objective.causal
            and hasattr(module, "encoder")
            and callable(getattr(module.encoder, "next_state", None))
            and getattr(module.encoder, "causal", False)
        )
        self._state = None  # prepared keys and values for the next event
        self._cold = recommender._cold_scores()

    # ------------------------------------------------------------------ history
    @property
    def history(self) -> np.ndarray:
        """The items of the session in order, oldest first, each once."""
        return np.asarray(self._history, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._history)

    def _check_items(self, items, name: str) -> list[int]:
        arr = np.asarray(items)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"{name} must be a 1-D sequence of item indices; got {items!r}.")
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_items):
            raise ValueError(f"{name} holds item indices outside [0, {self.n_items}).")
        return [int(i) for i in arr]

    def _check_item(self, item) -> int:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(f"item must be an integer item index; got {item!r}.")
        if not 0 <= item < self.n_items:
            raise ValueError(f"item {item} is outside [0, {self.n_items}).")
        return int(item)

    def _append(self, item: int) -> None:
        """Append ``item`` (moving it to the end if it is already in the history)."""
        if item in self._seen:
            self._history.remove(item)
        self._history.append(item)
        self._seen.add(item)

    def _row(self) -> sp.csr_matrix:
        """The history as the matrix row ``recommend`` reads (values = order)."""
        n = len(self._history)
        return sp.csr_matrix(
            (np.arange(1, n + 1, dtype=np.float64), np.asarray(self._history, dtype=np.int64),
             np.array([0, n])),
            shape=(1, self.n_items),
        )

    # ------------------------------------------------------------------ the model

    def prepare(self) -> None:
        """Compute the state that serves the next event with a one-position step.

        A full pass over the latest ``max_len - 1`` items (as :meth:`add` would do on the
        critical path otherwise). Does nothing when the session is already prepared or is not
        incremental.
        """
        if not self.incremental or self._state is not None:
            return
        with self._rec._serving() as (module, device, _):
            window = self._history[-(module.max_len - 1):] if module.max_len > 1 else []
            ids = torch.as_tensor([window], dtype=torch.long, device=device) + 1
            self._state = (module, module.encoder.next_state(module.items(ids,
                                                                          module.item_table())))

    def _rank(self, scores: torch.Tensor, k: int, filter_seen: bool, items):
        return rank_top_k(scores.float(), self._row(), k, filter_seen=filter_seen,
                          candidates=self._rec._candidate_mask(items), cold_scores=self._cold)

    def recommend(self, k: int = 10, *, filter_seen: bool = True, items=None):
        """Top ``k`` items after the current history (a full pass).

        Parameters
        ----------
        k : int, default=10
            Number of items.
        filter_seen : bool, default=True
            Exclude the items of the history.
        items : array-like of int or bool mask, default=None
            Restrict the recommendations to these items, as in
            :meth:`~skrec.SeqRecommender.recommend`.

        Returns
        -------
        ids : ndarray of shape (k,), dtype int64
            Item indices, best first, ``-1`` where fewer than ``k`` candidates remain.
        scores : ndarray of shape (k,), dtype float32
            Their scores.
        """
        k = check_k(k, limit=self.n_items)
        with torch.inference_mode():
            scores = self._rec._user_scores(self._row())
            ids, vals = self._rank(scores, k, filter_seen, items)
        return ids[0], vals[0]

    def add(self, item: int, k: int = 10, *, filter_seen: bool = True, items=None):
        """Append one event and return the top ``k`` items after it.

        Parameters
        ----------
        item : int
            The new item (index in ``[0, n_items)``). An item already in the history moves to
            the end (served by a full pass).
        k : int, default=10
            Number of items.
        filter_seen : bool, default=True
            Exclude the items of the history (the new one included).
        items : array-like of int or bool mask, default=None
            Restrict the recommendations to these items.

        Returns
        -------
        ids : ndarray of shape (k,), dtype int64
            Item indices, best first, ``-1`` where fewer than ``k`` candidates remain.
        scores : ndarray of shape (k,), dtype float32
            Their scores.
        """
        item = self._check_item(item)
        k = check_k(k, limit=self.n_items)
        if not self.incremental or item in self._seen:
            self._append(item)
            self._state = None
            return self.recommend(k, filter_seen=filter_seen, items=items)
        self.prepare()
        with self._rec._serving() as (module, device, _):
            prepared_with, state = self._state
            self._state = None
            if prepared_with is not module:  # the weights changed since: a full pass
                self._append(item)
                return self.recommend(k, filter_seen=filter_seen, items=items)
            self._append(item)
            table = module.item_table()  # computed once: input and output side
            x = module.items(torch.tensor([[item + 1]], device=device), table)
            scores = module.score_hidden(module.encoder.step(x, state)[:, -1], table)
        with torch.inference_mode():
            ids, vals = self._rank(scores, k, filter_seen, items)
        return ids[0], vals[0]
