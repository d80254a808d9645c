from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from db.enums import TlsMode
from db.models import Mailbox
from outreach.errors import OutreachError
from outreach.mailboxes import MailboxSpec, list_mailboxes, save_mailbox, smtp_settings
from outreach.smtp_transport import MailboxUnavailable


def _spec(**kw) -> MailboxSpec:
    base = {"name": "sales-1", "from_address": "dana@sender.example", "smtp_host": "smtp.sender.example",
            "smtp_port": 587, "user": "dana", "password_env": "SALES1_PASSWORD"}  # fmt: skip
    return MailboxSpec(**(base | kw))


def test_add_then_update_by_name(session) -> None:
    first = save_mailbox(session, _spec())
    again = save_mailbox(session, _spec(daily_limit=20))
    assert first.created and not again.created and first.id == again.id
    assert session.get(Mailbox, first.id).daily_limit == 20
    assert session.get(Mailbox, first.id).tls is TlsMode.STARTTLS


def test_defaults_follow_cold_mailbox_advice(session) -> None:
    saved = save_mailbox(session, _spec())
    box = session.get(Mailbox, saved.id)
    assert (box.daily_limit, saved.warnings) == (30, [])
    assert "above 50" in save_mailbox(session, _spec(daily_limit=80)).warnings[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "bad name"}, "mailbox name"),
        ({"from_address": "not-an-address"}, "--from"),
        ({"smtp_port": 70000}, "--smtp-port"),
        ({"password_env": "1-BAD"}, "--password-env"),
        ({"user": None}, "needs --user"),
        ({"daily_limit": 0}, "at least 1"),
    ],
)
def test_bad_settings_are_named(session, change, message) -> None:
    with pytest.raises(OutreachError, match=message):
        save_mailbox(session, _spec(**change))
    assert list_mailboxes(session) == []


def test_password_comes_from_the_environment_only(session) -> None:
    box = session.get(Mailbox, save_mailbox(session, _spec()).id)
    assert smtp_settings(box, {"SALES1_PASSWORD": "s3cret"}).password == "s3cret"
    with pytest.raises(MailboxUnavailable, match="SALES1_PASSWORD"):
        smtp_settings(box, {})
    shown = json.dumps(list_mailboxes(session))
    assert "s3cret" not in shown and "SALES1_PASSWORD" in shown


def test_cli_mailbox_add_and_list(tmp_path: Path) -> None:
    env = {"OUTREACH_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "outreach", *args], env=env, capture_output=True, text=True)

    assert run("db", "upgrade").returncode == 0
    added = run("mailbox", "add", "sales-1", "--from", "dana@sender.example", "--smtp-host", "127.0.0.1",
                "--smtp-port", "1025", "--tls", "none", "--daily-limit", "60", "--json")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["created"] is True
    assert "warning: daily limit 60" in added.stderr
    listed = json.loads(run("mailbox", "list", "--json").stdout)
    assert [m["name"] for m in listed["mailboxes"]] == ["sales-1"]
    bad = run("mailbox", "add", "x", "--from", "nope", "--smtp-host", "h", "--smtp-port", "25")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--from" in bad.stderr
