"""The capture SMTP server: what it stores, how the dashboard reads it, and that it stops cleanly."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from outreach.capture import CaptureHandler, list_captured, read_captured, store_message
from outreach.errors import OutreachError
from outreach.netutil import free_port, port_accepts, require_free_port, wait_for_port


@pytest.fixture
def capture_dir(tmp_path: Path) -> Path:
    return tmp_path / "capture"


@pytest.fixture
def smtp_port(capture_dir: Path) -> Iterator[int]:
    """The capture handler served in-process on a free loopback port."""
    port = free_port()
    controller = Controller(CaptureHandler(capture_dir), hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextmanager
def socket_listening() -> Iterator[int]:
    """Another program's listener on a loopback port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _message(subject: str, to: str = "ada@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Sales <sales@example.com>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.encode().hex()}@example.com>"
    msg.set_content(f"Body of {subject}\n")
    return msg


def _send(port: int, msg: EmailMessage, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.send_message(msg, from_addr="bounces@example.com", to_addrs=rcpts)


def test_message_to_two_recipients_is_stored_with_its_envelope(capture_dir: Path, smtp_port: int) -> None:
    before = datetime.now(UTC)
    _send(smtp_port, _message("Quick idea for Café Lumière"), ["ada@example.org", "hidden@example.net"])

    files = sorted(capture_dir.glob("*.eml"))
    assert len(files) == 1
    raw = files[0].read_bytes()
    assert raw.startswith(
        b"X-Capture-Mail-From: bounces@example.com\r\n"
        b"X-Capture-Rcpt-To: ada@example.org\r\n"
        b"X-Capture-Rcpt-To: hidden@example.net\r\n"
    )
    assert not list(capture_dir.glob(".*")), "no temporary file is left behind"

    [captured] = list_captured(capture_dir)
    assert captured.name == files[0].name
    assert captured.mail_from == "bounces@example.com"
    assert captured.rcpt_to == ["ada@example.org", "hidden@example.net"]
    assert captured.subject == "Quick idea for Café Lumière"
    assert captured.to == "ada@example.org"
    assert captured.message_id == _message("Quick idea for Café Lumière")["Message-ID"]
    assert captured.received_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= captured.received_at <= datetime.now(UTC)

    message = read_captured(capture_dir, captured.name)
    assert message.get_body(("plain",)).get_content() == "Body of Quick idea for Café Lumière\n"
    assert message["From"] == "Sales <sales@example.com>"


def test_listing_is_newest_first_and_limited(capture_dir: Path, smtp_port: int) -> None:
    for subject in ("first", "second", "third"):
        _send(smtp_port, _message(subject), ["ada@example.org"])
    assert [m.subject for m in list_captured(capture_dir)] == ["third", "second", "first"]
    assert [m.subject for m in list_captured(capture_dir, limit=2)] == ["third", "second"]


def test_garbage_and_foreign_files_are_skipped(capture_dir: Path, smtp_port: int) -> None:
    _send(smtp_port, _message("real one"), ["ada@example.org"])
    newer = datetime.now(UTC) + timedelta(minutes=5)  # sorts before the real message, so it is read first
    stamp = newer.strftime("%Y%m%dT%H%M%S.%fZ")
    (capture_dir / f"{stamp}-{'a' * 32}.eml").write_bytes(os.urandom(2048))
    (capture_dir / f"{stamp}-{'b' * 32}.eml").write_bytes(b"Subject: half a mess")
    (capture_dir / f"{stamp}-{'c' * 32}.eml").write_bytes(b"")
    (capture_dir / f".{stamp}-{'d' * 32}.eml.tmp").write_bytes(b"X-Capture-Mail-From: a@b\r\n")
    (capture_dir / "notes.txt").write_text("not mail")
    (capture_dir / f"{stamp}-{'e' * 32}.eml").mkdir()

    assert [m.subject for m in list_captured(capture_dir)] == ["real one"]


def test_missing_capture_dir_lists_nothing(tmp_path: Path) -> None:
    assert list_captured(tmp_path / "never-created") == []


@pytest.mark.parametrize(
    "name",
    ["../x", "../outreach.db", "/etc/passwd", "sub/20260101T000000.000000Z-" + "a" * 32 + ".eml", "", ".", ".."],
)
def test_read_captured_refuses_anything_but_a_plain_captured_name(capture_dir: Path, name: str) -> None:
    capture_dir.mkdir(parents=True)
    with pytest.raises(OutreachError, match="not the name of a captured message"):
        read_captured(capture_dir, name)


def test_read_captured_reports_a_deleted_message(capture_dir: Path) -> None:
    path = store_message(capture_dir, b"X-Capture-Mail-From: a@example.com\r\n\r\nhi\r\n", datetime.now(UTC))
    path.unlink()
    with pytest.raises(OutreachError, match="does not exist"):
        read_captured(capture_dir, path.name)


def test_capture_smtp_command_stores_mail_and_frees_its_port_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OUTREACH_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "outreach", "capture-smtp", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for_port("127.0.0.1", port, timeout=15), "the capture SMTP never listened"
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            code, _greeting = smtp.ehlo()
            assert code == 250
            smtp.send_message(_message("over the command"), to_addrs=["ada@example.org"])
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "capture SMTP stopped" in stderr
    assert [m.subject for m in list_captured(tmp_path / "data" / "capture")] == ["over the command"]
    assert not port_accepts("127.0.0.1", port)
    require_free_port("127.0.0.1", port, "capture SMTP")


def test_capture_smtp_command_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket_listening() as port:
        result = subprocess.run(
            [sys.executable, "-m", "outreach", "capture-smtp", "--port", str(port)],
            env={**os.environ, "OUTREACH_DATA_DIR": str(tmp_path / "data")},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use (capture SMTP)" in result.stderr
