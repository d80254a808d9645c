"""The never-contact list: addresses and whole domains.

An ordinary entry keeps its value in plain text (the operator needs to see whom they suppressed) and a
SHA-256 of it. A forgotten person (GDPR erasure) keeps no plain text at all: only an HMAC-SHA256 of the
address under the workspace secret key, so the list still blocks them but a leaked database cannot be
dictionary-searched for who they were. Every check therefore looks at the value, the plain hash and
the keyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.orm import Session

from db.enums import SuppressionKind, SuppressionReason
from db.models import Suppression
from outreach.errors import OutreachError


class SuppressionError(OutreachError):
    """An entry that is neither an email address nor a domain name."""


@dataclass(frozen=True)
class SuppressionEntry:
    id: int
    kind: SuppressionKind
    value: str | None  # None once the person was forgotten
    reason: SuppressionReason
    source: str | None
    created_at: datetime


@dataclass(frozen=True)
class SuppressResult:
    added: int
    already: int
    entries: list[str]


def plain_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def keyed_hash(value: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


def normalize_entry(text: str) -> tuple[SuppressionKind, str]:
    """'Ann@Acme.com' -> (email, 'ann@acme.com'); '@acme.com' or 'acme.com' -> (domain, 'acme.com')."""
    value = text.strip().lower()
    if "@" in value.lstrip("@"):
        try:
            result = validate_email(value, check_deliverability=False)
        except EmailNotValidError as exc:
            raise SuppressionError(f"'{text.strip()}' is not a valid email address: {exc}") from None
        return SuppressionKind.EMAIL, result.normalized.lower()
    domain = value.lstrip("@").strip(".")
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        raise SuppressionError(f"'{text.strip()}' is neither an email address nor a domain name") from None
    return SuppressionKind.DOMAIN, result.domain.lower()


def parent_domains(domain: str) -> list[str]:
    """'mail.acme.com' -> ['mail.acme.com', 'acme.com']: suppressing a domain covers its subdomains."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def suppress(
    session: Session,
    entries: Iterable[str],
    *,
    reason: SuppressionReason = SuppressionReason.MANUAL,
    source: str | None = None,
) -> SuppressResult:
    """Add addresses or domains; ones already listed are counted, not duplicated. All or nothing."""
    normalized = [normalize_entry(e) for e in entries if e.strip()]
    added = already = 0
    seen: set[tuple[SuppressionKind, str]] = set()
    for kind, value in normalized:
        if (kind, value) in seen:
            continue
        seen.add((kind, value))
        exists = session.scalar(
            select(Suppression.id).where(Suppression.kind == kind, Suppression.value_hash == plain_hash(value))
        )
        if exists is not None:
            already += 1
            continue
        session.add(
            Suppression(kind=kind, value=value, value_hash=plain_hash(value), reason=reason, source=_cut(source))
        )
        added += 1
    session.flush()
    return SuppressResult(added=added, already=already, entries=[v for _, v in normalized])


def unsuppress(session: Session, entry: str) -> bool:
    """Remove a plain entry. Forgotten people cannot be removed this way (their value is not known)."""
    kind, value = normalize_entry(entry)
    result = session.execute(
        delete(Suppression).where(Suppression.kind == kind, Suppression.value_hash == plain_hash(value))
    )
    return bool(getattr(result, "rowcount", 0))


def is_suppressed(session: Session, email: str, secret_key: str) -> bool:
    """True when the address, its keyed hash, or its domain (or a parent domain) is on the list."""
    email_hashes, domain_hashes = suppression_hashes(email, secret_key)
    return session.scalar(select(Suppression.id).where(_matches(email_hashes, domain_hashes)).limit(1)) is not None


def suppression_hashes(email: str, secret_key: str) -> tuple[list[str], list[str]]:
    """The hashes a suppression of this address, or of its domain or a parent domain, is stored under."""
    key = email.strip().lower()
    domain = key.rpartition("@")[2]
    return [plain_hash(key), keyed_hash(key, secret_key)], ([plain_hash(d) for d in parent_domains(domain)] or [""])


def _matches(email_hashes: list[str], domain_hashes: list[str]) -> ColumnElement[bool]:
    return or_(
        (Suppression.kind == SuppressionKind.EMAIL) & Suppression.value_hash.in_(email_hashes),
        (Suppression.kind == SuppressionKind.DOMAIN) & Suppression.value_hash.in_(domain_hashes),
    )


def suppressed_among(session: Session, emails: Sequence[str], secret_key: str) -> set[str]:
    """The addresses (as given) that are suppressed, by address or (parent) domain: one query for a batch."""
    by_hash: dict[str, set[str]] = defaultdict(set)
    email_hashes: list[str] = []
    domain_hashes: list[str] = []
    for email in emails:
        mine, domains = suppression_hashes(email, secret_key)
        email_hashes += mine
        domain_hashes += domains
        for h in (*mine, *domains):
            by_hash[h].add(email)
    if not emails:
        return set()
    hits = session.scalars(select(Suppression.value_hash).where(_matches(email_hashes, domain_hashes)))
    return {email for h in hits for email in by_hash.get(h, ())}


def list_suppressions(
    session: Session, *, search: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[SuppressionEntry], int]:
    """A page of entries, newest first, with the total count (for the page's table)."""
    query = select(Suppression)
    if search:
        query = query.where(Suppression.value.ilike(f"%{_escape_like(search.strip().lower())}%", escape="\\"))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Suppression.id.desc()).limit(limit).offset(offset))
    entries = [SuppressionEntry(r.id, r.kind, r.value, r.reason, r.source, r.created_at) for r in rows]
    return entries, int(total)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _cut(text: str | None) -> str | None:
    return text[:300] if text else text


@dataclass
class SuppressionIndex:
    """The whole list loaded once per import, so a 100k-row file is checked without a query per row."""

    emails: set[str]
    domains: set[str]
    email_hashes: set[str]  # of entries without a value (forgotten people)
    secret_key: str

    @classmethod
    def load(cls, session: Session, secret_key: str) -> SuppressionIndex:
        emails: set[str] = set()
        domains: set[str] = set()
        hashes: set[str] = set()
        for kind, value, value_hash in session.execute(
            select(Suppression.kind, Suppression.value, Suppression.value_hash)
        ):
            if kind == SuppressionKind.DOMAIN:
                domains.add(value_hash)
            elif value:
                emails.add(value.lower())
            else:
                hashes.add(value_hash)
        return cls(emails, domains, hashes, secret_key)

    def mask(self, keys: Sequence[str | None]) -> list[bool]:
        """For each dedupe key (None = invalid row): is it suppressed?"""
        if not (self.emails or self.domains or self.email_hashes):
            return [False] * len(keys)
        emails = self.emails
        result = [key in emails for key in keys]
        keyed = hmac.new(self.secret_key.encode("utf-8"), digestmod=hashlib.sha256)  # keyed_hash, key set up once
        domain_cache: dict[str, bool] = {}
        for index, key in enumerate(keys):
            if key is None or result[index]:
                continue
            if self.email_hashes:
                digest = keyed.copy()
                digest.update(key.encode("utf-8"))
                if digest.hexdigest() in self.email_hashes or plain_hash(key) in self.email_hashes:
                    result[index] = True
                    continue
            if self.domains:
                domain = key.rpartition("@")[2]
                hit = domain_cache.get(domain)
                if hit is None:
                    hit = domain_cache[domain] = any(plain_hash(d) in self.domains for d in parent_domains(domain))
                result[index] = hit
        return result
