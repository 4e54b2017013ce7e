"""Honest reference recommenders: popularity and EASE (Steck, 2019)."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
import torch

from .base import BaseRecommender

__all__ = ["PopularityRecommender", "EASERecommender", "MarkovChainRecommender"]


class PopularityRecommender(BaseRecommender):
    """Recommend the most popular items (by number of interactions at fit time).

    The reference every recommender must beat. Already-seen items are excluded as usual.
    An item's score is its share of the training interactions
    (``item_popularity_ / item_popularity_.sum()``: 0.05 means 5 % of them), the score every
    recommender gives users with an empty row; tied items are separated by one float32 step,
    the lower item index first, so rankings are deterministic (see
    :func:`skrec.base.popularity_scores`). It has no ``similar_items``: it does not relate
    items to each other.

    Attributes
    ----------
    n_features_in_ : int
        Number of items.
    item_popularity_ : ndarray of shape (n_features_in_,)
        Number of training interactions of each item.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from skrec.baselines import PopularityRecommender
    >>> X = sp.csr_matrix([[1, 0, 2, 0], [0, 1, 1, 0], [1, 0, 0, 0]])
    >>> PopularityRecommender().fit(X).predict(X, k=2)
    array([[1, 3],
           [0, 3],
           [2, 1]])
    """

    def __init__(self):
        pass

    def _fit(self, X, y, user_features=None):
        pass

    def _user_scores(self, X: sp.csr_matrix, user_features=None) -> torch.Tensor:
        return self._cold_scores().expand(X.shape[0], -1).clone()


class EASERecommender(BaseRecommender):
    """Embarrassingly Shallow Autoencoder (EASE, Steck 2019), solved in closed form.

    Learns an item x item weight matrix ``B`` with a zero diagonal minimising
    ``||X - X B||^2 + l2 ||B||^2`` on the binarised interactions:
    ``P = (X^T X + l2 I)^-1``, ``B = -P / diag(P)``, ``diag(B) = 0``. A very strong reference on
    small and medium catalogues; memory and time grow as ``n_items^2`` and ``n_items^3``.

    Parameters
    ----------
    l2 : float, default=500.0
        L2 regularisation added to the diagonal of the Gram matrix. Too small a value on a
        matrix with duplicate or rare items leaves the Gram matrix numerically singular:
        ``fit`` then raises a ``ValueError`` asking for a larger ``l2``.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features_in_, n_features_in_), dtype float32
        The item-item weight matrix ``B``.
    n_features_in_ : int
        Number of items.
    item_popularity_ : ndarray of shape (n_features_in_,)
        Number of training interactions of each item (used for cold users).

    References
    ----------
    H. Steck. "Embarrassingly Shallow Autoencoders for Sparse Data." WWW 2019.

    Examples
    --------
    >>> from skrec.datasets import make_interactions
    >>> from skrec.baselines import EASERecommender
    >>> X = make_interactions(n_users=200, n_items=50, random_state=0)
    >>> EASERecommender(l2=100.0).fit(X).predict(X[:2], k=3).shape
    (2, 3)
    """

    def __init__(self, l2: float = 500.0):
        self.l2 = l2

    def _check_params(self) -> None:
        l2 = self.l2
        if (
            isinstance(l2, bool)
            or not isinstance(l2, numbers.Real)
            or not np.isfinite(l2)
            or not l2 > 0
        ):
            raise ValueError(f"l2 must be a positive finite number; got {l2!r}.")

    def _fit(self, X, y, user_features=None):
        l2 = self.l2
        B = X if y is None else X + y
        B = B.astype(bool).astype(np.float64)
        gram = (B.T @ B).toarray()
        gram[np.diag_indices_from(gram)] += float(l2)
        # Invert the symmetric positive definite Gram matrix in place (Cholesky: half the
        # flops of LU, and no second or third n_items^2 buffer: a 24k-item catalogue needs
        # 4.5 GB instead of 13.5 GB). LAPACK fills one triangle; mirror it.
        # P is symmetric: its transpose is the same matrix in C order, which keeps the rows
        # of coef_ contiguous for the sparse-times-dense scoring product.
        largest = float(np.abs(gram).max())
        try:
            P = _spd_inverse_inplace(gram).T
        except np.linalg.LinAlgError:
            P = None
        if P is None or not np.isfinite(P).all() or not (np.diag(P) > 0).all():
            raise ValueError(
                f"EASERecommender(l2={l2!r}): the regularised Gram matrix X^T X + l2 I is "
                "singular to working precision, so the closed form has no solution. Raise "
                f"l2 (the Gram matrix's largest entry is {largest:g}; values around 1-1000 "
                "are usual, e.g. l2=100.0)."
            ) from None
        P /= -np.diag(P).copy()
        P[np.diag_indices_from(P)] = 0.0
        self.coef_ = P.astype(np.float32)

    def _check_fitted_state(self) -> None:
        super()._check_fitted_state()
        if self.__sklearn_is_fitted__():
            from ._fitted_state import check_array, check_params

            check_params(self)
            n = self.n_features_in_
            check_array(self, "coef_", shape=(n, n), kinds="f", shape_from="n_features_in_")

    def _user_scores(self, X: sp.csr_matrix, user_features=None) -> torch.Tensor:
        Xb = X.astype(bool).astype(np.float32)
        return torch.from_numpy(np.asarray(Xb @ self.coef_))

    def _item_similarity(self, query: np.ndarray) -> torch.Tensor:
        # Row i of B: the score each item gets from a user who has item i only.
        return torch.from_numpy(self.coef_[query])


def _spd_inverse_inplace(A: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite float64 matrix, computed in ``A``'s memory."""
    from scipy.linalg import lapack

    # A symmetric C-ordered matrix is its own transpose, and A.T is Fortran-ordered: LAPACK
    # then works in A's memory without a copy.
    F = A.T if A.flags.c_contiguous else np.asfortranarray(A)
    largest = float(np.diag(A).max(initial=0.0))
    c, info = lapack.dpotrf(F, lower=True, overwrite_a=True, clean=False)
    if info == 0 and np.diag(c).min(initial=np.inf) ** 2 <= (
            A.shape[0] * np.finfo(np.float64).eps * largest):
        info = -1  # a pivot lost to rounding: singular to working precision
    if info == 0:
        c, info = lapack.dpotri(c, lower=True, overwrite_c=True)
    if info != 0:  # not positive definite to working precision
        raise np.linalg.LinAlgError(f"EASE: the Gram matrix is not positive definite ({info}).")
    # dpotri filled the lower triangle: mirror it, one block of rows at a time (no n^2 index).
    n, step = c.shape[0], 512
    for i0 in range(0, n, step):
        i1 = min(i0 + step, n)
        c[i0:i1, i1:] = c[i1:, i0:i1].T
        d = c[i0:i1, i0:i1]
        d[...] = np.tril(d) + np.tril(d, -1).T
    return c


class MarkovChainRecommender(BaseRecommender):
    """First-order Markov chain: score items by how often they followed the user's last item.

    Transitions are counted between consecutive interactions of each training row (order from
    the stored values, ties by item index). A user is scored from the transition row of their
    latest item, mixed with the normalised popularity as a back-off for unseen transitions:
    ``score(j) = (P(next = j | last = i) + smoothing * popularity(j)) / (1 + smoothing)``, a
    probability over the catalogue. The natural reference for sequence models; like them it
    warns at fit when the values look like ratings rather than an order.

    Parameters
    ----------
    smoothing : float, default=0.01
        Weight of the popularity back-off relative to the transition probabilities: a finite
        number >= 0 (0: transitions only; a large value: popularity only).

    Attributes
    ----------
    transitions_ : scipy.sparse.csr_matrix of shape (n_features_in_, n_features_in_)
        Row-normalised transition probabilities ``P(next = j | last = i)``.
    n_features_in_ : int
        Number of items.
    item_popularity_ : ndarray of shape (n_features_in_,)
        Training interactions per item.

    Examples
    --------
    >>> from skrec.datasets import make_interactions
    >>> from skrec.baselines import MarkovChainRecommender
    >>> X = make_interactions(n_users=200, n_items=50, random_state=0)
    >>> MarkovChainRecommender().fit(X).predict(X[:2], k=3).shape
    (2, 3)
    """

    _values_are_order = True

    def __init__(self, smoothing: float = 0.01):
        self.smoothing = smoothing

    def _check_params(self) -> None:
        s = self.smoothing
        if (
            isinstance(s, bool)
            or not isinstance(s, numbers.Real)
            or not np.isfinite(s)
            or not s >= 0
        ):
            raise ValueError(f"smoothing must be a finite number >= 0; got {s!r}.")

    def _fit(self, X, y, user_features=None):
        from ._histories import merge_in_order, ordered_sequences

        seqs = ordered_sequences(merge_in_order(X, y), X.shape[1])
        prev, nxt = seqs[:, :-1].ravel(), seqs[:, 1:].ravel()
        ok = (prev > 0) & (nxt > 0)
        n = X.shape[1]
        counts = sp.csr_matrix(
            (np.ones(int(ok.sum())), (prev[ok] - 1, nxt[ok] - 1)), shape=(n, n)
        )
        totals = np.asarray(counts.sum(axis=1)).ravel()
        self.transitions_ = sp.diags(1.0 / np.maximum(totals, 1.0)) @ counts
        self.transitions_ = self.transitions_.tocsr().astype(np.float32)

    def _check_fitted_state(self) -> None:
        super()._check_fitted_state()
        if self.__sklearn_is_fitted__():
            from ._fitted_state import check_params

            check_params(self)
            n = self.n_features_in_
            T = getattr(self, "transitions_", None)
            if not (sp.issparse(T) and T.format == "csr" and T.shape == (n, n)
                    and T.dtype.kind == "f"):
                raise ValueError(f"transitions_ must be a float CSR matrix of shape ({n}, {n}).")
            if T.nnz and not (np.isfinite(T.data).all() and T.data.min() >= 0):
                raise ValueError("transitions_ holds negative or non-finite probabilities.")

    def _next_item_probs(self, last: np.ndarray) -> torch.Tensor:
        """``(len(last), n_items)`` next-item probabilities after items ``last`` (-1: none)."""
        s = float(self.smoothing)
        pop = self.item_popularity_ / max(self.item_popularity_.sum(), 1.0)
        # Weights in float64 so that any finite smoothing stays finite: (T + s pop) / (1 + s).
        scores = np.tile((s / (1.0 + s)) * pop, (last.shape[0], 1))
        has = last >= 0
        scores[has] += self.transitions_[last[has]].toarray().astype(np.float64) / (1.0 + s)
        return torch.from_numpy(scores.astype(np.float32))

    def _user_scores(self, X: sp.csr_matrix, user_features=None) -> torch.Tensor:
        from ._histories import ordered_sequences

        return self._next_item_probs(ordered_sequences(X, 1)[:, 0] - 1)

    def _item_similarity(self, query: np.ndarray) -> torch.Tensor:
        # What follows item i: the scores of a user whose latest item is i.
        return self._next_item_probs(query)
