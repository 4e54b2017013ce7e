"""Training curves for notebooks: the per-epoch ``history_`` as a table and as a plot.

The neural recommenders (:class:`~skrec.SeqRecommender`, :class:`~skrec.AERecommender`) record
one dictionary per epoch in ``history_``. These helpers turn it into a :class:`pandas.DataFrame`
and a matplotlib plot. The keys:

``epoch``
    1, 2, ... (continues across ``warm_start`` fits and ``partial_fit``).
``loss``
    Mean training loss per target over the epoch (dropout on, weights changing during it).
``val_loss``, ``val_ndcg@10``, ``val_<metric>@<k>``
    With early stopping: the held-out validation users' loss and NDCG@10 after the epoch, and
    the monitored ``validation_metric`` when it is a ranking metric. ``best_epoch_`` is the
    epoch whose weights were restored.
``seconds``, ``targets_per_s``, ``steps``
    Wall-clock time of the training pass (validation excluded), training targets per second
    (tokens/s for sequences, users/s for autoencoders), optimizer steps.
``peak_memory_mb``
    Peak memory so far, in MiB. **On a GPU**: ``torch.cuda.max_memory_allocated`` on the
    training device, i.e. the largest amount held by torch tensors there since the start of
    this ``fit`` (the counter is reset when training starts); the caching allocator reserves
    somewhat more. **On a CPU**: the peak resident set size (``getrusage`` ``ru_maxrss``) of
    the **whole Python process since it started**: it includes the data, other models and
    everything else the process ever held, and never decreases, so it is an upper bound, not
    the model's own footprint. Compare models on CPU in fresh processes.
Others
    Estimator-specific values, such as ``beta`` (the KL weight) for the Mult-VAE.

pandas and matplotlib are optional: install them with ``pip install "skrec[pandas]"`` and
``pip install "skrec[plot]"``. Importing this module needs neither; each function imports what
it uses when called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sklearn.utils.validation import check_is_fitted

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["history_frame", "plot_history"]


def _history_records(est: Any) -> list[Mapping[str, Any]]:
    """The list of per-epoch records of a fitted estimator (or a history list itself)."""
    if isinstance(est, Sequence) and not isinstance(est, str | bytes):
        records = list(est)
    else:
        records = getattr(est, "history_", None)
        if records is None:
            name = type(est).__name__
            if not (hasattr(est, "fit") and hasattr(est, "get_params")):
                raise TypeError(
                    "Expected a fitted neural recommender (with a history_ attribute) or a "
                    f"list of per-epoch dictionaries; got {name}."
                )
            check_is_fitted(est)  # NotFittedError for an estimator not fitted yet
            raise ValueError(
                f"{name} has no history_: only the neural recommenders (trained epoch by "
                "epoch, such as SeqRecommender and AERecommender) record one."
            )
        records = list(records)
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(
                f"history record {i} is a {type(record).__name__}; expected a dict of "
                "per-epoch values."
            )
    return records


def history_frame(est: Any) -> pd.DataFrame:
    """Return an estimator's per-epoch training history as a pandas DataFrame.

    Parameters
    ----------
    est : estimator or list of dict
        A fitted neural recommender (anything with a ``history_`` attribute, such as
        :class:`~skrec.SeqRecommender` or :class:`~skrec.AERecommender`), or its
        ``history_`` list itself.

    Returns
    -------
    frame : pandas.DataFrame
        One row per epoch and one column per recorded quantity (``loss``, ``val_ndcg@10``,
        ``seconds``, ``targets_per_s``, ``steps``, ``peak_memory_mb``...), indexed by
        ``epoch`` when the records carry it. Quantities recorded only in some epochs are
        ``NaN`` elsewhere.

    Raises
    ------
    ImportError
        If pandas is not installed.
    sklearn.exceptions.NotFittedError
        If ``est`` is a neural recommender that has not been fitted.
    ValueError
        If ``est`` is an estimator without a training history (a closed-form baseline).

    See Also
    --------
    plot_history : Plot some of these columns against the epoch.

    Examples
    --------
    >>> from skrec import SeqRecommender
    >>> from skrec.datasets import make_interactions
    >>> from skrec.plotting import history_frame
    >>> X = make_interactions(n_users=200, n_items=50, mean_length=10, random_state=0)
    >>> rec = SeqRecommender(max_iter=2, precision="fp32", random_state=0).fit(X)
    >>> frame = history_frame(rec)
    >>> frame.index.name, len(frame)
    ('epoch', 2)
    >>> "loss" in frame.columns
    True
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            "history_frame needs pandas, which is not installed. Install it with "
            '`pip install pandas` (or `pip install "skrec[pandas]"`), or read the list of '
            "dictionaries in est.history_ directly."
        ) from None
    records = _history_records(est)
    frame = pd.DataFrame.from_records([dict(r) for r in records])
    if "epoch" in frame.columns:
        frame = frame.set_index("epoch")
    else:
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="epoch")
    return frame


def _default_metrics(est: Any) -> list[str]:
    """Training and validation loss, and the monitored ranking metric (else NDCG@10)."""
    monitored = getattr(est, "validation_metric_", getattr(est, "validation_metric", "loss"))
    ranking = "val_ndcg@10"
    if isinstance(monitored, str) and monitored != "loss":
        try:
            from .metrics import get_rec_scorer

            scorer = get_rec_scorer(monitored)
            ranking = f"val_{scorer.metric}@{scorer.k}"
        except ValueError:
            pass
    return ["loss", "val_loss", ranking]


def plot_history(
    est: Any,
    metrics: Sequence[str] | None = None,
    ax: Axes | None = None,
    *,
    mark_best: bool = True,
) -> Axes:
    """Plot training curves (per-epoch quantities of ``history_``) against the epoch.

    Losses (keys ending in ``loss``: the training ``loss`` and the validation ``val_loss``)
    share ``ax``'s left y-axis, so over-fitting shows as the two curves parting. The other
    metrics, on another scale (a validation NDCG that rises), share a second y-axis on the
    right (``ax.twinx()``). A dashed vertical line marks ``best_epoch_``, the epoch whose
    weights early stopping restored. One legend lists them all.

    Parameters
    ----------
    est : estimator or list of dict
        A fitted neural recommender (anything with a ``history_`` attribute), or its
        ``history_`` list itself.
    metrics : str or sequence of str, default=None
        Keys of the history records to plot. ``None``: ``loss``, ``val_loss`` and the
        monitored ranking metric (``validation_metric``, e.g. ``val_recall@20``; with
        ``validation_metric="loss"``, ``val_ndcg@10``). Keys that no epoch recorded are
        skipped (the validation keys of a model trained without early stopping); at least one
        must be present. When none of them is a loss, the first one takes the left axis.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; a new figure is made when ``None``.
    mark_best : bool, default=True
        Draw the vertical line at ``est.best_epoch_`` (when ``est`` is an estimator whose
        early stopping chose one).

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes holding the left y-axis (the right-hand axes, if any, is ``ax`` 's twin).

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If none of ``metrics`` was recorded, or the history is empty.

    See Also
    --------
    history_frame : The same history as a pandas DataFrame.

    Notes
    -----
    The legend sits just above the axes, where it hides no curve of either y-axis; a title
    set afterwards (``ax.set_title("Mult-VAE")``) is placed above the legend. The module
    docstring of
    :mod:`skrec.plotting` says what each key measures (``peak_memory_mb`` is the whole
    process's peak RSS on a CPU, torch's peak allocation on a GPU).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skrec import SeqRecommender
    >>> from skrec.datasets import make_interactions
    >>> from skrec.plotting import plot_history
    >>> X = make_interactions(n_users=200, n_items=50, mean_length=10, random_state=0)
    >>> rec = SeqRecommender(max_iter=3, precision="fp32", random_state=0).fit(X)
    >>> ax = plot_history(rec)
    >>> ax.get_xlabel()
    'epoch'
    """
    try:
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError(
            "plot_history needs matplotlib, which is not installed. Install it with "
            '`pip install matplotlib` (or `pip install "skrec[plot]"`).'
        ) from None
    records = _history_records(est)
    if metrics is None:
        metrics = _default_metrics(est)
    elif isinstance(metrics, str):
        metrics = (metrics,)
    metrics = list(metrics)
    if not metrics:
        raise ValueError("metrics is empty; name at least one key of history_, e.g. 'loss'.")
    if not records:
        raise ValueError("The training history is empty: there is nothing to plot.")
    available = list(dict.fromkeys(key for r in records for key in r))
    present = [m for m in metrics if m in available]
    if not present:
        raise ValueError(
            f"None of the metrics {metrics} was recorded; the history has {available}."
        )
    left = [m for m in present if str(m).endswith("loss")] or present[:1]
    right = [m for m in present if m not in left]

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")  # room for a title
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"])
    lines = []
    twin = ax.twinx() if right else None
    for i, metric in enumerate(left + right):
        target = ax if metric in left else twin
        xs = [e for e, r in zip(epochs, records) if r.get(metric) is not None]
        ys = [float(r[metric]) for r in records if r.get(metric) is not None]
        style = "--" if str(metric).startswith("val_") and metric in left else "-"
        (line,) = target.plot(
            xs, ys, marker="o", markersize=3, linestyle=style, color=colors[i % len(colors)],
            label=metric,
        )
        lines.append(line)
    best = getattr(est, "best_epoch_", None) if mark_best else None
    if best is not None:
        lines.append(
            ax.axvline(best, color="0.4", linestyle=":", linewidth=1.2,
                       label=f"best epoch ({best})")
        )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss" if len(left) > 1 else left[0])
    if twin is not None:
        twin.set_ylabel(", ".join(right))
    # Above the plot: a legend inside would hide the curves of one of the two y-axes.
    legend = ax.legend(
        lines,
        [line.get_label() for line in lines],
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=len(lines),
        frameon=False,
    )
    _reserve_room_above(ax, legend)
    ax.grid(True, alpha=0.3)
    return ax


def _reserve_room_above(ax: Axes, legend) -> None:
    """Make matplotlib place ``ax``'s title above ``legend`` (which sits above the axes).

    A title is moved up past the child axes of its axes, not past a legend: an empty,
    invisible child axes spanning from the top of ``ax`` to the top of the legend (sized at
    each draw, so it follows resizing and font changes) makes a title set later, with
    ``ax.set_title``, clear the legend instead of being drawn over it.
    """
    from matplotlib.transforms import Bbox

    def locate(_axes, renderer) -> Bbox:
        pos = ax.get_position()
        top = legend.get_window_extent(renderer).y1
        y_top = ax.get_figure(root=False).transSubfigure.inverted().transform((0.0, top))[1]
        return Bbox.from_extents(pos.x0, pos.y1, pos.x1, max(y_top, pos.y1))

    room = ax.inset_axes([0.0, 1.0, 1.0, 0.0])
    room.set_axes_locator(locate)
    room.set_axis_off()
    room.patch.set_visible(False)
    room.set_navigate(False)
    room.set_label("_legend_room")
