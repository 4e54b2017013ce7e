"""Notebook display: text and HTML representations show the parameters the user changed.

scikit-learn's default ``print_changed_only=True`` gives this; the test guards against an
estimator whose ``__init__`` stores something else than its arguments (which would make every
parameter look changed).
"""

from __future__ import annotations

import html
import re

import pytest
import sklearn

from skrec import AERecommender, EASERecommender, PopularityRecommender, SeqRecommender
from skrec.preprocessing import InteractionEncoder

CASES = [
    (SeqRecommender(max_iter=3, precision="fp32"), {"max_iter", "precision"}),
    (AERecommender(variational=False, latent_dim=32), {"variational", "latent_dim"}),
    (EASERecommender(l2=100.0), {"l2"}),
    (PopularityRecommender(), set()),
    (InteractionEncoder(time_col="ts"), {"time_col"}),
    (SeqRecommender(), set()),
]


@pytest.mark.parametrize("est, changed", CASES, ids=lambda c: type(c).__name__)
def test_repr_shows_only_changed_parameters(est, changed):
    assert sklearn.get_config()["print_changed_only"]
    text = repr(est)
    assert set(re.findall(r"(\w+)=", text)) == changed
    params = est.get_params()
    for name in changed:
        assert f"{name}={params[name]!r}" in text


@pytest.mark.parametrize("est, changed", CASES, ids=lambda c: type(c).__name__)
def test_html_repr_marks_only_changed_parameters(est, changed):
    page = est._repr_html_()
    fallback = re.search(r'<div class="sk-text-repr-fallback"><pre>(.*?)</pre>', page, re.S)
    assert fallback is not None
    assert html.unescape(fallback.group(1)) == repr(est)
    if "user-set" in page:  # scikit-learn >= 1.7 adds a table of all parameters
        rows = re.findall(
            r'<tr class="(user-set|default)">.*?<td class="param">(.*?)</td>', page, re.S
        )
        assert {name for kind, name in rows if kind == "user-set"} == changed
        assert {name for _, name in rows} == set(est.get_params())
