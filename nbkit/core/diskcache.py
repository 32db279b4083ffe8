"""nbkit's on-disk cache of compiled code, shared by every process (notebook kernels, pytest workers, checks).

Why: compiling a kernel for the CPU executor (numba ``njit``) or with numba-cuda's compiler takes seconds, and
every new process (each notebook, each test worker, each learner session) used to do it again. Entries are named
by a SHA-256 of everything they depend on (the source, the values it reads, the versions of Python, numba and
of the nbkit module that made it), so an entry is never stale: a change gives a new name, never an old answer.
Entries are written whole (a temporary file, then a link to the final name), so concurrent writers of the same
entry (pytest-xdist workers) cannot leave a half-written one; the first one wins and the others read it.

Where: ``$NBKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/nbkit``, else ``~/.cache/nbkit``. Deleting the folder is
always safe (``rm -rf ~/.cache/nbkit``). ``NBKIT_CACHE_DIR=off`` turns the cache off; a folder that cannot be
written turns it off too, and everything is compiled in memory as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ENV_VAR = "NBKIT_CACHE_DIR"


def cache_root() -> Path | None:
    """The cache folder, or None when it is turned off (``NBKIT_CACHE_DIR=off``)."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value.lower() in ("off", "0", "none"):
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nbkit"


_USABLE: dict[str, Path | None] = {}


def cache_dir(part: str) -> Path | None:
    """``<cache root>/<part>``, created; None if it is turned off or cannot be written (then: no disk cache)."""
    root = cache_root()
    key = f"{root}/{part}"
    if key not in _USABLE:
        folder = None if root is None else root / part
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
                    pass
            except OSError:
                folder = None
        _USABLE[key] = folder
    return _USABLE[key]


def digest(*parts: str) -> str:
    """SHA-256 (hex) of the parts and of the versions a compiled result depends on (Python, platform)."""
    h = hashlib.sha256()
    for part in (sys.version, platform.machine(), *parts):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes: the version of the nbkit module whose output is cached."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_once(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it exists, atomically (never a half-written file, never replaced: a
    concurrent writer of the same entry wrote the same text). False if it could not be written."""
    if path.exists():
        return True
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            os.link(tmp, path)  # fails if another process was first: its file is the same entry
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return False
    return path.exists()


def write_exact(path: Path, text: str) -> bool:
    """Make ``path`` hold exactly ``text``: written once as :func:`write_once` does, and a file there with other
    bytes (edited by hand, or truncated outside nbkit) replaced whole, atomically, instead of being read or
    silently bypassed. False if it could not be written."""
    data = text.encode("utf-8")
    if write_once(path, text) and _holds(path, data):
        return True
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # readers see the old file or the new one, never a mixture
    except OSError:
        return False
    return _holds(path, data)


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def read_json(path: Path) -> object | None:
    """The JSON stored at ``path``, or None (absent or unreadable: a miss)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, value: object) -> bool:
    """Store ``value`` as JSON at ``path`` (see :func:`write_once`)."""
    return write_once(path, json.dumps(value, sort_keys=True))
