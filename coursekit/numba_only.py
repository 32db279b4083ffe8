"""The second test environment: the course's packages without numba-cuda, so numba's own CUDA simulator runs.

Why: numba-cuda redirects ``numba.cuda`` to its own package (a ``.pth`` file read at interpreter start). Where
numba-cuda is missing (macOS) or was installed into an already running interpreter (a Colab kernel), the
simulator that runs is the older one built into numba. ``course.sh test`` runs the suite in both.

Run as a file (standard library only, like ``setup_plan.py``)::

    python3 coursekit/numba_only.py requirements           # pyproject.toml's packages (+ test, lab) less numba-cuda
    python3 coursekit/numba_only.py state VENV TORCH       # current | new | changed (the stamp of setup_plan.py)
    python3 coursekit/numba_only.py mark VENV TORCH        # record a finished install
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip, which every virtual environment has, vendors the same parser
    from pip._vendor import tomli as tomllib

if __package__:  # imported (tests): coursekit is a package
    from coursekit import setup_plan
else:  # run as a file, before nbkit is installed: its folder is on sys.path
    import setup_plan  # the one home of the install stamp

ROOT = Path(__file__).resolve().parent.parent

EXTRAS = ("test", "lab")  # the main environment's extras, less the CUDA one (cu12/cu13 are numba-cuda itself)
LEFT_OUT = {"numba-cuda"}  # its CUDA wheels (cuda-bindings, nvidia-*-cu13...) come only through it
STAMP_EXTRA = "numba-only"  # the stamp's "extra": what makes this environment differ from the main one


def _name(requirement: str) -> str:
    """Normalised project name of a requirement string (PEP 503: lower case, runs of -_. as one -)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def requirements(pyproject_text: str) -> list[str]:
    """The main environment's requirements (dependencies and the extras test, lab) less numba-cuda, in order."""
    project = tomllib.loads(pyproject_text)["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project["optional-dependencies"][extra]
    out: list[str] = []
    for req in wanted:
        if _name(req) not in LEFT_OUT and req not in out:
            out.append(req)
    return out


def main(argv: list[str]) -> int:
    text = (ROOT / "pyproject.toml").read_text()
    if argv == ["requirements"]:
        print("\n".join(requirements(text)))
        return 0
    if len(argv) == 3 and argv[0] in ("state", "mark"):
        venv, torch_requirement = Path(argv[1]), argv[2]
        if argv[0] == "state":
            print(setup_plan.install_state(venv, text, STAMP_EXTRA, torch_requirement))
        else:
            setup_plan.mark_installed(venv, text, STAMP_EXTRA, torch_requirement)
        return 0
    print(__doc__.split("::", 1)[1].rstrip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
