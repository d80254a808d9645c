"""Webhooks out: signed JSON events to the operator's CRM or automation, through an outbox with retries.

`emit_event` only writes a pending delivery row (in the caller's transaction), so an event is queued if
and only if what caused it is committed. The worker's `deliver_webhooks` job claims due rows with a
lease, POSTs each one outside any transaction, and records the answer: 2xx delivered; anything else
retried with exponential backoff until MAX_ATTEMPTS. Delivery is at least once: every try carries the
same event id, so receivers drop repeats.

Each body is signed with the webhook's secret: HMAC-SHA256 over "<unix time>.<body>", sent as
`X-Outreach-Signature: t=<unix time>,v1=<hex>` (receivers compare in constant time and reject old
timestamps; `verify_signature` does both). Targets must be http(s); loopback, private, link-local and
other non-public addresses are refused — at registration for literal addresses, and at every delivery
after resolving the name, connecting to the checked address itself so DNS cannot be swapped in between
— unless the operator explicitly allows them (OUTREACH_WEBHOOKS_ALLOW_PRIVATE=1, or allow_private=True).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import Engine, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.engine import transaction
from db.enums import TaskState, WebhookDeliveryState
from db.models import OutreachCampaign, Prospect, Task, Webhook, WebhookDelivery
from db.types import utcnow
from outreach import __version__
from outreach.errors import OutreachError

if TYPE_CHECKING:
    from outreach.worker import JobContext

log = logging.getLogger("outreach.webhooks")

EVENTS = ("reply_received", "lead_status_changed", "unsubscribed", "bounced", "task_due")
TEST_EVENT = "test"  # sent by `send_test`; every webhook receives it, whatever it subscribed to
ALLOW_PRIVATE_ENV = "OUTREACH_WEBHOOKS_ALLOW_PRIVATE"
SIGNATURE_HEADER = "X-Outreach-Signature"
MAX_ATTEMPTS = 10
BACKOFF_BASE_S = 30
BACKOFF_CAP_S = 6 * 3600
LEASE_S = 120
TIMEOUT_S = 10.0
BATCH = 50
SIGNATURE_TOLERANCE_S = 300
TASK_DUE_LOOKBACK = timedelta(days=2)  # tasks that fell due while no worker ran are still announced
_ERROR_LIMIT = 500


class WebhookError(OutreachError):
    """A webhook cannot be registered, changed or reached as asked."""


class TargetRefusedError(WebhookError):
    """The URL is not one webhooks may go to (scheme, credentials, or a non-public address)."""


@dataclass(frozen=True)
class WebhookInfo:
    id: int
    url: str
    events: list[str]
    is_active: bool
    failure_count: int
    last_status: int | None
    last_delivery_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class CreatedWebhook:
    """The signing secret is returned here once; the operator copies it into the receiving system."""

    webhook: WebhookInfo
    secret: str


@dataclass(frozen=True)
class DeliveryInfo:
    id: int
    webhook_id: int
    event: str
    event_id: str
    state: WebhookDeliveryState
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None


def allow_private_from_env(env: dict[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(ALLOW_PRIVATE_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


# --- the SSRF guard ------------------------------------------------------------------------------


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _parse_target(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable webhook URL, or WebhookError saying what is wrong."""
    text = url.strip()
    if len(text) > 2048 or any(ord(c) < 33 or c == "\x7f" for c in text):
        raise TargetRefusedError("webhook URL: it must be one line without spaces, at most 2048 characters")
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise TargetRefusedError(f"webhook URL {text!r} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefusedError(f"webhook URL must start with https:// or http://, not {parts.scheme or 'nothing'}:")
    if not host:
        raise TargetRefusedError("webhook URL has no host name")
    if parts.username is not None or parts.password is not None:
        raise TargetRefusedError("webhook URL must not contain a user name or password; use the signing secret")
    return scheme, host, port or (443 if scheme == "https" else 80)


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, checked without network access: scheme, host, and no literal private/loopback address."""
    _scheme, host, _port = _parse_target(url)
    if allow_private:
        return url.strip()
    literal = _literal(host)
    if (literal is not None and not _public(literal)) or host == "localhost" or host.endswith(".localhost"):
        raise TargetRefusedError(
            f"webhook URL points at {host}, a loopback or private address; webhooks go to public hosts "
            f"(set {ALLOW_PRIVATE_ENV}=1 to allow internal targets)"
        )
    return url.strip()


def resolve_target(url: str, *, allow_private: bool) -> str:
    """The address to connect to: the name resolved, every answer checked (a name with one private
    answer is refused, so a rebinding record cannot slip through)."""
    _scheme, host, port = _parse_target(url)
    literal = _literal(host)
    if literal is not None:
        candidates = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise WebhookError(f"cannot resolve {host}: {exc}") from None
        candidates = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not candidates:
        raise WebhookError(f"cannot resolve {host}")
    if not allow_private:
        blocked = [str(a) for a in candidates if not _public(a)]
        if blocked:
            raise TargetRefusedError(
                f"{host} resolves to {', '.join(blocked)}, a loopback or private address; refused "
                f"(set {ALLOW_PRIVATE_ENV}=1 to allow internal targets)"
            )
    return str(candidates[0])


def _pinned(url: str, address: str) -> tuple[str, str]:
    """The URL with its host replaced by the checked address, and the Host header to send."""
    parts = urlsplit(url.strip())
    host_literal = f"[{address}]" if ":" in address else address
    netloc = host_literal + (f":{parts.port}" if parts.port else "")
    host_header = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header


# --- signing -------------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: datetime, tolerance_s: int = SIGNATURE_TOLERANCE_S
) -> bool:
    """What a receiver does: parse t and v1, reject stale timestamps, compare in constant time."""
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        fields.setdefault(name, []).append(value)
    try:
        timestamp = int(fields.get("t", [""])[0])
    except ValueError:
        return False
    if abs(now.timestamp() - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))


def backoff_seconds(attempts: int) -> int:
    """Wait after the `attempts`-th failed try: 30 s, 1 min, 2 min, … capped at 6 h."""
    return int(min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_CAP_S))


# --- registration (the Settings page and the CLI) ------------------------------------------------


def _events(events: Iterable[str]) -> list[str]:
    chosen = sorted({e.strip() for e in events if e.strip()})
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        raise WebhookError(f"unknown webhook event {', '.join(unknown)}; choose from {', '.join(EVENTS)}")
    if not chosen:
        raise WebhookError(f"choose at least one event: {', '.join(EVENTS)}")
    return chosen


def _info(row: Webhook) -> WebhookInfo:
    return WebhookInfo(
        row.id, row.url, list(row.events or []), row.is_active, row.failure_count, row.last_status,
        row.last_delivery_at, row.created_at,
    )  # fmt: skip


def create_webhook(
    session: Session, url: str, events: Iterable[str], *, allow_private: bool | None = None
) -> CreatedWebhook:
    """Register a URL for events; returns the signing secret (shown once)."""
    allow = allow_private_from_env() if allow_private is None else allow_private
    row = Webhook(url=check_url(url, allow_private=allow), events=_events(events), secret=_new_secret())
    session.add(row)
    session.flush()
    return CreatedWebhook(_info(row), row.secret)


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _get(session: Session, webhook_id: int) -> Webhook:
    row = session.get(Webhook, webhook_id)
    if row is None:
        raise WebhookError(f"no webhook with id {webhook_id}")
    return row


def list_webhooks(session: Session) -> list[WebhookInfo]:
    """Every webhook with its health (never its secret)."""
    return [_info(row) for row in session.scalars(select(Webhook).order_by(Webhook.id))]


def set_webhook_active(session: Session, webhook_id: int, active: bool) -> WebhookInfo:
    """Turn a webhook off (nothing new is queued for it) or on again."""
    row = _get(session, webhook_id)
    row.is_active = active
    if active:
        row.failure_count = 0
    session.flush()
    return _info(row)


def rotate_webhook_secret(session: Session, webhook_id: int) -> str:
    """A new signing secret (shown once); deliveries from now on are signed with it."""
    row = _get(session, webhook_id)
    row.secret = _new_secret()
    session.flush()
    return row.secret


def delete_webhook(session: Session, webhook_id: int) -> None:
    """Remove a webhook and its delivery log."""
    session.delete(_get(session, webhook_id))
    session.flush()


def list_deliveries(
    session: Session,
    *,
    webhook_id: int | None = None,
    limit: int = 50,
    state: WebhookDeliveryState | str | None = None,
    event: str | None = None,
) -> list[DeliveryInfo]:
    """The delivery log, newest first: what was sent, how often, and what the receiver answered.

    Filters (the Settings page's): one webhook, one state (pending, delivered, failed), one event kind.
    """
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(max(1, min(limit, 500)))
    if webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    if state is not None:
        try:
            query = query.where(WebhookDelivery.state == WebhookDeliveryState(state))
        except ValueError:
            known = ", ".join(s.value for s in WebhookDeliveryState)
            raise WebhookError(f"delivery state '{state}' is not one of {known}") from None
    if event is not None:
        query = query.where(WebhookDelivery.event == event)
    return [_delivery_info(d) for d in session.scalars(query)]


def _delivery_info(d: WebhookDelivery) -> DeliveryInfo:
    return DeliveryInfo(
        d.id, d.webhook_id, d.event, d.event_id, d.state, d.attempts, d.last_status, d.last_error,
        d.created_at, d.next_attempt_at, d.delivered_at,
    )  # fmt: skip


def send_test(session: Session, webhook_id: int, *, now: datetime | None = None) -> int:
    """Queue a `test` event for one webhook (the Settings page's "send test" button); returns its row id."""
    row = _get(session, webhook_id)
    when = now or utcnow()
    delivery = WebhookDelivery(
        webhook_id=row.id, event_id=uuid.uuid4().hex, event=TEST_EVENT, payload={"message": "test from Outreach"},
        next_attempt_at=when, created_at=when,
    )  # fmt: skip
    session.add(delivery)
    session.flush()
    return delivery.id


# --- queueing ------------------------------------------------------------------------------------


def listens_for(session: Session, kind: str) -> bool:
    """Whether an active webhook subscribes to `kind` (callers on a hot path skip building the event)."""
    return any(kind in (h.events or []) for h in session.scalars(select(Webhook).where(Webhook.is_active.is_(True))))


def emit_event(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    now: datetime | None = None,
    dedupe_key: str | None = None,
) -> int:
    """Queue `kind` for every active webhook subscribed to it; returns how many deliveries were queued.

    Runs in the caller's transaction. With a `dedupe_key` the same event is queued at most once per
    webhook, so callers that may run twice (inbox re-ingest, the task scan) need not check first.
    """
    if kind not in EVENTS:
        raise WebhookError(f"unknown webhook event {kind!r}; known: {', '.join(EVENTS)}")
    when = now or utcnow()
    hooks = [h for h in session.scalars(select(Webhook).where(Webhook.is_active.is_(True))) if kind in (h.events or [])]
    queued = 0
    for hook in hooks:
        if dedupe_key is not None and session.scalar(
            select(WebhookDelivery.id).where(
                WebhookDelivery.webhook_id == hook.id, WebhookDelivery.dedupe_key == dedupe_key
            )
        ):
            continue
        try:
            with session.begin_nested():
                session.add(
                    WebhookDelivery(
                        webhook_id=hook.id, event_id=uuid.uuid4().hex, event=kind, dedupe_key=dedupe_key,
                        payload=payload, next_attempt_at=when, created_at=when,
                    )
                )  # fmt: skip
        except IntegrityError:
            continue  # queued concurrently by another transaction: once is enough
        queued += 1
    return queued


def queue_due_tasks(session: Session, now: datetime) -> int:
    """Announce LinkedIn/call tasks that fell due (once per task, via the dedupe key)."""
    if not any("task_due" in (h.events or []) for h in session.scalars(select(Webhook).where(Webhook.is_active))):
        return 0
    rows = session.execute(
        select(Task, Prospect.email, OutreachCampaign.name)
        .join(Prospect, Prospect.id == Task.prospect_id)
        .outerjoin(OutreachCampaign, OutreachCampaign.id == Task.campaign_id)
        .where(Task.state == TaskState.OPEN, Task.due_at <= now, Task.due_at > now - TASK_DUE_LOOKBACK)
        .order_by(Task.due_at)
    ).all()
    queued = 0
    for task, email, campaign in rows:
        payload = {
            "task_id": task.id, "type": str(task.type), "due_at": task.due_at.isoformat(), "email": email,
            "prospect_id": task.prospect_id, "campaign": campaign, "body": task.body,
        }  # fmt: skip
        queued += emit_event(session, "task_due", payload, now=now, dedupe_key=f"task_due:{task.id}")
    return queued


# --- delivering (the worker job) -----------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    id: int
    webhook_id: int
    url: str
    secret: str
    active: bool
    event: str
    event_id: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int


def body_of(event: str, event_id: str, created_at: datetime, payload: dict[str, Any]) -> bytes:
    """The JSON sent: the same bytes on every try of one delivery."""
    envelope = {"id": event_id, "type": event, "created_at": created_at.isoformat(), "data": payload}
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True, default=str).encode()


def _claim(session: Session, now: datetime, limit: int) -> list[int]:
    due = (
        (WebhookDelivery.state == WebhookDeliveryState.PENDING)
        & (WebhookDelivery.next_attempt_at <= now)
        & or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now)
    )
    query = select(WebhookDelivery.id).where(due).order_by(WebhookDelivery.next_attempt_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if not ids:
        return []
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), due)
        .values(lease_expires_at=now + timedelta(seconds=LEASE_S))
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars())


def _load(session: Session, ids: list[int]) -> list[_Claimed]:
    rows = session.execute(
        select(WebhookDelivery, Webhook.url, Webhook.secret, Webhook.is_active)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)
    )
    claimed = []
    for d, url, secret, active in rows:
        claimed.append(
            _Claimed(d.id, d.webhook_id, url, secret, active, d.event, d.event_id, dict(d.payload or {}),
                     d.created_at, d.attempts)
        )  # fmt: skip
    return claimed


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    error: str | None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _post(client: httpx.Client, job: _Claimed, now: datetime, allow_private: bool) -> _Outcome:
    if not job.active:
        return _Outcome(None, "the webhook is turned off", permanent=True)
    try:
        address = resolve_target(job.url, allow_private=allow_private)
    except TargetRefusedError as exc:
        return _Outcome(None, str(exc), permanent=True)
    except WebhookError as exc:
        return _Outcome(None, str(exc))  # name resolution failed: try again later
    url, host = _pinned(job.url, address)
    body = body_of(job.event, job.event_id, job.created_at, job.payload)
    timestamp = int(now.timestamp())
    headers = {
        "Host": host, "Content-Type": "application/json", "User-Agent": f"Outreach-Webhooks/{__version__}",
        "X-Outreach-Event": job.event, "X-Outreach-Delivery": job.event_id,
        SIGNATURE_HEADER: signature_header(job.secret, timestamp, body),
    }  # fmt: skip
    extensions = {"sni_hostname": urlsplit(job.url.strip()).hostname or ""} if url.startswith("https") else {}
    try:
        with client.stream("POST", url, content=body, headers=headers, extensions=extensions) as response:
            status = response.status_code
    except httpx.HTTPError as exc:
        return _Outcome(None, f"{type(exc).__name__}: {exc}"[:_ERROR_LIMIT])
    return _Outcome(status, None if 200 <= status < 300 else f"HTTP {status}")


def _record(session: Session, job: _Claimed, outcome: _Outcome, now: datetime) -> str:
    delivery = session.get(WebhookDelivery, job.id)
    hook = session.get(Webhook, job.webhook_id)
    if delivery is None or hook is None:
        return "gone"  # deleted while we were sending
    delivery.attempts += 1
    delivery.last_status, delivery.last_error, delivery.lease_expires_at = outcome.status, outcome.error, None
    if outcome.status is not None:
        hook.last_status, hook.last_delivery_at = outcome.status, now
    if outcome.ok:
        delivery.state, delivery.delivered_at = WebhookDeliveryState.DELIVERED, now
        hook.failure_count = 0
        return "delivered"
    hook.failure_count += 1
    if outcome.permanent or delivery.attempts >= MAX_ATTEMPTS:
        delivery.state = WebhookDeliveryState.FAILED
        return "failed"
    delivery.next_attempt_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
    return "retrying"


def deliver_webhooks(
    engine: Engine, ctx: JobContext, *, allow_private: bool | None = None, client: httpx.Client | None = None
) -> str | None:
    """Worker job body (owns its transactions): announce due tasks, then deliver what is due.

    `ctx` is the worker's JobContext (its `now` and `clock`). The HTTP calls happen outside any
    transaction; each result is committed on its own, so a crash repeats at most the rows in flight.
    """
    allow = allow_private_from_env() if allow_private is None else allow_private
    with transaction(engine) as session:
        queue_due_tasks(session, ctx.now)
    with transaction(engine) as session:
        ids = _claim(session, ctx.now, BATCH)
    if not ids:
        return None
    with transaction(engine, readonly=True) as session:
        jobs = _load(session, ids)
    outcomes: Counter[str] = Counter()
    own_client = client is None
    http = client or httpx.Client(timeout=TIMEOUT_S, follow_redirects=False, trust_env=False)
    try:
        for job in jobs:
            outcome = _post(http, job, ctx.clock(), allow)
            if not outcome.ok:
                log.warning("webhook %s %s delivery %s: %s", job.webhook_id, job.event, job.event_id, outcome.error)
            with transaction(engine) as session:
                outcomes[_record(session, job, outcome, ctx.clock())] += 1
    finally:
        if own_client:
            http.close()
    return "webhooks: " + ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items()))
