"""Helpers shared by the benchmark scripts (data location, timing, tables)."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def ml100k_path(arg: str | None = None) -> Path:
    """Where ML-100K lies: ``arg``, ``$SKREC_DATA_DIR``, or ``../shared/data/ml-100k``."""
    if arg:
        return Path(arg)
    if os.environ.get("SKREC_DATA_DIR"):
        return Path(os.environ["SKREC_DATA_DIR"]) / "ml-100k"
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


def games_path(arg: str | None = None) -> Path:
    """Where Amazon Games lies: ``arg``, ``$SKREC_DATA_DIR``, or ``../shared/data/amazon-games``.

    ``$SKREC_DATA_DIR`` may be the folder holding ``amazon-games/`` or a sibling data folder
    (such as ``.../ml-100k``).
    """
    if arg:
        return Path(arg)
    if os.environ.get("SKREC_DATA_DIR"):
        base = Path(os.environ["SKREC_DATA_DIR"])
        for candidate in (base / "amazon-games", base.parent / "amazon-games"):
            if candidate.is_dir():
                return candidate
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-games"


def ml1m_path(arg: str | None = None) -> Path:
    """Where MovieLens-1M (SASRec preprocessing) lies: ``arg``, ``$SKREC_DATA_DIR``, or
    ``../shared/data/ml-1m``.

    ``$SKREC_DATA_DIR`` may be the folder holding ``ml-1m/`` or a sibling data folder.
    """
    if arg:
        return Path(arg)
    if os.environ.get("SKREC_DATA_DIR"):
        base = Path(os.environ["SKREC_DATA_DIR"])
        for candidate in (base / "ml-1m", base.parent / "ml-1m"):
            if candidate.is_dir():
                return candidate
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-1m"


def mean_sd(runs: list[dict], keys: tuple[str, ...] = ("NDCG@10", "HR@10", "train_s", "epochs"),
            ) -> dict:
    """Mean and sample standard deviation of ``keys`` over runs (seeds), as numbers and text.

    Returns ``{key: "mean ± sd", key_mean: mean, key_sd: sd, "seeds": n}``; the sd is 0.0 and
    the text the bare value for a single run. Metrics (keys with ``@``) get 4 decimals, other
    values (seconds, epochs) one.
    """
    out: dict = {"seeds": len(runs)}
    for key in keys:
        values = np.asarray([r[key] for r in runs if r.get(key, "") != ""], dtype=np.float64)
        if values.size == 0:
            continue
        mean = float(values.mean())
        sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[f"{key}_mean"], out[f"{key}_sd"] = mean, sd
        digits = 4 if "@" in key else 1
        out[key] = f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if values.size > 1 else "")
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, **kwargs):
    """Run ``fn`` and return ``(result, seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Format ``rows`` as a markdown table with the given columns."""
    def fmt(v):
        if isinstance(v, float | np.floating):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def save_json(name: str, payload) -> Path:
    """Write ``payload`` to ``benchmarks/results/<name>.json`` and return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


# --------------------------------------------------------------------------------------------
# Sequence models: the encoder x objective settings every sequence benchmark compares
# --------------------------------------------------------------------------------------------

#: SeqRecommender settings compared by the sequence benchmarks (``seq_ml100k.py --models``):
#: name -> constructor parameters (the caller sets precision and random_state). A "default"
#: row changes only ``encoder`` / ``objective``; a "tuned" row is the setting that won on the
#: ML-100K validation split of ``seq_tuning_ml100k.py`` (each user's next-to-last item; test
#: items are never used for tuning).
SEQ_MODEL_SPECS: dict[str, dict] = {
    "SASRec (default)": {},
    "GRU4Rec (default)": {"encoder": "gru"},
    "BERT4Rec (default)": {"objective": "masked"},
}


def summarize_seeds(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """One row per ``rows[i]["model"]``: ``key`` as ``"mean ± sd"`` over its seeds (sample sd).

    Also ``key_mean``, ``key_sd`` as numbers and ``seeds``; an empty value counts as missing.
    """
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        runs = [r for r in rows if r["model"] == model]
        summary: dict = {"model": model, "seeds": len(runs)}
        for key in keys:
            values = np.asarray([r[key] for r in runs if r.get(key, "") not in ("", None)],
                                dtype=np.float64)
            if values.size == 0:
                summary[key] = ""
                continue
            mean = float(values.mean())
            sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
            summary[f"{key}_mean"], summary[f"{key}_sd"] = mean, sd
            summary[key] = (f"{mean:.4f} ± {sd:.4f}" if abs(mean) < 100
                            else f"{mean:.0f} ± {sd:.0f}")
        out.append(summary)
    return out
