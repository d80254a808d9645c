"""Settings: the workspace's configuration, whether a worker is running, mailboxes, postal address and users.

Secrets are never shown: the database password is redacted, the secret key appears only as where it
comes from, and mailbox passwords are only the names of the environment variables that hold them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from db.engine import transaction
from db.enums import MailboxState, TlsMode, UserRole
from outreach import workspace
from outreach.config import load_settings
from outreach.errors import OutreachError
from outreach.mailbox_actions import (
    check_mailbox_connection,
    password_env_is_set,
    pause_mailbox,
    resume_mailbox,
    send_test_email,
)
from outreach.mailboxes import ADVISED_MAX_DAILY, DEFAULT_DAILY_LIMIT, DEFAULT_PER_MINUTE, MailboxSpec, save_mailbox
from outreach.settings_store import get_postal_address, set_postal_address
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
NEW_MAILBOX = "(new)"  # mailbox names cannot contain parentheses, so this never names a real one
FLAG_LABELS = {
    "--from": "From address",
    "--smtp-host": "SMTP host",
    "--smtp-port": "SMTP port",
    "--imap-port": "IMAP port",
    "--password-env": "Password environment variable",
    "--user": "SMTP user",
    "--daily-limit": "Daily limit",
    "--per-minute": "Per minute",
    "--tls none": "TLS none",
}


def _in_words(message: str) -> str:
    """outreach.mailboxes speaks in CLI flags; here the fields have labels."""
    for flag, label in FLAG_LABELS.items():
        message = message.replace(flag, label)
    return message


def _mailbox_action(action: str, name: str) -> None:
    try:
        with transaction(engine) as session:
            if action == "pause":
                pause_mailbox(session, name)
            else:
                resume_mailbox(session, name)
    except OutreachError as exc:
        st.session_state["mailbox_flash"] = ("error", str(exc))
        return
    verb = "paused: nothing is sent through it" if action == "pause" else "active again"
    st.session_state["mailbox_flash"] = ("success", f"Mailbox {name} is {verb}.")


def _mailbox_form(current: workspace.MailboxView | None) -> None:
    """Add or edit one mailbox through outreach.mailboxes.save_mailbox (what `outreach mailbox add` calls)."""
    tag = current.name if current else NEW_MAILBOX
    tls_modes = list(TlsMode)
    with st.form(f"mailbox_form:{tag}"):
        st.markdown(f"**{'Edit mailbox ' + current.name if current else 'Add a mailbox'}**")
        left, right = st.columns(2)
        name = left.text_input(
            "Name", value=current.name if current else "", disabled=current is not None, key=f"mailbox_name:{tag}",
            help="Campaigns list their mailboxes by this name: letters, digits, '.', '_' or '-'.",
        )  # fmt: skip
        from_address = right.text_input(
            "From address", value=current.from_address if current else "", key=f"mailbox_from:{tag}"
        )
        from_name = left.text_input(
            "From name", value=(current.from_name or "") if current else "", key=f"mailbox_from_name:{tag}"
        )
        smtp_user = right.text_input(
            "SMTP user", value=(current.smtp_user or "") if current else "", key=f"mailbox_user:{tag}"
        )
        host, port, tls = st.columns([3, 1, 1])
        smtp_host = host.text_input("SMTP host", value=current.smtp_host if current else "", key=f"mailbox_host:{tag}")
        smtp_port = port.number_input(
            "SMTP port", min_value=1, max_value=65535, step=1, value=current.smtp_port if current else 587,
            key=f"mailbox_port:{tag}",
        )  # fmt: skip
        tls_mode = tls.selectbox(
            "TLS", tls_modes, index=tls_modes.index(current.tls if current else TlsMode.STARTTLS),
            key=f"mailbox_tls:{tag}",
        )  # fmt: skip
        password_env = st.text_input(
            "Password environment variable (its name, not the password)",
            value=(current.password_env or "") if current else "", key=f"mailbox_password_env:{tag}",
            placeholder="SALES1_SMTP_PASSWORD",
        )  # fmt: skip
        st.caption(
            "The password is never stored or shown. Put it in an environment variable on the machine that runs "
            "Outreach (the worker sends with it; the dashboard's tests use it too), e.g. "
            "`export SALES1_SMTP_PASSWORD='…'` before `outreach up`, and enter only the variable's name here."
        )
        imap_host, imap_port = st.columns([3, 1])
        imap = imap_host.text_input(
            "IMAP host for replies (optional)", value=(current.imap_host or "") if current else "",
            key=f"mailbox_imap_host:{tag}",
        )  # fmt: skip
        imap_port_value = imap_port.number_input(
            "IMAP port", min_value=1, max_value=65535, step=1, value=current.imap_port if current else None,
            key=f"mailbox_imap_port:{tag}",
        )  # fmt: skip
        daily, per_minute = st.columns(2)
        daily_limit = daily.number_input(
            "Daily limit", min_value=1, step=1, value=current.daily_limit if current else DEFAULT_DAILY_LIMIT,
            key=f"mailbox_daily:{tag}",
            help=f"Counted over the last 24 hours. Cold mailboxes should stay at or under {ADVISED_MAX_DAILY} a day.",
        )  # fmt: skip
        minute_limit = per_minute.number_input(
            "Per minute", min_value=1, step=1, value=current.per_minute if current else DEFAULT_PER_MINUTE,
            key=f"mailbox_per_minute:{tag}",
        )  # fmt: skip
        submitted = st.form_submit_button("Save mailbox", type="primary")
    if not submitted:
        return
    spec = MailboxSpec(
        name=current.name if current else name.strip(), from_address=from_address.strip(),
        smtp_host=smtp_host.strip(), smtp_port=int(smtp_port), user=smtp_user.strip() or None,
        password_env=password_env.strip() or None, tls=TlsMode(tls_mode), from_name=from_name.strip() or None,
        imap_host=imap.strip() or None, imap_port=int(imap_port_value) if imap.strip() and imap_port_value else None,
        daily_limit=int(daily_limit), per_minute=int(minute_limit),
    )  # fmt: skip
    try:
        with transaction(engine) as session:
            saved = save_mailbox(session, spec)
    except OutreachError as exc:
        st.error(_in_words(str(exc)))
        return
    verb = "Added" if saved.created else "Saved"
    notes = "".join(f" Note: {_in_words(w)}." for w in saved.warnings)
    st.session_state["mailbox_flash"] = (
        "warning" if saved.warnings else "success",
        f"{verb} mailbox {saved.name}.{notes}",
    )
    st.session_state["mailbox_choice_next"] = saved.name
    st.rerun()


def _mailbox_status(box: workspace.MailboxView, can_act: bool) -> None:
    """Health, pause / resume, and the two checks an operator runs before trusting a mailbox."""
    st.text(f"Mailbox {box.name}: {box.state}" + (f" — {box.paused_reason}" if box.paused_reason else ""))
    if box.consecutive_failures or box.last_error:
        st.text(f"Failed connections in a row: {box.consecutive_failures}")
        if box.last_error:
            st.text(f"Last error: {box.last_error}")
    env_set = password_env_is_set(box.password_env)
    if env_set is False:
        st.warning(
            f"The environment variable {box.password_env} is not set for this dashboard: set it before starting "
            "Outreach, or sending and the tests below cannot log in."
        )
    if not can_act:
        return
    pause_col, test_col = st.columns(2)
    if box.state is MailboxState.ACTIVE:
        pause_col.button("Pause mailbox", key="mailbox_pause", on_click=_mailbox_action, args=("pause", box.name))
    else:
        pause_col.button("Resume mailbox", key="mailbox_resume", on_click=_mailbox_action, args=("resume", box.name))
    if test_col.button("Test connection", key="mailbox_test_connection"):
        try:
            with transaction(engine, readonly=True) as session:
                answer = check_mailbox_connection(session, box.name)
        except OutreachError as exc:
            st.error(f"Connection test failed: {exc}")
        else:
            st.success(f"Connected and logged in: {answer}")
    to_col, send_col = st.columns([3, 1])
    to_address = to_col.text_input(
        "Send a test email to", key="mailbox_test_to", placeholder="you@yourcompany.com",
        help="An address you can read: one short message goes out through this mailbox.",
    )  # fmt: skip
    if send_col.button("Send test email", key="mailbox_send_test"):
        try:
            with transaction(engine, readonly=True) as session:
                sent = send_test_email(session, box.name, to_address, datetime.now(UTC))
        except OutreachError as exc:
            st.error(f"Test email not sent: {exc}")
        else:
            st.success(f"Sent to {sent.to_address} (server: {sent.server_reply}; Message-ID {sent.message_id}).")


st.subheader("Mailboxes")
with transaction(engine, readonly=True) as session:
    mailboxes = workspace.mailbox_rows(session)
if mailboxes:
    st.dataframe(mailboxes, hide_index=True, width="stretch")
    st.caption("Passwords stay in the environment variables named here; they are never stored or shown.")
    busy = [m["name"] for m in mailboxes if m["daily limit"] > ADVISED_MAX_DAILY]
    if busy:
        st.warning(
            f"Daily limit above {ADVISED_MAX_DAILY} for {', '.join(busy)}: cold mailboxes sending more than that "
            "a day risk the spam folder (Instantly, lemlist and Smartlead advise staying at or under it)."
        )
else:
    st.info(
        "No mailboxes yet, so nothing reaches a real person: "
        "`outreach up` sends mail to the local capture SMTP server, shown under Inbox & Tasks."
    )
kind, message = st.session_state.pop("mailbox_flash", (None, None))
if message:
    {"success": st.success, "warning": st.warning, "error": st.error}[kind](message)
if "mailbox_choice_next" in st.session_state:
    st.session_state["mailbox_choice"] = st.session_state.pop("mailbox_choice_next")
names = [m["name"] for m in mailboxes]
is_admin = user.role == UserRole.ADMIN
choices = [NEW_MAILBOX, *names] if is_admin else names
if choices:
    choice = st.selectbox(
        "Mailbox", choices, key="mailbox_choice",
        format_func=lambda n: "Add a new mailbox" if n == NEW_MAILBOX else n,
    )  # fmt: skip
    with transaction(engine, readonly=True) as session:
        current = workspace.mailbox_view(session, choice) if choice != NEW_MAILBOX else None
    if current is not None:
        _mailbox_status(current, is_admin)
    if is_admin:
        _mailbox_form(current)

# --- postal address ------------------------------------------------------------------------------
st.subheader("Postal address")
st.caption(
    "Every marketing message carries the sender's postal address in its footer (CAN-SPAM). Campaigns without "
    "their own `postal_address` use this one; launch is blocked while neither is set."
)
with transaction(engine, readonly=True) as session:
    address = get_postal_address(session)
if is_admin:
    with st.form("postal_address_form"):
        new_address = st.text_area(
            "Postal address", value=address or "", key="postal_address_text",
            placeholder="Outreach Inc\n1 Main St\nSpringfield, IL 62701\nUSA",
        )  # fmt: skip
        save_address = st.form_submit_button("Save address")
    if save_address:
        try:
            with transaction(engine) as session:
                stored = set_postal_address(session, new_address)
        except OutreachError as exc:
            st.error(str(exc))
        else:
            st.success("Postal address saved." if stored else "Postal address removed.")
elif address:
    st.text(address)
else:
    st.info("No postal address yet: an admin sets it here.")

# --- users ---------------------------------------------------------------------------------------
st.subheader("Users")
users_table = st.empty()  # filled after the form, so a user added just now is listed
if is_admin:
    with st.form("add_user", clear_on_submit=True):
        st.markdown("**Add a user**")
        left, right = st.columns(2)
        new_name = left.text_input("Username", autocomplete="off", key="new_user_name")
        role = right.selectbox("Role", list(UserRole), index=list(UserRole).index(UserRole.MEMBER), key="new_user_role")
        password = left.text_input(
            "Password", type="password", autocomplete="new-password", key="new_user_password",
            help=f"At least {MIN_PASSWORD_LENGTH} characters",
        )  # fmt: skip
        confirm = right.text_input(
            "Confirm password", type="password", autocomplete="new-password", key="new_user_confirm"
        )
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
