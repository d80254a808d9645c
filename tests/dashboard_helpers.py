"""Driving the dashboard through Streamlit's AppTest: pointing it at a test database, logging in, reading pages.

AppTest resets Streamlit's process-wide "serve the pages/ folder" flag before every run, so each run
looks like the first run after a server start, when Streamlit still runs page files directly.
`SteadyStatePagesManager` keeps the flag off after the reset, as it is in a server once app.py has run.
Test modules wrap `app_database` and `app_factory` in their own fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit.testing.v1.app_test as app_test_module
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from db.engine import make_engine, transaction
from db.enums import UserRole
from outreach.users import create_user

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
TIMEOUT = 60
PASSWORD = "correct horse battery"
PAGES = {
    "prospects": "Prospects",
    "campaigns": "Campaigns",
    "preview": "Preview",
    "inbox": "Inbox & Tasks",
    "analytics": "Analytics",
    "experiments": "Experiments",
    "leads": "Leads",
    "settings": "Settings",
}


class SteadyStatePagesManager(PagesManager):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        PagesManager.uses_pages_directory = False  # what app.py's st.navigation leaves behind in a server


def keep_steady_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_test_module, "PagesManager", SteadyStatePagesManager)


def app_database(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """Point the app at a migrated test database (SQLite or PostgreSQL); yields an engine to fill it."""
    url = db_url
    if make_url(db_url).get_backend_name() == "postgresql":
        url = make_url(db_url).set(password="pg-secret-pw").render_as_string(hide_password=False)  # trust auth
    monkeypatch.setenv("OUTREACH_DATABASE_URL", url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def app_factory() -> Callable[[], AppTest]:
    return lambda: AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def add_user(engine: Engine, username: str, role: UserRole = UserRole.ADMIN) -> None:
    with transaction(engine) as session:
        create_user(session, username, PASSWORD, role)


def button(at: AppTest, label: str) -> Any:
    [found] = [b for b in at.button if b.label == label]
    return found


def log_in(at: AppTest, username: str, password: str = PASSWORD) -> AppTest:
    username_box, password_box = at.text_input
    username_box.input(username)
    password_box.input(password)
    return button(at, "Log in").click().run()


def logged_in_app(make_app: Callable[[], AppTest], engine: Engine, role: UserRole = UserRole.ADMIN) -> AppTest:
    add_user(engine, "dana", role)
    at = make_app().run()
    log_in(at, "dana")
    assert at.session_state["user"].username == "dana"
    return at


def assert_ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"pages/{name}.py").run()
    assert_ok(at)
    assert [t.value for t in at.title] == [PAGES[name]]
    return at


def open_tab(at: AppTest, key: str, label: str) -> AppTest:
    """Select a tab of tabs that rerun on a switch (st.tabs(key=…, on_change="rerun")): only the open one is drawn."""
    at.session_state[key] = label
    return assert_ok(at.run())


def walk(node: Any) -> Iterator[Any]:
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def rendered(at: AppTest) -> list[Any]:
    """Every element and block of the last run, main area and sidebar."""
    return [node for block in (at.main, at.sidebar) for node in walk(block)]


def rendered_bytes(at: AppTest) -> bytes:
    """Everything the browser would receive for the page body, tables' Arrow data included."""
    return b"".join(n.proto.SerializeToString() for n in rendered(at) if getattr(n, "proto", None) is not None)


def texts(at: AppTest) -> str:
    parts = [
        e.value for kind in ("info", "warning", "success", "error", "caption", "markdown", "text") for e in at.get(kind)
    ]
    return "\n".join(str(p) for p in parts)
