"""A private Dovecot IMAP server on a free loopback port, with a throw-away user, for the IMAP tests.

Debian's dovecot-imapd is installed by scripts/test-services.sh (which also creates the `vmail` system
user mail processes run as: Dovecot refuses uid 0). Each test session gets its own config, mail
directory and port under a temp dir; the system service is never used. Messages are put in with IMAP
APPEND, as a real sender's copy would be. `start` raises when the server cannot start: a test that
needs Dovecot fails, it never skips.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MAIL_USER = "vmail"
USER = "dana@sender.example"
PASSWORD = "secret-for-tests"

CONFIG = """\
base_dir = {d}/run
state_dir = {d}/state
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
log_path = {d}/dovecot.log
"""


class DovecotUnavailable(RuntimeError):
    """The private Dovecot could not be started (not installed, no vmail user, port trouble)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mail_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(MAIL_USER)
    except KeyError:
        if os.geteuid() != 0:
            raise DovecotUnavailable(f"no '{MAIL_USER}' user; run scripts/test-services.sh as root") from None
    subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", MAIL_USER], check=True)
    return pwd.getpwnam(MAIL_USER)


@dataclass
class DovecotServer:
    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> DovecotServer:
        binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
        if binary is None:
            raise DovecotUnavailable(
                "dovecot is not installed (apt-get install dovecot-imapd; scripts/test-services.sh)"
            )
        user = _mail_user()
        self.port = _free_port()
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        os.chown(self.root / "mail", user.pw_uid, user.pw_gid)
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        config = self.root / "dovecot.conf"
        config.write_text(CONFIG.format(d=self.root, uid=user.pw_uid, gid=user.pw_gid, port=self.port))
        self.process = subprocess.Popen(
            [binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DovecotUnavailable(f"dovecot exited: {self.process.stderr.read().decode(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise DovecotUnavailable(f"dovecot did not answer on 127.0.0.1:{self.port}; see {self.root / 'dovecot.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(USER, PASSWORD)
        return conn

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """IMAP APPEND, unseen (no flags), as a delivered message arrives."""
        conn = self.client()
        try:
            status, data = conn.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK", data
        finally:
            conn.logout()

    def create_folder(self, folder: str) -> None:
        conn = self.client()
        try:
            conn.create(folder)
        finally:
            conn.logout()

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID → flags, read without changing anything (EXAMINE)."""
        conn = self.client()
        try:
            conn.select(folder, readonly=True)
            status, data = conn.uid("FETCH", "1:*", "(FLAGS)")
            assert status == "OK", data
            found: dict[int, set[str]] = {}
            for item in data:
                if not item:
                    continue
                text = item.decode() if isinstance(item, bytes) else item[0].decode()
                uid = int(text.split("UID ", 1)[1].split()[0].rstrip(")"))
                flags = text.split("FLAGS (", 1)[1].split(")", 1)[0].split()
                found[uid] = set(flags)
            return found
        finally:
            conn.logout()

    def recreate_folder(self, folder: str, messages: list[bytes]) -> None:
        """Delete and re-create a folder with the same messages: the server gives it a new UIDVALIDITY."""
        assert folder.upper() != "INBOX", "INBOX cannot be deleted"
        time.sleep(1.1)  # Dovecot's UIDVALIDITY is the creation second: make sure the new one differs
        conn = self.client()
        try:
            conn.delete(folder)
            conn.create(folder)
        finally:
            conn.logout()
        for raw in messages:
            self.append(raw, folder)


@contextmanager
def private_dovecot() -> Iterator[DovecotServer]:
    """A started server in its own temp dir (outside pytest's 0700 tree: Dovecot's users must read it)."""
    root = Path(tempfile.mkdtemp(prefix="outreach-dovecot-"))
    server = DovecotServer(root)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
