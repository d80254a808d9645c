"""Workspace settings an operator edits in the dashboard, stored as AppSetting rows.

The sender's postal address is the one there is today: every marketing message's footer needs it
(CAN-SPAM, and the contract's compliance footer), and a campaign that does not set its own uses this one
(outreach.campaigns.postal_address reads it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from db.models import AppSetting
from outreach.campaigns import POSTAL_ADDRESS_SETTING
from outreach.errors import OutreachError

POSTAL_ADDRESS_MAX = 500


def get_postal_address(session: Session) -> str | None:
    """The workspace's postal address, or None when none is set."""
    setting = session.get(AppSetting, POSTAL_ADDRESS_SETTING)
    value = (setting.value or {}).get("value") if setting is not None else None
    return value if isinstance(value, str) and value.strip() else None


def set_postal_address(session: Session, text: str | None) -> str | None:
    """Store the address (one or more lines, trimmed); blank text removes it. Returns what is stored."""
    lines = [line.strip() for line in (text or "").splitlines()]
    value = "\n".join(line for line in lines if line)
    if any(ord(char) < 32 and char != "\n" for char in value):
        raise OutreachError("postal address: remove the control characters; use plain lines of text")
    if len(value) > POSTAL_ADDRESS_MAX:
        raise OutreachError(f"postal address: keep it under {POSTAL_ADDRESS_MAX} characters (it goes in every footer)")
    setting = session.get(AppSetting, POSTAL_ADDRESS_SETTING)
    if not value:
        if setting is not None:
            session.delete(setting)
        session.flush()
        return None
    if setting is None:
        session.add(AppSetting(key=POSTAL_ADDRESS_SETTING, value={"value": value}))
    else:
        setting.value = {"value": value}
    session.flush()
    return value


def get_setting(bind: Session | Connection, key: str) -> dict[str, Any] | None:
    """A JSON setting by key (None when unset); takes a Session or a bare Connection (the tracking writer)."""
    value = bind.scalar(select(AppSetting.value).where(AppSetting.key == key))
    return value if isinstance(value, dict) else None


def put_setting(session: Session, key: str, value: dict[str, Any] | None) -> None:
    """Store (or, with None, remove) a JSON setting; the caller's transaction commits it."""
    setting = session.get(AppSetting, key)
    if value is None:
        if setting is not None:
            session.delete(setting)
    elif setting is None:
        session.add(AppSetting(key=key, value=value))
    else:
        setting.value = value
    session.flush()
