"""Fetch selected LaSOT classes from the Hugging Face dataset repo `l-lt/LaSOT` and unpack them safely.

The repo holds one `<class>.zip` per class (1-6 GB each, members `<class>-<k>/...` without the class
folder) plus `training_set.txt` / `testing_set.txt`. Only the selected classes are downloaded, through
`huggingface_hub` into `<cache_dir>/huggingface` (resumable, reused across runs), then each zip is extracted
once into `<cache_dir>/lasot/<class>/`: extraction goes to a temp folder that is renamed into place with a
completion marker inside, so an interrupted extraction is redone, never half-used. A class already
extracted costs no network request at all.

When the hub cannot be reached, the download stops at once with one line that names the offline
alternatives (huggingface_hub would otherwise retry with back-off for ~20 s before failing).

Extraction trusts nothing in the zip. Before anything is written, every member is checked:
- its path stays inside the target (no absolute path, no `..`, no symbolic link);
- its compression ratio (declared size / compressed size) is plausible: at most `MAX_RATIO_JPEG` = 20
  for `.jpg`/`.jpeg` members and `MAX_RATIO_OTHER` = 100 for the rest, for members declaring more than
  `RATIO_CHECK_BYTES` = 1 MiB, and at most 20 for the whole archive once it declares more than
  `ARCHIVE_RATIO_CHECK_BYTES` = 64 MiB. JPEG is entropy-coded already: deflate gains 0-5% on a real
  LaSOT frame (ratio ~1.0; the hub's class zips are mostly stored), and even a flat synthetic frame
  stays far below 20. Text compresses ~3-10:1 (CSV boxes, prose), a repetitive log up to ~50:1; only
  LaSOT's 0/1 flag files go beyond (~200:1), and they are far below 1 MiB (20 KB for 10,000 frames), so
  the small-member exemption costs nothing, while a member of zeros deflates ~1000:1, a bomb's mark.
  A class zip is >95% JPEG bytes, hence the archive-wide bound of 20.
- the declared total (plus 4 KiB per member for file-system blocks) fits the free space of the target's
  file system while keeping `min(1 GiB, 10% of that file system)` free (room for a checkpoint: b256
  with its optimiser state is ~1.1 GB). zipfile stops each member at its declared size (a member whose
  data is longer fails its CRC), so the declared sizes bound what is written.
A corrupt member (bad CRC, broken deflate data, data ending early) or a disk that fills up anyway
(another writer) ends in one line naming the class zip; the partly extracted folder is removed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Sequence as Seq
from pathlib import Path

from seqtrack_mlflow.fileio import atomic_write_text, is_disk_full
from seqtrack_mlflow.messages import collapsed

from .base import DataSourceError
from .cache import COMPLETE_MARKER, publish
from .lasot import CACHE_FOLDER, LASOT_CLASSES, parse_sequence_name, split_of

HF_REPO_ID = "l-lt/LaSOT"
SPLIT_FILES = ("training_set.txt", "testing_set.txt")
_ETAG_TIMEOUT = 10.0
_DRIVE = re.compile(r"^[A-Za-z]:")

MAX_RATIO_JPEG = 20.0  # declared / compressed size of a .jpg/.jpeg member (real JPEG: ~1.0)
MAX_RATIO_OTHER = 100.0  # of any other member (text: ~3-50)
RATIO_CHECK_BYTES = 1 << 20  # members declaring no more than this are not ratio-checked
ARCHIVE_RATIO_CHECK_BYTES = 64 << 20  # the whole archive's ratio is checked above this declared total
MAX_RATIO_ARCHIVE = MAX_RATIO_JPEG
BLOCK_BYTES = 4096  # file-system overhead counted per member
FREE_MARGIN_BYTES = 1 << 30  # left free after extraction, or FREE_MARGIN_FRACTION of a smaller disk
FREE_MARGIN_FRACTION = 0.10
# What a damaged member raises while it is read: CRC mismatch (BadZipFile), broken deflate/bzip2/lzma
# data (zlib.error, OSError, lzma.LZMAError), data ending early (EOFError).
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


def _cause(exc: BaseException, limit: int = 160) -> str:
    """`Type: message` on one line: which library error it was, beside the fix we name."""
    return f"{type(exc).__name__}: {collapsed(exc, limit) or type(exc).__name__}"


def _offline_message(what: str, exc: BaseException) -> str:
    return (
        f"cannot reach the Hugging Face hub to download {what} ({_cause(exc)}): "
        "use -P source=local -P lasot_root=/path/to/LaSOT, or -P source=synthetic for the offline demo data"
    )


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "no connection" for the installed huggingface_hub and its HTTP client."""
    from huggingface_hub import errors

    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "FileMetadataError"):
        if hasattr(errors, name):
            found.append(getattr(errors, name))
    # Only libraries huggingface_hub already imported: the exception types of its HTTP client.
    for module, name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "RequestException"),
    ):
        if module in sys.modules and hasattr(sys.modules[module], name):
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def _endpoint() -> str | None:
    """HF_ENDPOINT read at call time (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT") or None


def _not_found(exc: BaseException, repo_id: str, filename: str) -> DataSourceError | None:
    """A DataSourceError for "the repo or the file does not exist / is not accessible", else None."""
    from huggingface_hub import errors

    if isinstance(exc, errors.RepositoryNotFoundError):  # includes gated repos
        return DataSourceError(
            f"Hugging Face dataset {repo_id!r} not found or not accessible ({_cause(exc, 80)}): "
            "check the repo id, or log in with `hf auth login` if it is gated"
        )
    if isinstance(exc, (errors.RemoteEntryNotFoundError, errors.RevisionNotFoundError)):
        return DataSourceError(
            f"{filename} is not in the Hugging Face dataset {repo_id!r}: check the class name "
            "(LaSOT folder names, e.g. airplane, rubicCube)"
        )
    return None


def _probe(repo_id: str, filename: str, endpoint: str | None) -> BaseException | None:
    """One HEAD request without retries: None when the hub answers, else the connection error."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, repo_type="dataset", endpoint=endpoint)
    try:
        get_hf_file_metadata(url, timeout=_ETAG_TIMEOUT, endpoint=endpoint)
    except Exception as exc:  # classified below
        missing = _not_found(exc, repo_id, filename)
        if missing is not None:
            raise missing from None
        if isinstance(exc, _network_errors()) or _is_http_error(exc):
            return exc
        raise
    return None


def _is_http_error(exc: BaseException) -> bool:
    from huggingface_hub import errors

    return isinstance(exc, errors.HfHubHTTPError)


def _download(
    repo_id: str,
    filename: str,
    hf_cache: Path,
    endpoint: str | None,
    offline: BaseException | None,
    what: str,
) -> Path:
    """One file through the huggingface_hub cache; `offline` (the probe's error) = cached copy only."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(
            repo_id,
            filename,
            repo_type="dataset",
            cache_dir=hf_cache,
            endpoint=endpoint,
            local_files_only=offline is not None,
            etag_timeout=_ETAG_TIMEOUT,
        )
    except Exception as exc:  # classified below
        missing = _not_found(exc, repo_id, filename)
        if missing is not None:
            raise missing from None
        if isinstance(exc, _network_errors()) or _is_http_error(exc):
            raise DataSourceError(_offline_message(what, offline or exc)) from None
        if is_disk_full(exc):
            raise DataSourceError(
                f"disk full while downloading {filename} into {hf_cache} ({_cause(exc, 80)}): "
                "free disk space or set -P cache_dir to a larger disk"
            ) from None
        raise
    return Path(path)


def _check_member(zip_path: Path, info: zipfile.ZipInfo) -> list[str]:
    """The member's path parts, or DataSourceError if it could write outside the target."""
    name = info.filename.replace("\\", "/")
    reason = None
    if name.startswith("/") or _DRIVE.match(name):
        reason = "is an absolute path"
    elif ".." in name.split("/"):
        reason = "contains '..'"
    elif stat.S_ISLNK(info.external_attr >> 16):
        reason = "is a symbolic link"
    if reason:
        raise DataSourceError(
            f"refusing to extract {zip_path}: member {info.filename!r} {reason}; "
            "the archive is unsafe, delete it and fetch again from a trusted source"
        )
    return [part for part in name.split("/") if part not in ("", ".")]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def _ratio(info: zipfile.ZipInfo) -> float:
    return info.file_size / info.compress_size if info.compress_size else float("inf")


def _check_ratios(zip_path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """DataSourceError if a member, or the whole archive, expands implausibly (module docstring)."""
    for info in infos:
        if info.is_dir() or info.file_size <= RATIO_CHECK_BYTES:
            continue
        jpeg = info.filename.lower().endswith((".jpg", ".jpeg"))
        limit = MAX_RATIO_JPEG if jpeg else MAX_RATIO_OTHER
        if _ratio(info) > limit:
            raise DataSourceError(
                f"refusing to extract {zip_path}: member {info.filename!r} expands "
                f"{_size(info.compress_size)} -> {_size(info.file_size)} ({_ratio(info):.0f}:1, "
                f"over the {limit:.0f}:1 plausible for {'JPEG' if jpeg else 'a non-JPEG member'}): "
                "a zip bomb or a damaged archive; delete it and fetch again from a trusted source"
            )
    declared = sum(info.file_size for info in infos)
    compressed = sum(info.compress_size for info in infos)
    ratio = declared / compressed if compressed else float("inf")
    if declared > ARCHIVE_RATIO_CHECK_BYTES and ratio > MAX_RATIO_ARCHIVE:
        raise DataSourceError(
            f"refusing to extract {zip_path}: its members expand {_size(compressed)} -> {_size(declared)} "
            f"({ratio:.0f}:1, over the {MAX_RATIO_ARCHIVE:.0f}:1 plausible for a LaSOT class zip): "
            "a zip bomb or a damaged archive; delete it and fetch again from a trusted source"
        )


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _check_free_space(zip_path: Path, infos: list[zipfile.ZipInfo], target: Path) -> None:
    """DataSourceError if the declared total does not fit the target's disk with the margin left."""
    need = sum(info.file_size + BLOCK_BYTES for info in infos)
    where = _existing(target)
    usage = shutil.disk_usage(where)
    margin = min(FREE_MARGIN_BYTES, int(FREE_MARGIN_FRACTION * usage.total))
    if need + margin > usage.free:
        raise DataSourceError(
            f"refusing to extract {zip_path}: it declares {_size(need)} but {where} has {_size(usage.free)} "
            f"free and {_size(margin)} must stay free: free disk space or set -P cache_dir to a larger disk"
        )


def _remove_new(target: Path, existed: set[str] | None) -> None:
    """Remove what an extraction created: the whole target if it is new, else its new entries."""
    if existed is None:
        shutil.rmtree(target, ignore_errors=True)
        return
    for name in set(os.listdir(target)) - existed:
        path = target / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def safe_extract(zip_path: Path, target: Path) -> None:
    """Extract every member under `target`. ALL members are checked first (paths, compression ratios,
    free space), so a refused zip writes nothing; a corrupt member or a full disk ends in one
    DataSourceError naming the zip, with what was extracted removed again."""
    zip_path, target = Path(zip_path), Path(target)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataSourceError(
            f"{zip_path} is not a readable zip file ({_cause(exc, 80)}): delete it and fetch again"
        ) from None
    with archive:
        infos = archive.infolist()
        members = [(info, _check_member(zip_path, info)) for info in infos]
        _check_ratios(zip_path, infos)
        _check_free_space(zip_path, infos, target)
        top = target
        while not top.parent.exists() and top.parent != top:
            top = top.parent  # the outermost folder this extraction creates
        existed = set(os.listdir(target)) if target.is_dir() else None
        current = ""
        try:
            target.mkdir(parents=True, exist_ok=True)
            for info, parts in members:
                if not parts:
                    continue
                current = info.filename
                dest = target.joinpath(*parts)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except (*_CORRUPT, OSError) as exc:
            if existed is None and top != target:
                shutil.rmtree(top, ignore_errors=True)
            else:
                _remove_new(target, existed)
            if is_disk_full(exc):
                raise DataSourceError(
                    f"disk full while extracting {zip_path} into {target} ({_cause(exc, 80)}): "
                    "the partial extraction was removed; free disk space or set -P cache_dir to a larger disk"
                ) from None
            if isinstance(exc, OSError) and exc.errno is not None:  # else a decompressor's OSError
                raise DataSourceError(
                    f"cannot extract {zip_path} into {target} ({_cause(exc, 80)}): "
                    "the partial extraction was removed; check the folder's permissions and space"
                ) from None
            raise DataSourceError(
                f"{zip_path} is damaged: member {current!r} fails to decompress ({_cause(exc, 80)}): "
                f"delete {zip_path.resolve()} and fetch again"
            ) from None


def _extract_class(zip_path: Path, root: Path, class_name: str) -> None:
    """Unpack `<class>.zip` into `root/<class>/` via a temp folder, marker written before the rename."""
    tmp = root.parent / f"{CACHE_FOLDER}.tmp" / f"{class_name}-{uuid.uuid4().hex[:8]}"
    try:
        safe_extract(zip_path, tmp)
        staged = tmp
        if (tmp / class_name).is_dir() and not any(tmp.glob(f"{class_name}-*")):
            staged = tmp / class_name  # tolerate zips that do include the class folder
        if not any(p.is_dir() for p in staged.glob(f"{class_name}-*")):
            raise DataSourceError(
                f"{zip_path} holds no {class_name}-<k>/ sequence folders: delete it and fetch again"
            )
        (staged / COMPLETE_MARKER).write_text(f"extracted from {zip_path.name}\n")
        publish(staged, root / class_name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_split_file(path: Path) -> list[str]:
    """Sequence names listed in a LaSOT split file (UTF-8 BOM and blank lines tolerated)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _check_split_file(path: Path, expected_split: str, classes: Seq[str]) -> None:
    """Warn if the repo's split file disagrees with the built-in protocol II table for our classes."""
    wanted = set(classes)
    for name in read_split_file(path):
        try:
            class_name, number = parse_sequence_name(name)
        except ValueError:
            continue
        if class_name in wanted and split_of(class_name, number) != expected_split:
            warnings.warn(
                f"{path.name} lists {name} as {expected_split} but protocol II says otherwise; "
                "the built-in protocol II table is used",
                stacklevel=3,
            )
            return


def fetch_lasot_classes(classes: Seq[str], cache_dir: Path, repo_id: str = HF_REPO_ID) -> Path:
    """Download and extract the given classes (once); returns the LaSOT root `<cache_dir>/lasot`."""
    unknown = [name for name in classes if name not in LASOT_CLASSES]
    if unknown:
        raise DataSourceError(f"unknown LaSOT class {unknown[0]!r}: choose from {', '.join(LASOT_CLASSES)}")
    cache_dir = Path(cache_dir).expanduser()
    root, hf_cache = cache_dir / CACHE_FOLDER, cache_dir / "huggingface"
    root.mkdir(parents=True, exist_ok=True)
    pending = [name for name in classes if not (root / name / COMPLETE_MARKER).is_file()]
    pending_splits = [name for name in SPLIT_FILES if not (root / name).is_file()]
    if not pending and not pending_splits:
        return root

    endpoint = _endpoint()
    first = f"{pending[0]}.zip" if pending else pending_splits[0]
    offline = _probe(repo_id, first, endpoint)
    for name in pending:
        zip_path = _download(repo_id, f"{name}.zip", hf_cache, endpoint, offline, f"LaSOT class {name!r}")
        _extract_class(zip_path, root, name)
    for split_name, split in zip(SPLIT_FILES, ("train", "test"), strict=True):
        if split_name not in pending_splits:
            continue
        try:
            path = _download(repo_id, split_name, hf_cache, endpoint, offline, f"the split file {split_name}")
        except DataSourceError as exc:  # informative only: protocol II is built in
            warnings.warn(str(exc), stacklevel=2)
            continue
        names = read_split_file(path)
        atomic_write_text(root / split_name, "".join(f"{n}\n" for n in names))
        _check_split_file(root / split_name, split, classes)
    return root


__all__ = [
    "MAX_RATIO_JPEG",
    "MAX_RATIO_OTHER",
    "RATIO_CHECK_BYTES",
    "DataSourceError",
    "HF_REPO_ID",
    "SPLIT_FILES",
    "fetch_lasot_classes",
    "read_split_file",
    "safe_extract",
]
