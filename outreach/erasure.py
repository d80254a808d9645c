"""Forgetting a person (GDPR art. 17): erase every trace of the address, keep only a keyed hash.

The prospect row and everything hanging off it (enrollments, messages, events, replies, tasks, lists,
tags, stage history) are deleted explicitly rather than trusting every database's cascade settings.
Then every text and JSON column of every table is searched for the address, and any mention left (a
referral in someone else's reply, an unmatched bounce, a plain suppression entry) is removed or
overwritten. What remains is one suppression row holding HMAC-SHA256(secret key, address): imports and
replies check it, so the person can never become sendable again, yet the list cannot be read back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import JSON, Enum, String, Table, Text, cast, delete, func, or_, select, update
from sqlalchemy.orm import Session

from db.enums import SuppressionKind, SuppressionReason
from db.models import (
    Base,
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    LeadQualification,
    LeadStageChange,
    Prospect,
    ProspectListMember,
    ProspectTag,
    ResponseAnalysis,
    Suppression,
    Task,
)
from outreach.errors import OutreachError
from outreach.suppression import keyed_hash, plain_hash

REDACTED = "[forgotten]"


class ErasureError(OutreachError):
    """The address could not be fully erased (the transaction is rolled back)."""


@dataclass(frozen=True)
class ForgetResult:
    prospect_found: bool
    deleted: dict[str, int] = field(default_factory=dict)  # table -> rows deleted
    scrubbed: dict[str, int] = field(default_factory=dict)  # "table.column" -> rows overwritten
    suppression_hash: str = ""


def forget_key(email: str) -> str:
    """The form the address is stored and hashed under (lowercased, normalized when it is valid)."""
    text = email.strip()
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return text.lower()


def forget(session: Session, email: str, *, secret_key: str) -> ForgetResult:
    """Erase the person everywhere and leave only a keyed-hash suppression; verified before returning."""
    key = forget_key(email)
    if "@" not in key:
        raise ErasureError(f"'{email.strip()}' is not an email address")
    deleted: dict[str, int] = {}
    prospect_id = session.scalar(select(Prospect.id).where(Prospect.email_normalized == key))
    if prospect_id is not None:
        deleted.update(_delete_person(session, prospect_id))
    deleted.update(_delete_inbound_from(session, key))
    suppression_hash = _keep_keyed_hash(session, key, secret_key, deleted)
    scrubbed = scrub_everywhere(session, key, {email.strip(), key})
    remaining = find_plaintext(session, key)
    if remaining:
        raise ErasureError(f"the address is still present in {', '.join(remaining)}; nothing was erased")
    return ForgetResult(prospect_id is not None, {k: v for k, v in deleted.items() if v}, scrubbed, suppression_hash)


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _delete_person(session: Session, prospect_id: int) -> dict[str, int]:
    enrollments = select(Enrollment.id).where(Enrollment.prospect_id == prospect_id)
    touches = select(CommunicationLog.id).where(CommunicationLog.enrollment_id.in_(enrollments))
    counts = {
        "engagement_events": _count(
            session.execute(
                delete(EngagementEvent).where(
                    or_(
                        EngagementEvent.prospect_id == prospect_id,
                        EngagementEvent.enrollment_id.in_(enrollments),
                        EngagementEvent.communication_id.in_(touches),
                    )
                )
            )
        ),
        "response_analyses": _count(
            session.execute(
                delete(ResponseAnalysis).where(
                    or_(ResponseAnalysis.prospect_id == prospect_id, ResponseAnalysis.communication_id.in_(touches))
                )
            )
        ),
        "tasks": _count(
            session.execute(
                delete(Task).where(or_(Task.prospect_id == prospect_id, Task.communication_id.in_(touches)))
            )
        ),
    }
    counts["communication_log"] = _count(
        session.execute(delete(CommunicationLog).where(CommunicationLog.enrollment_id.in_(enrollments)))
    )
    counts["enrollments"] = _count(session.execute(delete(Enrollment).where(Enrollment.prospect_id == prospect_id)))
    for model in (ProspectListMember, ProspectTag, LeadQualification, LeadStageChange):
        table = model.__table__
        counts[table.name] = _count(session.execute(delete(model).where(table.c.prospect_id == prospect_id)))
    counts["prospects"] = _count(session.execute(delete(Prospect).where(Prospect.id == prospect_id)))
    return counts


def _delete_inbound_from(session: Session, key: str) -> dict[str, int]:
    """Unmatched replies and bounces from or about the person carry no prospect id: found by address."""
    result = session.execute(
        delete(ResponseAnalysis).where(
            or_(func.lower(ResponseAnalysis.from_address) == key, func.lower(ResponseAnalysis.bounce_recipient) == key)
        )
    )
    return {"response_analyses (unmatched)": _count(result)}


def _keep_keyed_hash(session: Session, key: str, secret_key: str, deleted: dict[str, int]) -> str:
    digest = keyed_hash(key, secret_key)
    plain = session.execute(
        delete(Suppression).where(
            Suppression.kind == SuppressionKind.EMAIL,
            or_(func.lower(Suppression.value) == key, Suppression.value_hash == plain_hash(key)),
        )
    )
    deleted["suppressions (plain)"] = _count(plain)
    exists = session.scalar(
        select(Suppression.id).where(Suppression.kind == SuppressionKind.EMAIL, Suppression.value_hash == digest)
    )
    if exists is None:
        session.add(
            Suppression(kind=SuppressionKind.EMAIL, value=None, value_hash=digest, reason=SuppressionReason.FORGOTTEN)
        )
    session.flush()
    return digest


def _text_columns(table: Table) -> list[Any]:
    """Columns that can hold an address: strings, texts and JSON (enum columns are strings too: skipped)."""
    return [c for c in table.columns if isinstance(c.type, String | Text | JSON) and not isinstance(c.type, Enum)]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _patterns(needles: set[str]) -> list[str]:
    """LIKE patterns for the address as text and as it appears inside JSON (non-ASCII escaped)."""
    forms = {n.lower() for n in needles} | {json.dumps(n.lower())[1:-1] for n in needles}
    return [f"%{_like_escape(f)}%" for f in sorted(forms) if f]


def _mentions(session: Session, table: Table, patterns: list[str]) -> list[tuple[list[Any], dict[str, Any]]]:
    """Rows of `table` where any text column mentions a pattern: (primary key values, {column: value})."""
    columns = _text_columns(table)
    if not columns:
        return []
    pk = list(table.primary_key.columns)
    condition = or_(*(func.lower(cast(c, Text)).like(p, escape="\\") for c in columns for p in patterns))
    rows = session.execute(select(*pk, *columns).where(condition))
    return [(list(r[: len(pk)]), dict(zip([c.name for c in columns], r[len(pk) :], strict=True))) for r in rows]


def _contains(value: Any, needles: set[str]) -> bool:
    if value is None:
        return False
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    lowered = text.lower()
    return any(n in lowered for n in needles)


def find_plaintext(session: Session, email: str) -> list[str]:
    """'table.column' for every place the address still appears (case-insensitive)."""
    session.flush()
    needle = email.strip().lower()
    found = []
    for table in Base.metadata.sorted_tables:
        hits = {
            name
            for _ids, values in _mentions(session, table, _patterns({needle}))
            for name, value in values.items()
            if _contains(value, {needle, json.dumps(needle)[1:-1]})
        }
        found.extend(f"{table.name}.{name}" for name in sorted(hits))
    return found


def scrub_everywhere(session: Session, key: str, needles: set[str]) -> dict[str, int]:
    """Overwrite remaining mentions (other people's rows) with a marker; JSON values are edited in place."""
    session.flush()
    lowered = {n.lower() for n in needles | {key} if n}
    scrubbed: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        for ids, values in _mentions(session, table, _patterns(lowered)):
            changes = {name: _redact(v, lowered) for name, v in values.items() if _contains(v, lowered)}
            if not changes:
                continue
            session.execute(update(table).where(*(c == v for c, v in zip(pk, ids, strict=True))).values(changes))
            for name in changes:
                scrubbed[f"{table.name}.{name}"] = scrubbed.get(f"{table.name}.{name}", 0) + 1
    session.flush()
    return scrubbed


def _redact(value: Any, needles: set[str]) -> Any:
    if isinstance(value, str):
        for needle in sorted(needles, key=len, reverse=True):
            value = re.sub(re.escape(needle), REDACTED, value, flags=re.IGNORECASE)
        return value
    if isinstance(value, dict):
        return {_redact(k, needles): _redact(v, needles) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, needles) for v in value]
    return value
