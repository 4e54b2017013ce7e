"""AERecommender: Mult-VAE and Mult-DAE (Liang et al., 2018) on the shared trainer."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from .model_selection import random_holdout_split
from .nn.autoencoder import MultVAE, multinomial_elbo_loss
from .pruning import PrunableMixin
from .training import NeuralRecommender
from .training.params import check_float, check_int

__all__ = ["AERecommender"]


def _binary_rows(X: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """Dense ``(n_rows, n_items)`` float32 tensor on ``device`` with 1 where ``X`` stores a value.

    Only the row and column indices travel to the device; the dense block is created there,
    one batch at a time (``X`` itself is never densified).
    """
    n_rows, n_items = X.shape
    out = torch.zeros((n_rows, n_items), dtype=torch.float32, device=device)
    if X.nnz:
        rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(X.indptr))
        out[
            torch.as_tensor(rows, device=device),
            torch.as_tensor(X.indices.astype(np.int64, copy=False), device=device),
        ] = 1.0
    return out


def _feature_rows(features, device: torch.device) -> torch.Tensor | None:
    """Dense float32 tensor of a batch of feature rows (sparse or dense), or ``None``."""
    if features is None:
        return None
    dense = features.toarray() if sp.issparse(features) else np.asarray(features)
    return torch.as_tensor(dense, dtype=torch.float32, device=device)


@dataclass
class _AEData:
    X: sp.csr_matrix  # non-empty training rows only
    U: sp.csr_matrix | np.ndarray | None = None  # their users' side features

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]


class AERecommender(PrunableMixin, NeuralRecommender):
    """Mult-VAE / Mult-DAE: a variational or denoising autoencoder over each user's item set.

    Each row of ``X`` is read as a set of items (the stored values are only tested for
    ``> 0``). The input is L2-normalised and dropped out, encoded through ``tanh`` layers to a
    code, and decoded to a softmax over the catalogue; training maximises the multinomial
    log-likelihood of the user's items. The variational version (``variational=True``,
    Mult-VAE) adds ``beta`` times the KL divergence of the code's posterior from a standard
    normal, with ``beta`` annealed linearly from 0 over ``anneal_steps`` optimizer steps. The
    denoising version (Mult-DAE) has a deterministic code and no KL term.

    Recommendations decode the posterior mean of the user's (normalised, not dropped-out)
    row, so any user can be scored from their row (fold-in), including users not seen at fit
    time; empty rows get the most popular items. Rows of ``X`` are densified one batch at a
    time, so a large sparse matrix never becomes dense.

    Parameters
    ----------
    variational : bool, default=True
        Mult-VAE (True) or Mult-DAE (False).
    hidden_sizes : tuple of int, default=()
        Encoder hidden widths (the decoder mirrors them); ``()`` gives ``[I -> latent -> I]``.
        Hidden layers (the paper's ``(600,)``) need more data than a few interactions per
        user give, and cost fit time: ``()`` ranked better on the data sets of our
        benchmarks (``benchmarks/autoencoder_ml100k.py``; see :ref:`benchmarks`). Try them
        on large, dense data.
    latent_dim : int, default=200
        Width of the code.
    dropout : float, default=0.5
        Input dropout probability during training (the "denoising").
    beta : float, default=0.2
        Final (capped) weight of the KL term of the Mult-VAE; ignored by the Mult-DAE.
    anneal_steps : int, default=2000
        Optimizer steps over which the KL weight grows linearly from 0 to ``beta``
        (``0``: ``beta`` from the start). The count continues across ``warm_start`` fits and
        :meth:`partial_fit`. An accumulation window is one step.
    {training_parameters}

    Attributes
    ----------
    module_ : MultVAE
        The trained torch module.
    history_ : list of dict
        Per epoch: ``loss`` (per user), ``val_loss`` and ``val_ndcg@10`` (and the monitored
        ``val_<metric>@<k>``, with early stopping), ``seconds``, ``targets_per_s``
        (users/s), ``steps``, ``peak_memory_mb``, ``beta`` (KL weight at the end of the
        epoch).
    n_iter_ : int
        Epochs run.
    batch_size_ : int
        The micro-batch size used (``batch_size``, or what ``"auto"`` chose).
    n_steps_ : int
        Optimizer steps run (drives the KL annealing).
    best_score_ : float or None
        With early stopping, the monitored value (``validation_metric_``: the validation loss
        or the ranking metric, unsmoothed) of the restored (best) epoch.
    validation_metric_ : str
        With early stopping, what was monitored (``validation_metric`` after resolving
        ``"auto"``).
    best_epoch_ : int or None
        The epoch whose weights were restored by early stopping.
    device_ : torch.device
        Device used.
    precision_ : str
        Precision used after resolving ``"auto"``.
    n_features_in_ : int
        Number of items.
    n_user_features_ : int
        Width of the ``user_features`` given to ``fit`` (0 without them).
    item_popularity_ : ndarray of shape (n_features_in_,)
        Training interactions per item (cold users get the most popular).
    pruning_report_ : dict
        Set by :meth:`prune_` (or ``fit`` with ``prune``): method, amount, per-group unit
        counts and the model's parameters, FLOPs per user and sparsity before and after.

    See Also
    --------
    skrec.baselines.EASERecommender : a closed-form linear autoencoder, a strong reference.

    References
    ----------
    D. Liang, R. G. Krishnan, M. D. Hoffman and T. Jebara. "Variational Autoencoders for
    Collaborative Filtering." WWW 2018.

    Examples
    --------
    >>> from skrec import AERecommender
    >>> from skrec.datasets import make_interactions
    >>> X = make_interactions(n_users=300, n_items=100, random_state=0)
    >>> rec = AERecommender(hidden_sizes=(64,), latent_dim=32, max_iter=2, random_state=0)
    >>> rec.fit(X).predict(X[:2], k=5).shape
    (2, 5)
    """

    variational: bool = True
    hidden_sizes: tuple[int, ...] = ()
    latent_dim: int = 200
    dropout: float = 0.5
    beta: float = 0.2
    anneal_steps: int = 2000
    # training parameters whose defaults differ from NeuralRecommender's
    n_iter_no_change: int = 20

    # the encoder reads the users' side features next to their items
    _reads_user_features = True
    _module_class = MultVAE
    _module_params = ("variational", "hidden_sizes", "latent_dim", "dropout", "item_features",
                      "feature_hidden", "feature_dropout", "id_dropout")

    _param_docs = {
        "early_stopping": (
            "Hold out 20 % of the items of ``validation_fraction`` of the users (at random, "
            "the other 80 % stay in training as their fold-in), evaluate them after every "
            "epoch, stop after ``n_iter_no_change`` epochs without improvement of "
            "``validation_metric`` and restore the best weights."
        ),
        "validation_metric": (
            "What early stopping monitors: a ranking metric ``\"name@k\"`` (``\"ndcg@100\"`` "
            "as in the Mult-VAE paper, ``\"recall@20\"``, ...) or ``\"loss\"``, the "
            "cross-entropy of the held-out items under the softmax of the decoder's scores."
        ),
        "warm_start": "Continue from the current weights (and annealing step) on the next "
                      "``fit``.",
    }

    # ------------------------------------------------------------------ hooks
    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.variational, bool | np.bool_):
            raise ValueError(f"variational must be True or False; got {self.variational!r}.")
        hidden = self.hidden_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = (hidden,)
        try:
            hidden = tuple(hidden)
        except TypeError:
            raise ValueError(
                f"hidden_sizes must be a tuple of positive integers; got {self.hidden_sizes!r}."
            ) from None
        for h in hidden:
            check_int("hidden_sizes entries", h, 1)
        check_int("latent_dim", self.latent_dim, 1)
        check_int("anneal_steps", self.anneal_steps, 0)
        check_float("dropout", self.dropout, 0, 1)
        if self.dropout >= 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}.")
        check_float("beta", self.beta, 0)

    def _hidden(self) -> tuple[int, ...]:
        h = self.hidden_sizes
        if isinstance(h, numbers.Integral):
            return (int(h),)
        return tuple(int(v) for v in h)

    def _build_module(self) -> MultVAE:
        hidden = self._hidden()
        return MultVAE(
            self.n_features_in_,
            hidden_sizes=hidden,
            latent_dim=self.latent_dim,
            dropout=self.dropout,
            variational=bool(self.variational),
            # the last decoder layer reads the first hidden width (mirrored) or the code
            features=self._feature_projection(hidden[0] if hidden else self.latent_dim),
            id_dropout=self.id_dropout,
            n_user_features=getattr(self, "n_user_features_", 0),
        )

    def _validation_split(self, X: sp.csr_matrix, rng: np.random.RandomState):
        return random_holdout_split(X, test_size=0.2, random_state=rng)

    def _prepare(self, inputs) -> _AEData:
        X, user_features = inputs
        keep = np.flatnonzero(np.diff(X.indptr) > 0)  # empty rows carry no signal
        subset = keep.size < X.shape[0]
        Xb = X[keep] if subset else X
        Xb = sp.csr_matrix(
            (np.ones(Xb.nnz, dtype=np.float32), Xb.indices, Xb.indptr), shape=Xb.shape
        )
        U = user_features
        return _AEData(Xb, U[keep] if U is not None and subset else U)

    def _make_batch(self, data: _AEData, rows: np.ndarray, device: torch.device):
        rows = np.sort(rows)
        users = None if data.U is None else _feature_rows(data.U[rows], device)
        return (_binary_rows(data.X[rows], device), users), len(rows)

    def current_beta(self) -> float:
        """KL weight used at the current optimizer step (0 for the Mult-DAE).

        Returns
        -------
        beta : float
            ``beta * min(1, n_steps_ / anneal_steps)``.
        """
        return self._beta_at(getattr(self, "n_steps_", 0))

    def _beta_at(self, step: int) -> float:
        """The KL weight after ``step`` optimizer steps."""
        if not self.variational:
            return 0.0
        if self.anneal_steps == 0:
            return float(self.beta)
        return float(self.beta) * min(1.0, step / self.anneal_steps)

    def _batch_loss(self, module: MultVAE, batch, state) -> torch.Tensor:
        x, users = batch
        logits, mu, logvar = module(x, users)
        return multinomial_elbo_loss(logits, x, mu, logvar, beta=self._beta_at(state.n_steps))

    def _module_scores(self, module: MultVAE, X: sp.csr_matrix, device,
                       user_features=None) -> torch.Tensor:
        return module.scores(_binary_rows(X, device), _feature_rows(user_features, device))

    def _history_scores(self, module: MultVAE, seq: torch.Tensor) -> torch.Tensor:
        # The same binary rows as _binary_rows, from padded item indices (column 0 = padding).
        ones = torch.ones(seq.shape, dtype=torch.float32, device=seq.device)
        x = torch.zeros(seq.shape[0], module.n_items + 1, dtype=torch.float32,
                        device=seq.device).scatter(1, seq, ones)
        return module.scores(x[:, 1:])

    def _check_fitted_state(self) -> None:
        from ._fitted_state import check_int as check_int_attribute

        super()._check_fitted_state()
        if not self.__sklearn_is_fitted__():
            return
        module = self.module_
        if bool(self.variational) != module.variational:
            raise ValueError(f"variational is {self.variational!r}, but module_ is "
                             f"{'' if module.variational else 'not '}variational.")
        n_user = check_int_attribute(self, "n_user_features_", low=0, optional=True) or 0
        if n_user != module.n_user_features:
            raise ValueError(f"n_user_features_ is {n_user}, but module_ reads "
                             f"{module.n_user_features} user feature columns.")

    def _epoch_info(self, state) -> dict[str, float]:
        return {"beta": self._beta_at(state.n_steps)} if self.variational else {}

    # ------------------------------------------------------------------ similar_items
    def _item_embeddings(self, module: MultVAE) -> torch.Tensor:
        """Last decoder layer rows ``(n_items, width)``; ``similar_items`` ranks by cosine."""
        return module.item_vectors()
