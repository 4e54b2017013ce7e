"""Finding a data set already on this machine (no download): one search for every loader."""

from __future__ import annotations

import os
import warnings
from pathlib import Path


def find_local_data(name: str, marker: str, *, search_from: str | os.PathLike | None,
                    instead: str | None, label: str, how_to_get: str) -> Path | None:
    """The folder ``name`` holding the file ``marker``, looked up without downloading.

    Looked up, in order: ``$SKREC_DATA_DIR`` (the folder itself, or its ``name``
    sub-folder), the skrec data cache (``$SKREC_DATA``, default ``~/skrec_data``), and a
    ``shared/data/<name>`` folder next to any parent of ``search_from`` (the working
    directory when ``None``). When nothing is found and ``instead`` says what the caller
    uses in its place, a banner on standard output and a ``UserWarning`` say so (``label``
    names the data set, ``how_to_get`` how to obtain it).
    """
    candidates = []
    env = os.environ.get("SKREC_DATA_DIR")
    if env:
        candidates += [Path(env), Path(env) / name]
    home = os.environ.get("SKREC_DATA", Path("~") / "skrec_data")
    candidates.append(Path(home).expanduser() / name)
    start = Path(search_from).resolve() if search_from is not None else Path.cwd()
    candidates += [parent / "shared" / "data" / name for parent in [start, *start.parents]]
    found = next((p for p in candidates if (p / marker).is_file()), None)
    if found is None and instead is not None:
        looked = (f"SKREC_DATA_DIR={env} holds no {marker}" if env
                  else "SKREC_DATA_DIR is not set")
        message = (
            f"{label} NOT FOUND ({looked}, nothing in the skrec data cache, and no "
            f"shared/data/{name} above {start}): this run uses {instead}, so its numbers say "
            f"nothing about {label}. {how_to_get}, or run again with "
            f"SKREC_DATA_DIR=/path/to/{name} (the folder holding {marker})."
        )
        print("=" * 78, message, "=" * 78, sep="\n")
        warnings.warn(message, UserWarning, stacklevel=3)
    return found
