"""`outreach up`: migrate, then run dashboard, tracking/API service, one worker and the capture SMTP together.

Each part is its own `python -m outreach <command>` process, so a crash in one is reported and stops
the rest instead of leaving a half-working product. Children run in their own session (a Ctrl-C in
the terminal reaches only this supervisor, which then stops them all) and are signalled by the kernel
if the supervisor itself dies (PR_SET_PDEATHSIG), so no orphan keeps a port. Exactly one worker
runs: APScheduler's schedule lives in that one process. This module never imports Streamlit.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import Engine, select

from db.engine import transaction
from db.enums import MailboxState
from db.models import Mailbox
from outreach.config import CAPTURE_PORT_ENV, Settings, ensure_data_dir, load_settings
from outreach.dashboard_process import ADMIN_PASSWORD_ENV, ensure_first_admin
from outreach.errors import OutreachError
from outreach.netutil import port_accepts, require_free_port, url_host
from outreach.runtime import open_checked_engine, upgrade_database

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 4.0
TAIL_LINES = 20
POLL_S = 0.1
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class UpOptions:
    host: str = "127.0.0.1"
    dashboard_port: int = 8501
    api_port: int = 8000
    smtp_port: int = 1025


# --- is the capture SMTP needed? (pure) ------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_capture_endpoint(smtp_host: str, smtp_port: int, capture_port: int, up_host: str = "127.0.0.1") -> bool:
    """A mailbox pointing at this machine's capture port sends into the capture, not to real people."""
    on_this_machine = _is_loopback(smtp_host) or smtp_host.strip().lower() == up_host.strip().lower()
    return on_this_machine and smtp_port == capture_port


def capture_needed(endpoints: Iterable[tuple[str, int]], capture_port: int, up_host: str = "127.0.0.1") -> bool:
    """Needed while no real mailbox exists, and also while any mailbox sends into the capture port."""
    endpoints = list(endpoints)
    return not endpoints or any(is_capture_endpoint(h, p, capture_port, up_host) for h, p in endpoints)


def mailbox_endpoints(engine: Engine) -> list[tuple[str, int]]:
    """(smtp_host, smtp_port) of every mailbox that can send (disabled ones cannot)."""
    query = select(Mailbox.smtp_host, Mailbox.smtp_port).where(Mailbox.state != MailboxState.DISABLED)
    with transaction(engine, readonly=True) as session:
        return [(host, port) for host, port in session.execute(query)]


# --- the children --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildSpec:
    """One part of the product: its name in the output, its `outreach` command, and how to tell it is up."""

    name: str
    args: list[str]
    ready: Callable[[], bool] | None = None
    address: str = ""
    # What the kernel sends the child when the supervisor dies. SIGKILL for Streamlit: with its stdout
    # pipe broken (the supervisor is gone), its SIGTERM handler dies printing "Stopping..." and it lives on.
    death_signal: signal.Signals = signal.SIGTERM


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    last_error_line: str = ""
    pumps: list[threading.Thread] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name


def _healthz_ok(url: str) -> Callable[[], bool]:
    # No proxy: an http_proxy in the environment must not intercept a loopback health check.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def check() -> bool:
        try:
            with opener.open(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return check


def child_specs(options: UpOptions, with_capture: bool) -> list[ChildSpec]:
    host, web = options.host, url_host(options.host)
    specs = []
    if with_capture:
        specs.append(
            ChildSpec(
                "capture",
                ["capture-smtp", "--host", host, "--port", str(options.smtp_port)],
                lambda: port_accepts(host, options.smtp_port),
                f"{web}:{options.smtp_port}",
            )
        )
    healthz = f"http://{web}:{options.api_port}/healthz"
    specs.append(
        ChildSpec("api", ["serve", "--host", host, "--port", str(options.api_port)], _healthz_ok(healthz), healthz)
    )
    specs.append(
        ChildSpec(
            "dashboard",
            ["dashboard", "--host", host, "--port", str(options.dashboard_port)],
            lambda: port_accepts(host, options.dashboard_port),
            f"http://{web}:{options.dashboard_port}",
            death_signal=signal.SIGKILL,
        )
    )
    specs.append(ChildSpec("worker", ["worker"]))
    return specs


def _die_with_parent(death_signal: signal.Signals) -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to signal the child when the supervisor dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(1)

    return preexec


def spawn(spec: ChildSpec, env: dict[str, str]) -> Child:
    """Start one part. Called from the main thread only: PDEATHSIG fires when the spawning thread ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "outreach", *spec.args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent(spec.death_signal),
    )
    return Child(spec, process)


class Console:
    """Serializes lines from many threads so prefixed output never interleaves mid-line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def say(self, line: str, *, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


def _pump(child: Child, source: IO[bytes], console: Console, err: bool) -> None:
    for raw in iter(source.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line.strip():
            continue  # Streamlit frames its banner with blank lines; prefixed they are only noise
        child.tail.append(line)
        if err:
            child.last_error_line = line.strip()
        console.say(f"[{child.name}] {line}", err=err)
    source.close()


def start_pumps(child: Child, console: Console) -> None:
    streams: list[tuple[IO[bytes] | None, bool]] = [(child.process.stdout, False), (child.process.stderr, True)]
    for source, err in streams:
        if source is None:
            continue
        thread = threading.Thread(target=_pump, args=(child, source, console, err), daemon=True)
        thread.start()
        child.pumps.append(thread)


# --- supervision ---------------------------------------------------------------------------------


def first_exited(children: list[Child]) -> Child | None:
    return next((c for c in children if c.process.poll() is not None), None)


def exit_report(child: Child) -> str:
    """'<name> exited with code N: <its last stderr line>' once its output has been read to the end."""
    for thread in child.pumps:
        thread.join(timeout=1)
    code = child.process.returncode
    how = f"exited with code {code}"
    if code is not None and code < 0:
        with suppress(ValueError):
            how += f" (killed by {signal.Signals(-code).name})"
    last = child.last_error_line or (child.tail[-1] if child.tail else "no output")
    return f"{child.name} {how}: {last}"


def wait_until_ready(children: list[Child], stop: threading.Event, console: Console, timeout: float) -> bool:
    """True once every part answers; False (after saying why) when one dies, a signal comes, or time runs out."""
    pending = [c for c in children if c.spec.ready is not None]
    deadline = time.monotonic() + timeout
    while pending:
        if stop.is_set():
            return False
        dead = first_exited(children)
        if dead is not None:
            console.say(exit_report(dead), err=True)
            return False
        pending = [c for c in pending if not (c.spec.ready and c.spec.ready())]
        if pending and time.monotonic() > deadline:
            names = ", ".join(f"{c.name} ({c.spec.address})" for c in pending)
            console.say(f"not ready after {timeout:.0f} s: {names}", err=True)
            return False
        if pending:
            stop.wait(POLL_S)
    return True


def supervise(children: list[Child], stop: threading.Event, console: Console) -> bool:
    """Block until a signal (True) or until a part exits on its own (False, after reporting it)."""
    while not stop.wait(POLL_S):
        dead = first_exited(children)
        if dead is not None:
            console.say(exit_report(dead), err=True)
            return False
    return True


def _signal_group(child: Child, signum: signal.Signals) -> None:
    # Each child leads its own process group (start_new_session), so this reaches anything it started.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, signum)


def stop_all(children: list[Child], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM every part, SIGKILL what is still alive after `grace` seconds, reap them all."""
    for child in children:
        if child.process.poll() is None:
            _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(c.process.poll() is None for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in children:
        if child.process.poll() is None:
            _signal_group(child, signal.SIGKILL)
    for child in children:
        child.process.wait()
    # The last lines are printed once the pipes close; a grandchild holding one must not delay the exit.
    drain_until = time.monotonic() + 0.5
    for thread in (t for child in children for t in child.pumps):
        thread.join(timeout=max(0.0, drain_until - time.monotonic()))


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP ask for a clean stop instead of killing the supervisor mid-way."""
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous: dict[signal.Signals, Any] = {}
    for signum in signums:
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- up ------------------------------------------------------------------------------------------


def check_ports(options: UpOptions, with_capture: bool) -> None:
    """Every port `up` will use must be distinct and free before anything starts."""
    ports = [
        (options.dashboard_port, "dashboard", "--dashboard-port"),
        (options.api_port, "tracking/API service", "--api-port"),
    ]
    if with_capture:
        ports.append((options.smtp_port, "capture SMTP", "--smtp-port"))
    seen: dict[int, str] = {}
    for port, _what, flag in ports:
        if port in seen:
            raise OutreachError(f"{seen[port]} and {flag} are both {port}: give each part its own port")
        seen[port] = flag
    for port, what, flag in ports:
        require_free_port(options.host, port, what, flag)


def child_env(settings: Settings, options: UpOptions) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the supervisor as they are written
    env["OUTREACH_DATA_DIR"] = str(settings.data_dir)  # one data dir for all, whatever their cwd
    env[CAPTURE_PORT_ENV] = str(options.smtp_port)  # the capture mailbox points where the capture listens
    env.pop(ADMIN_PASSWORD_ENV, None)  # the admin exists by now; the secret need not travel further
    return env


def prepare(options: UpOptions, settings: Settings) -> bool:
    """Ports, migration, first admin. Returns whether the capture SMTP is needed."""
    check_ports(options, with_capture=False)  # before writing anything
    ensure_data_dir(settings)
    _before, after = upgrade_database(settings)
    print(f"database at {after}", flush=True)
    engine = open_checked_engine(settings)
    with_capture = capture_needed(mailbox_endpoints(engine), options.smtp_port, options.host)
    check_ports(options, with_capture)
    ensure_first_admin(engine)
    engine.dispose()
    return with_capture


def banner(options: UpOptions, settings: Settings, children: list[Child], with_capture: bool) -> str:
    web = url_host(options.host)
    if with_capture:
        mail = f"captured by the local SMTP at {web}:{options.smtp_port} into {settings.capture_dir}"
    else:
        mail = "sent through your configured mailboxes"
    pids = ", ".join(f"{c.name} pid {c.process.pid}" for c in children)
    return "\n".join(
        [
            "Outreach is running.",
            f"  dashboard  http://{web}:{options.dashboard_port}",
            f"  API        http://{web}:{options.api_port}/healthz",
            f"  mail       {mail}",
            f"  processes  {pids}",
            "Press Ctrl-C to stop.",
        ]
    )


def run_up(options: UpOptions) -> int:
    """Run everything until Ctrl-C/SIGTERM (exit 0) or until a part dies (exit 1, the others stopped)."""
    settings = load_settings()
    stop = threading.Event()
    console = Console()
    with stop_on_signals(stop):
        with_capture = prepare(options, settings)
        if stop.is_set():
            return 0
        env = child_env(settings, options)
        specs = child_specs(options, with_capture)
        children: list[Child] = []
        try:
            for spec in specs:  # all spawned before any output thread starts (fork with threads is fragile)
                children.append(spawn(spec, env))
            for child in children:
                start_pumps(child, console)
            if not wait_until_ready(children, stop, console, READY_TIMEOUT_S):
                return 0 if stop.is_set() else 1
            console.say(banner(options, settings, children, with_capture))
            if supervise(children, stop, console):
                console.say("stopping…")
                return 0
            return 1
        finally:
            stop_all(children)
