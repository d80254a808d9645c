"""API keys: created once, stored only as a hash, looked up by a public prefix, revoked for good.

A key reads `ok_<8 hex>.<43 random characters>`: the part before the dot is the prefix, stored in the
clear so a person can tell keys apart and the service can find the row with one indexed lookup; the
whole key is stored as SHA-256 (a plain fast hash is right for 256-bit random secrets — there is
nothing to brute-force) and compared with hmac.compare_digest. The key itself is returned once, at
creation, and never again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.enums import ApiScope
from db.models import ApiKey
from db.types import utcnow
from outreach.errors import OutreachError

KEY_PREFIX = "ok_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # writing last_used_at on every request would serialize reads
_MAX_KEY_LENGTH = 200


class ApiKeyError(OutreachError):
    """An API key cannot be created or revoked as asked."""


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never the key or its hash."""

    id: int
    name: str
    prefix: str
    scope: ApiScope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class CreatedApiKey:
    info: ApiKeyInfo
    key: str  # shown once; not recoverable afterwards


@dataclass(frozen=True)
class Authenticated:
    key_id: int
    name: str
    scope: ApiScope


class KeyRejectedError(OutreachError):
    """Authentication failed; `status` is 401 (no such key) or 403 (revoked)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(row.id, row.name, row.prefix, row.scope, row.created_at, row.last_used_at, row.revoked_at)


def create_api_key(
    session: Session, name: str, scope: ApiScope | str = ApiScope.READ, *, user_id: int | None = None
) -> CreatedApiKey:
    """A new key with a read or write scope; the returned `key` is the only time it is visible."""
    clean = " ".join(name.split())
    if not clean or len(clean) > 100:
        raise ApiKeyError("API key name: give it a name of 1 to 100 characters (what uses the key)")
    try:
        chosen = ApiScope(scope)
    except ValueError:
        raise ApiKeyError(f"API key scope: '{scope}' is not a scope; use read or write") from None
    prefix = KEY_PREFIX + secrets.token_hex(4)
    while session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is not None:
        prefix = KEY_PREFIX + secrets.token_hex(4)
    key = f"{prefix}.{secrets.token_urlsafe(32)}"
    row = ApiKey(name=clean, prefix=prefix, key_hash=hash_key(key), scope=chosen, user_id=user_id)
    session.add(row)
    session.flush()
    return CreatedApiKey(_info(row), key)


def list_api_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKeyInfo]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [_info(row) for row in session.scalars(query)]


def revoke_api_key(session: Session, prefix: str, *, now: datetime | None = None) -> ApiKeyInfo:
    """Revoke for good (a revoked key answers 403 from then on). Revoking twice is harmless."""
    wanted = prefix.strip().split(".", 1)[0]  # a pasted whole key works too
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == wanted))
    if row is None:
        raise ApiKeyError(f"no API key with prefix '{wanted}'; `outreach apikey list` shows them")
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        session.flush()
    return _info(row)


def authenticate(session: Session, presented: str | None, *, now: datetime | None = None) -> Authenticated:
    """The key's identity and scope, or KeyRejectedError (401 unknown, 403 revoked)."""
    key = (presented or "").strip()
    if not key:
        raise KeyRejectedError("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'", 401)
    prefix, dot, _secret = key.partition(".")
    row = None
    if dot and len(key) <= _MAX_KEY_LENGTH and prefix.startswith(KEY_PREFIX):
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    # Hash and compare even when no row matched, so timing does not tell which prefixes exist.
    expected = row.key_hash if row is not None else hash_key("no key")
    if not hmac.compare_digest(hash_key(key), expected) or row is None:
        raise KeyRejectedError("the API key is not valid", 401)
    if row.revoked_at is not None:
        raise KeyRejectedError(f"the API key {row.prefix} was revoked", 403)
    moment = now or utcnow()
    if row.last_used_at is None or moment - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = moment
        session.flush()
    return Authenticated(row.id, row.name, row.scope)
