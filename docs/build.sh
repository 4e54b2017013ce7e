#!/usr/bin/env bash
# Build the HTML documentation with warnings as errors.
#
# Usage (from anywhere):
#   bash docs/build.sh                 # executes the example gallery (a few minutes on a CPU)
#   bash docs/build.sh --no-gallery    # skips running the examples (what CI wants)
#   bash docs/build.sh --fast          # runs the examples in their short mode (SKREC_EXAMPLES_FAST=1)
# Extra arguments after the options go to sphinx-build. Output: docs/_build/html/index.html.
# Needs the docs dependencies: pip install -c constraints.txt ".[docs]" (a regular install is
# enough, an editable one works too). The build always documents this source tree, whatever
# skrec is installed (or none): conf.py puts the repository first on sys.path.
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
  echo "       pip install -c constraints.txt \".[docs]\"   (from $repo)" >&2
  exit 1
fi
# The source tree first, for sphinx and for anything it starts (an installed skrec, regular or
# editable, never shadows the code being documented).
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
echo "== documenting $("$python" -c 'import skrec; print(skrec.__file__)')"

if [ "$clean" -eq 1 ]; then
  rm -rf docs/_build docs/auto_examples docs/gen_modules docs/api.rst
fi

export SKREC_DOCS_PLOT_GALLERY="$gallery"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MPLBACKEND=Agg
echo "== sphinx-build -W (gallery execution: $([ "$gallery" -eq 1 ] && echo on || echo off))"
"$python" -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
echo "== built docs/_build/html/index.html"
