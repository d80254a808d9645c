"""Settings: the workspace's configuration, whether a worker is running, mailboxes and users.

Secrets are never shown: the database password is redacted, the secret key appears only as where it
comes from, and mailbox passwords are only the names of the environment variables that hold them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from db.engine import transaction
from db.enums import UserRole
from outreach import workspace
from outreach.config import load_settings
from outreach.errors import OutreachError
from outreach.users import MIN_PASSWORD_LENGTH, change_password, create_user, list_users

engine = st.session_state.get("engine")
user = st.session_state.get("user")
if engine is None or user is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Settings")

# --- workspace -----------------------------------------------------------------------------------
st.subheader("Workspace")
info = workspace.workspace_info(load_settings())
st.dataframe(
    [
        {"setting": "Data directory (OUTREACH_DATA_DIR)", "value": info.data_dir},
        {"setting": "Database (OUTREACH_DATABASE_URL)", "value": info.database},
        {"setting": "Tracking links (OUTREACH_BASE_URL)", "value": info.base_url},
        {"setting": "Captured mail", "value": info.capture_dir},
        {"setting": "Secret key", "value": info.secret_key_source},
    ],
    hide_index=True,
    width="stretch",
)

# --- worker --------------------------------------------------------------------------------------
st.subheader("Worker")
with transaction(engine, readonly=True) as session:
    workers = workspace.worker_statuses(session, datetime.now(UTC))
alive = [w for w in workers if w.alive]
if not workers:
    st.warning("No worker has run yet: start it with `outreach up` or `outreach worker`.")
elif alive:
    st.success(f"Worker alive, last seen {alive[0].seconds_ago}s ago ({len(alive)} running).")
else:
    st.error(
        f"No worker is running: the last one was seen {workers[0].seconds_ago}s ago. "
        "Start one with `outreach up` or `outreach worker`."
    )
if workers:
    st.dataframe(
        [
            {
                "worker": w.worker_id,
                "host": w.hostname,
                "pid": w.pid,
                "started": w.started_at,
                "last seen": w.last_seen_at,
                "alive": w.alive,
            }
            for w in workers
        ],
        hide_index=True,
        width="stretch",
    )

# --- mailboxes -----------------------------------------------------------------------------------
st.subheader("Mailboxes")
with transaction(engine, readonly=True) as session:
    mailboxes = workspace.mailbox_rows(session)
if mailboxes:
    st.dataframe(mailboxes, hide_index=True, width="stretch")
    st.caption("Passwords stay in the environment variables named here; they are never stored or shown.")
else:
    st.info(
        "No mailboxes yet, so nothing reaches a real person: "
        "`outreach up` sends mail to the local capture SMTP server, shown under Inbox & Tasks."
    )

# --- users ---------------------------------------------------------------------------------------
st.subheader("Users")
users_table = st.empty()  # filled after the form, so a user added just now is listed
if user.role == UserRole.ADMIN:
    with st.form("add_user", clear_on_submit=True):
        st.markdown("**Add a user**")
        left, right = st.columns(2)
        new_name = left.text_input("Username", autocomplete="off")
        role = right.selectbox("Role", list(UserRole), index=list(UserRole).index(UserRole.MEMBER))
        password = left.text_input(
            "Password", type="password", autocomplete="new-password", help=f"At least {MIN_PASSWORD_LENGTH} characters"
        )
        confirm = right.text_input("Confirm password", type="password", autocomplete="new-password")
        submitted = st.form_submit_button("Add user", type="primary")
    if submitted:
        if password != confirm:
            st.error("password: the two passwords differ")
        else:
            try:
                with transaction(engine) as session:
                    added = create_user(session, new_name, password, role)
            except OutreachError as exc:
                st.error(str(exc))
            else:
                st.success(f"Added {added.role} {added.username}.")

with transaction(engine, readonly=True) as session:
    users = list_users(session)
users_table.dataframe(
    [
        {
            "username": u.username,
            "role": str(u.role),
            "active": u.is_active,
            "created": u.created_at,
            "last login": u.last_login_at,
        }
        for u in users
    ],
    hide_index=True,
    width="stretch",
)

# --- your password -------------------------------------------------------------------------------
st.subheader("Your password")
with st.form("change_password", clear_on_submit=True):
    current_pw = st.text_input("Current password", type="password", autocomplete="current-password")
    new_pw = st.text_input(
        "New password", type="password", autocomplete="new-password", help=f"At least {MIN_PASSWORD_LENGTH} characters"
    )
    again_pw = st.text_input("Confirm new password", type="password", autocomplete="new-password")
    change = st.form_submit_button("Change password")
if change:
    if new_pw != again_pw:
        st.error("new password: the two passwords differ")
    else:
        try:
            with transaction(engine) as session:
                change_password(session, user.id, current_pw, new_pw)
        except OutreachError as exc:
            st.error(str(exc))
        else:
            st.success("Password changed.")
