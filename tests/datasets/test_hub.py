"""Hub source against a real local HTTP server speaking the Hugging Face `resolve` protocol.

The server implements what `hf_hub_download` uses: HEAD and GET of
`/datasets/l-lt/LaSOT/resolve/<revision>/<file>` with X-Repo-Commit, ETag and Content-Length headers
(Range requests honoured, X-Error-Code: EntryNotFound for missing files). No network is touched.
"""

from __future__ import annotations

import io
import shutil
import socket
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from services import FakeHub, point_hub_at

from seqtrack_mlflow.datasets.base import DataSourceError
from seqtrack_mlflow.datasets.cache import COMPLETE_MARKER
from seqtrack_mlflow.datasets.hub import fetch_lasot_classes, read_split_file, safe_extract
from seqtrack_mlflow.datasets.lasot import read_sequence
from seqtrack_mlflow.datasets.synthetic import generate_lasot


def _zip_class(class_dir: Path) -> bytes:
    """A class zip as on the hub: members `<class>-<k>/...`, no class folder."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(class_dir.rglob("*")):
            archive.write(path, path.relative_to(class_dir).as_posix())
    return buffer.getvalue()


def _zip_members(members: list[tuple[str, bytes, int | None]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hubsrc")
    generate_lasot(root, ["airplane", "bear"], sequences_per_class=2, frames=22, size=(64, 48), seed=2)
    return root


@pytest.fixture
def hub(source_tree, monkeypatch, tmp_path):
    files = {f"{c}.zip": _zip_class(source_tree / c) for c in ("airplane", "bear")}
    files["training_set.txt"] = "\ufeffairplane-2\r\nbear-1\r\n".encode()
    files["testing_set.txt"] = "\ufeffairplane-1\nbear-2\n".encode()
    server = FakeHub(files)
    point_hub_at(monkeypatch, tmp_path, server.url)
    yield server
    server.close()


def test_fetch_extracts_a_readable_tree_once(hub, source_tree, tmp_path):
    cache = tmp_path / "cache"
    root = fetch_lasot_classes(["airplane"], cache)
    assert root == cache / "lasot"
    assert sorted(p.name for p in (root / "airplane").iterdir() if p.is_dir()) == ["airplane-1", "airplane-2"]
    for name in ("airplane-1", "airplane-2"):
        got = read_sequence(root / "airplane" / name)
        want = read_sequence(source_tree / "airplane" / name)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.visible, want.visible)
    assert read_sequence(root / "airplane" / "airplane-1").split == "test"
    assert not (root / "bear").exists() and hub.gets("bear.zip") == 0  # only the selected class
    assert read_split_file(root / "training_set.txt") == ["airplane-2", "bear-1"]  # BOM and CRLF gone
    assert (root / "testing_set.txt").read_bytes().startswith(b"airplane-1\n")

    marker = root / "airplane" / COMPLETE_MARKER
    stamp = marker.stat().st_mtime_ns
    before = sum(hub.requests.values())
    assert fetch_lasot_classes(["airplane"], cache) == root
    assert sum(hub.requests.values()) == before  # nothing downloaded, not even a HEAD
    assert marker.stat().st_mtime_ns == stamp  # not re-extracted

    fetch_lasot_classes(["airplane", "bear"], cache)
    assert hub.gets("airplane.zip") == 1 and hub.gets("bear.zip") == 1
    assert (root / "bear" / COMPLETE_MARKER).is_file()


def test_interrupted_extraction_is_redone(hub, tmp_path):
    cache = tmp_path / "cache"
    partial = cache / "lasot" / "bear" / "bear-1"
    partial.mkdir(parents=True)
    (partial / "groundtruth.txt").write_text("1,2,3\n")  # half-written, no marker
    root = fetch_lasot_classes(["bear"], cache)
    assert (root / "bear" / COMPLETE_MARKER).is_file()
    assert read_sequence(root / "bear" / "bear-1").num_frames == 22
    assert not list((cache / "lasot.tmp").iterdir())  # temp folders cleaned up


def test_cached_zip_is_reused_when_the_hub_is_unreachable(hub, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    root = fetch_lasot_classes(["airplane"], cache)
    hub.close()
    monkeypatch.setenv("HF_ENDPOINT", _closed_port_url())
    shutil.rmtree(root / "airplane")  # the extracted copy is gone, the downloaded zip is still cached
    assert fetch_lasot_classes(["airplane"], cache) == root
    assert (root / "airplane" / COMPLETE_MARKER).is_file()


def test_missing_class_file_is_named(hub, tmp_path):
    hub.files.pop("bear.zip")
    with pytest.raises(DataSourceError, match="bear.zip is not in the Hugging Face dataset"):
        fetch_lasot_classes(["bear"], tmp_path / "cache")


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_unreachable_hub_gives_one_line_with_alternatives(monkeypatch, tmp_path):
    url = _closed_port_url()
    point_hub_at(monkeypatch, tmp_path, url)
    start = time.perf_counter()
    with pytest.raises(DataSourceError) as info:
        fetch_lasot_classes(["airplane"], tmp_path / "cache")
    message = str(info.value)
    assert time.perf_counter() - start < 10  # no minute-long retry back-off
    assert "\n" not in message
    assert "cannot reach the Hugging Face hub" in message and "'airplane'" in message
    assert "source=local" in message and "source=synthetic" in message
    assert not (tmp_path / "cache" / "lasot" / "airplane").exists()


@pytest.mark.parametrize(
    ("member", "mode", "reason"),
    [
        ("../evil.txt", None, "contains '..'"),
        ("airplane-1/../../evil.txt", None, "contains '..'"),
        ("/tmp/evil-absolute.txt", None, "is an absolute path"),
        ("airplane-1/link", stat.S_IFLNK | 0o777, "is a symbolic link"),
    ],
)
def test_safe_extract_refuses_escaping_members(tmp_path, member, mode, reason):
    zip_path = tmp_path / "airplane.zip"
    # A harmless member first: nothing at all may be written once a bad one is found.
    zip_path.write_bytes(_zip_members([("airplane-1/ok.txt", b"ok", None), (member, b"../../outside", mode)]))
    target = tmp_path / "out" / "target"
    with pytest.raises(DataSourceError) as info:
        safe_extract(zip_path, target)
    message = str(info.value)
    assert "\n" not in message and str(zip_path) in message and repr(member) in message and reason in message
    assert not target.exists()
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/evil-absolute.txt").exists()


def test_malicious_hub_zip_is_refused_and_nothing_published(hub, tmp_path):
    members = [("bear-1/groundtruth.txt", b"1,2,3,4\n", None), ("../evil.txt", b"x", None)]
    hub.files["bear.zip"] = _zip_members(members)
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError, match=r"member '\.\./evil\.txt' contains '\.\.'"):
        fetch_lasot_classes(["bear"], cache)
    assert not (cache / "lasot" / "bear").exists()
    assert not list(cache.rglob("evil.txt"))


def test_safe_extract_writes_regular_members(tmp_path):
    zip_path = tmp_path / "a.zip"
    zip_path.write_bytes(_zip_members([("cat-1/img/00000001.jpg", b"jpeg", None), ("cat-1/", b"", None)]))
    safe_extract(zip_path, tmp_path / "t")
    assert (tmp_path / "t" / "cat-1" / "img" / "00000001.jpg").read_bytes() == b"jpeg"
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DataSourceError, match="not a readable zip"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "t2")


# -- zip bombs, corrupt members, full disks ------------------------------------------------------------

BOMB_BYTES = 64 << 20  # declared; deflates to ~64 KiB (~1000:1), far over both ratio limits


def _deflated(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _assert_refused(info: pytest.ExceptionInfo, zip_path: Path, *parts: str) -> str:
    message = str(info.value)
    assert "\n" not in message and str(zip_path) in message, message
    for part in parts:
        assert part in message, message
    return message


@pytest.mark.parametrize(
    ("member", "limit"),
    [("bear-1/img/00000001.jpg", "20:1 plausible for JPEG"), ("bear-1/groundtruth.txt", "100:1")],
)
def test_zip_bomb_member_is_refused_before_writing(tmp_path, member, limit):
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(_deflated([("bear-1/nlp.txt", b"a bear\n"), (member, bytes(BOMB_BYTES))]))
    assert zip_path.stat().st_size < 200_000  # a real bomb: ~64 KiB expanding to 64 MiB
    target = tmp_path / "out" / "target"
    with pytest.raises(DataSourceError) as info:
        safe_extract(zip_path, target)
    _assert_refused(info, zip_path, repr(member), "64.0 MiB", limit, "zip bomb")
    assert not (tmp_path / "out").exists()  # nothing written, not even the harmless member


def test_many_small_bomb_members_are_refused_as_an_archive(tmp_path):
    members = [(f"bear-1/img/{i:08d}.jpg", bytes(1 << 20)) for i in range(1, 81)]  # 80 x 1 MiB of zeros
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(_deflated(members))
    with pytest.raises(DataSourceError) as info:
        safe_extract(zip_path, tmp_path / "t")
    _assert_refused(info, zip_path, "80.0 MiB", "plausible for a LaSOT class zip")
    assert not (tmp_path / "t").exists()


def test_bomb_from_the_hub_publishes_nothing(hub, tmp_path):
    hub.files["bear.zip"] = _deflated(
        [("bear-1/groundtruth.txt", b"1,2,3,4\n"), ("bear-1/x.jpg", bytes(BOMB_BYTES))]
    )
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError, match=r"bear\.zip: member 'bear-1/x\.jpg' expands"):
        fetch_lasot_classes(["bear"], cache)
    assert not (cache / "lasot" / "bear").exists()
    assert not (cache / "lasot.tmp").exists() or not list((cache / "lasot.tmp").iterdir())


def _corrupt_member(data: bytes, name: str) -> bytes:
    """Flip bytes in the middle of member `name`'s compressed data (the headers stay intact)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    middle = start + info.compress_size // 2
    out = bytearray(data)
    for i in range(middle, middle + 8):
        out[i] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize(("method", "kind"), [(zipfile.ZIP_STORED, "Bad CRC-32"), (zipfile.ZIP_DEFLATED, "")])
def test_corrupt_member_is_one_line_and_the_partial_folder_is_removed(source_tree, tmp_path, method, kind):
    frames = sorted((source_tree / "bear" / "bear-1" / "img").iterdir())
    members = [(f"bear-1/img/{p.name}", p.read_bytes()) for p in frames]
    bad_name = members[len(members) // 2][0]  # a frame in the middle: earlier members get written first
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(_corrupt_member(_deflated(members, method), bad_name))
    target = tmp_path / "out" / "target"
    with pytest.raises(DataSourceError) as info:
        safe_extract(zip_path, target)
    _assert_refused(info, zip_path, f"member {bad_name!r} fails to decompress", kind, "fetch again")
    assert not (tmp_path / "out").exists()  # the partly extracted folder is gone


def test_corrupt_zip_from_the_hub_names_the_class_zip(hub, source_tree, tmp_path):
    data = hub.files["bear.zip"]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        name = next(i.filename for i in archive.infolist() if i.filename.endswith("00000011.jpg"))
    hub.files["bear.zip"] = _corrupt_member(data, name)
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError) as info:
        fetch_lasot_classes(["bear"], cache)
    message = str(info.value)
    assert "\n" not in message and "bear.zip is damaged" in message and "Bad CRC-32" in message
    assert not (cache / "lasot" / "bear").exists()
    assert not (cache / "lasot.tmp").exists() or not list((cache / "lasot.tmp").iterdir())


def test_declared_size_over_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    import seqtrack_mlflow.datasets.hub as hub_module

    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(_deflated([("bear-1/img/00000001.jpg", np.random.default_rng(0).bytes(3 << 20))]))
    small = shutil._ntuple_diskusage(total=100 << 20, used=98 << 20, free=2 << 20)  # a full disk
    monkeypatch.setattr(hub_module.shutil, "disk_usage", lambda path: small)
    with pytest.raises(DataSourceError) as info:
        safe_extract(zip_path, tmp_path / "out" / "t")
    _assert_refused(
        info, zip_path, "declares 3.0 MiB", "2.0 MiB free", "10.0 MiB must stay free", "cache_dir"
    )
    assert not (tmp_path / "out").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MiB file system (tmpfs), or a skip saying why it cannot be mounted here."""
    import subprocess

    mount = tmp_path / "tiny_disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        pytest.skip(
            f"cannot mount a 2 MiB tmpfs for a real full disk: {done.stderr.strip() or done.returncode}"
        )
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_real_full_disk(tiny_disk, tmp_path, monkeypatch):
    import seqtrack_mlflow.datasets.hub as hub_module

    rng = np.random.default_rng(1)
    members = [(f"bear-1/img/{i:08d}.jpg", rng.bytes(1 << 20)) for i in range(1, 5)]  # 4 MiB, incompressible
    zip_path = tmp_path / "bear.zip"
    zip_path.write_bytes(_deflated(members, zipfile.ZIP_STORED))
    target = tiny_disk / "lasot.tmp" / "bear-1234"

    # The real free-space check refuses before writing anything ...
    with pytest.raises(DataSourceError) as info:
        safe_extract(zip_path, target)
    _assert_refused(info, zip_path, "declares 4.0 MiB", f"{tiny_disk} has 2.0 MiB free")
    assert not list(tiny_disk.iterdir())

    # ... and when the disk fills anyway (another writer after the check: the check is made to see a
    # large disk), the real ENOSPC is one line naming the zip and the partial folder is removed.
    large = shutil._ntuple_diskusage(total=1 << 40, used=0, free=1 << 40)
    monkeypatch.setattr(hub_module.shutil, "disk_usage", lambda path: large)
    with pytest.raises(DataSourceError) as info:
        safe_extract(zip_path, target)
    _assert_refused(info, zip_path, "disk full while extracting", "No space left on device", "removed")
    assert not list(tiny_disk.iterdir())
