"""SMTP transport: one open connection per mailbox per tick, each reply classified.

yagmail opens and logs in (it knows TLS modes and Gmail's OAuth2); we keep its smtplib connection and
send our own EmailMessage over it, because yagmail 0.16's `send()` logs in again on every call,
returns False instead of raising after a disconnect, and makes Message-IDs from md5(from,to,subject).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from enum import StrEnum
from types import TracebackType

import yagmail

from db.enums import TlsMode
from outreach.errors import OutreachError

DEFAULT_TIMEOUT_S = 30.0


class MailboxUnavailable(OutreachError):
    """The mailbox cannot be used now (connection refused, TLS or login failed): not the message's fault."""


class Verdict(StrEnum):
    SENT = "sent"  # the server said 250 after DATA
    TEMPORARY = "temporary"  # 4xx, or the connection dropped before the final reply: retry later
    PERMANENT = "permanent"  # 5xx: this address will not take it


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: TlsMode
    user: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class SendResult:
    verdict: Verdict
    code: int | None
    detail: str

    @property
    def sent(self) -> bool:
        return self.verdict is Verdict.SENT


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def classify(code: int | None, detail: str) -> SendResult:
    """The server's reply code decides: 2xx sent, 4xx try again, 5xx give up on this address."""
    if code is not None and 200 <= code < 300:
        return SendResult(Verdict.SENT, code, detail)
    if code is not None and 500 <= code < 600:
        return SendResult(Verdict.PERMANENT, code, detail)
    return SendResult(Verdict.TEMPORARY, code, detail)


def result_of(exc: smtplib.SMTPException | OSError) -> SendResult:
    """Map what smtplib raised during one message's transaction to a verdict."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, msg = next(iter(exc.recipients.values()))
        return classify(code, f"{code} {_text(msg)}")
    if isinstance(exc, smtplib.SMTPResponseException):  # SMTPDataError, SMTPSenderRefused, …
        return classify(exc.smtp_code, f"{exc.smtp_code} {_text(exc.smtp_error)}")
    return SendResult(Verdict.TEMPORARY, None, f"connection lost: {exc.__class__.__name__}: {exc}")


class SmtpConnection:
    """A logged-in connection reused for every message of a tick; reconnects once after a drop."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._client: yagmail.SMTP | None = None

    def __enter__(self) -> SmtpConnection:
        self.open()
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        s = self.settings
        try:
            client = yagmail.SMTP(
                user=s.user,
                password=s.password,
                host=s.host,
                port=s.port,
                smtp_ssl=s.tls is TlsMode.SSL,
                smtp_starttls=s.tls is TlsMode.STARTTLS,
                smtp_skip_login=not s.user,
                soft_email_validation=False,
                timeout=s.timeout,
            )
            client.login()
        except smtplib.SMTPAuthenticationError as exc:
            raise MailboxUnavailable(
                f"SMTP login to {s.host}:{s.port} as {s.user} refused ({exc.smtp_code}): check the user and password"
            ) from None
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            raise MailboxUnavailable(f"cannot connect to SMTP {s.host}:{s.port} ({s.tls}): {exc}") from None
        self._client = client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None or client.smtp is None:
            return
        try:
            client.smtp.quit()
        except (OSError, smtplib.SMTPException):
            client.smtp.close()
        client.is_closed = True

    def send(self, message: EmailMessage | bytes, from_address: str, to_address: str) -> SendResult:
        """One SMTP transaction. `sent` only on the server's 2xx after DATA. Bytes (DKIM-signed) go as they are."""
        if self._client is None:
            self.open()
        assert self._client is not None
        try:
            if isinstance(message, bytes):
                refused = self._client.smtp.sendmail(from_address, [to_address], message)
            else:
                refused = self._client.smtp.send_message(message, from_addr=from_address, to_addrs=[to_address])
        except (smtplib.SMTPException, OSError) as exc:
            result = result_of(exc)
            if isinstance(exc, smtplib.SMTPServerDisconnected | OSError) or result.code in (421,):
                self.close()  # the next message reconnects
            return result
        if refused:
            code, msg = next(iter(refused.values()))
            return classify(code, f"{code} {_text(msg)}")
        return SendResult(Verdict.SENT, 250, "250 accepted")


def check_connection(settings: SmtpSettings) -> str:
    """Connect, log in and say goodbye: what launch and "test mailbox" run before trusting a mailbox."""
    with SmtpConnection(settings) as conn:
        assert conn._client is not None
        code, banner = conn._client.smtp.noop()
    return f"{settings.host}:{settings.port} answered {code} {_text(banner)}".strip()


def is_loopback(host: str) -> bool:
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False
