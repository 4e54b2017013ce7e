"""The README's promises: the pandas snippet runs as printed, the extras it names exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_pandas_snippet_runs_and_serves_known_and_unknown_users():
    pytest.importorskip("pandas")
    (block,) = [b for b in _python_blocks() if "InteractionEncoder" in b]
    path = [line for line in block.splitlines()
            if line.startswith(("enc = ", "model = ", "recs = ", "enc.similar_items"))]
    assert len(path) <= 5  # the path from the log to recommendations stays short
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    recs = namespace["recs"]
    assert recs.columns.tolist() == ["user", "rank", "item", "score"]
    assert set(recs["user"]) == {"ann", "newcomer"}
    seen = set(namespace["log"].query("user == 'ann'")["item"])
    assert not seen & set(recs.loc[recs.user == "ann", "item"])


def test_extras_named_in_the_readme_exist():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in ("pandas", "plot", "notebook", "dev", "docs"):
        assert extra in extras and f"`[{extra}]`" in README
    assert any(req.startswith("ipywidgets") for req in extras["notebook"])
    assert "pip install -c constraints.txt ." in README  # a regular install for users


def test_the_landing_page_never_trains_the_full_defaults():
    """docs/index.rst ran SeqRecommender(random_state=0).fit(X): up to 200 epochs of the
    default model, unannounced. Every neural model on the landing page and in the README
    sets max_iter, and the landing page says which estimator to pick."""
    index = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    for text in (index, README):
        calls = re.findall(r"(?:Seq|AE)Recommender\((.*?)\)\.fit", text, flags=re.DOTALL)
        assert calls
        for args in calls:
            assert "max_iter" in args or "**small" in args, args
    assert "Which estimator?" in index
