#!/usr/bin/env bash
# The course's one entry point.
#   bash course.sh lab      set up (first time only) and open the course in JupyterLab
#   bash course.sh test     set up (first time only) and run every test: pytest + every notebook under nbval,
#                           then the same suite without numba-cuda (test-numba-only)
#   bash course.sh test-numba-only  only that second run: the suite in .venv-numba (override with NBKIT_NUMBA_VENV),
#                           an environment with the same packages less numba-cuda, so numba's own built-in CUDA
#                           simulator runs, as on macOS or in a Colab kernel that installed numba-cuda while running
#   bash course.sh learner  make the learners' copies of the notebooks (solutions removed) in learner/
#   bash course.sh execute  re-execute every notebook in place (maintainers, before committing notebooks)
#   bash course.sh setup    only set up
#   bash course.sh gpu-check  on a machine with an NVIDIA GPU, in at most 10 minutes: the tests in GPU mode, notebooks
#                           00 03 04 08 09 under nbval, the benchmark, torchrun with NCCL; one dated results file in
#                           results/ (coursekit/gpu_check.py). Without a GPU it says so in one line and exits 0.
# Set-up makes a virtual environment in .venv (override with NBKIT_VENV) from pyproject.toml. What it installs
# is decided by coursekit/setup_plan.py (standard library only, so it runs before numba is installed):
#   * numba-cuda[cu13] or [cu12] from the NVIDIA driver and the GPU (NBKIT_CUDA=cu12|cu13 overrides);
#   * PyTorch's CPU-only build on Linux without a GPU, from PyTorch's CPU index when it can be reached;
#   * nothing at all when pyproject.toml and those choices are unchanged since the last set-up, so a second
#     launch works offline (a stamp in the environment records what was installed).
set -euo pipefail
cd "$(dirname "$0")"

VENV=${NBKIT_VENV:-.venv}
PYTHON=${PYTHON:-python3}

NUMBA_VENV=${NBKIT_NUMBA_VENV:-.venv-numba}

plan() { "$VENV/bin/python" coursekit/setup_plan.py "$@"; }
numba_only() { "$VENV/bin/python" coursekit/numba_only.py "$@"; }

make_venv() {
    echo "course.sh: creating the virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip \
        || echo "course.sh: could not upgrade pip (offline?); going on with $("$VENV/bin/python" -m pip --version)"
}

setup() {
    [ -x "$VENV/bin/python" ] || make_venv
    local py="$VENV/bin/python" extra state torch_args TORCH_REQ
    # torch is pinned (an unpinned `torch` may pull a multi-GB CUDA build), in pyproject.toml's [tool.nbkit] table.
    TORCH_REQ=$(plan torch-req)
    extra=$(plan extra)
    state=$(plan state "$VENV" "$extra" "$TORCH_REQ")
    case "$state" in
        current)
            return ;;
        switch)
            # numba-cuda's CUDA 12 and 13 libraries cannot share an environment: start again.
            echo "course.sh: the CUDA set-up changes to numba-cuda[$extra]: rebuilding $VENV"
            [ -f "$VENV/pyvenv.cfg" ] || { echo "course.sh: $VENV does not look like a virtual environment" >&2; exit 1; }
            rm -rf "$VENV"
            make_venv ;;
        changed)
            echo "course.sh: pyproject.toml changed since the last set-up: installing again" ;;
    esac
    if [ "$("$py" -c 'import importlib.metadata as m
try: print(m.version("torch").split("+")[0])
except m.PackageNotFoundError: pass')" != "${TORCH_REQ#torch==}" ]; then
        torch_args=$(plan torch-args "$py" "$TORCH_REQ")
        echo "course.sh: installing $TORCH_REQ"
        # shellcheck disable=SC2086  # torch_args is empty or "--index-url URL"
        "$py" -m pip install --quiet $torch_args "$TORCH_REQ"
    fi
    echo "course.sh: installing the course (nbkit) and its dependencies, numba-cuda[$extra]"
    # The build backend is installed once here, not fetched into an isolated build environment on every call.
    "$py" -m pip install --quiet "setuptools>=77"
    "$py" -m pip install --quiet --no-build-isolation -e ".[test,lab,$extra]"
    plan mark "$VENV" "$extra" "$TORCH_REQ"
}

# The numba-only environment: pyproject.toml's packages less numba-cuda (coursekit/numba_only.py says which), the
# same torch pin, nbkit itself editable without its dependencies (they would bring numba-cuda back). Like setup,
# a stamp makes a second call install nothing.
setup_numba_only() {
    setup
    local py="$NUMBA_VENV/bin/python" torch_args torch_req
    torch_req=$(plan torch-req)
    [ -x "$py" ] || VENV=$NUMBA_VENV make_venv
    [ "$(numba_only state "$NUMBA_VENV" "$torch_req")" = current ] && return
    echo "course.sh: installing the numba-only environment $NUMBA_VENV (no numba-cuda: numba's built-in simulator)"
    torch_args=$(plan torch-args "$py" "$torch_req")
    # shellcheck disable=SC2086  # torch_args is empty or "--index-url URL"
    "$py" -m pip install --quiet $torch_args "$torch_req"
    numba_only requirements > "$NUMBA_VENV/numba-only-requirements.txt"
    "$py" -m pip install --quiet "setuptools>=77" -r "$NUMBA_VENV/numba-only-requirements.txt"
    "$py" -m pip install --quiet --no-build-isolation --no-deps -e .
    if "$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("numba_cuda") is None)'; then
        echo "course.sh: numba-cuda got into $NUMBA_VENV; it must not be there" >&2
        exit 1
    fi
    numba_only mark "$NUMBA_VENV" "$torch_req"
}

# pytest-xdist: one worker per core (NBKIT_TEST_WORKERS overrides, 0 = none); --dist loadfile keeps every
# notebook's cells on one worker, in order, as nbval needs.
run_tests() {
    local py=$1
    shift
    # Simulator mode on every machine, so results do not depend on whether a GPU is present.
    NBKIT_MODE=${NBKIT_MODE:-sim} "$py" -m pytest -n "${NBKIT_TEST_WORKERS:-auto}" --dist loadfile \
        --nbval-lax --nbval-current-env tests notebooks "$@"
}

# Call setup_numba_only first, outside an `||` list (there `set -e` would not stop a failed install).
test_numba_only() {
    echo "course.sh: the suite again without numba-cuda ($NUMBA_VENV, numba's built-in simulator)"
    NBKIT_MODE=sim run_tests "$NUMBA_VENV/bin/python" "$@"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    setup)
        setup ;;
    lab)
        setup
        root_flag=()
        if [ "$(id -u)" = 0 ]; then
            # Jupyter refuses to run as root unless told to; containers often run as root.
            echo "course.sh: NOTE: running as root (a container?): starting JupyterLab with --allow-root." \
                 "Outside a container, prefer an ordinary user."
            root_flag=(--allow-root)
        fi
        # ${a[@]+"${a[@]}"}: an empty array under `set -u` in the bash 3.2 of macOS.
        # The repository root, so the file browser shows notebooks/ (instructor versions) and learner/ (your copies).
        exec "$VENV/bin/jupyter" lab ${root_flag[@]+"${root_flag[@]}"} "$@" ;;
    learner)
        setup
        exec "$VENV/bin/python" -m coursekit.learner "$@" ;;
    test)
        setup_numba_only
        status=0
        run_tests "$VENV/bin/python" "$@" || status=$?
        test_numba_only "$@" || status=$?
        exit "$status" ;;
    test-numba-only)
        setup_numba_only
        test_numba_only "$@" ;;
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
    gpu-check)
        setup
        exec "$VENV/bin/python" -m coursekit.gpu_check --python "$VENV/bin/python" "$@" ;;
    *)
        echo "usage: bash course.sh lab|test|learner|execute|setup|test-numba-only|gpu-check [extra arguments]" >&2
        exit 2 ;;
esac
