"""CTRClassifier: click prediction for ads, a scikit-learn binary classifier on the trainer."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._distributed import Distributed, data_fingerprint
from ..nn.ctr import ARCHITECTURES, CTRModel
from ..nn.losses import l2_penalty
from ..pruning import PrunableMixin
from ..training import NeuralEstimator
from ..training.params import check_float, check_int
from ..training.schedules import PlateauDecay
from ._counts import MAX_BINS, count_clicks, pair_keys, with_count_fields
from ._data import (
    CTRData,
    CTRInputs,
    binary_target,
    hold_out,
    log_loss_and_auc,
    sample_weights,
)
from ._fields import FieldEncoder
from ._predict import ClickPredictionMixin
from ._values import FieldBatch, _is_frame

__all__ = ["CTRClassifier"]

#: Encoder parameters of the classifier, passed to its FieldEncoder.
_ENCODER_PARAMS = ("categorical", "numeric", "multi_valued", "field_layout", "min_frequency",
                   "hash_buckets", "hashed", "numeric_scaling", "numeric_nan")
_METRICS = {"log_loss": ("val_log_loss", False), "auc": ("val_auc", True)}


class CTRClassifier(ClickPredictionMixin, PrunableMixin, ClassifierMixin, NeuralEstimator):
    """Click prediction for ads: the probability that an impression is clicked.

    A scikit-learn binary classifier of rows of features (user, ad, context: app, time of
    day, city, device...). Each column is a **field**; a :class:`FieldEncoder`, fitted once
    in ``fit`` (``encoder_``), turns the input into integer ids and numeric values:

    - a pandas DataFrame: object, string, category, bool and integer columns are
      categorical fields, float columns numeric, list-valued columns (tags) multi-valued;
    - an integer array of category codes ``(n_samples, n_fields)`` (an
      ``OrdinalEncoder``'s output; columns of non-integral values are numeric);
    - a scipy.sparse one-hot / multi-hot matrix with its ``field_layout``.

    Categories not seen at fit time, and those seen fewer than ``min_frequency`` times, share
    their field's learned **unknown** vector (never an error); huge fields can be hashed
    into ``hash_buckets`` buckets. The model embeds every field, lets the field vectors
    interact (``architecture``), adds the wide part ``f(x) = W1 x + b1`` over the sparse
    features (optionally with hashed crosses of the most specific fields), and outputs a
    calibrated logit: see :class:`~skrec.nn.CTRModel` and :ref:`ctr`.

    By default the model also reads, as one extra field per pair of the three fields with
    the most categories, the binned click and non-click counts of the pair's values in the
    training rows (``click_counts``): the click rate of a (user, item) pair seen before,
    which the embeddings learn slowly.

    The defaults are one setting measured on the validation data of Frappe_x1 and of a
    synthetic Criteo-like log (``benchmarks/ctr_search.py``, then through this estimator in
    ``benchmarks/ctr_counts.py``; test results in :ref:`ctr`), not tuned per data set.

    Parameters
    ----------
    architecture : {"wide_deep", "deepfm", "dcnv2", "transformer"}, default="wide_deep"
        How the field vectors interact: Wide & Deep (an MLP over the concatenated vectors),
        DeepFM (adds the factorisation-machine term), DCN-v2 (a cross network next to the
        MLP) or a transformer over the field vectors (AutoInt-like self-attention, then the
        MLP). The literature (BARS) and our measurements find the choice matters less than
        the embedding regularisation and early stopping: start with the default, try
        ``"deepfm"`` and ``"dcnv2"`` in a grid search.
    embed_dim : int, default=16
        Width of every field vector.
    hidden_sizes : tuple of int, default=(64,)
        Units of the MLP layers. Wider and deeper MLPs (BARS uses ``(400, 400, 400)``) did not
        predict better on Frappe and are slower to serve: 1,000 candidates in 2 ms on one CPU
        thread need a small one.
    dropout : float, default=0.2
        Dropout in the MLP (and the attention blocks).
    batch_norm : bool, default=True
        Batch normalisation in the MLP (without it the MLP over small initial embeddings did
        not learn past the logistic level in our measurements).
    wide : bool, default=True
        Add the wide part (a weight per id, per numeric field, and per hashed cross) to every
        architecture.
    wide_crosses : int or list of str, default=0
        The categorical fields whose pairs are crossed in the wide part (Wide & Deep's
        cross-product features, hashed): the ``k`` fields with the most categories (the most
        specific ids: user, item, ad, site), or the listed columns; 0 for none. The click
        counts (``click_counts``) memorise the same pairs better: with them, adding the
        crosses of the 3 largest fields lowered the test AUC and raised the log loss on
        Frappe_x1 and on the synthetic log (``benchmarks/results/ctr_counts.json``), so
        they are off by default; try 3 with ``click_counts=0``. Crossing every pair
        memorised noise in our measurements.
    wide_cross_buckets : int, default=2**20
        Hashed buckets of the crosses (one weight each).
    wide_cross_min_count : int, default=2
        A cross bucket is used only once the training rows (all the rows seen, across
        ``partial_fit`` chunks) filled it this many times; rarer pairs read as no memorised
        pair (a pair seen once cannot be told from noise).
    click_counts : int or list of str, default=3
        Memorise the click rate of pairs of values by counting: for every pair of these
        categorical fields (the ``k`` fields with the most categories, or the listed
        columns, as for ``wide_crosses``), the training rows' clicks and non-clicks of the
        row's pair of values (hashed into ``click_count_buckets``) are counted, each count
        binned on a log scale (0, 1, 2-3, 4-7, ... up to ``click_count_bins``), and the
        (clicks, non-clicks) bin combination becomes one extra embedded field of the model
        (with a wide weight). A training row reads its counts with its own label left out,
        so that the field does not leak the label; validation and prediction rows read the
        full counts of the training rows. The counts are of rows (``sample_weight`` and
        ``class_weight`` do not weight them). ``fit`` counts its training rows (not the
        held-out validation rows), also with ``warm_start``; ``partial_fit`` adds each chunk
        to the counts of the earlier ones. 0: no count field. More pairs (4: six pairs)
        memorise more at twice the counts' memory and a slower ``score_candidates``; the
        measured effect of each setting is in :ref:`ctr_measured`. Set 0
        when no pair of values repeats between training and serving (every row a new user
        and ad).
    click_count_bins : int, default=8
        Log-scale bins of each count (2 to 16): counts of ``2 ** (bins - 2)`` and more share
        the last bin. Each pair's field has ``bins ** 2`` ids.
    click_count_buckets : int, default=2**20
        Hashed buckets of each pair's counts (two uint16 counts each: ``4 * buckets`` bytes
        per pair in the fitted model). Fewer buckets mean more pairs sharing counts.
    wide_learning_rate : float, default=0.05
        Learning rate of the cross weights (the other weights learn at
        ``learning_rate_init``): memorisation needs large steps on weights that few rows
        touch.
    embedding_l2 : float, default=0.025
        L2 penalty ``embedding_l2 / 2 * ||W||^2`` on the embedding table, the numeric field
        vectors and the wide part's per-id weights, added to the loss (the whole tables at
        every step, as FuxiCTR regularises embeddings). The regularisation that mattered
        most in our measurements; raise it when the validation log loss rises after a few
        epochs.
    n_cross_layers : int, default=3
        Cross layers of ``"dcnv2"``.
    cross_rank : int or None, default=None
        Rank of the cross layers of ``"dcnv2"`` (``None``: full rank).
    n_blocks : int, default=2
        Attention blocks of ``"transformer"``.
    n_heads : int, default=2
        Heads per attention block (``embed_dim`` must be divisible by it).
    n_experts : int, default=0
        Replace the MLP by a mixture of this many expert MLPs of the same sizes under a
        softmax gate (MMoE-like); 0: a plain MLP. Off by default: on Frappe it predicted
        worse and trained several times slower than the plain MLP (:ref:`ctr_measured`).
    categorical, numeric, multi_valued : list or None, default=None
        Columns whose kind is forced (see :class:`FieldEncoder`); by dtype otherwise.
    field_layout : OneHotEncoder, ColumnTransformer, list or None, default=None
        The field layout of a sparse ``X`` (see :class:`FieldEncoder`). To save the model
        with :func:`skrec.save`, give it as field widths or column ranges (a fitted
        transformer is code-holding state that a skrec file does not store).
    min_frequency : int, default=10
        Categories seen fewer times at fit share their field's unknown vector.
    hash_buckets : int or None, default=None
        Buckets of hashed fields (see ``hashed``); ``None``: no field is hashed. A stream
        (``partial_fit``) needs ``hashed="all"`` with it: categories first seen in a later
        chunk then get their own bucket instead of the unknown vector.
    hashed : "auto", "all" or list, default="auto"
        Which fields are hashed when ``hash_buckets`` is set (see :class:`FieldEncoder`).
    numeric_scaling : {"standard", "log", "none"}, default="standard"
        Scaling of numeric fields (``"log"`` for heavy-tailed counts).
    numeric_nan : {"indicator", "mean", "error"}, default="indicator"
        NaN in a numeric field: the training mean plus a 0/1 categorical field
        ``"<column>_missing"`` per numeric column holding NaN at fit time
        (``"indicator"``: the model tells a missing value from an average one); the
        training mean only (``"mean"``); or a ValueError (see :class:`FieldEncoder`). A NaN
        in a column that had none at fit reads as the mean. Keep the indicator when values
        are missing for a reason (a count that was not logged); data without NaN are
        unchanged (:ref:`ctr_measured`).
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplying ``sample_weight`` (``"balanced"``: inversely
        proportional to their frequencies; not with ``partial_fit``). Weighting changes the
        probabilities: they are no longer calibrated to the true click rate.
    negative_sampling_rate : float, default=1.0
        The share of negatives kept in the training data, when they were subsampled (ads
        logs often keep every click and a fraction ``r`` of the non-clicks). Predictions are
        corrected back to the true click rate: the logit gets ``log(r)`` added, since
        subsampling multiplies the odds of a click by ``1 / r`` (He et al., 2014; see
        :func:`negative_sampling_correction`). Validation scores the held-out rows as they
        were sampled (uncorrected). Rankings do not change.
    lr_decay : float, default=0.1
        With early stopping: after each epoch without improvement the learning rates are
        multiplied by this, and training restarts from the best weights so far (at most
        ``max_lr_decays`` times; see :class:`~skrec.training.schedules.PlateauDecay`). 1.0:
        a constant learning rate.
    max_lr_decays : int, default=2
        Most decays per ``fit``.
    {training_parameters}

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is the click (positive) class.
    encoder_ : FieldEncoder
        The fitted input encoder.
    n_features_in_ : int
        Input columns.
    feature_names_in_ : ndarray of str
        Column names of a DataFrame input.
    module_ : CTRModel
        The trained torch module.
    cross_counts_ : ndarray of uint8 or None
        Training rows per cross bucket so far (saturating at 255; what
        ``wide_cross_min_count`` reads).
    click_counts_ : ndarray of uint16 of shape (n_pairs, 2, click_count_buckets) or None
        With ``click_counts``: the training rows' non-clicks (``[:, 0]``) and clicks
        (``[:, 1]``) per pair of count fields and hashed bucket (saturating at 65535).
    history_ : list of dict
        Per epoch: ``loss`` (the training objective per row: log loss plus the L2 penalty),
        ``val_log_loss`` and ``val_auc`` (with validation), ``seconds``, ``targets_per_s``
        (rows/s), ``steps``, ``lr_factor``, ``peak_memory_mb``.
    n_iter_, n_steps_, best_score_, best_epoch_, batch_size_, device_, precision_, \
validation_metric_
        As for the other neural estimators (see :ref:`training`).
    pruning_report_ : dict
        Set by :meth:`prune_`.

    See Also
    --------
    FieldEncoder : the input layer.
    skrec.nn.CTRModel : the torch module.

    References
    ----------
    H.-T. Cheng et al. "Wide & Deep Learning for Recommender Systems." DLRS 2016.
    H. Guo et al. "DeepFM: A Factorization-Machine based Neural Network for CTR
    Prediction." IJCAI 2017. R. Wang et al. "DCN V2." WWW 2021. W. Song et al. "AutoInt."
    CIKM 2019. J. Zhu et al. "BARS: Towards Open Benchmarking for Recommender Systems."
    SIGIR 2022.

    Examples
    --------
    >>> import pandas as pd
    >>> from skrec import CTRClassifier
    >>> from skrec.datasets import make_ctr
    >>> data = make_ctr(2000, n_categorical=4, n_numeric=2, max_cardinality=50,
    ...                 click_rate=0.3, as_frame=True, random_state=0)
    >>> clf = CTRClassifier(max_iter=2, batch_size=256, random_state=0)
    >>> clf.fit(data.X, data.y).predict_proba(data.X[:3]).shape
    (3, 2)
    """

    architecture: str = "wide_deep"
    embed_dim: int = 16
    hidden_sizes: tuple[int, ...] = (64,)
    dropout: float = 0.2
    batch_norm: bool = True
    wide: bool = True
    wide_crosses: int | list = 0
    wide_cross_buckets: int = 1 << 20
    wide_cross_min_count: int = 2
    click_counts: int | list = 3
    click_count_bins: int = 8
    click_count_buckets: int = 1 << 20
    wide_learning_rate: float = 0.05
    embedding_l2: float = 0.025
    n_cross_layers: int = 3
    cross_rank: int | None = None
    n_blocks: int = 2
    n_heads: int = 2
    n_experts: int = 0
    categorical: list | None = None
    numeric: list | None = None
    multi_valued: list | None = None
    field_layout: Any = None
    min_frequency: int = 10
    hash_buckets: int | None = None
    hashed: str | list = "auto"
    numeric_scaling: str = "standard"
    numeric_nan: str = "indicator"
    class_weight: dict | str | None = None
    negative_sampling_rate: float = 1.0
    lr_decay: float = 0.1
    max_lr_decays: int = 2
    # training parameters whose defaults differ from the base's
    max_iter: int = 100
    batch_size: int | str = 4096
    n_iter_no_change: int = 2
    tol: float = 1e-6
    validation_metric: str = "log_loss"

    _module_class = CTRModel
    _module_params = ("architecture", "embed_dim", "hidden_sizes", "dropout", "batch_norm",
                      "wide", "wide_crosses", "wide_cross_buckets", "click_counts",
                      "click_count_bins", "click_count_buckets", "n_cross_layers",
                      "cross_rank", "n_blocks", "n_heads", "n_experts", *_ENCODER_PARAMS)
    _module_attributes: ClassVar[tuple[str, ...]] = ("cross_counts_", "click_counts_")
    _progress_postfix: ClassVar[tuple[str, ...]] = ("loss", "val_log_loss", "val_auc")
    _auto_rows_per_batch: ClassVar[int] = 50
    _auto_batch_range: ClassVar[tuple[int, int]] = (256, 4096)

    _param_docs = {
        "batch_size": (
            "Rows (impressions) per micro-batch. ``\"auto\"``: about one micro-batch per 50 "
            "training rows, rounded to a power of two and clipped to [256, 4096]. The value "
            "used is ``batch_size_``."
        ),
        "learning_rate_init": (
            "Adam learning rate of the embeddings, the per-id wide weights and the dense "
            "layers (the cross weights use ``wide_learning_rate``)."
        ),
        "weight_decay": (
            "Decoupled weight decay (AdamW) of the dense layers only; the embeddings are "
            "regularised by ``embedding_l2``."
        ),
        "early_stopping": (
            "Validate after every epoch on ``X_val`` (when ``fit`` gets it) or on "
            "``validation_fraction`` of the rows (stratified by class), stop after "
            "``n_iter_no_change`` epochs without an improvement of ``validation_metric`` "
            "by more than ``tol`` (lowering the learning rate at each, see ``lr_decay``), "
            "and restore the weights of the best epoch."
        ),
        "validation_fraction": "Fraction of the rows held out for validation (without "
                               "``X_val``).",
        "validation_metric": (
            "What early stopping monitors: ``\"log_loss\"`` (the validation log loss: what "
            "calibrated click probabilities need) or ``\"auc\"`` (ROC AUC, a ranking metric). "
            "Both are recorded in ``history_``."
        ),
        "warm_start": "Continue from the current weights and encoder on the next ``fit``.",
    }

    # ------------------------------------------------------------------ tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a sparse X needs its field_layout: with the default parameters it is refused
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = True  # NaN: a categorical field's missing id, a mean
        tags.classifier_tags.multi_class = False
        tags.target_tags.required = True
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "module_") and hasattr(self, "encoder_")

    # ------------------------------------------------------------------ parameter checks
    def _check_params(self) -> None:
        super()._check_params()
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}; got "
                             f"{self.architecture!r}.")
        check_int("embed_dim", self.embed_dim, 1)
        for h in self._hidden():
            check_int("hidden_sizes entries", h, 1)
        for name in ("dropout",):
            check_float(name, getattr(self, name), 0, 1)
            if getattr(self, name) >= 1:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)!r}.")
        for name in ("batch_norm", "wide"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}.")
        for name in ("wide_crosses", "click_counts"):
            fields = getattr(self, name)
            if not (isinstance(fields, list | tuple) and all(
                    isinstance(c, str | numbers.Integral) for c in fields)):
                check_int(name, fields, 0)
        check_int("wide_cross_buckets", self.wide_cross_buckets, 1)
        check_int("click_count_bins", self.click_count_bins, 2)
        if self.click_count_bins > MAX_BINS:
            raise ValueError(f"click_count_bins must be at most {MAX_BINS}; got "
                             f"{self.click_count_bins!r}.")
        check_int("click_count_buckets", self.click_count_buckets, 1)
        check_int("wide_cross_min_count", self.wide_cross_min_count, 1)
        check_float("wide_learning_rate", self.wide_learning_rate, 0, low_inclusive=False)
        check_float("embedding_l2", self.embedding_l2, 0)
        check_int("n_cross_layers", self.n_cross_layers, 1)
        check_int("cross_rank", self.cross_rank, 1, allow_none=True)
        check_int("n_blocks", self.n_blocks, 1)
        check_int("n_heads", self.n_heads, 1)
        if self.architecture == "transformer" and self.embed_dim % self.n_heads:
            raise ValueError(f"embed_dim={self.embed_dim} must be divisible by "
                             f"n_heads={self.n_heads}.")
        check_int("n_experts", self.n_experts, 0)
        check_float("negative_sampling_rate", self.negative_sampling_rate, 0, 1,
                    low_inclusive=False)
        check_float("lr_decay", self.lr_decay, 0, 1, low_inclusive=False)
        check_int("max_lr_decays", self.max_lr_decays, 0)
        cw = self.class_weight
        if not (cw is None or isinstance(cw, dict) or (isinstance(cw, str)
                                                       and cw == "balanced")):
            raise ValueError(f'class_weight must be None, "balanced" or a dict {{class: '
                             f"weight}}; got {cw!r}.")
        self._new_encoder()._check_params()

    def _check_validation_metric(self) -> None:
        if self.validation_metric not in _METRICS:
            raise ValueError(f"validation_metric must be one of {tuple(_METRICS)}; got "
                             f"{self.validation_metric!r}.")

    def _hidden(self) -> tuple[int, ...]:
        h = self.hidden_sizes
        if isinstance(h, numbers.Integral) and not isinstance(h, bool):
            return (int(h),)
        try:
            return tuple(h)
        except TypeError:
            raise ValueError(f"hidden_sizes must be a tuple of positive integers; got "
                             f"{h!r}.") from None

    def _new_encoder(self) -> FieldEncoder:
        return FieldEncoder(**{name: getattr(self, name) for name in _ENCODER_PARAMS})

    # ------------------------------------------------------------------ input
    def _encode(self, X, encoder: FieldEncoder | None = None) -> FieldBatch:
        """``X`` encoded by ``encoder`` (the fitted one by default), its width checked as
        scikit-learn words it."""
        encoder = self.encoder_ if encoder is None else encoder
        X = _as_input(X)
        if not _is_frame(X) and X.shape[1] != encoder.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {encoder.n_features_in_} features as input.")
        return encoder.transform(X)

    def _inputs(self, X, y, sample_weight, *, encoder: FieldEncoder | None = None,
                classes: np.ndarray | None = None, partial: bool = False) -> CTRInputs:
        """Validated training inputs, encoded by ``encoder`` with ``classes`` (the fitted
        ones by default)."""
        classes = self.classes_ if classes is None else classes
        X = _as_input(X)
        _, y01 = binary_target(y, _n_rows(X), classes)
        batch = self._encode(X, encoder)
        w = sample_weights(y01, sample_weight, self.class_weight, classes, partial)
        return CTRInputs(batch, y01, w)

    def _new_state(self, X, y, classes=None) -> tuple[FieldEncoder, np.ndarray]:
        """The encoder and the classes of a new model (nothing is set yet)."""
        if classes is not None:
            classes, _ = binary_target(np.unique(classes), np.unique(classes).size)
        X = _as_input(X)
        classes, _ = binary_target(y, _n_rows(X), classes)
        return self._new_encoder().fit(X), classes

    def _set_state(self, encoder: FieldEncoder, classes: np.ndarray) -> None:
        """Adopt a new encoder and classes; the module they replace goes with them."""
        for name in ("module_", "feature_names_in_"):
            self.__dict__.pop(name, None)
        self.encoder_, self.classes_ = encoder, classes
        self.n_features_in_ = encoder.n_features_in_
        if hasattr(encoder, "feature_names_in_"):
            self.feature_names_in_ = encoder.feature_names_in_

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None) -> CTRClassifier:
        """Fit the encoder and train the model (early stopping on a validation set).

        Parameters
        ----------
        X : DataFrame, array-like of shape (n_samples, n_fields) or sparse matrix
            Impressions (see the class description for the forms).
        y : array-like of shape (n_samples,)
            Click labels: two classes (0/1, or any two labels; ``classes_[1]`` is the
            click).
        sample_weight : array-like of shape (n_samples,), default=None
            Per-row weights of the loss.
        X_val, y_val : default=None
            An explicit validation set for early stopping (the form of ``X``), instead of
            holding out ``validation_fraction`` of the rows (as
            ``HistGradientBoostingClassifier``'s ``fit`` takes one).
        sample_weight_val : array-like, default=None
            Weights of the validation rows.

        Returns
        -------
        self : CTRClassifier
            Fitted.
        """
        self._check_params()
        continued = self._continues()
        self._warn_if_emulated(continued)
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither.")
        if sample_weight_val is not None and X_val is None:
            raise ValueError("sample_weight_val needs X_val and y_val.")
        X = _as_input(X)
        if _n_rows(X) == 0:
            raise ValueError(f"0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                             "required: a click model needs training rows.")
        encoder = classes = None
        if not continued:
            encoder, classes = self._new_state(X, y)
        inputs = self._inputs(X, y, sample_weight, encoder=encoder, classes=classes)
        if X_val is not None:
            val = self._inputs(X_val, y_val, sample_weight_val, encoder=encoder,
                               classes=classes)
            inputs.validation = (val.batch, val.y, val.weight)
        if not continued:  # everything passed: the new encoder and classes are the model's
            self._set_state(encoder, classes)
        inputs.recount = True  # the click counts are those of fit's rows (warm_start too)
        self._run(inputs, epochs=self.max_iter, continued=continued)
        inputs.count_crosses = False  # pruning's passes: the fit counted these rows
        self._after_fit(inputs)
        return self

    def partial_fit(self, X, y, classes=None, sample_weight=None) -> CTRClassifier:
        """Train one epoch on a chunk of rows, continuing from the current weights.

        The first call fits the encoder on its chunk, which fixes the field layout: later
        chunks map categories the first chunk did not hold to the unknown vector, unless
        their fields are hashed (``hash_buckets`` with ``hashed="all"``: every category gets
        a bucket, at the cost of collisions; the right setting for a stream). The click
        counts (``click_counts``) and the wide part's crosses are counted over every chunk
        seen (a chunk's rows read their counts leave-one-out). No validation, no early stopping.
        An empty chunk of a fitted model changes nothing.

        Parameters
        ----------
        X : DataFrame, array-like or sparse matrix
            A chunk of impressions.
        y : array-like of shape (n_samples,)
            Its click labels.
        classes : array-like of shape (2,), default=None
            The two classes; needed at the first call when its chunk holds one class only.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-row weights.

        Returns
        -------
        self : CTRClassifier
            Updated.
        """
        self._check_params()
        continued = self._continues(partial=True)
        self._warn_if_emulated(continued)
        X = _as_input(X)
        if _n_rows(X) == 0:
            if continued:
                return self
            raise ValueError(f"0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                             "required: partial_fit fits the encoder on its first chunk.")
        if continued:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(f"classes={list(classes)} differ from the model's classes "
                                 f"{self.classes_.tolist()}.")
            inputs = self._inputs(X, y, sample_weight, partial=True)
        else:
            encoder, classes = self._new_state(X, y, classes)
            inputs = self._inputs(X, y, sample_weight, encoder=encoder, classes=classes,
                                  partial=True)
            self._set_state(encoder, classes)
        return self._run(inputs, epochs=1, continued=continued, validate=False)

    def _training_inputs(self, X, y=None, sample_weight=None, *, X_val=None, y_val=None,
                         sample_weight_val=None) -> CTRInputs:
        """Training inputs of the fitted model (pruning's importance pass and fine-tuning),
        with ``fit``'s explicit validation set when given (``prune_(..., X_val=, y_val=)``)."""
        if y is None:
            raise ValueError("a CTRClassifier is pruned and fine-tuned on labelled rows: pass "
                             "y with X.")
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither.")
        check_is_fitted(self)
        inputs = self._inputs(X, y, sample_weight)
        if X_val is not None:
            val = self._inputs(X_val, y_val, sample_weight_val)
            inputs.validation = (val.batch, val.y, val.weight)
        inputs.count_crosses = False
        return inputs

    # ------------------------------------------------------------------ the run's hooks
    def _build_module(self) -> CTRModel:
        enc = self.encoder_
        fields = self._cross_fields()
        n_ids, n_cat = self._model_layout()
        return CTRModel(
            n_ids, n_cat, enc.n_multi_, enc.n_numeric_,
            architecture=self.architecture, embed_dim=self.embed_dim,
            hidden=self._hidden(), dropout=self.dropout, batch_norm=bool(self.batch_norm),
            wide=bool(self.wide), n_cross=self.n_cross_layers, cross_rank=self.cross_rank,
            n_blocks=self.n_blocks, n_heads=self.n_heads, n_experts=self.n_experts,
            cross_buckets=self.wide_cross_buckets if len(fields) > 1 else 0,
            cross_fields=fields if len(fields) > 1 else None)

    def _cross_fields(self) -> list[int]:
        """Positions, among the categorical fields, of the fields crossed pairwise."""
        return self._pair_fields("wide_crosses") if self.wide else []

    def _count_fields(self) -> list[int]:
        """Positions, among the encoder's categorical fields, of the fields whose pairs are
        counted (fewer than two: none)."""
        fields = self._pair_fields("click_counts")
        return fields if len(fields) > 1 else []

    def _pair_fields(self, name: str) -> list[int]:
        """Positions, among the encoder's categorical fields, of the fields that the
        parameter ``name`` picks: the ``k`` largest, or the listed columns."""
        chosen = getattr(self, name)
        if isinstance(chosen, numbers.Integral):
            return self.encoder_.largest_fields(int(chosen))
        cats = [f["column"] for f in self.encoder_.fields_ if f["kind"] == "categorical"]
        bad = [c for c in chosen if c not in cats]
        if bad:
            raise ValueError(f"{name} names {bad}, which are not categorical fields "
                             f"(those are {cats}).")
        return sorted({cats.index(c) for c in chosen})

    def _model_layout(self) -> tuple[int, int]:
        """``(table rows, categorical fields)`` of the module: the encoder's, then one field
        of ``click_count_bins ** 2`` ids per counted pair."""
        enc = self.encoder_
        k = len(self._count_fields())
        n_pairs = k * (k - 1) // 2
        return (enc.n_ids_ + n_pairs * self.click_count_bins ** 2,
                enc.n_categorical_ + n_pairs)

    def _with_counts(self, batch: FieldBatch, y: np.ndarray | None = None) -> FieldBatch:
        """The encoded ``batch`` as the module reads it: with the count fields appended
        (leave-one-out with the counted rows' labels ``y``); as it is without counts."""
        fields = self._count_fields()
        if not fields:
            return batch
        return with_count_fields(batch, self.click_counts_, fields, self.click_count_bins,
                                 self.encoder_.n_ids_, y)

    def _n_rows(self, inputs: CTRInputs) -> int:
        return inputs.n_rows

    def _hold_out_validation(self, inputs: CTRInputs, rng: np.random.RandomState):
        if inputs.validation is not None:
            validation = inputs.validation
            return dataclasses.replace(inputs, validation=None), validation
        return hold_out(inputs, self.validation_fraction, rng)

    def _prepare(self, inputs: CTRInputs) -> CTRData:
        """The run's tensors; the rows' crosses counted into the wide part's mask and their
        clicks into ``click_counts_``; the count fields appended (leave-one-out)."""
        wide = self.module_.wide
        if inputs.count_crosses and wide is not None and wide.cross_buckets:
            self._count_crosses(wide, torch.as_tensor(inputs.batch.ids))
        fields = self._count_fields()
        if fields:
            if inputs.count_crosses:
                keys = pair_keys(inputs.batch.ids, fields, self.click_count_buckets)
                counts = None if inputs.recount else getattr(self, "click_counts_", None)
                self.click_counts_ = count_clicks(counts, keys, inputs.y,
                                                  self.click_count_buckets)
            inputs = dataclasses.replace(inputs, batch=self._with_counts(inputs.batch,
                                                                         inputs.y))
        return CTRData(inputs)

    def _count_crosses(self, wide, ids: torch.Tensor) -> None:
        """Add the rows' cross buckets to ``cross_counts_`` (saturating) and use the buckets
        filled ``wide_cross_min_count`` times."""
        from ..nn.ctr import cross_ids

        counts = getattr(self, "cross_counts_", None)
        total = np.zeros(wide.cross_buckets, dtype=np.int64) if counts is None \
            else counts.astype(np.int64)
        for start in range(0, ids.shape[0], 1 << 16):
            h = cross_ids(ids[start:start + (1 << 16)], wide.cross_buckets, wide.cross_fields)
            total += np.bincount(h.reshape(-1).numpy(), minlength=wide.cross_buckets)
        self.cross_counts_ = np.minimum(total, 255).astype(np.uint8)
        mask = torch.as_tensor(self.cross_counts_ >= self.wide_cross_min_count)
        with torch.no_grad():
            wide.cross_mask.copy_(mask.to(wide.cross_mask.dtype))

    def _make_batch(self, data: CTRData, rows: np.ndarray, device: torch.device):
        return data.batch(rows, device)

    def _batch_loss(self, module: CTRModel, batch, state) -> torch.Tensor:
        inputs, y, w = batch
        loss = F.binary_cross_entropy_with_logits(module(**inputs), y, weight=w,
                                                  reduction="sum")
        if self.embedding_l2:  # per row, so that the window's mean carries it once
            penalty = l2_penalty(_l2_params(module))
            loss = loss + (self.embedding_l2 * y.shape[0]) * penalty
        return loss

    def _param_groups(self, module: CTRModel) -> list:
        embeddings = _l2_params(module)
        crosses = [module.wide.cross_weight] if module.wide is not None and \
            module.wide.cross_buckets else []
        taken = {id(p) for p in embeddings + crosses}
        dense = [p for p in module.parameters() if p.requires_grad and id(p) not in taken]
        groups = [{"params": embeddings, "weight_decay": 0.0}, {"params": dense}]
        if crosses:
            groups.append({"params": crosses, "lr": self.wide_learning_rate,
                           "weight_decay": 0.0})
        return groups

    def _lr_schedule(self) -> PlateauDecay | None:
        if self.lr_decay >= 1 or not self.max_lr_decays:
            return None
        return PlateauDecay(self.lr_decay, self.max_lr_decays)

    def _validation_scores(self, validation, dist: Distributed) -> dict[str, float]:
        """``val_log_loss`` and ``val_auc`` of the validation rows (as sampled: no
        negative-sampling correction). In data-parallel training each rank scores its share
        and the logits are gathered, so that every rank decides alike."""
        batch, y, w = validation
        if dist.enabled:
            part = dist.shard_rows(len(batch))
            rows = np.arange(part.start, part.stop)
            parts = dist.all_gather_object(self._raw_logits(batch.take(rows)),
                                           "the gathering of the validation logits")
            logit = np.concatenate(parts)
        else:
            logit = self._raw_logits(batch)
        ll, auc = log_loss_and_auc(logit, y, w)
        return {"val_log_loss": ll, "val_auc": auc}

    def _monitored(self, metric: str) -> tuple[str, bool]:
        return _METRICS[metric]

    def _data_fingerprints(self, inputs: CTRInputs) -> dict[str, Any]:
        b = inputs.batch
        out = {"data": data_fingerprint(b.ids), "numeric": data_fingerprint(b.numeric),
               "labels": data_fingerprint(inputs.y),
               "weights": None if inputs.weight is None else data_fingerprint(inputs.weight)}
        if b.bags is not None:
            out["bags"] = data_fingerprint(b.bags)
        if inputs.validation is not None:
            out["validation"] = data_fingerprint(inputs.validation[0].ids)
        return out

    def _divergence_hint(self, inputs: CTRInputs) -> str:
        return ("Numeric fields with extreme values can cause it: try "
                'numeric_scaling="log".') if inputs.batch.numeric.size else ""

    # ------------------------------------------------------------------ persistence
    def _check_fitted_state(self) -> None:
        from ._state import check_classifier_state

        super()._check_fitted_state()
        if self.__sklearn_is_fitted__():
            if type(self.encoder_) is not FieldEncoder:
                raise TypeError(f"encoder_ is a {type(self.encoder_).__name__}; expected a "
                                "FieldEncoder.")
            check_classifier_state(self)


def _l2_params(module: CTRModel) -> list[torch.nn.Parameter]:
    """The parameters under the embedding L2 penalty: the table, the numeric field vectors
    and the wide part's per-id weights."""
    params = [module.embedding.weight, module.embedding.numeric_weight]
    if module.wide is not None:
        params.append(module.wide.weight)
    return params


def _as_input(X):
    """``X`` as the encoder reads it: a DataFrame or sparse matrix as it is, anything else
    (lists, array-likes) as a numpy array, with its shape checked."""
    if X is None:
        raise ValueError("X is None; expected impressions (a DataFrame, an array of category "
                         "codes or a sparse matrix).")
    if _is_frame(X) or sp.issparse(X):
        shape = X.shape
    else:
        X = X if isinstance(X, np.ndarray) else np.asarray(X)
        shape = X.shape
        if len(shape) != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_fields); got shape {shape}. "
                             "Reshape your data: X.reshape(1, -1) for one row.")
    if shape[1] == 0:
        raise ValueError(f"0 feature(s) (shape={tuple(shape)}) while a minimum of 1 is "
                         "required: X has no column.")
    return X


def _n_rows(X) -> int:
    return int(X.shape[0])
