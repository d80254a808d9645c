"""The transport against a real SMTP server on loopback, with injected 4xx, 5xx and dropped connections."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from db.enums import TlsMode
from outreach.smtp_transport import (
    MailboxUnavailable,
    SmtpConnection,
    SmtpSettings,
    Verdict,
    check_connection,
)
from tests.smtp_sink import Sink


def _msg(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "dana@sender.example"
    msg["To"] = to
    msg["Subject"] = "hello"
    msg["Message-ID"] = f"<{to.split('@')[0]}@sender.example>"
    msg.set_content("body")
    return msg


def _rule(rcpt: str) -> str | None:
    return {
        "later@x.example": "451 4.3.0 try again later",
        "gone@x.example": "550 5.1.1 no such user",
        "policy@x.example": "554 5.7.1 rejected",
        "drop@x.example": "DROP",
    }.get(rcpt)


def test_each_reply_gets_its_verdict_on_one_connection() -> None:
    with Sink(_rule) as sink:
        settings = SmtpSettings("127.0.0.1", sink.port, TlsMode.NONE)
        with SmtpConnection(settings) as conn:
            verdicts = {
                to: conn.send(_msg(to), "dana@sender.example", to).verdict
                for to in [
                    "ok1@x.example",
                    "later@x.example",
                    "gone@x.example",
                    "policy@x.example",
                    "drop@x.example",
                    "ok2@x.example",  # after a drop, the connection is re-opened
                ]
            }
        assert verdicts == {
            "ok1@x.example": Verdict.SENT,
            "later@x.example": Verdict.TEMPORARY,
            "gone@x.example": Verdict.PERMANENT,
            "policy@x.example": Verdict.PERMANENT,
            "drop@x.example": Verdict.TEMPORARY,
            "ok2@x.example": Verdict.SENT,
        }
        assert [r.rcpt_to for r in sink.received] == [["ok1@x.example"], ["ok2@x.example"]]
        assert sink.received[0].message["Message-ID"] == "<ok1@sender.example>"


def test_unreachable_server_is_a_mailbox_problem() -> None:
    with Sink() as sink:
        port = sink.port
    with pytest.raises(MailboxUnavailable, match=f"127.0.0.1:{port}"):
        check_connection(SmtpSettings("127.0.0.1", port, TlsMode.NONE, timeout=3))


def test_check_connection_reports_the_server() -> None:
    with Sink() as sink:
        assert "answered 250" in check_connection(SmtpSettings("127.0.0.1", sink.port, TlsMode.NONE))
