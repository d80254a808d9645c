"""A real SMTP server on loopback (aiosmtpd) that records what it accepts and injects faults on demand."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

# A rule sees the recipient and returns None (accept) or a reply such as "451 4.3.0 try later";
# the special reply "DROP" closes the connection without answering.
Rule = Callable[[str], str | None]


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    message: EmailMessage
    at: float
    raw: bytes = b""  # the DATA exactly as received (after SMTP dot-unstuffing)


@dataclass
class SinkHandler:
    rule: Rule = lambda _rcpt: None
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for rcpt in envelope.rcpt_tos:
            reply = self.rule(rcpt)
            if reply == "DROP":
                server.transport.close()
                return "421 closing"
            if reply:
                return reply
        raw = envelope.original_content or envelope.content
        msg = message_from_bytes(raw, policy=policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg, time.time(), bytes(raw)))
        return "250 2.0.0 OK queued"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sink:
    def __init__(self, rule: Rule | None = None) -> None:
        self.handler = SinkHandler(rule=rule or (lambda _r: None))
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=_free_port())

    def __enter__(self) -> Sink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)
