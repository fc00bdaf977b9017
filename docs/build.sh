#!/usr/bin/env bash
# The API reference, generated from the docstrings with pdoc: docs/build.sh [OUTPUT_DIR]
# (default docs/api/, git-ignored). Any pdoc warning (a module that does not import, a
# docstring it cannot parse, a name it cannot resolve) fails the build. Needs the dev extra.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/api}
rm -rf "$out"
python -W error -W ignore::DeprecationWarning -m pdoc --docformat restructuredtext \
    --footer-text "ndintake $(python -c 'import ndintake; print(ndintake.__version__)')" \
    -o "$out" ndintake ndintake.server ndintake.asgi ndintake.wsgi ndintake.sinks ndintake.cli
echo "API reference in $out/index.html"
