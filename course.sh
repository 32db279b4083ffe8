#!/usr/bin/env bash
# The course's one entry point.
#   bash course.sh lab      set up (first time only) and open the course in JupyterLab
#   bash course.sh test     set up (first time only) and run every test: pytest + every notebook under nbval
#   bash course.sh execute  re-execute every notebook in place (maintainers, before committing notebooks)
#   bash course.sh setup    only set up
# Set-up makes a virtual environment in .venv (override with NBKIT_VENV) from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${NBKIT_VENV:-.venv}
PYTHON=${PYTHON:-python3}

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "course.sh: creating the virtual environment $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local py="$VENV/bin/python"
    "$py" -m pip install --quiet --upgrade pip
    if ! "$py" -c "import torch" 2>/dev/null; then
        # torch is pinned here, not in pyproject.toml: an unpinned `torch` may pull a multi-GB CUDA build.
        echo "course.sh: installing torch==2.13.0"
        "$py" -m pip install --quiet "torch==2.13.0"
    fi
    echo "course.sh: installing the course (nbkit) and its dependencies"
    "$py" -m pip install --quiet -e ".[test,lab]"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    setup)
        setup ;;
    lab)
        setup
        exec "$VENV/bin/jupyter" lab notebooks/ "$@" ;;
    test)
        setup
        # Simulator mode on every machine, so results do not depend on whether a GPU is present.
        export NBKIT_MODE=${NBKIT_MODE:-sim}
        exec "$VENV/bin/python" -m pytest --nbval-lax --nbval-current-env tests notebooks "$@" ;;
    execute)
        setup
        for nb in notebooks/[0-9][0-9]_*.ipynb; do
            echo "course.sh: executing $nb"
            "$VENV/bin/jupyter" nbconvert --to notebook --execute --inplace "$nb"
        done
        # Drop per-cell execution timestamps: they change on every run and only add noise to diffs.
        "$VENV/bin/python" - notebooks/[0-9][0-9]_*.ipynb <<'PY'
import sys
import nbformat
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
PY
        ;;
    *)
        echo "usage: bash course.sh lab|test|execute|setup [extra arguments]" >&2
        exit 2 ;;
esac
