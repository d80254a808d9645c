"""Settings: the workspace's configuration, whether a worker is running, mailboxes, postal address and users.

Secrets are never shown: the database password is redacted, the secret key appears only as where it
comes from, and mailbox passwords are only the names of the environment variables that hold them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from db.engine import transaction
from db.enums import ApiScope, MailboxState, TlsMode, UserRole, WebhookDeliveryState
from outreach import workspace
from outreach.api_keys import create_api_key, list_api_keys, revoke_api_key
from outreach.config import load_settings
from outreach.dkim import DEFAULT_SELECTOR, dns_records_view, generate_key, import_key
from outreach.errors import OutreachError
from outreach.mailbox_actions import (
    check_mailbox_connection,
    password_env_is_set,
    pause_mailbox,
    resume_mailbox,
    send_test_email,
)
from outreach.mailbox_health import HealthThresholds, get_thresholds, mailbox_health, set_thresholds
from outreach.mailboxes import ADVISED_MAX_DAILY, DEFAULT_DAILY_LIMIT, DEFAULT_PER_MINUTE, MailboxSpec, save_mailbox
from outreach.ramp import RAMP_NONE, Ramp, mailbox_ramp, ramp_rows, set_ramp
from outreach.settings_store import get_postal_address, set_postal_address
from outreach.users import MIN_PASSWORD_LENGTH, change_password, create_user, list_users
from outreach.webhooks import (
    EVENTS,
    TEST_EVENT,
    WebhookInfo,
    create_webhook,
    delete_webhook,
    list_deliveries,
    list_webhooks,
    rotate_webhook_secret,
    send_test,
    set_webhook_active,
)

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
                moved = pause_mailbox(session, name, now=datetime.now(UTC)).in_words()
                verb = f"paused: nothing is sent through it. {moved[:1].upper()}{moved[1:]}"
            else:
                resume_mailbox(session, name, datetime.now(UTC))
                verb = "active again."
    except OutreachError as exc:
        st.session_state["mailbox_flash"] = ("error", str(exc))
        return
    st.session_state["mailbox_flash"] = ("success", f"Mailbox {name} is {verb}")


def current_ramp(name: str) -> Ramp | None:
    with transaction(engine, readonly=True) as session:
        return mailbox_ramp(session, name)


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
        ramp = current_ramp(current.name) if current else None
        ramp_start_col, ramp_step_col, ramp_day_col = st.columns(3)
        ramp_start = ramp_start_col.number_input(
            "Ramp-up: first day's sends (0 = no ramp)", min_value=0, step=1, value=ramp.start if ramp else 0,
            key=f"mailbox_ramp_start:{tag}",
            help="A new mailbox starts small and adds sends each day until it reaches its daily limit.",
        )  # fmt: skip
        ramp_increment = ramp_step_col.number_input(
            "Ramp-up: sends added a day", min_value=0, step=1, value=ramp.increment if ramp else 5,
            key=f"mailbox_ramp_increment:{tag}",
        )  # fmt: skip
        ramp_from = ramp_day_col.date_input(
            "Ramp-up: first day (UTC)", value=ramp.started_on if ramp else datetime.now(UTC).date(),
            key=f"mailbox_ramp_from:{tag}",
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
            set_ramp(session, saved.name, int(ramp_start), int(ramp_increment), ramp_from, datetime.now(UTC))
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
    with transaction(engine, readonly=True) as session:
        ramps = ramp_rows(session, datetime.now(UTC))
    if any(r["ramp"] != RAMP_NONE for r in ramps):
        st.markdown("**Ramp-up** — today's effective daily limit of each mailbox")
        st.dataframe(ramps, hide_index=True, width="stretch")
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

# --- mailbox health ------------------------------------------------------------------------------
st.subheader("Mailbox health")
with transaction(engine, readonly=True) as session:
    limits = get_thresholds(session)
if is_admin:
    with st.form("health_thresholds"):
        st.markdown("**Thresholds for the automatic pause**")
        window_col, sample_col, auto_col = st.columns(3)
        window_days = window_col.number_input(
            "Window (days)", min_value=1, max_value=90, step=1, value=limits.window_days, key="health_window"
        )
        min_sends = sample_col.number_input(
            "Sends before judging", min_value=1, step=1, value=limits.min_sends, key="health_min_sends",
            help="A rate is judged only once a mailbox sent this many in the window: 1 bounce of 2 pauses nothing.",
        )  # fmt: skip
        auto_pause = auto_col.checkbox("Pause automatically", value=limits.auto_pause, key="health_auto_pause")
        bounce_col, failure_col, unsubscribe_col = st.columns(3)
        max_bounce = bounce_col.number_input(
            "Max bounce rate (%)", min_value=0.1, max_value=100.0, step=0.5, value=limits.max_bounce_rate * 100,
            key="health_max_bounce",
        )  # fmt: skip
        max_failure = failure_col.number_input(
            "Max failure rate (%)", min_value=0.1, max_value=100.0, step=0.5, value=limits.max_failure_rate * 100,
            key="health_max_failure",
        )  # fmt: skip
        max_unsubscribe = unsubscribe_col.number_input(
            "Max unsubscribe + complaint rate (%)", min_value=0.1, max_value=100.0, step=0.5,
            value=limits.max_unsubscribe_rate * 100, key="health_max_unsubscribe",
        )  # fmt: skip
        save_limits = st.form_submit_button("Save thresholds")
    if save_limits:
        wanted = HealthThresholds(
            int(window_days), int(min_sends), max_bounce / 100, max_failure / 100, max_unsubscribe / 100, auto_pause
        )
        try:
            with transaction(engine) as session:
                limits = set_thresholds(session, wanted)
        except OutreachError as exc:
            st.error(str(exc))
        else:
            st.success("Thresholds saved; the worker applies them at its next health check (every 2 minutes).")
st.caption(
    f"Over the last {limits.window_days} days, or since a mailbox was resumed. After {limits.min_sends} sends, a "
    f"bounce rate above {limits.max_bounce_rate:.1%}, a failure rate above {limits.max_failure_rate:.1%} or an "
    f"unsubscribe and complaint rate above {limits.max_unsubscribe_rate:.1%} "
    + ("pauses the mailbox automatically. " if limits.auto_pause else "is flagged here (automatic pause is off). ")
    + "A paused mailbox's prospects not contacted yet move to its campaigns' other active mailboxes; prospects "
    "already in a thread wait for it, so every follow-up comes from the address they already know."
)
with transaction(engine, readonly=True) as session:
    health = mailbox_health(session, datetime.now(UTC), limits)
if health:
    st.dataframe([h.as_row() for h in health], hide_index=True, width="stretch", key="mailbox_health_table")
    for box_health in health:
        if box_health.problems and box_health.state is MailboxState.ACTIVE:
            st.warning(f"Mailbox {box_health.name}: {box_health.verdict}")
        elif box_health.paused_reason:
            st.warning(f"Mailbox {box_health.name} is {box_health.state}: {box_health.paused_reason}")
else:
    st.info("No mailboxes yet, so there is no health to show.")

# --- DKIM ----------------------------------------------------------------------------------------
st.subheader("DKIM signing")
st.caption(
    "Mail from a domain with a key here is signed (From, To, Subject, Date, Message-ID, List-Unsubscribe, "
    "List-Unsubscribe-Post and the threading headers). Publish each domain's TXT record in its DNS, or receivers "
    "cannot check the signature. Private keys are stored encrypted with the workspace's secret key and never shown."
)


def _save_dkim_key() -> None:
    """Generate or import; runs before the page, so the pasted key can be wiped from the session right away."""
    state = st.session_state
    pem, state["dkim_pem"] = state.get("dkim_pem", ""), ""
    domain, selector, replace = state.get("dkim_domain", ""), state.get("dkim_selector", ""), state.get("dkim_replace")
    try:
        with transaction(engine) as session:
            now, keys = datetime.now(UTC), load_settings().secret_keys()
            if pem.strip():
                made = import_key(session, domain, pem, keys=keys, now=now, selector=selector, replace=bool(replace))
            else:
                made = generate_key(session, domain, keys=keys, now=now, selector=selector, replace=bool(replace))
    except OutreachError as exc:
        state["dkim_flash"] = ("error", str(exc))
        return
    verb = "imported" if made.source == "imported" else "generated (RSA 2048)"
    state["dkim_flash"] = ("success", f"DKIM key for {made.domain} {verb}. Publish its TXT record below.")


if is_admin:
    with st.form("dkim_form"):
        domain_col, selector_col = st.columns([3, 1])
        domain_col.text_input("Sending domain", key="dkim_domain", placeholder="yourcompany.com")
        selector_col.text_input("Selector", value=DEFAULT_SELECTOR, key="dkim_selector")
        st.text_area(
            "Private key to import (PEM); leave empty to generate a new RSA 2048 key", key="dkim_pem", height=120,
            help="Import the key your current sending tool signs with, so the record already in DNS keeps working.",
        )  # fmt: skip
        st.checkbox("Replace the domain's existing key", key="dkim_replace")
        st.form_submit_button("Generate or import key", on_click=_save_dkim_key)
    dkim_kind, dkim_message = st.session_state.pop("dkim_flash", (None, None))
    if dkim_message:
        (st.success if dkim_kind == "success" else st.error)(dkim_message)
with transaction(engine, readonly=True) as session:
    dkim_view = dns_records_view(session)
for record in dkim_view.records:
    st.text(f"{record.domain}: selector {record.selector}, RSA {record.key_bits} bits, {record.source}")
    st.code(record.zone_line, language=None)
    if record.key_bits < 2048:
        st.warning(f"{record.domain}: a {record.key_bits}-bit key; Gmail and Yahoo expect 2048 bits.")
if dkim_view.unsigned:
    st.info(f"Mail from {', '.join(dkim_view.unsigned)} goes out unsigned: generate or import a key for it.")
elif not dkim_view.records:
    st.info("No DKIM keys yet.")

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

# --- API keys & webhooks --------------------------------------------------------------------------
ANY = "(all)"


def _integration_action(action: str, target: int | str) -> None:
    """Revoke a key, or turn off / on, re-key, test or delete a webhook; the outcome shows on the next run."""
    secret = None
    try:
        with transaction(engine) as session:
            if action == "revoke":
                done = f"API key {revoke_api_key(session, str(target)).prefix} revoked: it is refused from now on."
            elif action in ("enable", "disable"):
                set_webhook_active(session, int(target), action == "enable")
                state = "is on again" if action == "enable" else "is off: nothing new is sent to it"
                done = f"Webhook {target} {state}."
            elif action == "rotate":
                secret = rotate_webhook_secret(session, int(target))
                done = f"Webhook {target} has a new signing secret; deliveries from now on are signed with it."
            elif action == "test":
                send_test(session, int(target))
                done = f"A test event is queued for webhook {target}; the worker delivers it within seconds."
            else:
                delete_webhook(session, int(target))
                done = f"Webhook {target} and its delivery log are deleted."
    except OutreachError as exc:
        st.session_state["integrations_flash"] = ("error", str(exc), None)
        return
    st.session_state.pop("webhook_delete_asked", None)
    st.session_state["integrations_flash"] = ("success", done, secret)


def _shown_once(label: str, secret: str) -> None:
    st.code(secret, language=None)
    st.caption(f"Copy the {label} now: it is shown this once and cannot be shown again.")


def _api_keys() -> None:
    st.markdown("**API keys**")
    st.caption("Scripts and other systems call `/api/v1` with `Authorization: Bearer <key>`. Keys are stored hashed.")
    if is_admin:
        with st.form("api_key_form", clear_on_submit=True):
            name_col, scope_col = st.columns([3, 1])
            key_name = name_col.text_input("Key name", key="api_key_name", placeholder="zapier, crm-sync …")
            scope = scope_col.selectbox(
                "Scope", [s.value for s in ApiScope], key="api_key_scope",
                help="read: list and show; write: also apply, launch, pause, import and suppress.",
            )  # fmt: skip
            create = st.form_submit_button("Create API key")
        if create:
            try:
                with transaction(engine) as session:
                    made = create_api_key(session, key_name, scope, user_id=user.id)
            except OutreachError as exc:
                st.error(str(exc))
            else:
                st.success(f"API key {made.info.prefix} ({made.info.scope}) created for {made.info.name}.")
                _shown_once("API key", made.key)
    with transaction(engine, readonly=True) as session:
        keys = list_api_keys(session)
    if not keys:
        st.info("No API keys yet.")
        return
    st.dataframe(
        [
            {"name": k.name, "prefix": k.prefix, "scope": str(k.scope), "created": k.created_at,
             "last used": k.last_used_at, "revoked": k.revoked_at}
            for k in keys
        ],
        hide_index=True, width="stretch", key="api_keys_table",
    )  # fmt: skip
    active = [k.prefix for k in keys if k.active]
    if is_admin and active:
        pick_col, revoke_col = st.columns([3, 1])
        prefix = pick_col.selectbox("Key to revoke", active, key="api_key_pick")
        revoke_col.button("Revoke key", key="api_key_revoke", on_click=_integration_action, args=("revoke", prefix))


def _webhook_actions(hooks: list[WebhookInfo]) -> None:
    by_id = {h.id: h for h in hooks}
    hook_id = st.selectbox("Webhook", list(by_id), key="webhook_pick", format_func=lambda i: f"{i} · {by_id[i].url}")
    hook = by_id[hook_id]
    cols = st.columns(4)
    toggle = "disable" if hook.is_active else "enable"
    cols[0].button(
        "Turn off" if hook.is_active else "Turn on", key="webhook_toggle", on_click=_integration_action,
        args=(toggle, hook_id),
    )  # fmt: skip
    cols[1].button("Rotate secret", key="webhook_rotate", on_click=_integration_action, args=("rotate", hook_id))
    cols[2].button("Send test", key="webhook_test", on_click=_integration_action, args=("test", hook_id))
    cols[3].button(
        "Delete…", key="webhook_delete",
        on_click=lambda: st.session_state.update(webhook_delete_asked=hook_id),
    )  # fmt: skip
    if st.session_state.get("webhook_delete_asked") == hook_id:
        st.warning(f"Delete webhook {hook_id} ({hook.url}) and its delivery log? This cannot be undone.")
        st.button(
            "Yes, delete it", key="webhook_delete_confirm", type="primary", on_click=_integration_action,
            args=("delete", hook_id),
        )  # fmt: skip


def _delivery_log(hooks: list[WebhookInfo]) -> None:
    st.markdown("**Delivery log**")
    hook_col, state_col, event_col = st.columns(3)
    hook_filter = hook_col.selectbox("Webhook", [ANY, *(h.id for h in hooks)], key="delivery_hook")
    state_filter = state_col.selectbox("State", [ANY, *(s.value for s in WebhookDeliveryState)], key="delivery_state")
    event_filter = event_col.selectbox("Event", [ANY, *EVENTS, TEST_EVENT], key="delivery_event")
    with transaction(engine, readonly=True) as session:
        deliveries = list_deliveries(
            session, webhook_id=None if hook_filter == ANY else int(hook_filter), limit=200,
            state=None if state_filter == ANY else state_filter, event=None if event_filter == ANY else event_filter,
        )  # fmt: skip
    if not deliveries:
        filtered = any(chosen != ANY for chosen in (hook_filter, state_filter, event_filter))
        st.info("No deliveries match." if filtered else "No deliveries yet: events are queued here as they happen.")
        return
    st.dataframe(
        [
            {"id": d.id, "webhook": d.webhook_id, "event": d.event, "state": str(d.state), "attempts": d.attempts,
             "next retry": d.next_attempt_at if d.state is WebhookDeliveryState.PENDING else None,
             "response code": d.last_status, "error": d.last_error or "", "queued": d.created_at,
             "delivered": d.delivered_at}
            for d in deliveries
        ],
        hide_index=True, width="stretch", key="deliveries_table",
    )  # fmt: skip


def _webhooks() -> None:
    st.markdown("**Webhooks**")
    st.caption(
        "Signed JSON events (HMAC-SHA256 over timestamp and body, header X-Outreach-Signature) to your CRM or "
        "automation; failed deliveries are retried with backoff."
    )
    if is_admin:
        with st.form("webhook_form", clear_on_submit=True):
            url = st.text_input("URL", key="webhook_url", placeholder="https://crm.example.com/hooks/outreach")
            events = st.multiselect("Events", list(EVENTS), default=list(EVENTS), key="webhook_events")
            add = st.form_submit_button("Add webhook")
        if add:
            try:
                with transaction(engine) as session:
                    made = create_webhook(session, url, events)
            except OutreachError as exc:
                st.error(str(exc))
            else:
                st.success(f"Webhook {made.webhook.id} added for {', '.join(made.webhook.events)}.")
                _shown_once("signing secret", made.secret)
    with transaction(engine, readonly=True) as session:
        hooks = list_webhooks(session)
    if not hooks:
        st.info("No webhooks yet.")
        return
    st.dataframe(
        [
            {"id": h.id, "url": h.url, "events": ", ".join(h.events), "on": h.is_active,
             "failures in a row": h.failure_count, "last response": h.last_status, "last delivery": h.last_delivery_at,
             "created": h.created_at}
            for h in hooks
        ],
        hide_index=True, width="stretch", key="webhooks_table",
    )  # fmt: skip
    if is_admin:
        _webhook_actions(hooks)
    _delivery_log(hooks)


st.subheader("API keys & webhooks")
kind, message, once = st.session_state.pop("integrations_flash", (None, None, None))
if message:
    (st.success if kind == "success" else st.error)(message)
    if once:
        _shown_once("new signing secret", once)
_api_keys()
_webhooks()

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
