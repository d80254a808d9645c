from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from db.enums import UserRole
from db.models import User
from outreach.errors import OutreachError
from outreach.users import MAX_FAILED_LOGINS, authenticate, create_user, ensure_admin, list_users

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_passwords_are_stored_hashed(session) -> None:
    create_user(session, "dana", "correct horse battery")
    stored = session.scalar(select(User.password_hash).where(User.username == "dana"))
    assert "correct horse" not in stored and stored.startswith("$argon2")


def test_login_accepts_the_right_password_only(session) -> None:
    create_user(session, "dana", "correct horse battery")
    assert authenticate(session, "dana", "wrong password!", NOW) is None
    user = authenticate(session, "DANA", "correct horse battery", NOW)
    assert user is not None and user.username == "dana" and user.last_login_at == NOW


def test_repeated_failures_lock_the_account(session) -> None:
    create_user(session, "dana", "correct horse battery")
    for _ in range(MAX_FAILED_LOGINS):
        assert authenticate(session, "dana", "nope nope nope", NOW) is None
    assert authenticate(session, "dana", "correct horse battery", NOW + timedelta(seconds=10)) is None
    assert authenticate(session, "dana", "correct horse battery", NOW + timedelta(minutes=6)) is not None


def test_usernames_are_unique_case_insensitively(session) -> None:
    create_user(session, "dana", "correct horse battery")
    with pytest.raises(OutreachError, match="already taken"):
        create_user(session, "Dana", "another long password")


def test_short_passwords_and_odd_usernames_are_refused(session) -> None:
    with pytest.raises(OutreachError, match="at least 10"):
        create_user(session, "sam", "short")
    with pytest.raises(OutreachError, match="username"):
        create_user(session, "<script>", "long enough password")


def test_first_admin_from_environment(session) -> None:
    assert ensure_admin(session, "from-env-password") is None
    [admin] = list_users(session)
    assert admin.role is UserRole.ADMIN
    assert authenticate(session, "admin", "from-env-password", NOW) is not None
    assert ensure_admin(session, "other-password-x") is None  # only on first run
    assert len(list_users(session)) == 1


def test_first_admin_with_generated_password(session) -> None:
    generated = ensure_admin(session, None)
    assert generated and len(generated) >= 12
    assert authenticate(session, "admin", generated, NOW) is not None


def test_change_password_needs_the_current_one(session) -> None:
    from outreach.users import change_password

    user = create_user(session, "dana", "correct horse battery")
    with pytest.raises(OutreachError, match="current password"):
        change_password(session, user.id, "wrong one", "a brand new password")
    with pytest.raises(OutreachError, match="at least 10"):
        change_password(session, user.id, "correct horse battery", "short")
    change_password(session, user.id, "correct horse battery", "a brand new password")
    assert authenticate(session, "dana", "a brand new password", NOW) is not None


def test_deactivated_user_is_not_active(session) -> None:
    from outreach.users import get_active_user

    user = create_user(session, "dana", "correct horse battery")
    assert get_active_user(session, user.id) == user
    session.get(User, user.id).is_active = False
    assert get_active_user(session, user.id) is None
