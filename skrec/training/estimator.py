"""The generic base of the neural estimators: parameters, the training run, inference.

:class:`NeuralEstimator` is what every torch estimator of skrec shares, whatever it predicts:
the training parameters (declared once, in :mod:`~skrec.training.params`), the rule that
decides whether a run continues the fitted model or builds a new one, the run itself (device,
precision, data parallelism, validation hold-out, early stopping, callbacks, the trainer of
:mod:`~skrec.training.trainer`), the fitted counters, pickling, and the one inference set-up
(:meth:`NeuralEstimator._inference`) that every prediction path uses. The recommenders add
ranking on top of it (:mod:`~skrec.training.recommender`); a classifier or regressor adds its
own ``fit`` and ``predict``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import numbers
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from .._distributed import Distributed, data_fingerprint, process_rank
from .._parallel import limit_torch_threads
from ..callbacks import Callback, ProgressBar
from .params import (
    _DATACLASS,
    TRAINING_PARAM_DOCS,
    check_float,
    check_int,
    render_docstring,
)
from .precision import (
    INFERENCE_PRECISIONS,
    PRECISIONS,
    ServingCopies,
    autocast,
    resolve_device,
    resolve_precision,
    serving_precision,
    warn_if_emulated,
)
from .trainer import EarlyStopping, Trainer, TrainingConfig, TrainingState

__all__ = ["EstimatorTask", "InferenceSetup", "NeuralEstimator"]


class InferenceSetup(NamedTuple):
    """What every prediction path of a neural estimator runs: the module that serves, where,
    and under which autocast (see :meth:`NeuralEstimator._inference`)."""

    #: The module that serves: the fitted one (fp32, or autocast to the training precision),
    #: or its cached bf16, fp16 or int8 copy.
    module: torch.nn.Module
    #: Where it runs.
    device: torch.device
    #: The autocast precision of the forward pass ("fp32": none).
    autocast_precision: str

    def autocast(self):
        """The autocast context of the forward pass."""
        return autocast(self.device, self.autocast_precision)


class EstimatorTask:
    """The :class:`~skrec.training.trainer.TrainingTask` of an estimator: its hooks.

    ``prepare`` turns the run's training inputs into the data the batches are made from
    (once per run); the other methods are the trainer's protocol.

    Parameters
    ----------
    estimator : NeuralEstimator
        The estimator whose hooks (``_prepare``, ``_make_batch``, ``_batch_loss``,
        ``_epoch_info``) are called.
    """

    def __init__(self, estimator: NeuralEstimator):
        self.estimator = estimator

    def prepare(self, inputs: Any) -> Any:
        """The training data of ``inputs`` (an object with ``n_rows``)."""
        return self.estimator._prepare(inputs)

    def make_batch(self, data: Any, rows: np.ndarray, device: torch.device) -> tuple[Any, int]:
        """The micro-batch of ``rows`` and its number of targets."""
        return self.estimator._make_batch(data, rows, device)

    def batch_loss(self, module: torch.nn.Module, batch: Any,
                   state: TrainingState) -> torch.Tensor:
        """The summed loss of ``batch``."""
        return self.estimator._batch_loss(module, batch, state)

    def epoch_info(self, state: TrainingState) -> dict[str, Any]:
        """Extra fields of the epoch's record."""
        return self.estimator._epoch_info(state)

    def param_groups(self, module: torch.nn.Module) -> list:
        """The optimizer's parameter groups."""
        return self.estimator._param_groups(module)


@dataclasses.dataclass(**_DATACLASS)
class NeuralEstimator(BaseEstimator):
    """Base class of the neural estimators: training parameters, the run, inference.

    Subclasses are keyword-only dataclasses (made so automatically): they declare their own
    hyper-parameters as annotated class attributes, may override a training default by
    re-declaring it (``batch_size: int = 32``), and write ``{training_parameters}`` in the
    ``Parameters`` section of their docstring. Constants of a subclass must not be annotated
    (or be ``ClassVar``), or they become parameters.

    A subclass implements its public ``fit`` (and ``partial_fit``) by validating its data
    into a *training input* (any object its hooks understand) and calling :meth:`_run`, and
    implements these hooks:

    * ``_build_module()`` -- a fresh ``torch.nn.Module``;
    * ``_module_params`` -- the names of the parameters the module is built from (a
      continued run refuses to start when one of them changed since the module was built);
    * ``_n_rows(inputs)`` -- the number of training rows (samples);
    * ``_hold_out_validation(inputs, rng)`` -- ``(training inputs, validation)``, the
      validation being ``None`` when there is nothing to validate on, and
      ``_validation_scores(validation, dist)`` -- the validation record of an epoch;
      ``_monitored(metric)`` -- the history key of a validation metric and whether higher
      is better; ``_resolve_validation_metric(validation)`` -- ``validation_metric``
      resolved;
    * optionally ``_param_groups(module)`` (the optimizer's parameter groups, with their own
      learning rates) and ``_lr_schedule()`` (an
      :class:`~skrec.training.trainer.LRSchedule`);
    * ``_prepare(inputs)`` -- the training data (an object with ``n_rows``, and optionally
      ``lengths``, see :func:`~skrec.training.trainer.make_batches`);
      ``_make_batch(data, rows, device)`` -> ``(batch, n_targets)``;
      ``_batch_loss(module, batch, state)`` -- the **sum** of the per-target losses (fp32
      scalar; ``state.n_steps`` drives schedules such as KL annealing);
      ``_epoch_info(state)`` -- extra fields of an epoch's record (optional). A subclass may
      instead return its own :class:`~skrec.training.trainer.TrainingTask` from
      ``_training_task()`` (the sequence models return their objective).

    The fitted counters ``n_iter_``, ``n_steps_``, ``history_``, ``best_score_`` and
    ``best_epoch_`` are those of a :class:`~skrec.training.trainer.TrainingState` that the
    trainer advances; they are written in one place, :meth:`_store_state`.

    Parameters
    ----------
    {training_parameters}
    """

    max_iter: int = 200
    batch_size: int | str = 128
    learning_rate_init: float = 1e-3
    weight_decay: float = 0.0
    precision: str = "auto"
    inference_precision: str = "auto"
    accumulation_steps: int = 1
    clip_grad_norm: float | None = None
    early_stopping: bool = True
    validation_fraction: float = 0.1
    validation_metric: str = "ndcg@10"
    n_iter_no_change: int = 10
    tol: float = 1e-4
    device: str = "auto"
    random_state: int | np.random.RandomState | None = None
    verbose: int = 0
    warm_start: bool = False
    callbacks: list[Callback] | None = None
    weight_averaging: float | None = None

    #: Weight of the newest epoch in the exponential moving average of the monitored
    #: validation value (1.0: no smoothing); see :class:`EarlyStopping`.
    _early_stopping_smoothing: ClassVar[float] = 1.0
    #: Documentation of the parameters this class introduces for its subclasses (each class
    #: along the bases may declare more; see :func:`~skrec.training.params.render_docstring`).
    _declared_param_docs: ClassVar[dict[str, tuple[str, str]]] = TRAINING_PARAM_DOCS
    #: Descriptions replacing the declared ones in a subclass's docstring.
    _param_docs: ClassVar[dict[str, str]] = {}
    #: The class of the module this estimator builds (checked on loaded models).
    _module_class: ClassVar[type[torch.nn.Module]] = torch.nn.Module
    #: The parameters the module is built from (see :meth:`_check_module_params`).
    _module_params: ClassVar[tuple[str, ...]] = ()
    #: Fitted attributes that describe one module: dropped when a new module is built (each
    #: class along the bases may name its own).
    _module_attributes: ClassVar[tuple[str, ...]] = ()
    #: Private caches that pickling drops.
    _transient_attributes: ClassVar[tuple[str, ...]] = ("_serving_copies",)
    #: The ``history_`` values that the progress bar shows.
    _progress_postfix: ClassVar[tuple[str, ...]] = ("loss", "val_loss", "val_ndcg@10")
    #: batch_size="auto": training rows per micro-batch, and the range of the result.
    _auto_rows_per_batch: ClassVar[int] = 50
    _auto_batch_range: ClassVar[tuple[int, int]] = (32, 128)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls, **_DATACLASS)
        render_docstring(cls)

    # -------------------------------------------------------------- hooks (subclasses)
    def _build_module(self) -> torch.nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _n_rows(self, inputs: Any) -> int:  # pragma: no cover
        raise NotImplementedError

    def _prepare(self, inputs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _make_batch(self, data: Any, rows: np.ndarray,
                    device: torch.device) -> tuple[Any, int]:  # pragma: no cover
        raise NotImplementedError

    def _batch_loss(self, module: torch.nn.Module, batch: Any,
                    state: TrainingState) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _epoch_info(self, state: TrainingState) -> dict[str, Any]:
        """Extra fields for this epoch's ``history_`` record (e.g. a schedule's value)."""
        return {}

    def _training_task(self) -> Any:
        """The trainer's task for one run (built once per run): the estimator's hooks."""
        return EstimatorTask(self)

    def _param_groups(self, module: torch.nn.Module) -> list:
        """The optimizer's parameter groups: by default every parameter that requires a
        gradient, with the run's learning rate and weight decay (a subclass may return dicts
        with their own ``lr`` and ``weight_decay``)."""
        return [p for p in module.parameters() if p.requires_grad]

    def _lr_schedule(self) -> Any:
        """The run's :class:`~skrec.training.trainer.LRSchedule` (``None``: constant)."""
        return None

    def _hold_out_validation(self, inputs: Any, rng: np.random.RandomState
                             ) -> tuple[Any, Any]:  # pragma: no cover
        raise NotImplementedError

    def _validation_scores(self, validation: Any,
                           dist: Distributed) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    def _resolve_validation_metric(self, validation: Any) -> str:
        """``validation_metric`` resolved for ``validation`` (``"auto"`` rules)."""
        return self.validation_metric

    def _monitored(self, metric: str) -> tuple[str, bool]:  # pragma: no cover
        """The ``history_`` key of ``metric`` and whether higher values are better."""
        raise NotImplementedError

    def _check_validation_metric(self) -> None:
        """Validate ``validation_metric`` (at the start of fit)."""

    def _data_fingerprints(self, inputs: Any) -> dict[str, Any]:
        """What every data-parallel rank must share: fingerprints of the training data and of
        data-valued parameters (compared before training)."""
        return {"data": data_fingerprint(inputs)}

    # -------------------------------------------------------------- parameter checks
    def _check_params(self) -> None:
        """Validate hyper-parameters: once per ``fit``, ``partial_fit`` or fine-tuning, at its
        start (never in ``__init__``)."""
        check_int("max_iter", self.max_iter, 1)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            check_int("batch_size", self.batch_size, 1)
        check_int("accumulation_steps", self.accumulation_steps, 1)
        check_int("n_iter_no_change", self.n_iter_no_change, 1)
        check_float("learning_rate_init", self.learning_rate_init, 0, low_inclusive=False)
        check_float("weight_decay", self.weight_decay, 0)
        check_float("tol", self.tol, 0)
        check_float("clip_grad_norm", self.clip_grad_norm, 0, low_inclusive=False,
                    allow_none=True)
        check_float("weight_averaging", self.weight_averaging, 0, 1, low_inclusive=False,
                    allow_none=True)
        check_float("validation_fraction", self.validation_fraction, 0, 1, low_inclusive=False)
        if self.validation_fraction >= 1:
            raise ValueError("validation_fraction must be < 1.")
        if not isinstance(self.precision, str) or self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.precision!r}.")
        self._check_inference_precision()
        if not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:
            raise ValueError(f"verbose must be an integer >= 0 (or a bool); got "
                             f"{self.verbose!r}.")
        resolve_device(self.device)
        self._check_validation_metric()
        self._user_callbacks()

    def _user_callbacks(self) -> list[Callback]:
        """The validated ``callbacks`` parameter, as a list (the user's list is not changed)."""
        value = self.callbacks
        if value is None:
            return []
        if isinstance(value, Callback) or not isinstance(value, list | tuple):
            raise TypeError(
                "callbacks must be None or a list of skrec.callbacks.Callback instances; "
                f"got {value!r}."
            )
        bad = [cb for cb in value if not isinstance(cb, Callback)]
        if bad:
            raise TypeError(
                "callbacks must be None or a list of skrec.callbacks.Callback instances; "
                f"got {bad[0]!r} ({type(bad[0]).__name__}) in the list."
            )
        return list(value)

    def _check_inference_precision(self) -> str:
        value = self.inference_precision
        if not isinstance(value, str) or value not in INFERENCE_PRECISIONS:
            raise ValueError(f"inference_precision must be one of {INFERENCE_PRECISIONS}; "
                             f"got {value!r}.")
        return value

    # -------------------------------------------------------------- continue or restart
    def _continues(self, partial: bool = False) -> bool:
        """Whether the next run continues the fitted module (else it builds a new one).

        The one rule: ``partial_fit`` and pruning's fine-tuning (``partial=True``) continue
        a fitted model, ``fit`` does with ``warm_start=True``; a first run builds one. A
        continued run must train the module its parameters describe: it is refused (a
        ValueError) when a parameter the module is built from changed since (see
        :meth:`_check_module_params`).
        """
        if not hasattr(self, "module_") or not (partial or self.warm_start):
            return False
        self._check_module_params()
        return True

    def _module_param_values(self) -> dict[str, Any]:
        """The current values of the parameters the module is built from (comparable)."""
        return {name: _comparable(getattr(self, name)) for name in self._module_params}

    def _check_module_params(self) -> None:
        """Refuse to continue a module built from other parameters than the current ones."""
        built = getattr(self, "module_params_", None)
        if built is None:
            return
        now = self._module_param_values()
        changed = [name for name in self._module_params if built.get(name) != now[name]]
        if changed:
            details = ", ".join(f"{name}={now[name]!r} (the module was built with "
                                f"{built.get(name)!r})" for name in changed)
            raise ValueError(
                f"{type(self).__name__} cannot continue training its fitted module: {details}. "
                "warm_start, partial_fit and pruning's fine-tuning continue the module as it was "
                "built; fit with warm_start=False to build a new one, or set the parameters "
                "back."
            )

    def _training_state(self, continued: bool) -> TrainingState:
        """The counters a run starts from: the fitted ones when it continues (its best epoch
        cleared: the weights are about to change), fresh ones otherwise."""
        if not continued:
            return TrainingState()
        return TrainingState(n_iter=self.n_iter_, n_steps=self.n_steps_, history=self.history_)

    def _store_state(self, state: TrainingState) -> None:
        """Write the fitted counters: the one place they are written."""
        self.n_iter_ = state.n_iter
        self.n_steps_ = state.n_steps
        self.history_ = state.history
        self.best_score_ = state.best_score
        self.best_epoch_ = state.best_epoch

    # -------------------------------------------------------------- the run
    def _device(self) -> torch.device:
        dev = getattr(self, "device_", None)
        if dev is None:
            return resolve_device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            return torch.device("cpu")  # a GPU-trained model loaded on a CPU-only machine
        return dev

    def _warn_if_emulated(self, continued: bool) -> None:
        """Warn when the precision of the coming run is emulated on this CPU."""
        device = self._device() if continued else resolve_device(self.device)
        warn_if_emulated(resolve_precision(self.precision, device), device, stacklevel=4)

    def _callbacks(self, label: str | None = None) -> list[Callback]:
        """The callbacks of one training run: the progress bars (on rank 0 only in
        data-parallel training), then the user's ``callbacks``."""
        callbacks: list[Callback] = []
        if self.verbose and process_rank() == 0:
            callbacks.append(ProgressBar(label or type(self).__name__, steps=self.verbose > 1,
                                         postfix=self._progress_postfix))
        return callbacks + self._user_callbacks()

    def _early_stopper(self, metric: str) -> EarlyStopping:
        key, higher_is_better = self._monitored(metric)
        return EarlyStopping(
            key,
            higher_is_better=higher_is_better,
            patience=self.n_iter_no_change,
            tol=self.tol,
            smoothing=self._early_stopping_smoothing,
        )

    def _resolve_batch_size(self, n_rows: int) -> int:
        """``batch_size``, or the ``"auto"`` rule for ``n_rows`` training rows."""
        if not isinstance(self.batch_size, str):
            return int(self.batch_size)
        low, high = self._auto_batch_range
        target = max(n_rows / self._auto_rows_per_batch, 1.0)
        return int(min(max(2 ** round(np.log2(target)), low), high))

    def _data_parallel(self, inputs: Any, device: torch.device) -> Distributed:
        """The data-parallel helper of a training run (a no-op one in a single process).

        Under torchrun (or in an initialised process group of several ranks) every rank must
        train on the same data with the same hyper-parameters: they are compared first, so
        that a mismatch stops every rank with the same error instead of a hang.
        """
        dist = Distributed.from_environment(device)
        if dist.enabled:
            fingerprints = self._data_fingerprints(inputs)
            skip = ("callbacks", "verbose", "random_state", "device", *fingerprints)
            params = sorted((k, v) for k, v in self.get_params(deep=False).items()
                            if k not in skip)
            dist.check_consistent(hyper_parameters=repr(params), **fingerprints)
        return dist

    def _divergence_hint(self, inputs: Any) -> str:
        """A sentence added to the trainer's error when training diverges, about what in the
        data may cause it (``""``: nothing to add)."""
        return ""

    def _after_fit(self, inputs: Any) -> None:
        """Called at the end of ``fit`` with its training inputs (pruning's hook)."""

    def _training_inputs(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """The training inputs of a fitted model from ``X`` (and ``y``, the per-sample fit
        parameters), validated against it: what pruning's importance pass and fine-tuning
        train on."""
        raise NotImplementedError  # pragma: no cover

    def _on_module_ready(self, continued: bool) -> None:
        """Called once the run's module exists (built or continued), before it moves to the
        device."""

    def _run(self, inputs: Any, *, epochs: int, continued: bool, validate: bool = True,
             label: str | None = None) -> NeuralEstimator:
        """Train on ``inputs`` for up to ``epochs`` epochs: a new module, or the fitted one
        when ``continued`` (see :meth:`_continues`); with early stopping when ``validate``
        (and ``early_stopping``)."""
        self.__dict__.pop("_serving_copies", None)  # the weights are about to change
        device = self._device() if continued else resolve_device(self.device)
        dist = self._data_parallel(inputs, device)
        device = dist.device
        precision = resolve_precision(self.precision, device)
        rng = check_random_state(self.random_state)
        dist.sync_random_state(rng)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        fork_devices = [device] if device.type == "cuda" else []
        # partial_fit and pruning's fine-tuning come here too: a parallel worker's task uses
        # the threads it was given
        with dist.guard(), limit_torch_threads(), torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            if not continued:
                for klass in type(self).__mro__:  # every class's, mixins included
                    for name in klass.__dict__.get("_module_attributes", ()):
                        self.__dict__.pop(name, None)
                self.module_ = self._build_module()
                self.module_params_ = self._module_param_values()
            state = self._training_state(continued)
            if not continued or not hasattr(self, "batch_size_"):  # continued runs keep it
                self.batch_size_ = self._resolve_batch_size(self._n_rows(inputs))
            self._on_module_ready(continued)
            if dist.enabled:  # own dropout draws per rank (DDP gives every rank rank 0's weights)
                torch.manual_seed(seed + 1 + dist.rank)
            self.module_.to(device)
            self.device_ = device
            self.precision_ = precision
            inputs, validation = (self._hold_out_validation(inputs, rng)
                                  if validate and self.early_stopping else (inputs, None))
            if validation is not None:
                self.validation_metric_ = self._resolve_validation_metric(validation)
            task = self._training_task()
            data = task.prepare(inputs)
            generator = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))
            trainer = Trainer(
                task, self.module_, self._training_config(device, precision),
                state=state, callbacks=self._callbacks(label),
                early_stopping=(self._early_stopper(self.validation_metric_)
                                if validation is not None else None),
                distributed=dist, estimator=self,
            )
            validate_fn: Callable[[], dict[str, float]] | None = None
            if validation is not None:
                validate_fn = lambda: self._validation_scores(validation, dist)  # noqa: E731
            try:
                trainer.fit(data, epochs, generator, validate_fn)
            except FloatingPointError as exc:
                hint = self._divergence_hint(inputs)
                if not hint:
                    raise
                raise FloatingPointError(f"{exc} {hint}") from None
            finally:
                self._store_state(state)
        return self

    def _training_config(self, device: torch.device, precision: str, *,
                         loss_scaling: bool = True,
                         batch_size: int | None = None) -> TrainingConfig:
        """The settings of a run, from the parameters (``batch_size_`` unless given)."""
        return TrainingConfig(
            device=device, precision=precision,
            batch_size=self.batch_size_ if batch_size is None else batch_size,
            accumulation_steps=self.accumulation_steps, learning_rate=self.learning_rate_init,
            weight_decay=self.weight_decay, clip_grad_norm=self.clip_grad_norm,
            weight_averaging=self.weight_averaging, lr_schedule=self._lr_schedule(),
            loss_scaling=loss_scaling,
        )

    # -------------------------------------------------------------- inference
    def _inference(self, precision: str | None = None) -> InferenceSetup:
        """The one inference set-up: every prediction path serves through it.

        ``precision`` (default: ``inference_precision``): ``"auto"`` serves the fitted module
        under autocast to the training precision (``precision_``), or in fp32 where this CPU
        would emulate that precision (a model trained on a GPU or a bf16 CPU); ``"fp32"`` the
        fitted
        module; ``"bf16"``, ``"fp16"`` and ``"int8"`` a copy of it in that precision, made at
        the first call and cached until the weights change (see
        :class:`~skrec.training.precision.ServingCopies`).
        """
        module = self.module_
        device = self._device()
        if precision is None:
            precision = self._check_inference_precision()
        if precision == "int8" and device.type != "cpu":
            raise ValueError(
                f"inference_precision='int8' runs on the CPU only; this model serves on "
                f"{device}. Use 'bf16' or 'fp16' on a GPU, or device='cpu'."
            )
        if next(module.parameters()).device != device:
            module.to(device)
        if module.training:
            module.eval()  # the training loop switches back to train mode at each epoch
        if precision in ("auto", "fp32"):
            self.__dict__.pop("_serving_copies", None)
            return InferenceSetup(module, device, "fp32" if precision == "fp32"
                                  else serving_precision(self.precision_, device))
        copies = self.__dict__.get("_serving_copies")
        if copies is None:
            copies = self._serving_copies = ServingCopies()
        served = copies.get(module, device, precision)
        return InferenceSetup(served, device, "fp32" if precision == "int8" else precision)

    def _export_setup(self, precision: str | None = None) -> tuple[InferenceSetup, str]:
        """The set-up of :meth:`_inference` for a graph that outlives the estimator (export).

        ``precision`` (default: ``inference_precision``) is served by a copy of the estimator,
        so this one keeps its own parameter and cached copies. Returns the set-up with a CPU
        deep copy of the serving module in eval mode, and the inference precision served.
        """
        est = self
        if precision is not None:
            est = copy.copy(self).set_params(inference_precision=precision)
            est.__dict__.pop("_serving_copies", None)
        setup = est._inference()
        module = copy.deepcopy(setup.module).to("cpu").eval()
        return setup._replace(module=module), est.inference_precision

    @contextlib.contextmanager
    def _serving(self, precision: str | None = None) -> Iterator[InferenceSetup]:
        """:meth:`_inference` entered: inference mode and the set-up's autocast."""
        setup = self._inference(precision)
        with torch.inference_mode(), setup.autocast():
            yield setup

    # -------------------------------------------------------------- persistence
    def _check_fitted_state(self) -> None:
        """Raise a ValueError (or TypeError) naming the attribute when the fitted attributes
        do not fit together (:func:`skrec.load` calls it before it returns an estimator);
        subclasses extend it with their own rules."""
        from .._fitted_state import check_neural_state

        parent = getattr(super(), "_check_fitted_state", None)
        if parent is not None:
            parent()
        check_neural_state(self)

    def __getstate__(self):
        state = super().__getstate__()
        state = {k: v for k, v in state.items() if k not in self._transient_attributes}
        for key, value in list(state.items()):
            if isinstance(value, torch.nn.Module):
                state[key] = copy.deepcopy(value).to("cpu")
            elif isinstance(value, torch.Tensor):
                state[key] = value.detach().to("cpu")
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        dev = state.get("device_")
        if dev is not None and dev.type == "cuda" and not torch.cuda.is_available():
            self.device_ = torch.device("cpu")
            # Serve the CPU copy in fp32: its rankings match the trained model's fp32 ones,
            # where bf16 inference on a CPU would reorder near-ties.
            self.precision_ = "fp32"


def _comparable(value: Any) -> Any:
    """A parameter value as recorded in ``module_params_`` (data only: tuples as lists,
    arrays and other objects by presence)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    return "given"


render_docstring(NeuralEstimator)
