"""DKIM end to end: keys stored encrypted, mail delivered through the send path verifies, the CLI (both databases)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from db.engine import dispose_engines, transaction
from db.enums import MailboxState, TouchState
from db.models import DkimKey, Mailbox
from outreach.cli import app
from outreach.config import Settings, load_settings
from outreach.dkim import DkimError, DkimRecord, dns_record, generate_key, import_key, list_records
from outreach.mailbox_actions import send_test_email
from outreach.preview import send_test_preview
from outreach.sending import send_tick
from outreach.worker import JobContext, WorkerIdentity
from tests.sending_setup import KEY, Box, launch_campaign, touch_states
from tests.smtp_sink import Sink

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
OTHER_KEY = "another-secret-key-" + "o" * 40


def dns_for(*records: DkimRecord) -> Callable[..., bytes | None]:
    """The TXT records the operator published, answered without any network."""
    zone = {r.name: r.value.encode() for r in records}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return zone.get(name.decode().rstrip("."))

    return lookup


class RawSink(Sink):
    """The loopback sink, also keeping each message's bytes exactly as they arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []
        accept = self.handler.handle_DATA

        async def keep_bytes(server, session, envelope):  # type: ignore[no-untyped-def]
            self.raw.append(envelope.original_content)
            return await accept(server, session, envelope)

        self.handler.handle_DATA = keep_bytes  # type: ignore[method-assign]


@pytest.fixture
def settings(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY)
    return load_settings()


def tick(engine: Engine, settings: Settings, now: datetime) -> None:
    send_tick(engine, JobContext(now, WorkerIdentity("w1", "host", 1), settings, lambda: now))


def test_mail_delivered_through_the_send_path_verifies_with_the_published_key(
    engine: Engine, settings: Settings
) -> None:
    with transaction(engine) as s:
        record = generate_key(s, "Sender.Example", keys=settings.secret_keys(), now=T0, selector="s2026")
    with RawSink() as sink:
        people = launch_campaign(engine, sink.port, people=3, launch_at=T0 - timedelta(hours=1))
        tick(engine, settings, T0)

    assert len(sink.raw) == 3
    for raw in sink.raw:
        assert raw.startswith(b"DKIM-Signature:")
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
        assert dkimpy.verify(raw, dnsfunc=dns_for(record))
        signed = dkimpy.DKIM(raw)
        signed.verify(dnsfunc=dns_for(record))
        covered = {h.decode().lower() for h in signed.include_headers}
        assert {"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"} <= covered
        assert not dkimpy.verify(raw.replace(b"Subject: Idea", b"Subject: Ideas", 1), dnsfunc=dns_for(record))
    assert sorted(r.rcpt_to[0] for r in sink.received) == sorted(people)


def test_the_private_key_is_stored_encrypted_and_never_listed(engine: Engine, settings: Settings) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with transaction(engine) as s:
        imported = import_key(s, "sender.example", pem.decode(), keys=settings.secret_keys(), now=T0)
        with pytest.raises(DkimError, match="--replace"):
            generate_key(s, "sender.example", keys=settings.secret_keys(), now=T0)
    with transaction(engine, readonly=True) as s:
        row = s.scalar(select(DkimKey))
        stored = row.private_key_encrypted
        shown = json.dumps([r.as_dict() for r in list_records(s)])
        assert dns_record(s, "SENDER.example.") == imported
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert "PRIVATE KEY" not in stored and body[:40] not in stored and body[:40] not in shown
    assert imported.source == "imported" and imported.key_bits == 2048
    assert json.loads(shown)[0]["record_value"].startswith("v=DKIM1; k=rsa; p=MIIBIjAN")


def test_a_key_the_secret_no_longer_opens_stops_the_mailbox_instead_of_sending_unsigned(
    engine: Engine, settings: Settings
) -> None:
    with transaction(engine) as s:
        generate_key(s, "sender.example", keys=[OTHER_KEY], now=T0)  # encrypted under a key this worker lacks
    with RawSink() as sink:
        launch_campaign(engine, sink.port, people=2, launch_at=T0 - timedelta(hours=1), boxes=(Box("sales-1"),))
        for minute in range(3):
            tick(engine, settings, T0 + timedelta(minutes=minute))
    assert sink.raw == []
    assert touch_states(engine) == {TouchState.QUEUED: 2}  # released, not failed and not in doubt
    with transaction(engine, readonly=True) as s:
        box = s.scalar(select(Mailbox))
        assert box.state is MailboxState.PAUSED
        assert "cannot be decrypted" in box.paused_reason and "OUTREACH_SECRET_KEY_PREVIOUS" in box.paused_reason


def test_the_mailbox_test_email_is_signed_too(engine: Engine, settings: Settings) -> None:
    with transaction(engine) as s:
        record = generate_key(s, "sender.example", keys=settings.secret_keys(), now=T0)
    with RawSink() as sink:
        launch_campaign(engine, sink.port, people=1, launch_at=T0, boxes=(Box("sales-1"),))
        with transaction(engine, readonly=True) as s:
            send_test_email(s, "sales-1", "me@operator.example", T0, keys=settings.secret_keys())
    [raw] = sink.raw
    assert dkimpy.verify(raw, dnsfunc=dns_for(record))


def test_the_preview_test_send_is_signed_too(engine: Engine, settings: Settings) -> None:
    with transaction(engine) as s:
        record = generate_key(s, "sender.example", keys=settings.secret_keys(), now=T0)
    with RawSink() as sink:
        [email] = launch_campaign(engine, sink.port, people=1, launch_at=T0, boxes=(Box("sales-1"),))
        with transaction(engine, readonly=True) as s:
            send_test_preview(s, "Load", email, "me@operator.example", T0, secret_key=KEY)
    [raw] = sink.raw
    assert b"Subject: [Test]" in raw and dkimpy.verify(raw, dnsfunc=dns_for(record))


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("OUTREACH_DATABASE_URL", db_url)
    monkeypatch.setenv("OUTREACH_SECRET_KEY", KEY)
    yield CliRunner()
    dispose_engines()


def run(cli: CliRunner, *args: str) -> dict:
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_generate_show_import_and_errors(cli: CliRunner, tmp_path: Path) -> None:
    made = run(cli, "mailbox", "dkim", "generate", "sender.example", "--selector", "s1")
    assert made["record_name"] == "s1._domainkey.sender.example"
    assert made["record_value"].startswith("v=DKIM1; k=rsa; p=") and made["key_bits"] == 2048
    shown = run(cli, "mailbox", "dkim", "show", "sender.example")
    assert shown == made

    human = cli.invoke(app, ["mailbox", "dkim", "show", "sender.example"])
    assert f's1._domainkey.sender.example  TXT "{made["record_value"]}"' in human.stdout
    assert "PRIVATE" not in human.stdout

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem_file = tmp_path / "old.pem"
    pem_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    again = cli.invoke(app, ["mailbox", "dkim", "import", "sender.example", "--key-file", str(pem_file)])
    assert again.exit_code == 2 and "--replace" in again.stderr
    imported = run(cli, "mailbox", "dkim", "import", "sender.example", "--key-file", str(pem_file), "--replace")
    assert imported["source"] == "imported" and imported["record_value"] != made["record_value"]
    assert [k["domain"] for k in run(cli, "mailbox", "dkim", "list")["keys"]] == ["sender.example"]

    for args, message in [
        (["show", "nokey.example"], "has no DKIM key"),
        (["generate", "not a domain"], "not a domain"),
        (["import", "x.example", "--key-file", str(tmp_path / "missing.pem")], "cannot read"),
    ]:
        bad = cli.invoke(app, ["mailbox", "dkim", *args])
        assert bad.exit_code == 2 and message in bad.stderr and bad.stderr.count("\n") == 1


def test_cli_health_pause_and_resume(cli: CliRunner) -> None:
    add = ["mailbox", "add", "sales-1", "--from", "dana@sender.example", "--smtp-host", "127.0.0.1",
           "--smtp-port", "1025", "--tls", "none"]  # fmt: skip
    assert cli.invoke(app, add).exit_code == 0
    health = run(cli, "mailbox", "health", "--max-bounce-rate", "2.5", "--min-sends", "40")
    assert health["thresholds"]["max_bounce_rate"] == 0.025 and health["thresholds"]["min_sends"] == 40
    assert health["mailboxes"][0]["verdict"] == "too few sends to judge (0 of 40)"
    assert run(cli, "mailbox", "health")["thresholds"]["min_sends"] == 40  # stored

    paused = run(cli, "mailbox", "pause", "sales-1", "--reason", "warming down")
    assert paused["state"] == "paused"
    listed = run(cli, "mailbox", "list")["mailboxes"][0]
    assert (listed["state"], listed["paused_reason"]) == ("paused", "warming down")
    assert run(cli, "mailbox", "resume", "sales-1")["state"] == "active"
    bad = cli.invoke(app, ["mailbox", "health", "--max-bounce-rate", "0"])
    assert bad.exit_code == 2 and "bounce rate" in bad.stderr
