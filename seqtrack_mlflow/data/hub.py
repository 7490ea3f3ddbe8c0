"""Fetch selected LaSOT classes from the Hugging Face dataset repo `l-lt/LaSOT` and unpack them safely.

The repo holds one `<class>.zip` per class (1-6 GB each, members `<class>-<k>/...` without the class
folder) plus `training_set.txt` / `testing_set.txt`. Only the selected classes are downloaded, through
`huggingface_hub` into `<cache_dir>/huggingface` (resumable, reused across runs), then each zip is extracted
once into `<cache_dir>/lasot/<class>/`: extraction goes to a temp folder that is renamed into place with a
completion marker inside, so an interrupted extraction is redone, never half-used. A class already
extracted costs no network request at all.

When the hub cannot be reached, the download stops at once with one line that names the offline
alternatives (huggingface_hub would otherwise retry with back-off for ~20 s before failing).
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
from collections.abc import Sequence as Seq
from pathlib import Path

from .lasot import LASOT_CLASSES, parse_sequence_name, split_of
from .sources import COMPLETE_MARKER, DataSourceError, publish

HF_REPO_ID = "l-lt/LaSOT"
SPLIT_FILES = ("training_set.txt", "testing_set.txt")
_ETAG_TIMEOUT = 10.0
_DRIVE = re.compile(r"^[A-Za-z]:")


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:limit]}"


def _offline_message(what: str, exc: BaseException) -> str:
    return (
        f"cannot reach the Hugging Face hub to download {what} ({_one_line(exc)}): "
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
            f"Hugging Face dataset {repo_id!r} not found or not accessible ({_one_line(exc, 80)}): "
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


def safe_extract(zip_path: Path, target: Path) -> None:
    """Extract every member under `target`; ALL members are checked first, so an unsafe zip writes nothing."""
    zip_path, target = Path(zip_path), Path(target)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataSourceError(
            f"{zip_path} is not a readable zip file ({_one_line(exc, 80)}): delete it and fetch again"
        ) from None
    with archive:
        members = [(info, _check_member(zip_path, info)) for info in archive.infolist()]
        target.mkdir(parents=True, exist_ok=True)
        for info, parts in members:
            if not parts:
                continue
            dest = target.joinpath(*parts)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def _extract_class(zip_path: Path, root: Path, class_name: str) -> None:
    """Unpack `<class>.zip` into `root/<class>/` via a temp folder, marker written before the rename."""
    tmp = root.parent / "lasot.tmp" / f"{class_name}-{uuid.uuid4().hex[:8]}"
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
    root, hf_cache = cache_dir / "lasot", cache_dir / "huggingface"
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
        staged = root / f".{split_name}.{uuid.uuid4().hex[:8]}"
        staged.write_text("".join(f"{n}\n" for n in names))
        os.replace(staged, root / split_name)
        _check_split_file(root / split_name, split, classes)
    return root


__all__ = [
    "DataSourceError",
    "HF_REPO_ID",
    "SPLIT_FILES",
    "fetch_lasot_classes",
    "read_split_file",
    "safe_extract",
]
