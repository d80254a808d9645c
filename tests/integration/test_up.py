"""`outreach up` as a user runs it: every part answers, Ctrl-C/SIGTERM stops all of them and frees the ports,
a taken port is a one-line error, and a crashed part is reported and takes the others down."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import IO

import httpx
import pytest
from sqlalchemy import Engine

from db.engine import make_engine, transaction
from db.migrate import upgrade
from db.models import Mailbox
from outreach.capture import list_captured
from outreach.dashboard_process import ensure_first_admin
from outreach.errors import OutreachError
from outreach.netutil import free_port, port_accepts, require_free_port
from outreach.users import authenticate

ADMIN_PASSWORD = "test-admin-password-1"
READY_TIMEOUT_S = 60


@dataclass
class UpProcess:
    """A running `outreach up` whose output is collected line by line."""

    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    data_dir: Path
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    known_pids: set[int] = field(default_factory=set)

    def wait_for_line(self, pattern: str, timeout: float = READY_TIMEOUT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stdout):
                if match := re.search(pattern, line):
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no line matching {pattern!r}; stdout:\n{self.out}\nstderr:\n{self.err}")

    def child_pids(self) -> dict[str, int]:
        listing = self.wait_for_line(r"^\s+processes\s+(.*)$").group(1)
        pids = {name: int(pid) for name, pid in re.findall(r"(\w[\w-]*) pid (\d+)", listing)}
        self.known_pids.update(pids.values())
        return pids

    def kill_leftovers(self) -> None:
        """A failed test must not leave servers behind: kill the children we saw that still run."""
        for pid in self.known_pids:
            with suppress(FileNotFoundError, ProcessLookupError):
                if not _dead(pid) and b"outreach" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)

    @property
    def out(self) -> str:
        return "\n".join(self.stdout)

    @property
    def err(self) -> str:
        return "\n".join(self.stderr)


def _collect(source: IO[bytes], lines: list[str]) -> None:
    for raw in iter(source.readline, b""):
        lines.append(raw.decode("utf-8", errors="replace").rstrip("\n"))


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
    env.update(OUTREACH_DATA_DIR=str(data_dir), OUTREACH_ADMIN_PASSWORD=ADMIN_PASSWORD, PYTHONUNBUFFERED="1")
    return env


def _command(ports: dict[str, int]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "outreach",
        "up",
        "--dashboard-port",
        str(ports["dashboard"]),
        "--api-port",
        str(ports["api"]),
        "--smtp-port",
        str(ports["smtp"]),
    ]


def _free_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    while len(set(ports.values())) < 3:
        ports = {"dashboard": free_port(), "api": free_port(), "smtp": free_port()}
    return ports


@contextmanager
def running_up(tmp_path: Path, ports: dict[str, int] | None = None) -> Iterator[UpProcess]:
    ports = ports or _free_ports()
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(_command(ports), env=_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    up = UpProcess(proc, ports, data_dir)
    readers = [
        threading.Thread(target=_collect, args=(proc.stdout, up.stdout), daemon=True),
        threading.Thread(target=_collect, args=(proc.stderr, up.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        yield up
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        up.kill_leftovers()
        for reader in readers:
            reader.join(timeout=2)


def _dead(pid: int) -> bool:
    """No such process, or a zombie waiting for an init that does not reap (as in some containers)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _gone(pid: int, timeout: float = 2) -> bool:
    deadline = time.monotonic() + timeout
    while not _dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _assert_ports_free(ports: dict[str, int]) -> None:
    for what, port in ports.items():
        assert not port_accepts("127.0.0.1", port), f"{what} port {port} still accepts connections"
        require_free_port("127.0.0.1", port, what)  # a restart could bind it


def _send_test_mail(port: int) -> None:
    msg = EmailMessage()
    msg["From"] = "sales@example.com"
    msg["To"] = "ada@example.org"
    msg["Subject"] = "captured by up"
    msg.set_content("hello")
    smtp = smtplib.SMTP(timeout=5)
    code, _greeting = smtp.connect("127.0.0.1", port)
    assert code == 220
    with smtp:
        smtp.send_message(msg)


@pytest.mark.slow
def test_up_runs_every_part_and_sigterm_stops_them_within_five_seconds(tmp_path: Path) -> None:
    with running_up(tmp_path) as up:
        pids = up.child_pids()
        assert sorted(pids) == ["api", "capture", "dashboard", "worker"]  # exactly one worker
        assert any(re.fullmatch(r"database at \w+", line) for line in up.stdout), up.out
        assert "Created dashboard user" not in up.out  # the password came from OUTREACH_ADMIN_PASSWORD

        with httpx.Client(trust_env=False, timeout=5) as http:
            health = http.get(f"http://127.0.0.1:{up.ports['api']}/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
            assert http.get(f"http://127.0.0.1:{up.ports['dashboard']}/").status_code == 200

        _send_test_mail(up.ports["smtp"])
        assert [m.subject for m in list_captured(up.data_dir / "capture")] == ["captured by up"]

        started = time.monotonic()
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(timeout=6) == 0
        assert time.monotonic() - started < 5

    assert all(_gone(pid) for pid in pids.values()), pids
    _assert_ports_free(up.ports)
    engine = make_engine(f"sqlite:///{up.data_dir / 'outreach.db'}")
    with transaction(engine) as session:
        assert authenticate(session, "admin", ADMIN_PASSWORD, datetime.now(UTC)) is not None
    engine.dispose()


@pytest.mark.slow
def test_port_in_use_is_one_line_exit_2_and_nothing_written(tmp_path: Path) -> None:
    ports = _free_ports()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", ports["dashboard"]))
        taken.listen()
        env = _env(tmp_path / "data")
        result = subprocess.run(_command(ports), env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {ports['dashboard']} on 127.0.0.1 is already in use" in lines[0]
    assert "--dashboard-port" in lines[0]
    assert not (tmp_path / "data" / "outreach.db").exists()


@pytest.mark.slow
def test_a_dead_worker_is_reported_and_stops_everything(tmp_path: Path) -> None:
    with running_up(tmp_path) as up:
        pids = up.child_pids()
        os.kill(pids["worker"], signal.SIGKILL)
        assert up.proc.wait(timeout=8) == 1
    assert "worker exited with code -9 (killed by SIGKILL)" in up.err
    assert all(_gone(pid) for pid in pids.values()), pids
    _assert_ports_free(up.ports)


@pytest.mark.slow
def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    with running_up(tmp_path) as up:
        pids = up.child_pids()
        up.proc.kill()  # SIGKILL: no chance to stop anything itself
        up.proc.wait()
        assert all(_gone(pid, timeout=5) for pid in pids.values()), pids
    _assert_ports_free(up.ports)


@pytest.mark.slow
def test_no_capture_smtp_once_a_real_mailbox_exists(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'outreach.db'}")
    upgrade(engine)
    with transaction(engine) as session:
        real = Mailbox(name="sales-1", from_address="sales@example.com", smtp_host="smtp.example.com", smtp_port=587)
        session.add(real)
    engine.dispose()
    ports = _free_ports()
    with socket.socket() as taken:  # the capture port is busy, and that must not matter now
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", ports["smtp"]))
        taken.listen()
        with running_up(tmp_path, ports) as up:
            assert sorted(up.child_pids()) == ["api", "dashboard", "worker"]
            assert "sent through your configured mailboxes" in up.out
            up.proc.send_signal(signal.SIGINT)
            assert up.proc.wait(timeout=6) == 0


def test_first_admin_password_is_generated_and_printed_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OUTREACH_ADMIN_PASSWORD", raising=False)
    ensure_first_admin(engine)
    printed = capsys.readouterr().out
    match = re.fullmatch(
        r"Created dashboard user 'admin' with password (\S+) — shown once; change it in Settings\.\n", printed
    )
    assert match, printed
    with transaction(engine) as session:
        assert authenticate(session, "admin", match.group(1), datetime.now(UTC)) is not None

    ensure_first_admin(engine)
    assert capsys.readouterr().out == ""


def test_first_admin_takes_the_password_from_the_environment(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTREACH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    ensure_first_admin(engine)
    assert capsys.readouterr().out == ""
    with transaction(engine) as session:
        assert authenticate(session, "admin", ADMIN_PASSWORD, datetime.now(UTC)) is not None


def test_a_too_short_admin_password_names_the_variable(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_ADMIN_PASSWORD", "short")
    with pytest.raises(OutreachError, match=r"^OUTREACH_ADMIN_PASSWORD: password: use at least"):
        ensure_first_admin(engine)
