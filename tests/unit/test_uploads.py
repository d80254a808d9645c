"""Uploads are stored under generated names inside the data directory, whatever name the browser sends."""

from __future__ import annotations

import io
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach.errors import OutreachError
from outreach.uploads import (
    MAX_SHOWN_NAME,
    display_name,
    remove_stale_uploads,
    remove_upload,
    save_upload,
    shown_message,
    upload_dir,
)


@pytest.mark.parametrize(
    "hostile",
    ["../../app.py", "..\\..\\secret_key", "/etc/passwd", "C:\\Users\\x\\leads.csv", "a\x00b.csv", "", "..", "."],
)
def test_the_browsers_name_never_becomes_the_path(tmp_path: Path, hostile: str) -> None:
    stored = save_upload(io.BytesIO(b"Email\nann@acme-corp.com\n"), hostile, tmp_path)

    assert stored.path.parent == upload_dir(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{32}\.(csv|upload)", stored.path.name)
    assert stored.path.read_bytes() == b"Email\nann@acme-corp.com\n"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [stored.path.name]
    assert "/" not in stored.display_name and "\\" not in stored.display_name and "\x00" not in stored.display_name


def test_the_file_is_owner_only_and_keeps_a_known_extension(tmp_path: Path) -> None:
    stored = save_upload(io.BytesIO(b"PK\x03\x04 not really"), "Contacts Export.XLSX", tmp_path)

    assert stored.path.suffix == ".xlsx" and stored.display_name == "Contacts Export.XLSX" and stored.size == 15
    assert stat.S_IMODE(stored.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(upload_dir(tmp_path).stat().st_mode) == 0o700


def test_two_uploads_with_one_name_never_overwrite_each_other(tmp_path: Path) -> None:
    first = save_upload(io.BytesIO(b"one"), "leads.csv", tmp_path)
    second = save_upload(io.BytesIO(b"two"), "leads.csv", tmp_path)

    assert first.path != second.path
    assert (first.path.read_bytes(), second.path.read_bytes()) == (b"one", b"two")


def test_display_names_are_cut_to_a_readable_length_keeping_the_extension() -> None:
    name = display_name("x" * 500 + ".csv")
    assert len(name) <= MAX_SHOWN_NAME and name.endswith("….csv")
    assert display_name("folder/sub/Leads Q3.csv") == "Leads Q3.csv"
    assert display_name(None) == "upload"


def test_an_unwritable_data_dir_is_an_error_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the directory should be")

    with pytest.raises(OutreachError, match=r"^leads\.csv: cannot store the upload in "):
        save_upload(io.BytesIO(b"x"), "leads.csv", blocker)


def test_remove_only_touches_the_uploads_folder(tmp_path: Path) -> None:
    stored = save_upload(io.BytesIO(b"x"), "leads.csv", tmp_path)
    outside = tmp_path / "keep.csv"
    outside.write_text("keep")

    remove_upload(type(stored)(path=outside, display_name="keep.csv", size=4), tmp_path)
    remove_upload(stored, tmp_path)

    assert outside.exists() and not stored.path.exists()


def test_stale_uploads_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    now = datetime(2025, 5, 1, 12, tzinfo=UTC)
    old = save_upload(io.BytesIO(b"old"), "old.csv", tmp_path)
    fresh = save_upload(io.BytesIO(b"new"), "new.csv", tmp_path)
    stamp = (now - timedelta(days=2)).timestamp()
    os.utime(old.path, (stamp, stamp))
    os.utime(fresh.path, (now.timestamp(), now.timestamp()))

    assert remove_stale_uploads(tmp_path, now) == 1
    assert not old.path.exists() and fresh.path.exists()
    assert remove_stale_uploads(tmp_path / "nowhere", now) == 0


def test_service_messages_name_the_users_file(tmp_path: Path) -> None:
    stored = save_upload(io.BytesIO(b""), "My Leads.csv", tmp_path)

    message = f"{stored.path.name}: the file is empty; expected a header row with an email column"
    assert (
        shown_message(message, stored) == "My Leads.csv: the file is empty; expected a header row with an email column"
    )
    assert shown_message(f"cannot read {stored.path}", stored) == "cannot read My Leads.csv"
