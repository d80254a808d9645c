"""Settings → Mailbox health and DKIM signing, through Streamlit's AppTest (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim as dkimpy
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, select, update
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import MailboxState, TouchState, UserRole
from db.models import CommunicationLog, DkimKey, Mailbox
from outreach.config import load_settings
from outreach.dkim import DkimRecord, dns_record, signer
from outreach.mailbox_health import HealthThresholds, check_mailboxes, get_thresholds
from outreach.mailer import OutgoingMessage, build_message
from tests import factories
from tests.dashboard_helpers import (
    app_database,
    app_factory,
    button,
    keep_steady_state,
    logged_in_app,
    open_page,
    rendered_bytes,
)
from tests.sending_setup import Box, launch_campaign


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("OUTREACH_SECRET_KEY", "settings-page-secret-" + "s" * 30)
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def make_app(app_db: Engine, monkeypatch: pytest.MonkeyPatch) -> Callable[[], AppTest]:
    keep_steady_state(monkeypatch)
    return app_factory()


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    [found] = [d.value for d in at.dataframe if column in d.value.columns]
    return found


def unhealthy_mailbox(engine: Engine, now: datetime) -> None:
    """sales-2 with 20 sends of which 4 bounced, paused by the worker's health check; sales-1 fine."""
    with transaction(engine) as s:
        factories.mailbox(s, "sales-1")
        box = factories.mailbox(s, "sales-2")
        ids = factories.queued_touches(s, 20, now - timedelta(hours=2), box)
        s.execute(update(CommunicationLog).where(CommunicationLog.id.in_(ids[:16])).values(
            state=TouchState.SENT, sent_at=now - timedelta(hours=2)))  # fmt: skip
        s.execute(update(CommunicationLog).where(CommunicationLog.id.in_(ids[16:])).values(
            state=TouchState.BOUNCED, sent_at=now - timedelta(hours=2)))  # fmt: skip
    assert check_mailboxes(engine, now) is not None


def test_health_shows_rates_and_the_pause_reason_and_an_admin_sets_thresholds(
    make_app: Callable[[], AppTest], app_db: Engine
) -> None:
    unhealthy_mailbox(app_db, datetime.now(UTC))
    at = open_page(logged_in_app(make_app, app_db), "settings")

    health = table_with(at, "bounce rate").set_index("mailbox")
    assert health.loc["sales-2", "state"] == "paused" and health.loc["sales-2", "bounce rate"] == "20.0 %"
    assert (health.loc["sales-2", "sent"], health.loc["sales-2", "bounced"]) == (20, 4)
    assert health.loc["sales-1", "health"] == "too few sends to judge (0 of 20)"
    assert any(
        w.value.startswith("Mailbox sales-2 is paused: auto-paused") and "bounce rate 20.0% (4 of 20 sent)" in w.value
        for w in at.warning
    )

    at.number_input(key="health_max_bounce").set_value(25.0)
    at.number_input(key="health_min_sends").set_value(10)
    at.checkbox(key="health_auto_pause").uncheck()
    button(at, "Save thresholds").click().run()

    assert not at.exception and not at.error
    assert any(s.value.startswith("Thresholds saved") for s in at.success)
    with transaction(app_db, readonly=True) as s:
        assert get_thresholds(s) == HealthThresholds(min_sends=10, max_bounce_rate=0.25, auto_pause=False)
    assert any("is flagged here (automatic pause is off)" in c.value for c in at.caption)


def test_bad_thresholds_are_refused_with_the_reason(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    at = open_page(logged_in_app(make_app, app_db), "settings")
    at.number_input(key="health_window").set_value(90)
    at.number_input(key="health_max_failure").set_value(100.0)
    button(at, "Save thresholds").click().run()
    assert not at.error  # the widgets' own bounds keep values in range; 100 % is allowed
    with transaction(app_db, readonly=True) as s:
        assert get_thresholds(s).window_days == 90


def test_pausing_from_settings_moves_prospects_not_contacted_yet(
    make_app: Callable[[], AppTest], app_db: Engine
) -> None:
    launch_campaign(app_db, 2525, people=4, launch_at=datetime.now(UTC), boxes=(Box("sales-1"), Box("sales-2")))
    at = open_page(logged_in_app(make_app, app_db), "settings")
    at.selectbox(key="mailbox_choice").select("sales-2").run()
    button(at, "Pause mailbox").click().run()

    assert not at.exception
    assert any(
        s.value == "Mailbox sales-2 is paused: nothing is sent through it. Moved 2 not-yet-contacted prospects "
        "from sales-2: 2 to sales-1."
        for s in at.success
    )
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(Mailbox.state).where(Mailbox.name == "sales-2")) is MailboxState.PAUSED


def _verify_with(record: DkimRecord, engine: Engine) -> bool:
    """Sign a message as the send path would and verify it against the record the page shows."""
    message = build_message(
        OutgoingMessage(
            from_address="dana@sender.example", to_address="sam@prospect.example", subject="Hello",
            text_body="Hi", message_id="<m1@sender.example>", date=datetime.now(UTC),
            list_unsubscribe_url="https://track.example/u/abc",
        )
    )  # fmt: skip
    with transaction(engine, readonly=True) as s:
        sign = signer(s, "dana@sender.example", load_settings().secret_keys())
    assert sign is not None
    zone = {record.name: record.value.encode()}
    return dkimpy.verify(sign(message), dnsfunc=lambda name, timeout=5: zone.get(name.decode().rstrip(".")))


def test_an_admin_generates_a_key_and_sees_the_txt_record_to_publish(
    make_app: Callable[[], AppTest], app_db: Engine
) -> None:
    with transaction(app_db) as s:
        factories.mailbox(s, "dana")  # sends as dana@sender.example
    at = open_page(logged_in_app(make_app, app_db), "settings")
    assert any(i.value.startswith("Mail from sender.example goes out unsigned") for i in at.info)

    at.text_input(key="dkim_domain").input("Sender.Example")
    at.text_input(key="dkim_selector").input("s2026")
    button(at, "Generate or import key").click().run()

    assert not at.exception and not at.error
    with transaction(app_db, readonly=True) as s:
        record = dns_record(s, "sender.example")
    assert record.selector == "s2026" and record.key_bits == 2048
    assert [c.value for c in at.code] == [
        f's2026._domainkey.sender.example  TXT "v=DKIM1; k=rsa; p={record.public_key}"'
    ]
    assert not any(i.value.startswith("Mail from sender.example") for i in at.info)
    assert _verify_with(record, app_db)


def test_an_imported_key_is_never_shown_back(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    at = open_page(logged_in_app(make_app, app_db), "settings")
    at.text_input(key="dkim_domain").input("sender.example")
    at.text_area(key="dkim_pem").input(pem.decode())
    button(at, "Generate or import key").click().run()

    assert not at.exception and not at.error
    assert any(s.value.startswith("DKIM key for sender.example imported") for s in at.success)
    body = b"".join(pem.splitlines()[1:-1])
    assert body[:40] not in rendered_bytes(at) and b"PRIVATE KEY" not in rendered_bytes(at)
    assert at.text_area(key="dkim_pem").value == ""
    with transaction(app_db, readonly=True) as s:
        assert "PRIVATE KEY" not in s.scalar(select(DkimKey.private_key_encrypted))
        assert _verify_with(dns_record(s, "sender.example"), app_db)

    at.text_input(key="dkim_domain").input("sender.example")
    button(at, "Generate or import key").click().run()
    assert [e.value.split(" (")[0] for e in at.error] == ["sender.example already has a DKIM key"]


def test_a_member_sees_health_and_records_but_no_forms(make_app: Callable[[], AppTest], app_db: Engine) -> None:
    unhealthy_mailbox(app_db, datetime.now(UTC))
    at = open_page(logged_in_app(make_app, app_db, UserRole.MEMBER), "settings")
    assert list(table_with(at, "bounce rate")["mailbox"]) == ["sales-1", "sales-2"]
    assert "Save thresholds" not in [b.label for b in at.button]
    assert "Generate or import key" not in [b.label for b in at.button]
    assert not at.text_area
