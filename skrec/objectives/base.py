"""The objective interface, the shared catalogue losses and the objectives' registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from .._histories import ordered_sequences
from ..nn.losses import gbce_loss, sampled_softmax_loss, softmax_cross_entropy

__all__ = ["LOSSES", "OBJECTIVES", "SAMPLED_LOSSES", "Objective", "SeqData",
           "register_objective"]

#: Losses over the catalogue that every objective offers.
LOSSES = ("ce", "sampled", "gbce")

#: The losses that read a few rows of the catalogue per step (the targets and the sampled
#: negatives), trained with sparse gradients of the item table.
SAMPLED_LOSSES = ("sampled", "gbce")

#: Objective name -> class.
OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str):
    """Class decorator: make an :class:`Objective` available as ``objective=name``.

    Parameters
    ----------
    name : str
        The name users pass to ``SeqRecommender(objective=...)``.

    Returns
    -------
    decorator : callable
        Registers the class and returns it unchanged.
    """

    def decorate(cls: type[Objective]) -> type[Objective]:
        cls.name = name
        OBJECTIVES[name] = cls
        return cls

    return decorate


@dataclass
class SeqData:
    """Training sequences prepared once per fit.

    Attributes
    ----------
    seqs : ndarray of shape (n_rows, width)
        Left-padded item indices shifted by one (0 is padding).
    lengths : ndarray of shape (n_rows,)
        Number of items in each row (the trainer groups rows of similar length).
    sampling_probs : torch.Tensor or None
        Proposal distribution of the sampled softmax (item popularity), if used.
    """

    seqs: np.ndarray
    lengths: np.ndarray
    sampling_probs: torch.Tensor | None

    @property
    def n_rows(self) -> int:
        return self.seqs.shape[0]


class Objective:
    """Base class of the sequence objectives: the training task of a sequence model.

    An objective is what :class:`~skrec.training.Trainer` trains a sequence model with (it
    implements :class:`~skrec.training.TrainingTask`: :meth:`make_batch`, :meth:`batch_loss`,
    :meth:`epoch_info`, plus :meth:`prepare`, which turns a fit's training inputs into
    sequences once per run), and how the model's recommendations are read out
    (:meth:`scores`, :meth:`sequence_scores`). The estimator builds it once per fit from its
    own parameters: the objective has no defaults of its own.

    Parameters
    ----------
    loss : {"ce", "sampled", "gbce"}
        Loss over the catalogue (see :meth:`catalogue_loss`).
    n_negatives : int
        Negatives per batch of the sampled losses.
    gbce_t : float
        Calibration parameter of gBCE.
    max_len : int
        Longest history the model reads (training windows hold ``max_len`` inputs).
    sparse_grad : bool, default=True
        With a sampled loss, gather the item vectors (inputs, targets and negatives) with
        sparse gradients so that a step updates only the rows it touches (see
        :meth:`sparse_grads`); ``False`` keeps dense gradients of the whole table.

    Notes
    -----
    An objective's :meth:`batch_loss` computes the item table once (``table =
    module.item_table()``) unless :meth:`sparse_grads` is true, runs the model as
    ``module(seq, table=table, sparse_grad=sparse)`` and computes the loss with
    ``self.catalogue_loss(module, hidden, targets, sampling_probs, table=table)``, so that
    every objective gets the sparse path of the sampled losses.
    """

    #: Registry name (set by :func:`register_objective`).
    name: ClassVar[str] = ""
    #: Whether the encoder must be causal (each position sees only the earlier ones).
    causal: ClassVar[bool] = True
    #: Special input tokens the objective needs after the items (a mask token, ...).
    n_special: ClassVar[int] = 0

    def __init__(self, *, loss: str, n_negatives: int, gbce_t: float, max_len: int,
                 sparse_grad: bool = True, **_: Any):
        self.loss = loss
        self.n_negatives = n_negatives
        self.gbce_t = gbce_t
        self.max_len = int(max_len)
        self.sparse_grad = sparse_grad

    def sparse_grads(self, module: torch.nn.Module) -> bool:
        """Whether training gathers ``module``'s item vectors with sparse gradients: with a
        sampled loss (:data:`SAMPLED_LOSSES`) on a model without item features, unless
        ``sparse_grad=False``. The full softmax touches every row of the catalogue, and item
        features compute every item's vector at each step: both keep dense gradients."""
        return (bool(self.sparse_grad) and self.loss in SAMPLED_LOSSES
                and getattr(module, "features", None) is None)

    def check_module(self, module: torch.nn.Module) -> None:
        """Raise a ValueError when ``module`` was built for another objective.

        A model built for a causal objective has a causal encoder and no special tokens; one
        built for a masked objective has a bidirectional encoder and a mask token. Continuing
        to train (``warm_start``, ``partial_fit``) or predicting with another objective than
        the model was built for would silently train or score the wrong thing.
        """
        encoder_causal = getattr(module.encoder, "causal", self.causal)
        n_special = module.items.n_special
        if encoder_causal != self.causal or n_special != self.n_special:
            raise ValueError(
                f"The fitted model was built for another objective (a "
                f"{'causal' if encoder_causal else 'bidirectional'} encoder with {n_special} "
                f"special token(s)) than objective={self.name!r}; fit it again from scratch "
                "(warm_start=False) after changing the objective."
            )

    # ------------------------------------------------------------------ data
    def prepare(self, inputs: tuple[sp.csr_matrix, Any]) -> SeqData:
        """The training sequences of the recommender's training inputs ``(X, user_features)``
        (the rows of ``X``; a sequence model reads no user features): each row ordered into a
        sequence of at most ``max_len + 1`` items (a window of ``max_len`` inputs and their
        next items)."""
        X = inputs[0]
        seqs = ordered_sequences(X, self.max_len + 1)
        return SeqData(seqs, (seqs != 0).sum(1), self._sampling_probs(X))

    def _sampling_probs(self, X: sp.csr_matrix) -> torch.Tensor | None:
        """Item popularity (add-one smoothed), the proposal of the sampled softmax."""
        if self.loss != "sampled":
            return None
        counts = np.bincount(X.indices, minlength=X.shape[1]) + 1.0
        return torch.as_tensor(counts / counts.sum(), dtype=torch.float32)

    def _rows(self, data: SeqData, rows: np.ndarray, device: torch.device) -> torch.Tensor:
        """The batch's sequences, cut to its longest row (at least 2 columns)."""
        width = int(data.lengths[rows].max(initial=0))
        probs = data.sampling_probs
        if probs is not None and probs.device != device:
            data.sampling_probs = probs.to(device)
        return torch.as_tensor(data.seqs[rows, -max(width, 2) :], device=device)

    def make_batch(self, data: SeqData, rows: np.ndarray,
                   device: torch.device) -> tuple[Any, int]:  # pragma: no cover
        """``(batch, n_targets)`` for the training rows ``rows``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def batch_loss(self, module: torch.nn.Module, batch: Any,
                   state: Any = None) -> torch.Tensor:  # pragma: no cover
        """Summed loss of a batch (fp32 scalar); ``state`` (the trainer's counters) is not
        read by the sequence objectives."""
        raise NotImplementedError

    def epoch_info(self, state: Any = None) -> dict[str, Any]:
        """No extra fields in the epoch records."""
        return {}

    def catalogue_loss(self, module: torch.nn.Module, hidden: torch.Tensor,
                       targets: torch.Tensor, sampling_probs: torch.Tensor | None = None,
                       table=None) -> torch.Tensor:
        """Summed loss of query vectors ``hidden`` (N, d) against ``targets`` (N,) in
        ``[0, n_items)``, scored with ``module``'s output item representations.

        ``"ce"``: full softmax cross-entropy over the catalogue (chunked), from
        ``module.output_weights(table)``; ``"sampled"``: sampled softmax with popularity
        negatives and logQ correction; ``"gbce"``: gSASRec's generalised BCE with uniform
        negatives. The sampled losses read only the rows of the targets and negatives, through
        ``module.output_rows``: from ``table`` (the item table of this pass) when given, else
        gathered from the id embeddings with sparse gradients (see :meth:`sparse_grads`).
        """
        if self.loss == "ce":
            weight, bias = module.output_weights(table)
            return softmax_cross_entropy(hidden, weight, bias, targets)
        sparse = table is None and self.sparse_grads(module)

        def rows(idx):
            return module.output_rows(idx, table, sparse_grad=sparse)

        if self.loss == "sampled":
            return sampled_softmax_loss(hidden, None, None, targets,
                                        n_negatives=self.n_negatives,
                                        sampling_probs=sampling_probs, rows=rows,
                                        n_items=module.n_items)
        return gbce_loss(hidden, None, None, targets, n_negatives=self.n_negatives,
                         t=self.gbce_t, rows=rows, n_items=module.n_items)

    # ------------------------------------------------------------------ inference
    def scores(self, module: torch.nn.Module, X: sp.csr_matrix,
               device: torch.device) -> torch.Tensor:
        """Scores ``(n_rows, n_items)`` of the next item for each row of ``X``.

        Reads each row's latest :meth:`history_length` items and calls
        :meth:`sequence_scores`.
        """
        seq = torch.as_tensor(ordered_sequences(X, self.history_length(module)), device=device)
        return self.sequence_scores(module, seq)

    def history_length(self, module: torch.nn.Module) -> int:
        """Longest history :meth:`sequence_scores` reads: ``module.max_len`` here."""
        return int(module.max_len)

    def sequence_scores(self, module: torch.nn.Module,
                        seq: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Scores ``(B, n_items)`` of the next item after each sequence of ``seq``.

        ``seq`` (B, L), ``L <= history_length(module)``, holds left-padded item indices shifted by
        one (0 is padding). Pure tensor code: this is also the graph that
        :mod:`skrec.serving` exports.
        """
        raise NotImplementedError
