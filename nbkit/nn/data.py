"""CIFAR-10 from the official python archive: download, verify, extract safely, load.

    python -m nbkit.nn.data download    # fetch the real archive (about 163 MB) into data/
    python -m nbkit.nn.data synthetic   # write a small synthetic archive in the same format

Everything lands in ``data/`` at the top of the course (or in ``$NBKIT_DATA``); that folder is git-ignored.
Without the real archive, :func:`load` falls back to a synthetic data set written in exactly the same
on-disk format and read by the same code, and marks it ``synthetic=True`` so that every output can say so.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the CIFAR-10 page
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
SYNTHETIC_DIR = "synthetic-cifar"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


class DataError(RuntimeError):
    """The data is missing, incomplete or corrupt; the message says what to do."""


def data_dir() -> Path:
    """``$NBKIT_DATA`` if set, else ``data/`` at the top of the course."""
    return Path(os.environ.get("NBKIT_DATA", Path(__file__).resolve().parents[2] / "data"))


def md5sum(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - the published checksum is MD5; used for integrity, not security
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress(done: int, total: int | None, out=sys.stderr) -> None:
    if total:
        width = 30
        filled = int(width * done / total)
        out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done / 2**20:7.1f} / {total / 2**20:.1f} MiB")
    else:
        out.write(f"\r{done / 2**20:7.1f} MiB")
    out.flush()


def download(url: str = URL, dest: Path | None = None, md5: str = MD5, progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically and verify its MD5; return ``dest``.

    The bytes go to a temporary file beside ``dest``, which is renamed into place only after the checksum
    matched, so an interrupted or corrupted download never leaves a file that looks complete.
    """
    dest = Path(dest) if dest is not None else data_dir() / ARCHIVE
    if dest.exists() and md5sum(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:  # noqa: S310
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            done = 0
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    _progress(done, total)
        if progress:
            sys.stderr.write("\n")
        got = md5sum(tmp)
        if got != md5:
            raise DataError(f"downloaded {url} but its MD5 is {got}, expected {md5}: the file is corrupt or "
                            "incomplete. Nothing was kept; try again.")
        os.replace(tmp, dest)  # atomic on the same file system
    except OSError as exc:
        raise DataError(f"could not download {url} ({exc}). Without a network connection, copy "
                        f"{ARCHIVE} into {dest.parent} by hand.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract a .tar.gz into ``target``, refusing any member that would land outside it.

    Members go to a private staging folder first and are then renamed into ``target`` (a new folder whole,
    else file by file), so another process (a second notebook, a parallel test) never reads a half-written batch.
    """
    target = Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                where = (target / m.name).resolve()
                if not where.is_relative_to(target) or m.name.startswith("/"):
                    raise DataError(f"{archive} contains {m.name!r}, which would be written outside {target}: "
                                    "refusing to extract a malicious or broken archive.")
                if m.issym() or m.islnk() or m.isdev():
                    raise DataError(f"{archive} contains a link or device ({m.name!r}); CIFAR-10 has only files.")
            staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
            try:
                try:
                    tar.extractall(staging, members=members, filter="data")  # Python >= 3.11.4: extra safety
                except TypeError:  # older Python: the members were checked above
                    tar.extractall(staging, members=members)  # noqa: S202 - every member was checked above
                for entry in staging.iterdir():
                    _move_into_place(entry, target / entry.name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{archive} is not a readable .tar.gz ({type(exc).__name__}: {exc}); it is truncated or "
                        "corrupt. Delete it and download it again.") from exc
    return target


def _move_into_place(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest`` atomically; into an existing folder, file by file (``os.replace``).

    A reader then sees each file either old or new, never missing or half-written; files ``dest`` has
    and the archive lacks stay, as with a plain extraction.
    """
    if src.is_dir() and dest.is_dir():
        for entry in src.iterdir():
            _move_into_place(entry, dest / entry.name)
        return
    os.replace(src, dest)  # atomic: a new folder appears whole, a file is swapped in one step


class _BatchUnpickler(pickle.Unpickler):
    """Only what a CIFAR-10 batch contains: dicts, lists, bytes and NumPy arrays. Nothing executable."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    except FileNotFoundError as exc:
        raise DataError(f"{path} is missing: the extracted data is incomplete. Delete {path.parent} and extract "
                        "the archive again.") from exc
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path} is not a valid CIFAR-10 batch ({type(exc).__name__}: {exc}).") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataError(f"{path}: expected uint8 data of shape (n, 3072) and n labels, got {data.dtype} "
                        f"{data.shape} and labels {labels.shape}.")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: labels must lie in 0..9, got {labels.min()}..{labels.max()}.")
    return data, labels.astype(np.int64)


def normalise(raw: np.ndarray) -> np.ndarray:
    """uint8 rows of 3072 (R, G, B planes) -> float32 NCHW in [-1, 1]: the tutorial's Normalize(0.5, 0.5)."""
    x = raw.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255)
    return (x - np.float32(0.5)) / np.float32(0.5)


@dataclass
class Dataset:
    x_train: np.ndarray  # float32 (N, 3, 32, 32), normalised
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    synthetic: bool
    source: str

    @property
    def label(self) -> str:
        """A tag for every printed result and plot title."""
        return "SYNTHETIC data (not CIFAR-10)" if self.synthetic else "CIFAR-10"


def load_folder(folder: Path, synthetic: bool = False) -> Dataset:
    """Load the extracted batches of ``folder`` (a ``cifar-10-batches-py`` directory)."""
    parts = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    x_test, y_test = _read_batch(folder / TEST_BATCH)
    return Dataset(normalise(np.concatenate([p[0] for p in parts])), np.concatenate([p[1] for p in parts]),
                   normalise(x_test), y_test, synthetic, str(folder))


def load_archive(archive: Path, target: Path, synthetic: bool = False) -> Dataset:
    """Extract ``archive`` into ``target`` (safely) and load it."""
    safe_extract(archive, target)
    return load_folder(Path(target) / FOLDER, synthetic)


def make_synthetic_archive(path: Path, per_batch: int = 200, n_test: int = 200, seed: int = 0) -> Path:
    """Write a CIFAR-10-format archive of learnable synthetic images (class = colour and stripe pattern).

    Same members, pickle keys, dtypes and layout as the real archive, so the real loader reads it.
    """
    rng = np.random.default_rng(seed)
    colours = rng.uniform(40, 215, size=(10, 3))
    yy, xx = np.mgrid[0:32, 0:32]

    def images(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, 10, n)
        angle = labels[:, None, None] * np.pi / 10
        stripes = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * (0.5 + 0.05 * labels[:, None, None]))
        img = colours[labels][:, :, None, None] + 30 * stripes[:, None] + rng.normal(0, 25, (n, 3, 32, 32))
        return np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072), labels.tolist()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    with tarfile.open(tmp, "w:gz") as tar:
        def add(name: str, obj: dict) -> None:
            blob = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))

        for name in TRAIN_BATCHES:
            data, labels = images(per_batch)
            add(name, {b"batch_label": b"synthetic", b"labels": labels, b"data": data})
        data, labels = images(n_test)
        add(TEST_BATCH, {b"batch_label": b"synthetic", b"labels": labels, b"data": data})
        add("batches.meta", {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072})
    os.replace(tmp, path)
    return path


def load(allow_download: bool = False, verbose: bool = True) -> Dataset:
    """Real CIFAR-10 if its archive is in ``data/`` (or can be downloaded), else the synthetic stand-in.

    Never pretends: the returned :class:`Dataset` says whether it is synthetic.
    """
    root = data_dir()
    archive = root / ARCHIVE
    if not archive.exists() and allow_download:
        try:
            download(dest=archive)
        except DataError as exc:
            if verbose:
                print(f"Download failed: {exc}")
    if archive.exists():
        if (root / FOLDER / TEST_BATCH).exists():
            return load_folder(root / FOLDER)
        if md5sum(archive) != MD5:
            raise DataError(f"{archive} does not have the published MD5 {MD5}: it is corrupt or incomplete. "
                            "Delete it and run `python -m nbkit.nn.data download`.")
        return load_archive(archive, root)
    if verbose:
        print(f"CIFAR-10 was not found in {root}. To use the real data set, run `python -m nbkit.nn.data download` "
              f"(about 163 MB from {URL}) or copy {ARCHIVE} there.\nContinuing with a SYNTHETIC data set in the "
              "same format; results below are NOT CIFAR-10 results.")
    synthetic_archive = root / SYNTHETIC_DIR / ARCHIVE
    if (root / SYNTHETIC_DIR / FOLDER / TEST_BATCH).exists():  # extracted before (appears whole, by rename)
        return load_folder(root / SYNTHETIC_DIR / FOLDER, synthetic=True)
    if not synthetic_archive.exists():
        make_synthetic_archive(synthetic_archive)
    return load_archive(synthetic_archive, root / SYNTHETIC_DIR, synthetic=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Get the CIFAR-10 data for the course.")
    parser.add_argument("what", choices=["download", "synthetic"])
    args = parser.parse_args(argv)
    if args.what == "download":
        archive = download()
        safe_extract(archive, data_dir())
        print(f"CIFAR-10 is ready in {data_dir() / FOLDER}")
    else:
        path = make_synthetic_archive(data_dir() / SYNTHETIC_DIR / ARCHIVE)
        print(f"wrote {path} (synthetic, CIFAR-10 format)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
