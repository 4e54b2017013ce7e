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
from .training import NeuralRecommender, _check_float, _check_int

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


@dataclass
class _AEData:
    X: sp.csr_matrix  # non-empty training rows only

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
        The paper's ``(600,)`` scored about 10 % lower NDCG@20 than ``()`` on ML-100K in our
        benchmark (``benchmarks/autoencoder_ml100k.py``); deeper models need more data.
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
    max_iter : int, default=200
        Maximum number of epochs.
    batch_size : int, default=128
        Users per micro-batch.
    learning_rate_init : float, default=1e-3
        AdamW learning rate.
    weight_decay : float, default=0.0
        AdamW decoupled weight decay.
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Autocast precision for training and inference; ``"auto"`` uses bf16 where the hardware
        runs it natively (recent GPUs, CPUs with AVX-512 BF16/AMX) and fp32 elsewhere. Logits
        are upcast to fp32 before the log-softmax.
    accumulation_steps : int, default=1
        Micro-batches per optimizer step (same gradient as one batch that many times larger).
    clip_grad_norm : float or None, default=None
        Gradient-norm clipping.
    early_stopping : bool, default=True
        Hold out 20 % of the items of ``validation_fraction`` of the users (at random, the
        other 80 % stay in training as their fold-in), evaluate them after every epoch, stop
        after ``n_iter_no_change`` epochs without improvement of ``validation_metric`` and
        restore the best weights.
    validation_fraction : float, default=0.1
        Fraction of users used for validation.
    validation_metric : str, default="ndcg@10"
        What early stopping monitors: a ranking metric ``"name@k"`` (``"ndcg@100"`` as in the
        Mult-VAE paper, ``"recall@20"``, ...) or ``"loss"``, the cross-entropy of the
        held-out items under the softmax of the decoder's scores.
    n_iter_no_change : int, default=20
        Patience of early stopping, in epochs.
    tol : float, default=1e-4
        Minimum improvement of the monitored validation value.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible training on CPU.
    verbose : int, default=0
        1: a progress bar over epochs (renders in Jupyter); 2: also over batches.
    warm_start : bool, default=False
        Continue from the current weights (and annealing step) on the next ``fit``.
    prune : float, dict or None, default=None
        Prune the model at the end of ``fit`` and fine-tune it on the training data (see
        :meth:`prune_`): an amount in [0, 1) for structured pruning with the default
        options, or a dict of :meth:`prune_` options such as ``{"amount": 0.5, "method":
        "structured", "targets": ("hidden",), "fine_tune_epochs": 5}``. Lets
        ``GridSearchCV`` compare pruning levels. Nothing is pruned (and nothing fine-tuned)
        with ``None`` or ``0``.

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
    n_steps_ : int
        Optimizer steps run (drives the KL annealing).
    best_score_ : float or None
        Validation NDCG@10 of the restored (best) epoch, with early stopping.
    best_epoch_ : int or None
        The epoch whose weights were restored by early stopping.
    device_ : torch.device
        Device used.
    precision_ : str
        Precision used after resolving ``"auto"``.
    n_features_in_ : int
        Number of items.
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

    def __init__(
        self,
        variational: bool = True,
        hidden_sizes: tuple[int, ...] = (),
        latent_dim: int = 200,
        dropout: float = 0.5,
        beta: float = 0.2,
        anneal_steps: int = 2000,
        max_iter: int = 200,
        batch_size: int = 128,
        learning_rate_init: float = 1e-3,
        weight_decay: float = 0.0,
        precision: str = "auto",
        accumulation_steps: int = 1,
        clip_grad_norm: float | None = None,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        validation_metric: str = "ndcg@10",
        n_iter_no_change: int = 20,
        tol: float = 1e-4,
        device: str = "auto",
        random_state=None,
        verbose: int = 0,
        warm_start: bool = False,
        prune: float | dict | None = None,
    ):
        self.variational = variational
        self.hidden_sizes = hidden_sizes
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.beta = beta
        self.anneal_steps = anneal_steps
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.precision = precision
        self.accumulation_steps = accumulation_steps
        self.clip_grad_norm = clip_grad_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.validation_metric = validation_metric
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.prune = prune

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
            _check_int("hidden_sizes entries", h, 1)
        _check_int("latent_dim", self.latent_dim, 1)
        _check_int("anneal_steps", self.anneal_steps, 0)
        _check_float("dropout", self.dropout, 0, 1)
        if self.dropout >= 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}.")
        _check_float("beta", self.beta, 0)

    def _hidden(self) -> tuple[int, ...]:
        h = self.hidden_sizes
        if isinstance(h, numbers.Integral):
            return (int(h),)
        return tuple(int(v) for v in h)

    def _build_module(self) -> MultVAE:
        return MultVAE(
            self.n_features_in_,
            hidden_sizes=self._hidden(),
            latent_dim=self.latent_dim,
            dropout=self.dropout,
            variational=bool(self.variational),
        )

    def _validation_split(self, X: sp.csr_matrix, rng: np.random.RandomState):
        return random_holdout_split(X, test_size=0.2, random_state=rng)

    def _prepare(self, X: sp.csr_matrix) -> _AEData:
        keep = np.flatnonzero(np.diff(X.indptr) > 0)  # empty rows carry no signal
        Xb = X[keep] if keep.size < X.shape[0] else X
        Xb = sp.csr_matrix(
            (np.ones(Xb.nnz, dtype=np.float32), Xb.indices, Xb.indptr), shape=Xb.shape
        )
        return _AEData(Xb)

    def _batch(self, data: _AEData, rows: np.ndarray, device: torch.device):
        return _binary_rows(data.X[np.sort(rows)], device), len(rows)

    def current_beta(self) -> float:
        """KL weight used at the current optimizer step (0 for the Mult-DAE).

        Returns
        -------
        beta : float
            ``beta * min(1, n_steps_ / anneal_steps)``.
        """
        if not self.variational:
            return 0.0
        if self.anneal_steps == 0:
            return float(self.beta)
        step = getattr(self, "n_steps_", 0)
        return float(self.beta) * min(1.0, step / self.anneal_steps)

    def _batch_loss(self, module: MultVAE, batch: torch.Tensor) -> torch.Tensor:
        logits, mu, logvar = module(batch)
        return multinomial_elbo_loss(logits, batch, mu, logvar, beta=self.current_beta())

    def _module_scores(self, module: MultVAE, X: sp.csr_matrix, device) -> torch.Tensor:
        return module.scores(_binary_rows(X, device))

    def _epoch_info(self) -> dict[str, float]:
        return {"beta": self.current_beta()} if self.variational else {}

    # ------------------------------------------------------------------ similar_items
    def _item_embeddings(self) -> torch.Tensor:
        """Last decoder layer rows ``(n_items, width)``; ``similar_items`` ranks by cosine."""
        return self.module_.decoder[-1].weight
