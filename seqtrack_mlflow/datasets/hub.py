"""Fetch selected LaSOT classes from the Hugging Face dataset repo `l-lt/LaSOT` and unpack them safely.

The repo holds one `<class>.zip` per class (1-6 GB each, members `<class>-<k>/...` without the class
folder) plus `training_set.txt` / `testing_set.txt`. Only the selected classes are downloaded, through
`huggingface_hub` into `<cache_dir>/huggingface` (resumable, reused across runs), then each zip is extracted
once into `<cache_dir>/lasot/<class>/`: extraction goes to a temp folder that is renamed into place with a
completion marker inside, so an interrupted extraction is redone, never half-used. A class already
extracted costs no network request at all.

When the hub cannot be reached, the download stops at once with one line that names the offline
alternatives (huggingface_hub would otherwise retry with back-off for ~20 s before failing).

Extraction (`safezip.safe_extract`) trusts nothing in the zip: every member is checked before anything
is written (paths, compression ratios, free space).
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Sequence as Seq
from pathlib import Path

from seqtrack_mlflow.fileio import atomic_write_text, is_disk_full

from .base import DataSourceError
from .cache import COMPLETE_MARKER, publish
from .lasot import CACHE_FOLDER, LASOT_CLASSES, parse_sequence_name, split_of
from .safezip import MAX_RATIO_JPEG, MAX_RATIO_OTHER, RATIO_CHECK_BYTES, cause_of, safe_extract

HF_REPO_ID = "l-lt/LaSOT"
SPLIT_FILES = ("training_set.txt", "testing_set.txt")
_ETAG_TIMEOUT = 10.0


def _offline_message(what: str, exc: BaseException) -> str:
    return (
        f"cannot reach the Hugging Face hub to download {what} ({cause_of(exc)}): "
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
            f"Hugging Face dataset {repo_id!r} not found or not accessible ({cause_of(exc, 80)}): "
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
                f"disk full while downloading {filename} into {hf_cache} ({cause_of(exc, 80)}): "
                "free disk space or set -P cache_dir to a larger disk"
            ) from None
        raise
    return Path(path)


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
