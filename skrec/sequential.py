"""SeqRecommender: sequence encoders x training objectives for next-item recommendation.

The estimator is thin: it validates its hyper-parameters, builds a
:class:`~skrec.nn.SequenceModel` from the item representations and the encoder named by
``encoder`` (:data:`skrec.nn.ENCODERS`), and delegates batches, loss and inference read-out
to the objective named by ``objective`` (:data:`skrec.objectives.OBJECTIVES`).
"""

from __future__ import annotations

import scipy.sparse as sp
import torch
from sklearn.utils.validation import check_is_fitted

from ._histories import merge_in_order
from .model_selection import leave_last_out_split
from .nn import ENCODERS, ItemEmbedding, SequenceModel
from .objectives import OBJECTIVES, Objective
from .objectives.base import LOSSES
from .pruning import PrunableMixin
from .session import SequenceSession
from .training import NeuralRecommender
from .training.params import check_float, check_int

__all__ = ["SeqRecommender"]


class SeqRecommender(PrunableMixin, NeuralRecommender):
    """Next-item recommendation from each user's history: SASRec, GRU4Rec or BERT4Rec.

    Each row of ``X`` is read as a sequence: its items ordered by the stored values (larger =
    later, e.g. timestamps; ties by item index), keeping the latest ``max_len``. A sequence
    ``encoder`` turns the items into hidden states and a training ``objective`` says what
    they learn to predict; recommendations score the whole catalogue against the item
    embeddings (tied to the input ones). The default, a causal transformer predicting every
    next item at once, is SASRec with a full cross-entropy loss. Any user row can be scored
    (fold-in), and empty rows get the most popular items.

    Encoders and objectives are chosen by name, so one ``GridSearchCV`` grid can compare
    them; a combination that cannot work (``encoder="gru"`` with ``objective="masked"``)
    raises a ValueError at fit, which ``GridSearchCV`` reports as a failed fit (a NaN score
    and a ``FitFailedWarning``, or the error with ``error_score="raise"``).

    Parameters
    ----------
    encoder : {"transformer", "gru"}, default="transformer"
        The sequence encoder (see :data:`skrec.nn.ENCODERS`). ``"transformer"``: pre-LN
        transformer blocks with learned positions, causal or bidirectional as the objective
        needs (SASRec, BERT4Rec); uses every parameter below. ``"gru"``: ``n_layers`` GRU
        layers of ``d_model`` units with dropout on the input, between layers and on the
        output (GRU4Rec); causal only; ignores ``n_heads`` and ``d_ff`` (and ``max_len`` but
        for the history it reads). See :ref:`sequence_models`.
    objective : {"causal", "masked"}, default="causal"
        The training objective (see :data:`skrec.objectives.OBJECTIVES`). ``"causal"``
        predicts every next item of every sequence at once (SASRec, GRU4Rec); recommendations
        read the last position. ``"masked"`` replaces a fraction ``mask_prob`` of each
        sequence's items by a mask token and predicts them with bidirectional attention
        (BERT4Rec's cloze task; transformer only); recommendations read a mask token appended
        after the latest ``max_len - 1`` items. It needs many more epochs than ``"causal"``.
    d_model : int, default=64
        Item embedding and hidden width (the GRU's hidden units).
    n_layers : int, default=2
        Transformer blocks, or GRU layers (at least 1).
    n_heads : int, default=2
        Attention heads per block (must divide ``d_model``; transformer only).
    d_ff : int, default=256
        Feed-forward hidden units per block (transformer only).
    max_len : int, default=200
        Longest history read (the latest items are kept).
    dropout : float, default=0.3
        Dropout on the embeddings and the residual branches (transformer), or on the input,
        between layers and on the output (GRU).
    attention_dropout : float or None, default=None
        Transformer only: dropout on the attention weights and on the feed-forward hidden
        units of every block, as in SASRec's published recipe; ``None``: the same rate as
        ``dropout``. ``0.0`` trains faster per epoch on a CPU (attention dropout needs the
        unfused attention kernel) and regularises less: lower it on large data sets, where
        the model underfits (see :ref:`sequence_models` for the measured effect).
    loss : {"auto", "ce", "sampled", "gbce"}, default="auto"
        ``"ce"``: full softmax cross-entropy over the catalogue (computed in chunks so memory
        stays bounded); ``"sampled"``: sampled softmax with popularity negatives and logQ
        correction; ``"gbce"``: gSASRec's generalised BCE with uniform negatives. Use the
        sampled losses for catalogues too large for a full softmax: their cost per epoch
        hardly grows with the catalogue. ``"auto"``: ``"ce"`` up to 10,000 items,
        ``"sampled"`` from there (the loss used is ``loss_``). Every objective trains with
        it (the masked objective on its masked positions only). See :ref:`losses` for the
        measured speed and quality of each.
    n_negatives : int, default=1024
        Negatives per batch for ``"sampled"`` and ``"gbce"`` (shared by the batch's targets:
        more negatives approach the full softmax at little cost).
    gbce_t : float, default=0.75
        Calibration parameter ``t`` of gBCE.
    mask_prob : float, default=0.2
        ``objective="masked"`` only: the fraction of each training sequence's items that are
        masked (``round(mask_prob * length)``, at least one, drawn anew at every epoch); 0.2
        as in BERT4Rec on MovieLens-1M (Sun et al., 2019) and its replications. In (0, 1].
    {training_parameters}

    Attributes
    ----------
    module_ : SequenceModel
        The trained torch module: item representations and the encoder.
    history_ : list of dict
        Per epoch: ``loss``, ``val_loss`` and ``val_ndcg@10`` (with early stopping),
        ``seconds``, ``targets_per_s`` (tokens/s), ``steps``, ``peak_memory_mb``.
    n_iter_ : int
        Epochs run.
    batch_size_ : int
        The micro-batch size used (``batch_size``, or what ``"auto"`` chose).
    loss_ : str
        The training loss used (``loss``, or what ``"auto"`` chose).
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
    item_popularity_ : ndarray of shape (n_features_in_,)
        Training interactions per item (cold users get the most popular).
    pruning_report_ : dict
        Set by :meth:`prune_` (or ``fit`` with ``prune``): method, amount, per-group unit
        counts and the model's parameters, FLOPs per user and sparsity before and after.

    References
    ----------
    W.-C. Kang and J. McAuley. "Self-Attentive Sequential Recommendation." ICDM 2018.
    B. Hidasi, A. Karatzoglou, L. Baltrunas and D. Tikk. "Session-based Recommendations
    with Recurrent Neural Networks." ICLR 2016.
    F. Sun, J. Liu, J. Wu, C. Pei, X. Lin, W. Ou and P. Jiang. "BERT4Rec: Sequential
    Recommendation with Bidirectional Encoder Representations from Transformer." CIKM 2019.
    A. Petrov and C. Macdonald. "A Systematic Review and Replicability Study of BERT4Rec for
    Sequential Recommendation." RecSys 2022.
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

    encoder: str = "transformer"
    objective: str = "causal"
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    d_ff: int = 256
    max_len: int = 200
    dropout: float = 0.3
    attention_dropout: float | None = None
    loss: str = "auto"
    n_negatives: int = 1024
    gbce_t: float = 0.75
    mask_prob: float = 0.2
    # training parameters whose defaults differ from NeuralRecommender's
    batch_size: int | str = "auto"
    clip_grad_norm: float | None = 5.0
    validation_fraction: float = 0.2
    validation_metric: str = "auto"
    n_iter_no_change: int = 10
    weight_averaging: float | None = 0.5

    _param_docs = {
        "batch_size": (
            "Users (sequences) per micro-batch. ``\"auto\"`` (the default): about one "
            "micro-batch per 50 training users, rounded to a power of two and clipped to "
            "[32, 128]: small user bases need many optimizer steps per epoch, large ones "
            "train as well with larger batches in fewer, faster steps (see :ref:`training`). "
            "The value used is ``batch_size_``."
        ),
        "early_stopping": (
            "Hold out the last item of ``validation_fraction`` of the users, evaluate them "
            "after every epoch, stop after ``n_iter_no_change`` epochs without improvement of "
            "``validation_metric`` and restore the best weights. The monitored value is "
            "smoothed over epochs (exponential moving average, weight 0.3 on the newest "
            "epoch): on a few hundred validation users one epoch's value is too noisy to stop "
            "on."
        ),
        "validation_fraction": (
            "Fraction of users whose last item is held out for early stopping (their earlier "
            "items still train the model)."
        ),
        "validation_metric": (
            "What early stopping monitors: ``\"loss\"``, the cross-entropy of the held-out "
            "items (lower is better), a ranking metric such as ``\"ndcg@10\"`` or "
            "``\"recall@20\"``, or ``\"auto\"`` (the default): ``\"ndcg@10\"`` from 1,000 "
            "validation users on, the loss below: on many users the validation loss reaches "
            "its minimum long before the ranking does, so stopping on it ends training too "
            "early, while on a few hundred users one epoch's NDCG@10 jumps too much to stop "
            "on and the smooth loss is the better signal (measured in :ref:`training`). The "
            "metric used is ``validation_metric_``."
        ),
        "n_iter_no_change": (
            "Patience of early stopping, in epochs (of the smoothed value, which already "
            "averages over the last few epochs). Late in training on long histories the "
            "validation NDCG@10 still rises, by less per epoch than it jitters: a short "
            "patience stops there too early (see :ref:`sequence_defaults`). Lower it to "
            "save time on small data, where the best epoch comes early."
        ),
        "tol": "Minimum improvement of the (smoothed) monitored value.",
        "weight_averaging": (
            "Average the weights over epochs: after every epoch the running average takes "
            "this weight of the new weights (an exponential moving average, as in Polyak "
            "averaging and SWA; 0.5 averages about the last three epochs); validation, early "
            "stopping and the fitted model use the average, while training continues from "
            "the latest weights. ``None`` (or 1.0): the latest weights (see :ref:`training` "
            "for its measured effect). The average lags while the model still improves "
            "quickly: for a few epochs only (a short fixed ``max_iter``) set ``None``."
        ),
    }

    _module_class = SequenceModel
    _module_params = ("encoder", "objective", "d_model", "n_layers", "n_heads", "d_ff",
                      "max_len", "dropout", "attention_dropout", "item_features",
                      "feature_hidden", "feature_dropout", "id_dropout")

    # Users per inference batch: activations grow with users x history length.
    _max_inference_batch = 256
    # Sampled losses train the item table with sparse gradients (rows touched by a step only);
    # False keeps dense gradients (the benchmark's reference path).
    _sparse_item_grads = True
    # The validation loss of a few hundred held-out next items is smoothed over epochs.
    _early_stopping_smoothing = 0.3

    # ------------------------------------------------------------------ hooks
    def _check_params(self) -> None:
        super()._check_params()
        for name in ("d_model", "n_heads", "d_ff", "max_len", "n_negatives"):
            check_int(name, getattr(self, name), 1)
        check_int("n_layers", self.n_layers, 0)
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if name == "attention_dropout" and value is None:
                continue
            check_float(name, value, 0, 1)
            if value >= 1:
                raise ValueError(f"{name} must be in [0, 1); got {value!r}.")
        check_float("gbce_t", self.gbce_t, 0, 1)
        check_float("mask_prob", self.mask_prob, 0, 1, low_inclusive=False)
        if not isinstance(self.encoder, str) or self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {tuple(ENCODERS)}; got {self.encoder!r}.")
        if not isinstance(self.objective, str) or self.objective not in OBJECTIVES:
            raise ValueError(
                f"objective must be one of {tuple(OBJECTIVES)}; got {self.objective!r}."
            )
        if self.encoder == "transformer" and self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}."
            )
        if not isinstance(self.loss, str) or self.loss not in ("auto", *LOSSES):
            raise ValueError(f"loss must be 'auto' or one of {LOSSES}; got {self.loss!r}.")

    #: loss="auto": the sampled softmax from this many items on, the full softmax below.
    _auto_sampled_min_items = 10_000

    def _resolved_loss(self) -> str:
        """``loss``, or the ``"auto"`` rule for the fitted catalogue."""
        if self.loss != "auto":
            return self.loss
        return "sampled" if self.n_features_in_ >= self._auto_sampled_min_items else "ce"

    def _objective(self) -> Objective:
        """The objective of the parameters (built once per run for training, where it is the
        trainer's task, and for each inference call)."""
        return OBJECTIVES[self.objective](
            loss=self._resolved_loss(), n_negatives=self.n_negatives, gbce_t=self.gbce_t,
            mask_prob=self.mask_prob, max_len=self.max_len, sparse_grad=self._sparse_item_grads,
        )

    def _training_task(self) -> Objective:
        return self._objective()

    def _build_module(self) -> SequenceModel:
        objective = self._objective()
        items = ItemEmbedding(
            self.n_features_in_, self.d_model, n_special=objective.n_special,
            features=self._feature_projection(self.d_model),
            id_dropout=self.id_dropout,
        )
        encoder = ENCODERS[self.encoder].from_params(
            d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads, d_ff=self.d_ff,
            max_len=self.max_len, dropout=self.dropout, causal=objective.causal,
            inner_dropout=(self.dropout if self.attention_dropout is None
                           else self.attention_dropout),
        )
        return SequenceModel(items, encoder, self.max_len)

    def _training_matrix(self, X: sp.csr_matrix, y: sp.csr_matrix | None) -> sp.csr_matrix:
        return merge_in_order(X, y)

    def _validation_split(self, X: sp.csr_matrix, rng):
        return leave_last_out_split(X)

    def _on_module_ready(self, continued: bool) -> None:
        super()._on_module_ready(continued)
        self.loss_ = self._resolved_loss()

    def _module_scores(self, module: SequenceModel, X: sp.csr_matrix, device,
                       user_features=None):
        objective = self._objective()
        objective.check_module(module)
        return objective.scores(module, X, device)

    def _history_scores(self, module: SequenceModel, seq: torch.Tensor) -> torch.Tensor:
        objective = self._objective()
        objective.check_module(module)
        return objective.sequence_scores(module, seq)

    def _history_limit(self) -> int:
        return self._objective().history_length(self.module_)

    def _check_fitted_state(self) -> None:
        super()._check_fitted_state()
        if not self.__sklearn_is_fitted__():
            return
        module = self.module_
        if not isinstance(module.encoder, ENCODERS[self.encoder]):
            raise ValueError(f"encoder is {self.encoder!r}, but module_ holds a "
                             f"{type(module.encoder).__name__}.")
        self._objective().check_module(module)
        if self.max_len != module.max_len:
            raise ValueError(f"max_len is {self.max_len}, but module_ reads {module.max_len} "
                             "items.")

    # ------------------------------------------------------------------ serving
    def start_session(self, history=()) -> SequenceSession:
        """Serve one user event by event: a session that recommends after each new item.

        ``session.add(item)`` returns the top-k items after the new event, the same as
        :meth:`recommend` on the matrix row of the whole history, at the latency of one
        position per transformer block when the session was prepared between events (see
        :class:`~skrec.session.SequenceSession`).

        Parameters
        ----------
        history : array-like of int, default=()
            The user's items so far, oldest first (item indices).

        Returns
        -------
        session : SequenceSession
            Reads this recommender's current weights.

        Examples
        --------
        >>> from skrec import SeqRecommender
        >>> from skrec.datasets import make_interactions
        >>> X = make_interactions(n_users=300, n_items=100, random_state=0)
        >>> rec = SeqRecommender(max_iter=2, random_state=0).fit(X)
        >>> session = rec.start_session([3, 17, 42])
        >>> ids, scores = session.add(8, k=5)   # top 5 after the new event
        >>> session.prepare()                   # between events: the next add is one step
        >>> ids.shape
        (5,)
        """
        check_is_fitted(self)
        return SequenceSession(self, history)

    # ------------------------------------------------------------------ similar_items & fit checks
    _values_are_order = True  # fit warns when the values of X look like ratings, not an order

    def _item_embeddings(self, module: SequenceModel) -> torch.Tensor:
        """Item output embeddings ``(n_items, d)``; ``similar_items`` ranks by their cosine."""
        return module.output_weights()[0]
