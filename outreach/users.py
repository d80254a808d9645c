"""Dashboard users: argon2 password hashes, login with lockout after repeated failures, first admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import UserRole
from db.models import User
from outreach.errors import OutreachError

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=5)
MIN_PASSWORD_LENGTH = 10
ADMIN_USERNAME = "admin"

_hasher = PasswordHasher()


@dataclass(frozen=True)
class UserView:
    """What pages may hold about a user: never the hash."""

    id: int
    username: str
    role: UserRole
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


def _view(user: User) -> UserView:
    return UserView(user.id, user.username, user.role, user.is_active, user.created_at, user.last_login_at)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_new_user(username: str, password: str) -> str:
    username = username.strip()
    if not username or len(username) > 64 or not all(c.isalnum() or c in "._-@" for c in username):
        raise OutreachError("username: use 1–64 letters, digits, '.', '_', '-' or '@'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OutreachError(f"password: use at least {MIN_PASSWORD_LENGTH} characters")
    return username


def create_user(session: Session, username: str, password: str, role: UserRole = UserRole.MEMBER) -> UserView:
    username = _check_new_user(username, password)
    if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None:
        raise OutreachError(f"username: '{username}' is already taken")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return _view(user)


def list_users(session: Session) -> list[UserView]:
    return [_view(u) for u in session.scalars(select(User).order_by(User.username))]


def authenticate(session: Session, username: str, password: str, now: datetime) -> UserView | None:
    """The user when the password matches; None otherwise. Locked accounts fail even with the right one."""
    user = session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
    if user is None or not user.is_active:
        _hasher.hash(password)  # spend the same time as a real check: no user enumeration by timing
        return None
    if user.locked_until is not None and user.locked_until > now:
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    return _view(user)


def ensure_admin(session: Session, password_from_env: str | None) -> str | None:
    """Create the first admin when there are no users. Returns the generated password to print once."""
    if session.scalar(select(func.count(User.id))):
        return None
    generated = None
    if not password_from_env:
        generated = password_from_env = secrets.token_urlsafe(12)
    create_user(session, ADMIN_USERNAME, password_from_env, UserRole.ADMIN)
    return generated


def get_active_user(session: Session, user_id: int) -> UserView | None:
    """Re-checked on every dashboard run, so deactivation and role changes apply at once."""
    user = session.get(User, user_id)
    return _view(user) if user is not None and user.is_active else None


def change_password(session: Session, user_id: int, current: str, new: str) -> None:
    user = session.get(User, user_id)
    if user is None:
        raise OutreachError("user not found")
    try:
        _hasher.verify(user.password_hash, current)
    except (VerificationError, InvalidHashError):
        raise OutreachError("current password: wrong password") from None
    if len(new) < MIN_PASSWORD_LENGTH:
        raise OutreachError(f"new password: use at least {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = hash_password(new)
