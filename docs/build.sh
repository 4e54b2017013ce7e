#!/usr/bin/env bash
# Build the HTML documentation with warnings as errors.
#
# Usage (from anywhere):
#   bash docs/build.sh                 # executes the example gallery (a few minutes on a CPU)
#   bash docs/build.sh --no-gallery    # skips running the examples (what CI wants)
#   bash docs/build.sh --fast          # runs the examples in their short mode (SKREC_EXAMPLES_FAST=1)
# Extra arguments after the options go to sphinx-build. Output: docs/_build/html/index.html.
# Needs the docs extra: pip install -c constraints.txt -e ".[docs]"
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

gallery=1
clean=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-gallery) gallery=0; shift ;;
    --fast) export SKREC_EXAMPLES_FAST=1; shift ;;
    --clean) clean=1; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done

python="${PYTHON:-python}"
if ! "$python" -c "import sphinx, numpydoc, sphinx_gallery, pydata_sphinx_theme, matplotlib" 2>/dev/null; then
  echo "error: the docs dependencies are missing; install them with" >&2
  echo "       pip install -c constraints.txt -e \".[docs]\"" >&2
  exit 1
fi

if [ "$clean" -eq 1 ]; then
  rm -rf docs/_build docs/auto_examples docs/gen_modules docs/api.rst
fi

export SKREC_DOCS_PLOT_GALLERY="$gallery"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MPLBACKEND=Agg
echo "== sphinx-build -W (gallery execution: $([ "$gallery" -eq 1 ] && echo on || echo off))"
"$python" -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
echo "== built docs/_build/html/index.html"
