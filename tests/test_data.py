"""The CIFAR-10 loader on archives in the official format: good, corrupt, truncated, malicious, offline."""

import io
import pickle
import re
import tarfile

import numpy as np
import pytest

from nbkit.nn import data
from nbkit.nn.data import DataError


@pytest.fixture
def archive(tmp_path):
    return data.make_synthetic_archive(tmp_path / "src" / data.ARCHIVE, per_batch=20, n_test=30, seed=1)


def test_good_archive_loads_as_normalised_nchw(archive, tmp_path):
    ds = data.load_archive(archive, tmp_path / "out", synthetic=True)
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (30, 3, 32, 32) and ds.y_test.dtype == np.int64
    assert -1.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert set(np.unique(ds.y_train)) <= set(range(10))
    assert ds.synthetic and "SYNTHETIC" in ds.label


def test_normalisation_matches_the_tutorial():
    raw = np.array([[0] * 1024 + [255] * 1024 + [51] * 1024], dtype=np.uint8)
    x = data.normalise(raw)
    assert x.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(x[0, :, 0, 0], [-1.0, 1.0, (51 / 255 - 0.5) / 0.5], rtol=1e-6)


def test_truncated_archive_is_refused(archive, tmp_path):
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.load_archive(cut, tmp_path / "out")


def test_corrupt_archive_is_refused(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not a gzip file" * 100)
    with pytest.raises(DataError, match="not a readable .tar.gz"):
        data.load_archive(bad, tmp_path / "out")


def _tar_with(path, name, payload=b"x", kind=tarfile.REGTYPE, linkname=""):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        info.size = len(payload) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(payload) if kind == tarfile.REGTYPE else None)
    return path


@pytest.mark.parametrize("name, kind, linkname, refusal", [
    ("../escape.txt", tarfile.REGTYPE, "", "contains {name!r}, which would be written outside"),
    ("cifar-10-batches-py/../../escape.txt", tarfile.REGTYPE, "", "contains {name!r}, which would be written outside"),
    ("/tmp/absolute.txt", tarfile.REGTYPE, "", "contains {name!r}, which would be written outside"),  # noqa: S108 - a name in the archive
    ("cifar-10-batches-py/link", tarfile.SYMTYPE, "/etc/passwd", "contains a link or device ({name!r}); CIFAR-10 has only files"),
])
def test_path_traversal_is_refused_and_nothing_is_written(tmp_path, name, kind, linkname, refusal):
    evil = _tar_with(tmp_path / "evil.tar.gz", name, kind=kind, linkname=linkname)
    target = tmp_path / "deep" / "target"
    with pytest.raises(DataError, match=re.escape(refusal.format(name=name))):
        data.safe_extract(evil, target)
    assert not (tmp_path / "deep" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert list(target.iterdir()) == []


def test_a_batch_with_wrong_content_is_refused(tmp_path):
    blob = pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}, protocol=2)
    bad = _tar_with(tmp_path / "wrong.tar.gz", f"{data.FOLDER}/data_batch_1", payload=blob)
    with pytest.raises(DataError, match=r"expected uint8 data of shape \(n, 3072\)"):
        data.load_archive(bad, tmp_path / "out")


def test_a_pickle_with_code_in_it_is_refused(tmp_path):
    folder = tmp_path / data.FOLDER
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps(print))  # refers to builtins.print
    with pytest.raises(DataError, match="unexpected object builtins.print"):
        data.load_folder(folder)


def test_missing_batch_is_reported(archive, tmp_path):
    data.safe_extract(archive, tmp_path / "out")
    (tmp_path / "out" / data.FOLDER / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        data.load_folder(tmp_path / "out" / data.FOLDER)


def test_download_verifies_md5_and_leaves_no_partial_file(archive, tmp_path):
    dest = tmp_path / "dl" / data.ARCHIVE
    good_md5 = data.md5sum(archive)
    with pytest.raises(DataError, match="MD5"):
        data.download(archive.as_uri(), dest, md5="0" * 32, progress=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    assert data.download(archive.as_uri(), dest, md5=good_md5, progress=False) == dest
    assert data.md5sum(dest) == good_md5


def test_download_failure_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="copy cifar-10-python.tar.gz"):
        data.download((tmp_path / "nowhere.tar.gz").as_uri(), tmp_path / "x.tar.gz", progress=False)


def test_load_falls_back_to_synthetic_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NBKIT_DATA", str(tmp_path))
    ds = data.load(allow_download=False)
    out = capsys.readouterr().out
    assert "CIFAR-10 was not found" in out and "python -m nbkit.nn.data download" in out and "NOT CIFAR-10" in out
    assert ds.synthetic and ds.x_train.shape[1:] == (3, 32, 32)


def test_load_uses_a_real_archive_when_present(tmp_path, monkeypatch):
    # A stand-in with the published name: load() must check its MD5 and refuse it.
    monkeypatch.setenv("NBKIT_DATA", str(tmp_path))
    data.make_synthetic_archive(tmp_path / data.ARCHIVE, per_batch=5, n_test=5)
    with pytest.raises(DataError, match="does not have the published MD5"):
        data.load()


def test_default_data_folder_is_the_repositorys(monkeypatch):
    """Without NBKIT_DATA, downloads land in data/ at the top of the course (git-ignored), not inside the package."""
    from pathlib import Path

    monkeypatch.delenv("NBKIT_DATA", raising=False)
    assert data.data_dir() == Path(__file__).resolve().parent.parent / "data"


# The reader loads nbkit/nn/data.py by its path (standard library and NumPy only): `from nbkit.nn import data` would
# import nbkit, hence numba, half a second of CPU, while the extractions went on with no reader yet.
READER = """
import importlib.util, pathlib, sys
spec = importlib.util.spec_from_file_location("cifar_data", sys.argv[1])
data = sys.modules["cifar_data"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(data)
print("ready", flush=True)
for _ in range(60):
    data.load_folder(pathlib.Path(sys.argv[2]))
"""


def test_extracting_while_another_process_reads_never_shows_a_half_written_batch(tmp_path):
    """Two notebooks (or two test workers) loading the data at once: one extracts while the other reads."""
    import subprocess
    import sys

    archive = data.make_synthetic_archive(tmp_path / "src" / data.ARCHIVE, per_batch=400, n_test=400, seed=2)
    out = tmp_path / "out"
    data.safe_extract(archive, out)
    reader = subprocess.Popen([sys.executable, "-c", READER, data.__file__, str(out / data.FOLDER)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline() == "ready\n", reader.communicate()[1][-2000:]  # extract only while it reads
    while reader.poll() is None:
        data.safe_extract(archive, out)
    assert reader.returncode == 0, reader.stderr.read()[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [data.FOLDER]  # no staging or old folders left behind
