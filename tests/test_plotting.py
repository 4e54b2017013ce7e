"""skrec.plotting: the training history as a DataFrame and as a matplotlib plot."""

from __future__ import annotations

import sys

import pytest
from sklearn.exceptions import NotFittedError

from skrec import EASERecommender, SeqRecommender
from skrec.plotting import history_frame, plot_history

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def fitted(interactions):
    """A tiny SeqRecommender trained for 3 epochs with early stopping (so val_ndcg@10 exists)."""
    return SeqRecommender(
        d_model=16,
        n_layers=1,
        n_heads=1,
        d_ff=16,
        max_len=10,
        max_iter=3,
        n_iter_no_change=10,
        precision="fp32",
        random_state=0,
    ).fit(interactions)


@pytest.fixture(scope="module")
def fitted_no_val(interactions):
    """The same model without early stopping: no validation score in the history."""
    return SeqRecommender(
        d_model=16,
        n_layers=1,
        n_heads=1,
        d_ff=16,
        max_len=10,
        max_iter=2,
        early_stopping=False,
        precision="fp32",
        random_state=0,
    ).fit(interactions)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------ history_frame
def test_history_frame_has_one_row_per_epoch(fitted):
    pd = pytest.importorskip("pandas")
    frame = history_frame(fitted)
    assert isinstance(frame, pd.DataFrame)
    assert frame.index.name == "epoch"
    assert list(frame.index) == [1, 2, 3]
    for column in ("loss", "val_ndcg@10", "seconds", "targets_per_s", "peak_memory_mb"):
        assert column in frame.columns
    assert frame["loss"].tolist() == [r["loss"] for r in fitted.history_]


def test_history_frame_accepts_the_history_list(fitted):
    pytest.importorskip("pandas")
    assert history_frame(fitted.history_).equals(history_frame(fitted))


def test_history_frame_without_epoch_key_numbers_from_one():
    pytest.importorskip("pandas")
    frame = history_frame([{"loss": 2.0}, {"loss": 1.0, "val_ndcg@10": 0.3}])
    assert list(frame.index) == [1, 2]
    assert frame["val_ndcg@10"].isna().tolist() == [True, False]


def test_history_frame_without_pandas_names_the_fix(fitted, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        history_frame(fitted)


def test_history_frame_unfitted_raises_not_fitted():
    with pytest.raises(NotFittedError):
        history_frame(SeqRecommender())


def test_history_frame_of_a_closed_form_baseline(interactions):
    pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="no history_"):
        history_frame(EASERecommender().fit(interactions))


def test_history_frame_rejects_other_objects():
    with pytest.raises(TypeError, match="history_"):
        history_frame(42)
    with pytest.raises(TypeError, match="record 0"):
        history_frame([1, 2])


# ------------------------------------------------------------------------------ plot_history
def test_plot_history_default_losses_on_one_axis_monitored_metric_and_best_epoch(fitted):
    ax = plot_history(fitted)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert ax.get_xlabel() == "epoch"
    assert ax.get_ylabel() == "loss"
    loss_line, val_loss_line, best_line = ax.get_lines()
    assert list(loss_line.get_xdata()) == [1, 2, 3]
    assert list(loss_line.get_ydata()) == pytest.approx([r["loss"] for r in fitted.history_])
    assert list(val_loss_line.get_ydata()) == pytest.approx(
        [r["val_loss"] for r in fitted.history_]
    )
    assert fitted.best_epoch_ is not None
    assert list(best_line.get_xdata()) == [fitted.best_epoch_] * 2  # a vertical line
    twins = [other for other in ax.figure.axes if other is not ax]
    assert len(twins) == 1
    (val_line,) = twins[0].get_lines()
    assert list(val_line.get_ydata()) == pytest.approx([r["val_ndcg@10"] for r in fitted.history_])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["loss", "val_loss", "val_ndcg@10", f"best epoch ({fitted.best_epoch_})"]


def test_plot_history_shows_the_monitored_ranking_metric(interactions):
    rec = SeqRecommender(d_model=8, n_layers=1, n_heads=1, d_ff=8, max_len=10, max_iter=2,
                         validation_metric="recall@5", precision="fp32", random_state=0)
    ax = plot_history(rec.fit(interactions))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["loss", "val_loss", "val_recall@5"]


def test_plot_history_explicit_metrics_and_no_best_marker(fitted):
    ax = plot_history(fitted, metrics=["val_ndcg@10", "loss"], mark_best=False)
    assert ax.get_ylabel() == "loss"  # a loss takes the left axis whatever the order
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "val_ndcg@10"]
    ax = plot_history(fitted.history_)  # a bare history: no best_epoch_ to mark
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "loss", "val_loss", "val_ndcg@10"
    ]


def test_plot_history_uses_the_given_axes(fitted):
    fig, ax = plt.subplots()
    assert plot_history(fitted, metrics="seconds", ax=ax) is ax
    assert len(fig.axes) == 1  # one metric: no twin axis


@pytest.mark.parametrize("layout", [None, "constrained", "tight"])
def test_a_title_set_afterwards_is_not_hidden_by_the_legend(fitted, layout):
    """The legend sits above the axes; the title goes above it, in any layout (it was drawn
    over the legend), and the figure made by plot_history has room for both."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout=layout)
    for ax in axes:
        plot_history(fitted, ax=ax).set_title("Mult-VAE on MovieLens")
    own = plot_history(fitted)
    own.set_title("Mult-VAE on MovieLens")
    for ax in (*axes, own):
        figure = ax.figure
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        legend = ax.get_legend().get_window_extent(renderer)
        title = ax.title.get_window_extent(renderer)
        assert title.y0 >= legend.y1 - 1 and not title.overlaps(legend)
        if layout is not None or figure is not fig:
            assert title.y1 <= figure.bbox.y1  # inside the figure
        assert len(figure.axes) == (2 * 2 if figure is fig else 2)  # the room is no new axes


def test_plot_history_skips_metrics_that_were_not_recorded(fitted_no_val):
    ax = plot_history(fitted_no_val)  # default metrics include val_ndcg@10
    assert len(ax.figure.axes) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss"]


def test_plot_history_errors(fitted):
    with pytest.raises(ValueError, match="None of the metrics"):
        plot_history(fitted, metrics=("nope",))
    with pytest.raises(ValueError, match="empty"):
        plot_history(fitted, metrics=())
    with pytest.raises(ValueError, match="empty"):
        plot_history([])


def test_plot_history_without_matplotlib_names_the_fix(fitted, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_history(fitted)
