"""What a pixel load, a link click and an unsubscribe do to the database — the tracking service's effects.

Each function takes the caller's session (the caller owns the transaction) and a touch id that came out
of a verified token. Opens and clicks are recorded every time they happen (counts are queried as
distinct touches later), each with `is_machine` and the reasons for it: Apple Mail Privacy Protection
fetches every image through its proxies whether or not anyone reads the mail, and mail security
gateways follow links seconds after delivery, so neither may count as a person. The request's IP
address is used for that judgement only and never stored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.enums import EventKind, LeadStage, StopReason, SuppressionKind, SuppressionReason, TouchState
from db.models import CommunicationLog, EngagementEvent, Enrollment, OutreachCampaign, Prospect, Suppression
from outreach.enrollments import stop_for_prospect
from outreach.suppression import SuppressionError, is_suppressed, plain_hash, suppress
from outreach.webhooks import emit_event

OPEN_TOO_SOON_S = 10  # a pixel fetched this soon after the send is a gateway or a prefetch, not a reader
CLICK_TOO_SOON_S = 10  # link scanners follow every link within seconds of delivery
USER_AGENT_LIMIT = 512

# Apple's proxies fetch with exactly this user agent; Apple Mail itself sends a full one
# ("Mozilla/5.0 (Macintosh; …) AppleWebKit/…"). Apple also owns 17.0.0.0/8.
APPLE_PROXY_USER_AGENT = "Mozilla/5.0"
APPLE_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)

# Security gateways, link checkers, preview fetchers and HTTP libraries: no person behind the request.
_SCANNER_AGENTS = re.compile(
    r"barracuda|mimecast|proofpoint|ppops|symantec|messagelabs|forcepoint|trend ?micro|sophos|fortinet|"
    r"fortiguard|zscaler|cisco|ironport|safelinks|microsoft office protection|bitdefender|kaspersky|"
    r"checkpoint|check point|cloudmark|spamtitan|hornetsecurity|avanan|abnormal|egress|"
    r"bot\b|bot/|crawler|spider|scanner|preview|headlesschrome|phantomjs|slurp|facebookexternalhit|"
    r"python-requests|python-httpx|python-urllib|aiohttp|curl/|wget/|go-http-client|java/|okhttp|"
    r"libwww|httpclient|apache-httpclient|axios|node-fetch|postmanruntime",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TouchRef:
    """The touch a token names, with what an event needs to point at."""

    touch_id: int
    enrollment_id: int
    campaign_id: int
    prospect_id: int
    state: TouchState
    sent_at: datetime | None
    links: list[Any]


@dataclass(frozen=True)
class UnsubscribePage:
    """What the unsubscribe page may show: a masked address, never the address itself."""

    masked_address: str
    already_unsubscribed: bool


@dataclass(frozen=True)
class UnsubscribeResult:
    masked_address: str
    newly_suppressed: bool
    stopped_enrollments: int
    recorded: bool  # False: this link had already been used (nothing changed)


def _touch_columns() -> Any:
    return select(
        CommunicationLog.id,
        CommunicationLog.enrollment_id,
        Enrollment.campaign_id,
        Enrollment.prospect_id,
        CommunicationLog.state,
        CommunicationLog.sent_at,
        CommunicationLog.links,
    ).join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)


def find_touch(session: Session, touch_id: int) -> TouchRef | None:
    row = session.execute(_touch_columns().where(CommunicationLog.id == touch_id)).first()
    return TouchRef(*row) if row else None


def find_touches(session: Session | Connection, touch_ids: Iterable[int]) -> dict[int, TouchRef]:
    """Many touches in one query (the batched recorder looks up a whole batch at once)."""
    wanted = sorted(set(touch_ids))
    if not wanted:
        return {}
    rows = session.execute(_touch_columns().where(CommunicationLog.id.in_(wanted)))
    return {row[0]: TouchRef(*row) for row in rows}


# --- machine judgement (pure) --------------------------------------------------------------------


def _seconds_since_send(ref: TouchRef, now: datetime) -> float | None:
    return None if ref.sent_at is None else (now - ref.sent_at).total_seconds()


def _in_apple_network(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in APPLE_NETWORKS)


def _agent_reasons(user_agent: str | None) -> list[str]:
    agent = (user_agent or "").strip()
    if not agent:
        return ["no user agent"]
    if _SCANNER_AGENTS.search(agent):
        return ["security scanner or automated client user agent"]
    return []


def _timing_reasons(ref: TouchRef, now: datetime, window_s: int) -> list[str]:
    if ref.state is not TouchState.SENT or ref.sent_at is None:
        return ["before the send was recorded"]
    elapsed = _seconds_since_send(ref, now)
    if elapsed is not None and elapsed < window_s:
        return [f"within {window_s} s of the send ({max(elapsed, 0):.1f} s)"]
    return []


def machine_open_reasons(ref: TouchRef, now: datetime, user_agent: str | None, ip: str | None) -> list[str]:
    """Why this pixel load is not a person reading (empty: count it as a human open)."""
    reasons: list[str] = []
    if (user_agent or "").strip() == APPLE_PROXY_USER_AGENT:
        reasons.append("Apple Mail Privacy Protection proxy user agent")
    if _in_apple_network(ip):
        reasons.append("Apple network address (Mail Privacy Protection proxy)")
    if not reasons:
        reasons += _agent_reasons(user_agent)
    return reasons + _timing_reasons(ref, now, OPEN_TOO_SOON_S)


def machine_click_reasons(ref: TouchRef, now: datetime, user_agent: str | None, method: str) -> list[str]:
    """Why this click is not a person clicking (empty: count it as a human click)."""
    reasons = ["HEAD request (link checker)"] if method.upper() == "HEAD" else []
    return reasons + _agent_reasons(user_agent) + _timing_reasons(ref, now, CLICK_TOO_SOON_S)


# --- recording -----------------------------------------------------------------------------------


def _event_row(
    ref: TouchRef,
    kind: EventKind,
    now: datetime,
    *,
    reasons: list[str],
    details: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"machine_reasons": reasons} if reasons else {}
    body.update(details or {})
    return {
        "kind": kind, "occurred_at": now, "communication_id": ref.touch_id, "enrollment_id": ref.enrollment_id,
        "campaign_id": ref.campaign_id, "prospect_id": ref.prospect_id, "is_machine": bool(reasons),
        "details": body, "url": None, "user_agent": None, "dedupe_key": None, **extra,
    }  # fmt: skip


def _agent(user_agent: str | None) -> str | None:
    return user_agent[:USER_AGENT_LIMIT] if user_agent else None


def safe_destination(url: Any) -> str | None:
    """A stored link fit to redirect to: an absolute http(s) URL with a host and no control characters."""
    if not isinstance(url, str) or not url or len(url) > 2048 or any(ord(c) < 33 or c == "\x7f" for c in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or "\\" in url:
        return None
    return url


def _destination(ref: TouchRef | None, link_index: int) -> str | None:
    if ref is None or not isinstance(ref.links, list) or not 0 <= link_index < len(ref.links):
        return None
    return safe_destination(ref.links[link_index])


def stored_destination(session: Session, touch_id: int, link_index: int) -> str | None:
    """The URL a click on this touch's link leads to, without recording anything."""
    return _destination(find_touch(session, touch_id), link_index)


@dataclass(frozen=True)
class Hit:
    """One pixel load (kind OPEN) or link click (kind CLICK) from a verified token."""

    kind: EventKind
    touch_id: int
    now: datetime
    user_agent: str | None
    ip: str | None = None
    link_index: int = 0
    method: str = "GET"


def _row_for(hit: Hit, ref: TouchRef | None) -> tuple[bool | str | None, dict[str, Any] | None]:
    """(result, event row): an open's result is whether it was recorded; a click's the URL to redirect to."""
    if hit.kind is EventKind.OPEN:
        if ref is None:
            return False, None
        reasons = machine_open_reasons(ref, hit.now, hit.user_agent, hit.ip)
        return True, _event_row(ref, EventKind.OPEN, hit.now, reasons=reasons, user_agent=_agent(hit.user_agent))
    url = _destination(ref, hit.link_index)
    if ref is None or url is None:
        return None, None
    reasons = machine_click_reasons(ref, hit.now, hit.user_agent, hit.method)
    row = _event_row(
        ref, EventKind.CLICK, hit.now, reasons=reasons, url=url, user_agent=_agent(hit.user_agent),
        details={"link": hit.link_index, "method": hit.method.upper()},
    )  # fmt: skip
    return url, row


def record_hits(session: Session | Connection, hits: Sequence[Hit]) -> list[bool | str | None]:
    """Record many opens and clicks with one lookup and one insert; results in the order given.

    Takes a Session or a bare Connection (the batched recorder uses Core for speed)."""
    refs = find_touches(session, (hit.touch_id for hit in hits))
    results: list[bool | str | None] = []
    rows: list[dict[str, Any]] = []
    for hit in hits:
        result, row = _row_for(hit, refs.get(hit.touch_id))
        results.append(result)
        if row is not None:
            rows.append(row)
    if rows:
        session.execute(insert(EngagementEvent), rows)
    return results


def record_open(session: Session, touch_id: int, *, now: datetime, user_agent: str | None, ip: str | None) -> bool:
    """Record one pixel load; False when the touch no longer exists (erased, deleted)."""
    return bool(record_hits(session, [Hit(EventKind.OPEN, touch_id, now, user_agent, ip)])[0])


def record_click(
    session: Session,
    touch_id: int,
    link_index: int,
    *,
    now: datetime,
    user_agent: str | None,
    method: str,
) -> str | None:
    """Record a click and return the stored URL to redirect to; None (nothing recorded) for no such link."""
    hit = Hit(EventKind.CLICK, touch_id, now, user_agent, link_index=link_index, method=method)
    result = record_hits(session, [hit])[0]
    return result if isinstance(result, str) else None


# --- unsubscribe ---------------------------------------------------------------------------------


def mask_address(email: str) -> str:
    """'ann.lee@acme.com' -> 'a***@acme.com': enough for the person to recognise, useless to a snooper."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def _prospect_email(session: Session, prospect_id: int) -> str | None:
    return session.scalar(select(Prospect.email_normalized).where(Prospect.id == prospect_id))


def unsubscribe_page(session: Session, touch_id: int, *, secret_key: str) -> UnsubscribePage | None:
    """What GET /u/… shows; reads only."""
    ref = find_touch(session, touch_id)
    email = _prospect_email(session, ref.prospect_id) if ref else None
    if email is None:
        return None
    return UnsubscribePage(mask_address(email), is_suppressed(session, email, secret_key))


def _suppress_address(session: Session, email: str, touch_id: int) -> bool:
    """Suppress the address; an address the validator dislikes is still suppressed by its exact hash."""
    source = f"unsubscribe link (touch {touch_id})"
    try:
        return suppress(session, [email], reason=SuppressionReason.UNSUBSCRIBED, source=source).added > 0
    except SuppressionError:
        key = email.strip().lower()
        exists = session.scalar(
            select(Suppression.id).where(
                Suppression.kind == SuppressionKind.EMAIL, Suppression.value_hash == plain_hash(key)
            )
        )
        if exists is not None:
            return False
        session.add(
            Suppression(
                kind=SuppressionKind.EMAIL, value=key, value_hash=plain_hash(key),
                reason=SuppressionReason.UNSUBSCRIBED, source=source,
            )
        )  # fmt: skip
        session.flush()
        return True


def unsubscribe(
    session: Session, touch_id: int, *, now: datetime, method: str, user_agent: str | None = None
) -> UnsubscribeResult | None:
    """Suppress the address at once, stop every live sequence of the person, record it once per link.

    Idempotent: the same link used again changes nothing. `method` says how ("one-click", "page").
    Touches already claimed by a sender are caught by its claim-time suppression check.
    """
    ref = find_touch(session, touch_id)
    email = _prospect_email(session, ref.prospect_id) if ref else None
    if ref is None or email is None:
        return None
    newly = _suppress_address(session, email, touch_id)
    stopped = stop_for_prospect(session, ref.prospect_id, StopReason.UNSUBSCRIBED, now)
    dedupe = f"unsubscribe:{touch_id}"
    if session.scalar(select(EngagementEvent.id).where(EngagementEvent.dedupe_key == dedupe)) is not None:
        return UnsubscribeResult(mask_address(email), newly, stopped, recorded=False)
    row = _event_row(
        ref, EventKind.UNSUBSCRIBE, now, reasons=[], dedupe_key=dedupe, user_agent=_agent(user_agent),
        details={"method": method},
    )  # fmt: skip
    try:
        with session.begin_nested():  # a concurrent POST of the same link may win the unique key
            session.execute(insert(EngagementEvent).values(**row))
    except IntegrityError:
        return UnsubscribeResult(mask_address(email), newly, stopped, recorded=False)
    from outreach.responses import update_lead_status  # the lead pipeline's one entry point (heavy imports)

    update_lead_status(session, ref.prospect_id, LeadStage.UNSUBSCRIBED, "unsubscribed with the link in a message",
                       now=now)  # fmt: skip
    campaign = session.get(OutreachCampaign, ref.campaign_id)
    emit_event(
        session,
        "unsubscribed",
        {
            "email": email, "prospect_id": ref.prospect_id, "campaign": campaign.name if campaign else None,
            "campaign_id": ref.campaign_id, "touch_id": touch_id, "source": "link", "method": method,
            "at": now.isoformat(),
        },
        now=now,
        dedupe_key=dedupe,
    )  # fmt: skip
    return UnsubscribeResult(mask_address(email), newly, stopped, recorded=True)
