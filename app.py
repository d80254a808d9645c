"""Streamlit entry: the schema check, the login gate and the navigation over pages/.

Streamlit runs this file on every interaction and the chosen page only through `page.run()` below, so
this is the one gate: until someone logs in, the only thing rendered is the login form. Pages find
the engine and the user in `st.session_state`, put there only after a successful login.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st
from sqlalchemy import Engine

from db.engine import transaction
from outreach.config import Settings, load_settings
from outreach.demo import is_demo
from outreach.errors import OutreachError
from outreach.runtime import open_engine, require_current_schema
from outreach.users import LOCKOUT, MAX_FAILED_LOGINS, authenticate, get_active_user
from outreach.workspace import count_users

WRONG_LOGIN = (
    f"Wrong username or password (accounts lock for {int(LOCKOUT.total_seconds() // 60)} minutes "
    f"after {MAX_FAILED_LOGINS} failures)."
)

st.set_page_config(page_title="Outreach", page_icon=":material/send:", layout="wide")


@st.cache_resource(show_spinner=False)
def _engine(database_url: str, _settings: Settings) -> Engine:
    """One engine (one connection pool) per database per process, shared by every browser session."""
    return open_engine(_settings)


def _checked_engine() -> Engine:
    """The engine, or an error on screen and a stopped run when the database is unusable or outdated."""
    try:
        settings = load_settings()
        engine = _engine(settings.database_url, settings)
        require_current_schema(engine)
    except OutreachError as exc:  # SchemaOutdatedError says to run `outreach db upgrade`
        st.error(str(exc))
        st.stop()
    return engine


def _login_form(engine: Engine) -> None:
    """Username and password; a failure says the same thing whether the user exists or not."""
    st.title("Outreach")
    with transaction(engine, readonly=True) as session:
        if count_users(session) == 0:
            st.info(
                "No users exist yet. Create the first one on the command line: "
                "`outreach user add NAME --password-env VARIABLE --admin` "
                "(`outreach up` creates `admin` by itself and prints its password once)."
            )
    with st.form("login", clear_on_submit=True):
        username = st.text_input("Username", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    with transaction(engine) as session:  # a failure updates the lockout counters: commit it
        user = authenticate(session, username, password, datetime.now(UTC))
    if user is None:
        st.error(WRONG_LOGIN)
        return
    st.session_state["user"] = user  # a UserView: never the password hash
    st.rerun()


def _sidebar() -> None:
    user = st.session_state["user"]
    st.sidebar.text(f"Signed in as {user.username} ({user.role})")
    if st.sidebar.button("Log out", icon=":material/logout:"):
        st.session_state.clear()
        st.rerun()


PAGES = [
    st.Page("pages/prospects.py", title="Prospects", icon=":material/group:"),
    st.Page("pages/campaigns.py", title="Campaigns", icon=":material/campaign:"),
    st.Page("pages/preview.py", title="Preview", icon=":material/preview:"),
    st.Page("pages/inbox.py", title="Inbox & Tasks", icon=":material/inbox:"),
    st.Page("pages/analytics.py", title="Analytics", icon=":material/bar_chart:"),
    st.Page("pages/experiments.py", title="Experiments", icon=":material/science:"),
    st.Page("pages/leads.py", title="Leads", icon=":material/star:"),
    st.Page("pages/settings.py", title="Settings", icon=":material/settings:"),
]

engine = _checked_engine()
if st.session_state.get("user") is None:
    # Registering the pages keeps a deep link (e.g. /campaigns) for after login, but none of them runs.
    st.navigation(PAGES, position="hidden")
    _login_form(engine)
    st.stop()

with transaction(engine, readonly=True) as session:  # deactivation and role changes apply at once
    fresh = get_active_user(session, st.session_state["user"].id)
    demo_workspace = is_demo(session)
if fresh is None:
    st.session_state.clear()
    st.rerun()
st.session_state["user"] = fresh
st.session_state["engine"] = engine
current = st.navigation(PAGES)
_sidebar()
if demo_workspace:  # `outreach demo` built this workspace: say so on every page, above its title
    st.sidebar.badge("DEMO", icon=":material/science:", color="orange")
    st.warning(
        "**DEMO workspace** — generated prospects and engagement, for trying the dashboard. Addresses end in "
        "`.example` and nothing here reaches a person. Your real workspace is a different data dir.",
        icon=":material/science:",
    )
current.run()
