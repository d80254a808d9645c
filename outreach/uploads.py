"""Files uploaded through the dashboard: stored under a generated name, never under the browser's one.

The name a browser sends is untrusted text (`../../app.py`, `C:\\evil.csv`, 4,000 characters, control
characters): it is only ever shown, never used as a path. Uploads are written owner-only into
`<data dir>/uploads/` under a random name, read from there by the import, and removed once imported or
abandoned. Messages from the import services name the stored file; `shown_message` puts the user's
file name back so an error says which of *their* files is wrong.
"""

from __future__ import annotations

import os
import secrets
import shutil
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from outreach.errors import OutreachError

UPLOAD_SUBDIR = "uploads"
ALLOWED_SUFFIXES = frozenset({".csv", ".tsv", ".txt", ".xlsx"})
DEFAULT_SUFFIX = ".upload"
MAX_SHOWN_NAME = 120
STALE_AFTER = timedelta(days=1)


class UploadError(OutreachError):
    """The upload could not be stored (disk full, permissions)."""


@dataclass(frozen=True)
class StoredUpload:
    path: Path  # <data dir>/uploads/<random hex><suffix>
    display_name: str  # the browser's file name, cleaned for showing only
    size: int


def upload_dir(data_dir: Path) -> Path:
    return data_dir / UPLOAD_SUBDIR


def display_name(raw: str | None) -> str:
    """The last path component of the browser's name, without control characters, cut to a sane length."""
    text = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()
    if len(text) > MAX_SHOWN_NAME:
        stem, dot, suffix = text.rpartition(".")
        keep = MAX_SHOWN_NAME - len(suffix) - 2
        text = f"{stem[:keep]}…{dot}{suffix}" if dot and len(suffix) <= 8 and keep > 0 else text[:MAX_SHOWN_NAME]
    return text or "upload"


def _suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if suffix in ALLOWED_SUFFIXES else DEFAULT_SUFFIX


def save_upload(stream: BinaryIO, raw_name: str | None, data_dir: Path) -> StoredUpload:
    """Copy the uploaded bytes to a new owner-only file with a random name; the caller's name is only shown."""
    shown = display_name(raw_name)
    directory = upload_dir(data_dir)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / f"{secrets.token_hex(16)}{_suffix(shown)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, length=1 << 20)
    except OSError as exc:
        raise UploadError(f"{shown}: cannot store the upload in {directory} ({exc.strerror})") from None
    return StoredUpload(path=path, display_name=shown, size=path.stat().st_size)


def remove_upload(upload: StoredUpload, data_dir: Path) -> None:
    """Delete a stored upload (only ever a file directly inside the uploads folder)."""
    if upload.path.parent.resolve() == upload_dir(data_dir).resolve():
        upload.path.unlink(missing_ok=True)


def remove_stale_uploads(data_dir: Path, now: datetime, max_age: timedelta = STALE_AFTER) -> int:
    """Delete uploads older than `max_age` (files left by abandoned imports); returns how many."""
    directory = upload_dir(data_dir)
    if not directory.is_dir():
        return 0
    cutoff = now.timestamp() - max_age.total_seconds()
    removed = 0
    for path in directory.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another session removed it first
            continue
    return removed


def shown_message(message: str, upload: StoredUpload) -> str:
    """A service's message with the stored file's name (and path) replaced by the user's file name."""
    return message.replace(str(upload.path), upload.display_name).replace(upload.path.name, upload.display_name)
