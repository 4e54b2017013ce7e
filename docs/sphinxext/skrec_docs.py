"""Local Sphinx helpers for the skrec documentation.

* :class:`ExampleOrder`: the order of the examples in the sphinx-gallery (a sort key, named
  by string in ``sphinx_gallery_conf`` so that the configuration stays picklable).
* The ``skrec-benchmark-results`` directive: renders every ``benchmarks/results/*.json`` (and
  the PNG figures next to them) as tables and images **at build time**, and says plainly which
  benchmark scripts have no recorded result. It never writes a number that is not in a file.
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
RESULTS = BENCHMARKS / "results"

#: Examples listed first, in this order; any other example follows, by file name.
EXAMPLE_ORDER = (
    "quickstart.py",
    "plot_dataframe_to_recommendations.py",
    "plot_original_ids_workflow.py",
    "plot_movielens_sequential.py",
    "plot_autoencoder_strong_generalization.py",
    "plot_grid_search_precision.py",
    "plot_pruning_tradeoff.py",
)


class ExampleOrder:
    """Sort key for sphinx-gallery's ``within_subsection_order``.

    Parameters
    ----------
    src_dir : str
        The gallery's source folder (unused; part of sphinx-gallery's protocol).
    """

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        name = Path(filename).name
        rank = EXAMPLE_ORDER.index(name) if name in EXAMPLE_ORDER else len(EXAMPLE_ORDER)
        return rank, name

    def __repr__(self) -> str:  # a stable repr keeps Sphinx's environment cache valid
        return "<ExampleOrder>"


# ---------------------------------------------------------------------------------------------
# Benchmark results
# ---------------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Escape ``text`` so that reStructuredText shows it verbatim inside a table cell."""
    out = []
    for ch in text:
        if not ch.isalnum() and not ch.isspace() and ch.isascii():
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out) if text.strip() else "\u2014"


def _fmt(value: Any) -> str:
    """Format one measured value for a table (no rounding beyond what is readable)."""
    if value is None or value == "":
        return "\u2014"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,d}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        a = abs(value)
        if a == 0:
            return "0"
        if a < 1e-3:
            return f"{value:.3g}"
        if a < 1:
            return f"{value:.4f}"
        if a < 1000:
            return f"{value:.2f}"
        return f"{value:,.0f}"
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def _is_markdown_table(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("|") and "|---" in value


def _table_lines(rows: list[dict], caption: str | None) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(str(key))
    lines = [f".. list-table:: {_escape(caption)}" if caption else ".. list-table::"]
    lines += ["   :header-rows: 1", "   :class: skrec-results", ""]
    lines.append("   * - " + _escape(columns[0]))
    lines += [f"     - {_escape(c)}" for c in columns[1:]]
    for row in rows:
        cells = [_escape(_fmt(row.get(c))) for c in columns]
        lines.append("   * - " + cells[0])
        lines += [f"     - {c}" for c in cells[1:]]
    return lines + [""]


def _literal(text: str) -> list[str]:
    return ["::", ""] + ["   " + line for line in text.splitlines()] + [""]


def _script_doc(stem: str) -> str | None:
    script = BENCHMARKS / f"{stem}.py"
    if not script.is_file():
        return None
    try:
        return ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    except (SyntaxError, UnicodeDecodeError):
        return None


def _flatten(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out.append((prefix, value))


def benchmark_results_rst(static_dir: Path) -> tuple[list[str], list[Path]]:
    """The reStructuredText of the results page and the files it was built from.

    PNG and JSON files are copied to ``static_dir`` (inside the Sphinx source folder) so that
    images and downloads resolve.
    """
    lines: list[str] = []
    used: list[Path] = []
    scripts = (
        sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
        if BENCHMARKS.is_dir()
        else []
    )
    jsons = sorted(RESULTS.glob("*.json")) if RESULTS.is_dir() else []
    pngs = sorted(RESULTS.glob("*.png")) if RESULTS.is_dir() else []
    if static_dir.exists():
        shutil.rmtree(static_dir)
    static_dir.mkdir(parents=True, exist_ok=True)

    if not jsons and not pngs:
        lines += [
            ".. warning::",
            "",
            "   **No benchmark result is recorded in this build**: ``benchmarks/results/`` holds",
            "   no ``.json`` or ``.png`` file. No numbers are shown rather than invented ones;",
            "   run the scripts below to measure them on your machine.",
            "",
        ]
    shown_png: set[Path] = set()
    for path in jsons:
        used.append(path)
        stem = path.stem
        lines += [_escape(stem), "-" * (2 * len(stem) + 2), ""]
        doc = _script_doc(stem)
        if doc:
            lines += ["How it was measured (the script's own description):", ""]
            lines += _literal(doc)
        if (BENCHMARKS / f"{stem}.py").is_file():
            lines += [f"Reproduce with ``python benchmarks/{stem}.py``.", ""]
        modified = _dt.datetime.fromtimestamp(path.stat().st_mtime, tz=_dt.timezone.utc)
        shutil.copy2(path, static_dir / path.name)
        lines += [
            f"Source: :download:`benchmarks/results/{path.name} "
            f"</gen_modules/benchmarks/{path.name}>` (written {modified:%Y-%m-%d %H:%M} UTC).",
            "",
        ]
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            lines += [
                ".. error::",
                "",
                f"   This file could not be read as JSON ({_escape(str(exc))}); "
                "no result is shown.",
                "",
            ]
            data = None
        if _is_table(data):
            lines += _table_lines(data, None)
        elif isinstance(data, dict):
            scalars: list[tuple[str, Any]] = []
            has_table = any(_is_table(v) for v in data.values())
            for key, value in data.items():
                if _is_table(value):
                    lines += _table_lines(value, None if key == "rows" else str(key))
                elif has_table and _is_markdown_table(value):
                    continue  # a markdown copy of a table already shown
                elif isinstance(value, str) and "\n" in value:
                    lines += [f"{_escape(str(key))}:", ""] + _literal(value)
                else:
                    _flatten(str(key), value, scalars)
            if scalars:
                lines += ["Recorded with the results:", ""]
                lines += [f"- {_escape(k)}: {_escape(_fmt(v))}" for k, v in scalars] + [""]
        elif data is not None:
            lines += _literal(json.dumps(data, indent=2, default=str))
        for png in pngs:
            if png.stem.startswith(stem):
                shown_png.add(png)
                lines += _image(png, static_dir)
                used.append(png)

    others = [p for p in pngs if p not in shown_png]
    if others:
        lines += ["Other figures", "-------------", ""]
        for png in others:
            lines += _image(png, static_dir)
            used.append(png)

    measured = {p.stem for p in jsons}
    missing = [s for s in scripts if s not in measured]
    if missing:
        lines += ["Not measured yet", "----------------", ""]
        lines += [
            "These benchmark scripts exist but have **no result file** in "
            "``benchmarks/results/``; their numbers are missing from this page, not zero:",
            "",
        ]
        lines += [f"- ``benchmarks/{s}.py``: run ``python benchmarks/{s}.py``" for s in missing]
        lines += [""]
    return lines, used


def _image(png: Path, static_dir: Path) -> list[str]:
    shutil.copy2(png, static_dir / png.name)
    return [
        f".. figure:: /gen_modules/benchmarks/{png.name}",
        "   :width: 90%",
        "",
        f"   ``benchmarks/results/{png.name}``",
        "",
    ]


class BenchmarkResults(SphinxDirective):
    """``.. skrec-benchmark-results::`` -- the recorded benchmark results, read at build time."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        static_dir = Path(self.env.srcdir) / "gen_modules" / "benchmarks"
        lines, used = benchmark_results_rst(static_dir)
        for path in used:
            self.env.note_dependency(str(path))
        self.env.note_reread()  # new result files appear without touching this page
        container = nodes.container()
        nested_parse_with_titles(
            self.state, StringList(lines, source="<benchmark results>"), container
        )
        return container.children


# ---------------------------------------------------------------------------------------------
# Docstring clean-up before numpydoc
# ---------------------------------------------------------------------------------------------

_PARAM_LINE = re.compile(r"^(\s*[\w*][\w*, ]* : )(.+)$")
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w])([A-Za-z]\w*?)_(?=[\s,.)\]]|$)")


def escape_type_underscores(app, what, name, obj, options, lines: list[str]) -> None:
    """Escape names like ``n_features_in_`` in numpydoc type lines.

    ``ndarray of shape (n_features_in_,)`` is plain reStructuredText once numpydoc renders it,
    and a word ending in ``_`` is a hyperlink reference there ("Unknown target name").
    Only the type part of ``name : type`` lines is touched.
    """
    for i, line in enumerate(lines):
        match = _PARAM_LINE.match(line)
        if match and "`" not in match.group(2):
            lines[i] = match.group(1) + _TRAILING_UNDERSCORE.sub(r"\1\\_", match.group(2))


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("skrec-benchmark-results", BenchmarkResults)
    app.connect("autodoc-process-docstring", escape_type_underscores, priority=100)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}


# ---------------------------------------------------------------------------------------------
# API reference page, generated from the modules' ``__all__`` at build time
# ---------------------------------------------------------------------------------------------

#: (module, title, intro, names to leave out because another section documents them)
API_SECTIONS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "skrec",
        "Neural recommenders and click prediction",
        "The estimators. For the recommenders, rows of ``X`` are users, columns are items, "
        "stored values > 0 are interactions (and their order); for :class:`CTRClassifier`, rows "
        "are impressions and columns are feature fields (see :ref:`ctr`). The baselines are "
        "importable from ``skrec`` too; they are documented in :mod:`skrec.baselines`.",
        ("PopularityRecommender", "EASERecommender", "MarkovChainRecommender", "__version__"),
    ),
    (
        "skrec.baselines",
        "Baselines",
        "Honest references, in every benchmark: popularity, a first-order Markov chain and "
        "EASE (closed form).",
        (),
    ),
    (
        "skrec.ctr",
        "Click prediction",
        "The click classifier (documented above), the field encoder that turns a DataFrame, "
        "category codes or a one-hot matrix into its inputs, its exported scoring graph and "
        "calibration tools. See :ref:`ctr`.",
        ("CTRClassifier",),
    ),
    (
        "skrec.metrics",
        "Metrics and scorers",
        "Top-k ranking metrics computed for all users at once, and scorers for "
        "``GridSearchCV(scoring=...)``.",
        (),
    ),
    (
        "skrec.model_selection",
        "Splitters",
        "Split an interaction matrix into the model's input and held-out targets. See "
        ":ref:`evaluation`.",
        (),
    ),
    (
        "skrec.preprocessing",
        "Preprocessing",
        "From an event log (a pandas DataFrame) to the interaction matrix and back. See "
        ":ref:`dataframe`.",
        (),
    ),
    (
        "skrec.datasets",
        "Data sets",
        "A synthetic generator with planted structure, MovieLens loaders (ratings, and the "
        "item and user side information: see :ref:`features`), the Frappe click data set and "
        "a synthetic Criteo-like click stream (see :ref:`ctr`).",
        (),
    ),
    (
        "skrec.text",
        "Text features",
        "Dense item features from a pretrained sentence encoder (optional extra: "
        '``pip install "skrec[text]"``). See :ref:`text_features`.',
        (),
    ),
    (
        "skrec.training",
        "Training utilities",
        "The shared training loop (trainer, early stopping, weight averaging) and device and "
        "precision resolution. See :ref:`training`.",
        ("NeuralRecommender",),
    ),
    (
        "skrec.callbacks",
        "Training callbacks",
        "Hooks that see a training run from outside: progress bars, the history, logging. "
        "See :ref:`training`.",
        (),
    ),
    (
        "skrec.pruning",
        "Pruning",
        "Structured and unstructured pruning of fitted neural recommenders. See :ref:`pruning`.",
        (),
    ),
    (
        "skrec.session",
        "Incremental serving",
        "Serve one user's sequence event by event, with the same results as ``recommend`` "
        "on the whole history and a lower latency per event.",
        (),
    ),
    (
        "skrec.plotting",
        "Plotting",
        "Training curves for notebooks (pandas and matplotlib are optional).",
        (),
    ),
    (
        "skrec.persistence",
        "Safe persistence",
        "The file format behind :func:`skrec.save` and :func:`skrec.load` (documented with the "
        "estimators above), its errors and the estimator registry. See :ref:`serving`.",
        ("save", "load"),
    ),
    (
        "skrec.serving",
        "Serving",
        "The scoring graph of a neural recommender as a torch module, exported with "
        "``torch.export`` and ONNX. See :ref:`serving`.",
        (),
    ),
    (
        "skrec.nn",
        "Torch modules and losses",
        "Pure PyTorch building blocks used by the estimators (no scikit-learn, no numpy I/O).",
        (),
    ),
)

#: Public names that are not in a module's ``__all__`` but belong in the reference.
API_EXTRA = {"skrec.training": ("cpu_supports_bf16",)}


def _template_for(obj: Any) -> str:
    import inspect

    if inspect.isclass(obj):
        try:
            import torch

            if issubclass(obj, torch.nn.Module):
                return "torch_module.rst"
        except ImportError:  # pragma: no cover
            pass
        return "class.rst"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function.rst"
    return "data.rst"


def api_rst() -> str:
    """The text of ``api.rst``: one autosummary table per module, from its ``__all__``."""
    import importlib

    lines = [
        ".. This file is generated by docs/sphinxext/skrec_docs.py at every build; do not edit.",
        "",
        ".. _api:",
        "",
        "=============",
        "API reference",
        "=============",
        "",
        "Every public object of skrec, generated from its docstring. Modules that are not "
        "importable in this build (an optional part missing) are listed at the end.",
        "",
    ]
    missing: list[str] = []
    for modname, title, intro, skip in API_SECTIONS:
        try:
            module = importlib.import_module(modname)
        except ImportError as exc:
            missing.append(f"``{modname}`` ({exc})")
            continue
        names = [n for n in getattr(module, "__all__", []) if n not in skip]
        names += [n for n in API_EXTRA.get(modname, ()) if n not in names]
        by_template: dict[str, list[str]] = {}
        for name in names:
            try:
                obj = getattr(module, name)
            except (ImportError, AttributeError) as exc:
                missing.append(f"``{modname}.{name}`` ({exc})")
                continue
            by_template.setdefault(_template_for(obj), []).append(name)
        if not by_template:
            continue
        lines += [
            f".. _api_{modname.replace('.', '_')}:",
            "",
            f":mod:`{modname}`: {title}",
            "-" * (len(modname) + len(title) + 10),
            "",
            f".. automodule:: {modname}",
            "   :no-members:",
            "",
            intro,
            "",
            f".. currentmodule:: {modname}",
            "",
        ]
        for template in ("class.rst", "torch_module.rst", "function.rst", "data.rst"):
            if template not in by_template:
                continue
            lines += [
                ".. autosummary::",
                "   :toctree: gen_modules/",
                f"   :template: {template}",
                "   :nosignatures:",
                "",
            ]
            lines += [f"   {name}" for name in by_template[template]] + [""]
    if missing:
        lines += ["Not available in this build", "---------------------------", ""]
        lines += [f"- {m}" for m in missing] + [""]
    return "\n".join(lines) + "\n"


def write_api_page(path: Path) -> None:
    """Write ``api.rst`` if its content changed (keeps Sphinx's incremental builds cheap)."""
    text = api_rst()
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
