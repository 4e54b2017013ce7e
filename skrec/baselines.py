"""Honest reference recommenders: popularity and EASE (Steck, 2019)."""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
import torch

from .base import BaseRecommender

__all__ = ["PopularityRecommender", "EASERecommender"]


class PopularityRecommender(BaseRecommender):
    """Recommend the most popular items (by number of interactions at fit time).

    The reference every recommender must beat. Already-seen items are excluded as usual.
    Scores are ``n_items - rank`` of each item in the popularity order (ties broken by the
    lower item index), so rankings are deterministic.

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
    array([[ 1,  3],
           [ 0,  3],
           [ 2,  1]])
    """

    def __init__(self):
        pass

    def _fit(self, X, y):
        pass

    def _score_batch(self, X: sp.csr_matrix) -> torch.Tensor:
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
        L2 regularisation added to the diagonal of the Gram matrix.

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

    def _fit(self, X, y):
        l2 = self.l2
        if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not l2 > 0:
            raise ValueError(f"l2 must be a positive number; got {l2!r}.")
        B = X if y is None else X + y
        B = B.astype(bool).astype(np.float64)
        gram = (B.T @ B).toarray()
        gram[np.diag_indices_from(gram)] += float(l2)
        P = np.linalg.inv(gram)
        coef = P / (-np.diag(P))
        coef[np.diag_indices_from(coef)] = 0.0
        self.coef_ = coef.astype(np.float32)

    def _score_batch(self, X: sp.csr_matrix) -> torch.Tensor:
        Xb = X.astype(bool).astype(np.float32)
        return torch.from_numpy(np.asarray(Xb @ self.coef_))
