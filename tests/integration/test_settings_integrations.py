"""Settings → API keys & webhooks through AppTest (SQLite and PostgreSQL): keys and signing secrets are shown once,
listed without them, revoked or rotated; webhooks are turned off and on, tested, deleted; the delivery log shows
what a real loopback receiver answered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from db.engine import transaction
from db.enums import ApiScope, UserRole, WebhookDeliveryState
from db.models import ApiKey, Webhook, WebhookDelivery
from outreach.api_keys import KeyRejectedError, authenticate
from outreach.webhooks import ALLOW_PRIVATE_ENV, deliver_webhooks
from tests.dashboard_helpers import (
    app_database,
    app_factory,
    assert_ok,
    button,
    keep_steady_state,
    logged_in_app,
    open_page,
    rendered_bytes,
    texts,
)
from tests.tracking_helpers import ctx_at, settings_for


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


@pytest.fixture
def at(app_db: Engine) -> AppTest:
    return open_page(logged_in_app(app_factory(), app_db), "settings")


@dataclass
class Receiver:
    port: int
    bodies: list[bytes] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A loopback HTTP endpoint answering 200 to every POST, recording the bodies in order."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(server.server_address[1], bodies)
    server.shutdown()
    server.server_close()


def click(at: AppTest, key: str) -> AppTest:
    return assert_ok(at.button(key=key).click().run())


def codes(at: AppTest) -> list[str]:
    return [c.value for c in at.code]


COLUMN_OF = {"api_keys_table": "prefix", "webhooks_table": "failures in a row", "deliveries_table": "response code"}


def table(at: AppTest, key: str) -> Any:  # a pandas DataFrame
    """The table with a column only it has (AppTest does not expose a dataframe's key)."""
    [found] = [d.value for d in at.dataframe if COLUMN_OF[key] in d.value.columns]
    return found


def test_an_api_key_is_shown_once_listed_without_it_and_revoked(at: AppTest, app_db: Engine) -> None:
    at = assert_ok(button(at, "Create API key").click().run())  # no name yet
    assert any("API key name" in e.value for e in at.error)
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(ApiKey.id)) is None

    at.text_input(key="api_key_name").input("zapier")
    at.selectbox(key="api_key_scope").select("write")
    at = assert_ok(button(at, "Create API key").click().run())

    [key] = [c for c in codes(at) if c.startswith("ok_")]
    with transaction(app_db) as s:
        assert authenticate(s, key).scope is ApiScope.WRITE
        prefix = s.scalar(select(ApiKey.prefix))
    assert key.startswith(prefix + ".") and "it is shown this once" in texts(at)

    at = assert_ok(at.run())  # the next run: gone for good, only the prefix is listed
    assert key.encode() not in rendered_bytes(at) and not [c for c in codes(at) if c.startswith("ok_")]
    listed = table(at, "api_keys_table").iloc[0]
    assert (listed["name"], listed["prefix"], listed["scope"]) == ("zapier", prefix, "write")

    at.selectbox(key="api_key_pick").select(prefix)
    at = click(at, "api_key_revoke")

    assert f"API key {prefix} revoked" in texts(at)
    assert table(at, "api_keys_table").iloc[0]["revoked"] is not None
    with transaction(app_db) as s, pytest.raises(KeyRejectedError) as refused:
        authenticate(s, key)
    assert refused.value.status == 403
    assert not [box for box in at.selectbox if box.key == "api_key_pick"]  # no active key left to revoke


def test_webhooks_are_added_with_a_secret_shown_once_turned_off_and_on_rotated_and_deleted(
    at: AppTest, app_db: Engine
) -> None:
    at.text_input(key="webhook_url").input("https://crm.example.com/hooks/outreach")
    at.multiselect(key="webhook_events").set_value(["reply_received", "bounced"])
    at = assert_ok(button(at, "Add webhook").click().run())

    [secret] = [c for c in codes(at) if c.startswith("whsec_")]
    with transaction(app_db, readonly=True) as s:
        hook = s.scalar(select(Webhook))
        assert (hook.secret, sorted(hook.events), hook.is_active) == (secret, ["bounced", "reply_received"], True)
        hook_id = hook.id
    at = assert_ok(at.run())
    assert secret.encode() not in rendered_bytes(at)
    row = table(at, "webhooks_table").iloc[0]
    assert (row["url"], row["events"], row["on"]) == (
        "https://crm.example.com/hooks/outreach",
        "bounced, reply_received",
        True,
    )

    at = click(at, "webhook_toggle")
    assert f"Webhook {hook_id} is off" in texts(at) and not table(at, "webhooks_table").iloc[0]["on"]
    at = click(at, "webhook_toggle")
    assert table(at, "webhooks_table").iloc[0]["on"]

    at = click(at, "webhook_rotate")
    [rotated] = [c for c in codes(at) if c.startswith("whsec_")]
    with transaction(app_db, readonly=True) as s:
        assert s.get(Webhook, hook_id).secret == rotated != secret

    at = click(at, "webhook_delete")
    assert any("cannot be undone" in w.value for w in at.warning)
    with transaction(app_db, readonly=True) as s:
        assert s.get(Webhook, hook_id) is not None  # asking is not deleting
    at = click(at, "webhook_delete_confirm")
    assert f"Webhook {hook_id} and its delivery log are deleted." in texts(at) and "No webhooks yet." in texts(at)
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(Webhook.id)) is None


def test_send_test_shows_in_the_delivery_log_with_the_receivers_answer(
    at: AppTest, app_db: Engine, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")  # the receiver is on loopback
    at.text_input(key="webhook_url").input(f"http://127.0.0.1:{receiver.port}/hook")
    at = assert_ok(button(at, "Add webhook").click().run())
    at = click(at, "webhook_test")

    assert "A test event is queued" in texts(at)
    queued = table(at, "deliveries_table").iloc[0]
    assert (queued["event"], queued["state"], queued["attempts"]) == ("test", "pending", 0)
    assert queued["next retry"] is not None

    now = datetime.now(UTC)
    with transaction(app_db, readonly=True) as s:
        assert s.scalar(select(WebhookDelivery.state)) is WebhookDeliveryState.PENDING
    assert deliver_webhooks(app_db, ctx_at(settings_for(tmp_path), now), allow_private=True) == "webhooks: 1 delivered"
    assert len(receiver.bodies) == 1 and b'"type":"test"' in receiver.bodies[0]

    at = assert_ok(at.run())
    done = table(at, "deliveries_table").iloc[0]
    assert (done["state"], done["attempts"], done["response code"]) == ("delivered", 1, 200)
    assert done["next retry"] is None or str(done["next retry"]) in ("NaT", "None")
    at.selectbox(key="delivery_state").select("failed")
    at = assert_ok(at.run())
    assert "No deliveries match." in texts(at)
    at.selectbox(key="delivery_state").select("delivered")
    at.selectbox(key="delivery_event").select("test")
    at = assert_ok(at.run())
    assert len(table(at, "deliveries_table")) == 1


def test_members_see_keys_and_webhooks_but_cannot_change_them(
    db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep_steady_state(monkeypatch)
    for engine in app_database(db_url, monkeypatch):
        at = open_page(logged_in_app(app_factory(), engine, UserRole.MEMBER), "settings")
        labels = {b.label for b in at.button}
        assert "Create API key" not in labels and "Add webhook" not in labels
        assert "No API keys yet." in texts(at) and "No webhooks yet." in texts(at)
