"""The full bad-input sweep: ``tests/test_bad_input_sweep.py`` with many examples and slow classes.

The test suite runs a sampled subset of the sweep (40 examples per target, drawn the same way on
every run). This script runs the same properties with more examples per target (``--examples``,
default 300), new random ones on each run with ``--random`` (hypothesis' derandomized draw
otherwise, so a run is reproducible), and the classes too slow for the suite
(``SKREC_SWEEP_FULL=1``: ONNX exports of a GRU graph at several opsets, run on short
histories). Every property holds for every example or the run fails with hypothesis' minimal
failing input.

It measures no performance and writes no results file: it prints pytest's summary (with
``--stats``, hypothesis' statistics: how often each call returned or raised which error) and
exits with pytest's status.

Usage::

    nice -n 10 python benchmarks/bad_input_sweep.py                  # 300 examples per target
    nice -n 10 python benchmarks/bad_input_sweep.py --examples 1000 --random -k encoder
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300,
                        help="hypothesis examples per target (the suite runs 40)")
    parser.add_argument("--random", action="store_true",
                        help="new random examples on each run (default: the derandomized draw)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--stats", action="store_true", help="hypothesis statistics per target")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression")
    args = parser.parse_args(argv)
    if args.examples < 1 or args.threads < 1:
        parser.error("--examples and --threads must be positive")
    env = dict(os.environ)
    env.update(
        SKREC_SWEEP_EXAMPLES=str(args.examples),
        SKREC_SWEEP_RANDOM="1" if args.random else "0",
        SKREC_SWEEP_FULL="1",
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        MPLBACKEND="Agg",
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               str(ROOT / "tests" / "test_bad_input_sweep.py"), "--durations=10"]
    if args.stats:
        command.append("--hypothesis-show-statistics")
    if args.keyword:
        command += ["-k", args.keyword]
    print("$", " ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
