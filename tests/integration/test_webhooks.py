"""Webhooks out against a real loopback receiver: signatures verify, 500s are retried with backoff, the
SSRF guard refuses internal targets unless allowed, and events are queued once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from db.engine import transaction
from db.enums import TaskState, TaskType, WebhookDeliveryState
from db.models import Task, Webhook, WebhookDelivery
from outreach.tokens import LinkToken, Purpose, sign
from outreach.tracking import create_app
from outreach.webhooks import (
    BACKOFF_BASE_S,
    MAX_ATTEMPTS,
    WebhookError,
    backoff_seconds,
    create_webhook,
    deliver_webhooks,
    emit_event,
    list_deliveries,
    queue_due_tasks,
    set_webhook_active,
    verify_signature,
)
from tests.factories import queued_touches
from tests.tracking_helpers import KEY, ctx_at, settings_for

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """A loopback HTTP server that records every POST and answers with the next scripted status."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/outreach?src=test"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if status in (301, 302):
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(tmp_path, db_url):
    return settings_for(tmp_path / "data", db_url)


def _hook(engine, url: str, events=("unsubscribed",)) -> tuple[int, str]:
    with transaction(engine) as s:
        created = create_webhook(s, url, events, allow_private=True)
    return created.webhook.id, created.secret


def _deliver(engine, settings, now: datetime, allow_private: bool = True) -> str | None:
    return deliver_webhooks(engine, ctx_at(settings, now), allow_private=allow_private)


def _deliveries(engine) -> list[WebhookDelivery]:
    with transaction(engine) as s:
        rows = list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        s.expunge_all()
    return rows


def test_an_unsubscribe_is_delivered_signed_and_the_signature_verifies(engine, settings, receiver) -> None:
    hook_id, secret = _hook(engine, receiver.url)
    with transaction(engine) as s:
        (touch,) = queued_touches(s, 1, T0)
    client = TestClient(create_app(engine, settings))
    assert client.post(f"/u/{sign(LinkToken(Purpose.UNSUBSCRIBE, touch), KEY)}",
                       data={"List-Unsubscribe": "One-Click"}).status_code == 200  # fmt: skip
    now = datetime.now(UTC) + timedelta(seconds=1)  # the unsubscribe was queued on the real clock
    assert _deliver(engine, settings, now) == "webhooks: 1 delivered"
    ((headers, body),) = receiver.received
    signed = headers["x-outreach-signature"]
    assert verify_signature(secret, signed, body, now=now)
    assert not verify_signature(secret, signed, body + b" ", now=now)  # altered body
    assert not verify_signature("whsec_other", signed, body, now=now)  # wrong secret
    assert not verify_signature(secret, signed, body, now=now + timedelta(hours=1))  # stale
    payload = json.loads(body)
    assert payload["type"] == "unsubscribed" and headers["x-outreach-event"] == "unsubscribed"
    assert payload["data"]["method"] == "one-click" and payload["data"]["email"].endswith("@x.example")
    assert headers["x-outreach-delivery"] == payload["id"] and headers["content-type"] == "application/json"
    assert headers["host"] == f"127.0.0.1:{receiver.port}"
    with transaction(engine, readonly=True) as s:
        hook = s.get(Webhook, hook_id)
        assert (hook.last_status, hook.failure_count) == (200, 0)
        (logged,) = list_deliveries(s, webhook_id=hook_id)
        assert (logged.state, logged.attempts, logged.last_status) == (WebhookDeliveryState.DELIVERED, 1, 200)
    assert _deliver(engine, settings, now + timedelta(hours=1)) is None  # nothing left: sent once


def test_500s_are_retried_with_exponential_backoff_and_the_same_event_id(engine, settings, receiver) -> None:
    hook_id, secret = _hook(engine, receiver.url)
    receiver.statuses = [500, 503, 302, 200]
    with transaction(engine) as s:
        emit_event(s, "unsubscribed", {"email": "a@b.example"}, now=T0)
    assert _deliver(engine, settings, T0) == "webhooks: 1 retrying"
    (row,) = _deliveries(engine)
    assert row.next_attempt_at == T0 + timedelta(seconds=BACKOFF_BASE_S) and row.last_status == 500
    assert _deliver(engine, settings, T0 + timedelta(seconds=BACKOFF_BASE_S - 1)) is None  # not due yet
    moment = T0
    for attempt in (1, 2, 3):  # 503, then a redirect (never followed), then 200
        moment += timedelta(seconds=backoff_seconds(attempt))
        _deliver(engine, settings, moment)
    (row,) = _deliveries(engine)
    assert (row.state, row.attempts, row.last_status) == (WebhookDeliveryState.DELIVERED, 4, 200)
    assert [backoff_seconds(n) for n in (1, 2, 3)] == [30, 60, 120]
    ids = {json.loads(body)["id"] for _headers, body in receiver.received}
    assert len(receiver.received) == 4 and len(ids) == 1  # the same event every time: receivers can dedupe
    assert all(verify_signature(secret, h["x-outreach-signature"], b, now=moment) for h, b in receiver.received[-1:])
    with transaction(engine, readonly=True) as s:
        assert s.get(Webhook, hook_id).failure_count == 0


def test_delivery_gives_up_after_the_last_attempt(engine, settings, receiver) -> None:
    _hook(engine, receiver.url)
    receiver.statuses = [500] * MAX_ATTEMPTS
    with transaction(engine) as s:
        emit_event(s, "unsubscribed", {"n": 1}, now=T0)
    moment = T0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        _deliver(engine, settings, moment)
        moment += timedelta(seconds=backoff_seconds(attempt))
    (row,) = _deliveries(engine)
    assert (row.state, row.attempts) == (WebhookDeliveryState.FAILED, MAX_ATTEMPTS)
    assert _deliver(engine, settings, moment + timedelta(days=1)) is None
    assert len(receiver.received) == MAX_ATTEMPTS


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/x", "http://localhost/x", "http://app.localhost/x", "http://[::1]/x", "http://10.0.0.5/x",
     "http://192.168.1.10/x", "http://172.16.0.1/x", "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/x",
     "http://100.64.0.1/x", "http://[::ffff:127.0.0.1]/x", "http://[fd00::1]/x", "file:///etc/passwd",
     "gopher://example.com/x", "ftp://example.com/x", "javascript:alert(1)", "https://user:pw@example.com/x",
     "https:///nohost", "https://exa mple.com/x"],
)  # fmt: skip
def test_the_ssrf_guard_refuses_internal_targets_and_other_schemes(engine, url: str) -> None:
    with pytest.raises(WebhookError), transaction(engine) as s:
        create_webhook(s, url, ["bounced"], allow_private=False)
    with transaction(engine, readonly=True) as s:
        assert s.scalars(select(Webhook)).all() == []


def test_an_allowed_loopback_hook_is_still_refused_at_delivery_without_the_flag(engine, settings, receiver) -> None:
    _hook(engine, receiver.url)
    _hook(engine, f"http://localhost:{receiver.port}/by-name")  # the name resolves to loopback
    with transaction(engine) as s:
        assert emit_event(s, "unsubscribed", {"n": 1}, now=T0) == 2
    assert _deliver(engine, settings, T0, allow_private=False) == "webhooks: 2 failed"
    rows = _deliveries(engine)
    assert all(r.state is WebhookDeliveryState.FAILED and "loopback or private" in (r.last_error or "") for r in rows)
    assert receiver.received == []  # refused before connecting


def test_events_are_queued_only_for_subscribed_active_hooks_and_once_per_key(engine, receiver) -> None:
    replies, _ = _hook(engine, receiver.url, events=("reply_received", "bounced"))
    _hook(engine, receiver.url, events=("unsubscribed",))
    with transaction(engine) as s:
        assert emit_event(s, "bounced", {"n": 1}, dedupe_key="bounce:1") == 1
        assert emit_event(s, "bounced", {"n": 1}, dedupe_key="bounce:1") == 0
        assert emit_event(s, "lead_status_changed", {"n": 1}) == 0
        set_webhook_active(s, replies, False)
        assert emit_event(s, "reply_received", {"n": 1}) == 0
        with pytest.raises(WebhookError):
            emit_event(s, "made_up", {})
    with pytest.raises(WebhookError), transaction(engine) as s:
        create_webhook(s, receiver.url, ["made_up"], allow_private=True)


def test_due_tasks_are_announced_once(engine, settings, receiver) -> None:
    _hook(engine, receiver.url, events=("task_due",))
    with transaction(engine) as s:
        (touch,) = queued_touches(s, 1, T0)
        from db.models import CommunicationLog, Enrollment

        prospect_id = s.scalar(
            select(Enrollment.prospect_id).join(CommunicationLog, CommunicationLog.enrollment_id == Enrollment.id)
        )
        s.add(Task(type=TaskType.CALL, state=TaskState.OPEN, prospect_id=prospect_id, due_at=T0, body="Call Ann"))
        s.add(Task(type=TaskType.CALL, state=TaskState.OPEN, prospect_id=prospect_id, due_at=T0 + timedelta(days=5)))
    assert _deliver(engine, settings, T0 + timedelta(minutes=1)) == "webhooks: 1 delivered"
    assert _deliver(engine, settings, T0 + timedelta(minutes=2)) is None
    ((_headers, body),) = receiver.received
    data = json.loads(body)["data"]
    assert data["body"] == "Call Ann" and data["type"] == "call" and touch
    with transaction(engine) as s:
        assert queue_due_tasks(s, T0 + timedelta(minutes=3)) == 0


def test_forgetting_a_person_scrubs_their_address_from_queued_deliveries(engine, receiver) -> None:
    from outreach.erasure import find_plaintext, forget

    _hook(engine, receiver.url)
    with transaction(engine) as s:
        emit_event(s, "unsubscribed", {"email": "Gone.Person@x.example", "note": "gone.person@x.example left"})
    with transaction(engine) as s:
        forget(s, "gone.person@x.example", secret_key=KEY)
        assert find_plaintext(s, "gone.person@x.example") == []
    (row,) = _deliveries(engine)
    assert "gone.person" not in json.dumps(row.payload).lower()
