"""SeqRecommender: a SASRec-family causal transformer for next-item recommendation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ._sequences import merge_in_order, ordered_sequences
from .model_selection import leave_last_out_split
from .nn.losses import gbce_loss, sampled_softmax_loss, softmax_cross_entropy
from .nn.transformer import CausalTransformer
from .pruning import PrunableMixin
from .training import NeuralRecommender, _check_float, _check_int

__all__ = ["SeqRecommender"]

_LOSSES = ("ce", "sampled", "gbce")


@dataclass
class _SeqData:
    seqs: np.ndarray  # (n_rows, max_len + 1), left padded, items + 1
    lengths: np.ndarray  # (n_rows,)
    sampling_probs: torch.Tensor | None

    @property
    def n_rows(self) -> int:
        return self.seqs.shape[0]


class SeqRecommender(PrunableMixin, NeuralRecommender):
    """Next-item recommendation with a causal transformer over each user's history (SASRec).

    Each row of ``X`` is read as a sequence: its items ordered by the stored values (larger =
    later, e.g. timestamps; ties by item index), keeping the latest ``max_len``. Training
    predicts every next item of every sequence at once (causal mask); recommendations score
    the whole catalogue from the last position. Any user row can be scored (fold-in), and
    empty rows get the most popular items.

    Parameters
    ----------
    d_model : int, default=64
        Item embedding and hidden width.
    n_layers : int, default=2
        Transformer blocks.
    n_heads : int, default=2
        Attention heads per block (must divide ``d_model``).
    d_ff : int, default=256
        Feed-forward hidden units per block.
    max_len : int, default=200
        Longest history read (the latest items are kept).
    dropout : float, default=0.3
        Dropout on the embeddings and the residual branches.
    loss : {"ce", "sampled", "gbce"}, default="ce"
        ``"ce"``: full softmax cross-entropy over the catalogue (computed in chunks so memory
        stays bounded); ``"sampled"``: sampled softmax with popularity negatives and logQ
        correction; ``"gbce"``: gSASRec's generalised BCE with uniform negatives. Use the
        sampled losses for catalogues too large for a full softmax.
    n_negatives : int, default=256
        Negatives per batch for ``"sampled"`` and ``"gbce"``.
    gbce_t : float, default=0.75
        Calibration parameter ``t`` of gBCE.
    max_iter : int, default=200
        Maximum number of epochs.
    batch_size : int, default=32
        Users (sequences) per micro-batch. Small batches give more optimizer steps per
        epoch, which matters on small user bases (ML-100K: 943 users).
    learning_rate_init : float, default=1e-3
        AdamW learning rate.
    weight_decay : float, default=0.0
        AdamW weight decay.
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Autocast precision for training and inference; ``"auto"`` uses bf16 where the hardware
        runs it natively (recent GPUs, CPUs with AVX-512 BF16/AMX) and fp32 elsewhere.
    accumulation_steps : int, default=1
        Micro-batches per optimizer step (same gradient as one batch that many times larger).
    clip_grad_norm : float or None, default=5.0
        Gradient-norm clipping.
    early_stopping : bool, default=True
        Hold out the last item of ``validation_fraction`` of the users, evaluate them after
        every epoch, stop after ``n_iter_no_change`` epochs without improvement of
        ``validation_metric`` and restore the best weights. The monitored value is smoothed
        over epochs (exponential moving average, weight 0.3 on the newest epoch): on a few
        hundred validation users one epoch's value is too noisy to stop on.
    validation_fraction : float, default=0.2
        Fraction of users whose last item is held out for early stopping (their earlier
        items still train the model).
    validation_metric : str, default="loss"
        What early stopping monitors: ``"loss"``, the cross-entropy of the held-out items
        (lower is better), or a ranking metric such as ``"ndcg@10"`` or ``"recall@20"``. The
        loss is the default: it varies smoothly, where NDCG@10 on a few hundred users jumps
        from epoch to epoch (on ML-100K, stopping on it ended training 20-30 epochs early).
    n_iter_no_change : int, default=5
        Patience of early stopping, in epochs (of the smoothed value, which already averages
        over the last few epochs).
    tol : float, default=1e-4
        Minimum improvement of the (smoothed) monitored value.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible training on CPU.
    verbose : int, default=0
        1: a progress bar over epochs (renders in Jupyter); 2: also over batches.
    warm_start : bool, default=False
        Continue from the current weights on the next ``fit``.
    prune : float, dict or None, default=None
        Prune the model at the end of ``fit`` and fine-tune it on the training data (see
        :meth:`prune_`): an amount in [0, 1) for structured pruning with the default
        options, or a dict of :meth:`prune_` options such as ``{"amount": 0.5, "method":
        "structured", "targets": ("heads", "ffn"), "fine_tune_epochs": 5}``. Lets
        ``GridSearchCV`` compare pruning levels. Nothing is pruned (and nothing fine-tuned)
        with ``None`` or ``0``.

    Attributes
    ----------
    module_ : CausalTransformer
        The trained torch module.
    history_ : list of dict
        Per epoch: ``loss``, ``val_loss`` and ``val_ndcg@10`` (with early stopping),
        ``seconds``, ``targets_per_s`` (tokens/s), ``steps``, ``peak_memory_mb``.
    n_iter_ : int
        Epochs run.
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

    References
    ----------
    W.-C. Kang and J. McAuley. "Self-Attentive Sequential Recommendation." ICDM 2018.
    A. Klenitskiy and A. Vasilev. "Turning Dross Into Gold Loss: is BERT4Rec really better
    than SASRec?" RecSys 2023.
    A. Petrov and C. Macdonald. "gSASRec: Reducing Overconfidence in Sequential
    Recommendation Trained with Negative Sampling." RecSys 2023.

    Examples
    --------
    >>> from skrec import SeqRecommender
    >>> from skrec.datasets import make_interactions
    >>> from skrec.model_selection import leave_last_out_split
    >>> X, y = leave_last_out_split(make_interactions(n_users=300, n_items=100, random_state=0))
    >>> rec = SeqRecommender(max_iter=2, random_state=0).fit(X)
    >>> rec.predict(X[:2], k=5).shape
    (2, 5)
    """

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        d_ff: int = 256,
        max_len: int = 200,
        dropout: float = 0.3,
        loss: str = "ce",
        n_negatives: int = 256,
        gbce_t: float = 0.75,
        max_iter: int = 200,
        batch_size: int = 32,
        learning_rate_init: float = 1e-3,
        weight_decay: float = 0.0,
        precision: str = "auto",
        accumulation_steps: int = 1,
        clip_grad_norm: float | None = 5.0,
        early_stopping: bool = True,
        validation_fraction: float = 0.2,
        validation_metric: str = "loss",
        n_iter_no_change: int = 5,
        tol: float = 1e-4,
        device: str = "auto",
        random_state=None,
        verbose: int = 0,
        warm_start: bool = False,
        prune: float | dict | None = None,
    ):
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.d_ff = d_ff
        self.max_len = max_len
        self.dropout = dropout
        self.loss = loss
        self.n_negatives = n_negatives
        self.gbce_t = gbce_t
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

    # Users per inference batch: activations grow with users x history length.
    _max_inference_batch = 256
    # The validation loss of a few hundred held-out next items is smoothed over epochs.
    _early_stopping_smoothing = 0.3

    # ------------------------------------------------------------------ hooks
    def _check_params(self) -> None:
        super()._check_params()
        for name in ("d_model", "n_heads", "d_ff", "max_len", "n_negatives"):
            _check_int(name, getattr(self, name), 1)
        _check_int("n_layers", self.n_layers, 0)
        _check_float("dropout", self.dropout, 0, 1)
        if self.dropout >= 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}.")
        _check_float("gbce_t", self.gbce_t, 0, 1)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}."
            )
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}; got {self.loss!r}.")

    def _build_module(self) -> CausalTransformer:
        return CausalTransformer(
            self.n_features_in_,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            d_ff=self.d_ff,
            max_len=self.max_len,
            dropout=self.dropout,
        )

    def _training_matrix(self, X: sp.csr_matrix, y: sp.csr_matrix | None) -> sp.csr_matrix:
        return merge_in_order(X, y)

    def _validation_split(self, X: sp.csr_matrix, rng):
        return leave_last_out_split(X)

    def _prepare(self, X: sp.csr_matrix) -> _SeqData:
        seqs = ordered_sequences(X, self.max_len + 1)
        probs = None
        if self.loss == "sampled":
            counts = np.bincount(X.indices, minlength=self.n_features_in_) + 1.0
            probs = torch.as_tensor(counts / counts.sum(), dtype=torch.float32)
        return _SeqData(seqs, (seqs != 0).sum(1), probs)

    def _batch(self, data: _SeqData, rows: np.ndarray, device: torch.device):
        lengths = data.lengths[rows]
        n_targets = int(np.maximum(lengths - 1, 0).sum())
        width = int(lengths.max(initial=0))
        seq = torch.as_tensor(data.seqs[rows, -max(width, 2) :], device=device)
        probs = data.sampling_probs
        if probs is not None and probs.device != device:
            data.sampling_probs = probs = probs.to(device)
        return (seq, probs), n_targets

    def _batch_loss(self, module: CausalTransformer, batch) -> torch.Tensor:
        seq, probs = batch
        inputs, targets = seq[:, :-1], seq[:, 1:]
        valid = inputs != 0
        hidden = module(inputs)[valid]
        targets = targets[valid] - 1
        weight, bias = module.output_weights()
        if self.loss == "ce":
            return softmax_cross_entropy(hidden, weight, bias, targets)
        if self.loss == "sampled":
            return sampled_softmax_loss(
                hidden, weight, bias, targets, n_negatives=self.n_negatives, sampling_probs=probs
            )
        return gbce_loss(
            hidden, weight, bias, targets, n_negatives=self.n_negatives, t=self.gbce_t
        )

    def _module_scores(self, module: CausalTransformer, X: sp.csr_matrix, device):
        seq = torch.as_tensor(ordered_sequences(X, module.max_len), device=device)
        hidden = module.last_hidden(seq)
        weight, bias = module.output_weights()
        return hidden @ weight.t() + bias

    # ------------------------------------------------------------------ similar_items & fit checks
    _values_are_order = True  # fit warns when the values of X look like ratings, not an order

    def _item_embeddings(self) -> torch.Tensor:
        """Item output embeddings ``(n_items, d)``; ``similar_items`` ranks by their cosine."""
        return self.module_.output_weights()[0]
