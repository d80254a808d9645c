"""Campaigns: the list with state and progress, actions on one campaign, one-click launch, the designer, YAML.

The page only draws and calls: outreach.designer turns the form into a Definition (validated by
outreach.sequence, the same rules as the YAML), CampaignManager saves, checks, launches, pauses, resumes
and archives exactly as `outreach campaign …` does. Designer widgets are keyed by each step's and
variant's uid, so a value stays with its step when steps move. Only the open tab is read and drawn,
and the list's counts are cached for COUNTS_TTL_S (cleared by this page's actions): a rerun of a widget
does not recount every campaign's touches.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import plotly.express as px
import streamlit as st
from sqlalchemy import Engine

from db.engine import transaction
from db.enums import CampaignState, StepCondition, StepType
from outreach import campaign_views, designer, workspace
from outreach.campaigns import CampaignManager, LaunchCheck, definition_of, find_campaign
from outreach.config import load_settings
from outreach.errors import OutreachError
from outreach.mailbox_actions import checked_in_advance
from outreach.schedule import DAY_NAMES
from outreach.sequence import Definition, DefinitionError, Problem, StopTrigger, parse_definition, to_yaml
from outreach.simulate import Simulation, simulate

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

FORM = "designer_form"  # the designer's form dict (outreach.designer)
W = "dz_"  # prefix of the designer's value widgets: cleared when another campaign is loaded
FLASH = "campaigns_flash"
CHECK = "launch_check"
ARCHIVE_ASKED = "archive_asked"
TAB = "campaigns_tab"
TABS = ("Campaigns", "Designer", "Import YAML")
YAML_PROBLEMS = "yaml_problems"
KIND_ICONS = {"success": ":material/check_circle:", "error": ":material/error:"}
SIMULATION = "campaign_simulation"  # (campaign name, Simulation or the reason it could not run)
SIMULATION_DAYS = 366  # far enough ahead to say when most campaigns finish
COUNTS_TTL_S = 30  # the list's counts move with every send: cached briefly, cleared by this page's actions


def _now() -> datetime:
    return datetime.now(UTC)


def _secret_key() -> str:
    return load_settings().secret_key()


@st.cache_data(ttl=COUNTS_TTL_S, show_spinner=False)
def _counts(db: str, _engine: Engine) -> campaign_views.CampaignCounts:
    """Every campaign's prospects and touches by state: the list's one costly read, so widget reruns and
    visits within the TTL reuse it (the campaigns' own rows, their state among them, are read every run)."""
    with transaction(_engine, readonly=True) as session:
        return campaign_views.campaign_counts(session)


def _db_key() -> str:
    return engine.url.render_as_string(hide_password=True)


def _flash(kind: str, message: str) -> None:
    """A message shown at the top of the next run (actions rerun the page so the list is current)."""
    st.session_state[FLASH] = (kind, message)


def _show_flash() -> None:
    kind, message = st.session_state.pop(FLASH, (None, None))
    if kind == "success":
        st.success(message, icon=KIND_ICONS["success"])
    elif kind == "error":
        st.error(message, icon=KIND_ICONS["error"])


def _show_problems(problems: list[Problem], form: dict[str, Any] | None = None) -> None:
    """Every problem with its key path (and YAML line when there is one), in the designer's words too."""
    count = len(problems)
    st.error(f"The campaign has {count} problem{'s' if count != 1 else ''}; nothing was saved.")
    for problem in problems:
        where = str(problem).removesuffix(f": {problem.message}")
        place = designer.describe_path(problem.path, form) if form is not None else ""
        label = f"{place} — {where}" if place and place != where else where
        st.error(f"{label}: {problem.message}")


# --- campaign actions (callbacks run before the page, so the list below is already current) ------


def _state_change(name: str, action: str) -> None:
    stopped = 0
    try:
        with transaction(engine) as session:
            campaign = find_campaign(session, name)
            manager = CampaignManager(session, secret_key=_secret_key())
            if action == "pause":
                manager.pause(campaign)
            elif action == "resume":
                manager.resume(campaign)
            else:
                stopped = manager.archive(campaign, _now())
            state = campaign.state
    except OutreachError as exc:
        _flash("error", str(exc))
        return
    _counts.clear()  # archiving stops sequences and cancels touches: the list shows it at once
    st.session_state.pop(ARCHIVE_ASKED, None)
    st.session_state.pop(CHECK, None)
    extra = f"; {stopped} prospects' sequences stopped, their pending touches cancelled" if action == "archive" else ""
    _flash("success", f"{name} is {state}{extra}.")


def _ask_archive(name: str | None) -> None:
    st.session_state[ARCHIVE_ASKED] = name


# --- designer form in session state --------------------------------------------------------------


def _form() -> dict[str, Any]:
    if FORM not in st.session_state:
        st.session_state[FORM] = designer.new_form()
    return st.session_state[FORM]


def _k(*parts: object) -> str:
    return W + "_".join(str(part) for part in parts)


CAMPAIGN_FIELDS = (
    "name", "audience_list", "audience_filter", "mailboxes", "timezone", "fallback_timezone", "window_start",
    "window_end", "days", "stop_on", "track_opens", "track_clicks", "postal_address", "fallbacks",
)  # fmt: skip
STEP_FIELDS = ("type", "delay", "when", "thread", "quote_previous", "attach_demo", "fallbacks")
VARIANT_FIELDS = ("name", "subject", "body", "html")


def _collect() -> dict[str, Any]:
    """The form with every value its widgets hold now (widgets not drawn this run keep the form's value)."""
    form = _form()
    state = st.session_state
    for name in CAMPAIGN_FIELDS:
        if _k(name) in state:
            form[name] = state[_k(name)]
    for step in form["steps"]:
        for name in STEP_FIELDS:
            if _k("s", step["uid"], name) in state:
                step[name] = state[_k("s", step["uid"], name)]
        for variant in step["variants"]:
            for name in VARIANT_FIELDS:
                if _k("v", variant["uid"], name) in state:
                    variant[name] = state[_k("v", variant["uid"], name)]
    return form


def _load_form(form: dict[str, Any]) -> None:
    """Show another campaign in the designer: drop the widgets' values so they take the new form's."""
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(W)]:
        del st.session_state[key]
    st.session_state[FORM] = form


def _edit(change: Callable[..., dict[str, Any]], *args: Any) -> None:
    """A structural edit (add / remove / move): applied to the current values, before the page draws."""
    st.session_state[FORM] = change(_collect(), *args)


def _open_in_designer(name: str) -> None:
    try:
        with transaction(engine, readonly=True) as session:
            definition = definition_of(find_campaign(session, name))
    except OutreachError as exc:
        _flash("error", f"{name} cannot be opened in the designer: {exc}")
        return
    _load_form(designer.form_from_definition(definition))
    st.session_state[TAB] = "Designer"
    _flash("success", f"{name} is open in the Designer tab; saving it under the same name updates it.")


def _seed(key: str, value: Any) -> str:
    """Give a widget its starting value once; afterwards the widget's own state is the value."""
    if key not in st.session_state:
        st.session_state[key] = value
    return key


# --- the page ------------------------------------------------------------------------------------

st.title("Campaigns")
_show_flash()
tab_list, tab_design, tab_yaml = st.tabs(TABS, key=TAB, on_change="rerun")


def _campaign_table(campaigns: list[workspace.CampaignSummary]) -> None:
    if not campaigns:
        st.info(
            "No campaigns yet. Design one in the Designer tab or import its YAML; it is listed here with its state, "
            "its progress and how many touches went out."
        )
        return
    st.dataframe(
        [
            {
                "campaign": c.name,
                "state": str(c.state),
                "steps": c.steps,
                "enrolled": sum(c.enrollments.values()),
                **c.enrollments,
                "progress": c.progress,
                "sent": c.touches["sent"],
                "in doubt": c.touches["in_doubt"],
                "paused because": c.paused_reason or "",
                "launched": c.launched_at,
                "created": c.created_at,
            }
            for c in campaigns
        ],
        hide_index=True,
        width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn(
                "progress", help="Prospects whose sequence is over (finished or stopped)", min_value=0, max_value=1
            ),
            "in doubt": st.column_config.NumberColumn(help="Resolve these under Inbox & Tasks → In doubt"),
        },
    )
    st.caption(
        f"{len(campaigns)} campaigns · active, paused, stopped and finished count prospects; "
        "sent and in doubt count touches"
    )


def _check_results(check: LaunchCheck) -> None:
    cols = st.columns(4)
    cols[0].metric("Audience", f"{check.audience:,}")
    cols[1].metric("Suppressed", f"{check.suppressed:,}")
    cols[2].metric("Already enrolled", f"{check.already_enrolled:,}")
    cols[3].metric("Will be enrolled", f"{max(check.enrollable, 0):,}")
    if check.mailboxes:
        st.text("Sending through: " + ", ".join(check.mailboxes))
    if check.missing_fields:
        st.text("Prospects missing a field a template uses without a default:")
        st.dataframe(
            [{"field": name, "prospects": count} for name, count in check.missing_fields.items()], hide_index=True
        )
    if check.first_days:
        chart = px.bar(
            x=list(check.first_days),
            y=list(check.first_days.values()),
            labels={"x": "day (UTC)", "y": "first touches"},
            title="First touches per day",
        )
        chart.update_xaxes(type="category")  # one bar per day, labelled by its date (not a time axis)
        st.plotly_chart(chart, width="stretch", key="first_days_chart")
    for problem in check.problems:
        st.error(problem)
    for warning in check.warnings:
        st.warning(warning, icon=":material/warning:")
    if check.lint:
        st.markdown("**Content warnings** (they do not block launch)")
        for warning in check.lint:
            st.warning(warning, icon=":material/warning:")
    if check.ok:
        st.success("Everything checks out: launch enrolls these prospects and starts sending on schedule.")


def _simulate(name: str) -> None:
    """The schedule preview: outreach.simulate replays the worker's own rules (a draft's trial launch is undone)."""
    try:
        with transaction(engine, readonly=True) as session:
            result: Simulation | str = simulate(
                session, find_campaign(session, name), _now(), secret_key=_secret_key(), days=SIMULATION_DAYS
            )
    except OutreachError as exc:
        result = str(exc)
    st.session_state[SIMULATION] = (name, result)


def _simulation_view(sim: Simulation | str) -> None:
    st.markdown("**Schedule preview** — when each touch would go out")
    if isinstance(sim, str):
        st.info(f"No schedule preview: {sim}")
        return
    cols = st.columns(3)
    cols[0].metric("Finishes", sim.summary)
    cols[1].metric("Touches placed", f"{sim.touches:,}", help=f"within the next {sim.days} days")
    cols[2].metric("Still to go after that", f"{sim.unscheduled:,}")
    if sim.held_late:
        st.warning(
            f"{sim.held_late:,} touches would wait in their mailbox's queue longer than the campaign's maximum "
            "lateness and be held for you to confirm: add mailboxes, raise their limits, or raise "
            "`schedule.max_lateness`."
        )
    if not sim.per_day:
        return
    stack = st.radio("Stack the days by", ["mailbox", "step"], horizontal=True, key="simulation_stack")
    rows = []
    for day in sim.per_day:
        parts = day.by_mailbox | ({"tasks": day.tasks} if day.tasks else {}) if stack == "mailbox" else day.by_step
        rows += [{"day": day.date.isoformat(), stack: str(key), "touches": n} for key, n in parts.items()]
    chart = px.bar(rows, x="day", y="touches", color=stack, title=f"Touches per day ({sim.timezone})")
    st.plotly_chart(chart, width="stretch", key="simulation_days_chart")
    hours = px.bar(
        x=[f"{h:02d}:00" for h in sim.per_local_hour], y=list(sim.per_local_hour.values()),
        labels={"x": "hour of day in the prospect's own zone", "y": "touches"}, title="Hour of day",
    )  # fmt: skip
    st.plotly_chart(hours, width="stretch", key="simulation_hours_chart")
    st.dataframe(
        [{"mailbox": name, "touches": n} for name, n in sim.per_mailbox.items()], hide_index=True,
        key="simulation_mailboxes",
    )  # fmt: skip
    st.caption("Assumes: " + "; ".join(sim.assumptions) + ".")


def _launch(name: str, test_smtp: bool) -> None:
    """Enroll the audience in one transaction, with a progress bar fed by launch's callback."""
    bar = st.progress(0.0, text="Testing the mailboxes…" if test_smtp else "Enrolling…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=f"Enrolled {done:,} of {total:,} prospects")

    try:
        with transaction(engine, readonly=True) as session:
            manager = CampaignManager(session, secret_key=_secret_key())
            boxes = manager.sending_mailboxes(find_campaign(session, name))
            smtp_check = checked_in_advance(boxes) if test_smtp else None
        bar.progress(0.0, text="Enrolling…")
        with transaction(engine) as session:
            campaign = find_campaign(session, name)
            check = CampaignManager(session, secret_key=_secret_key()).launch(
                campaign, _now(), smtp_check=smtp_check, progress=progress
            )
    except OutreachError as exc:
        bar.empty()
        st.error(str(exc))
        return
    _counts.clear()  # the new enrollments show in the list at once
    st.session_state.pop(CHECK, None)
    _flash("success", f"Launched {name}: {check.enrollable:,} prospects enrolled; it is running.")
    st.rerun()


def _manage(campaigns: list[workspace.CampaignSummary]) -> None:
    if not campaigns:
        return
    st.subheader("Manage a campaign")
    names = [c.name for c in campaigns]
    name = st.selectbox("Campaign", names, key="campaign_pick")
    chosen = next(c for c in campaigns if c.name == name)
    st.text(f"State: {chosen.state}" + (f" — {chosen.paused_reason}" if chosen.paused_reason else ""))
    cols = st.columns(5)
    launchable = chosen.state in (CampaignState.DRAFT, CampaignState.PAUSED)
    check_clicked = cols[0].button("Check launch", key="campaign_check", disabled=not launchable, width="stretch")
    if chosen.state is CampaignState.RUNNING:
        cols[1].button(
            "Pause", key="campaign_pause", on_click=_state_change, args=(name, "pause"), width="stretch"
        )  # fmt: skip
    if chosen.state is CampaignState.PAUSED:
        cols[1].button(
            "Resume", key="campaign_resume", on_click=_state_change, args=(name, "resume"), width="stretch"
        )  # fmt: skip
    if chosen.state is not CampaignState.ARCHIVED:
        cols[2].button("Archive…", key="campaign_archive", on_click=_ask_archive, args=(name,), width="stretch")
    cols[3].button("Open in designer", key="campaign_edit", on_click=_open_in_designer, args=(name,), width="stretch")
    simulatable = chosen.state in (CampaignState.DRAFT, CampaignState.RUNNING, CampaignState.PAUSED)
    cols[4].button(
        "Simulate", key="campaign_simulate", on_click=_simulate, args=(name,), disabled=not simulatable,
        width="stretch", help="When each touch would go out, by the worker's own rules and limits",
    )  # fmt: skip

    if st.session_state.get(ARCHIVE_ASKED) == name:
        st.warning(
            f"Archive {name}? Every pending touch is cancelled and its prospects' sequences stop. "
            "This cannot be undone."
        )
        left, right = st.columns(2)
        left.button(
            "Yes, archive it", key="campaign_archive_confirm", type="primary", on_click=_state_change,
            args=(name, "archive"),
        )  # fmt: skip
        right.button("Cancel", key="campaign_archive_cancel", on_click=_ask_archive, args=(None,))

    test_smtp = st.checkbox(
        "Test the mailboxes' SMTP connections", value=True, key="campaign_check_smtp",
        help="Launch connects and logs in to each mailbox first; untick only when the server is known to be up.",
    )  # fmt: skip
    if check_clicked:
        try:
            with transaction(engine, readonly=True) as session:  # rolled back: a check writes nothing
                manager = CampaignManager(session, secret_key=_secret_key())
                campaign = find_campaign(session, name)
                smtp_check = checked_in_advance(manager.sending_mailboxes(campaign)) if test_smtp else None
                st.session_state[CHECK] = (name, manager.check_launch(campaign, _now(), smtp_check))
        except OutreachError as exc:
            st.error(f"{name} cannot be checked: {exc}")
        else:
            if st.session_state[CHECK][1].ok:
                _simulate(name)  # the launch check says when the campaign would finish
    checked_name, check = st.session_state.get(CHECK, (None, None))
    if check is not None and checked_name == name and launchable:
        st.markdown("**Launch check**")
        _check_results(check)
        simulated_name, simulation = st.session_state.get(SIMULATION, (None, None))
        if isinstance(simulation, Simulation) and simulated_name == name:
            st.info(f"Launched now, the campaign {simulation.summary} (schedule preview below).")
        if st.button("Launch", key="campaign_launch", type="primary", disabled=not check.ok):
            _launch(name, test_smtp)
        if not check.ok:
            st.caption("Launch stays blocked until the problems above are fixed and the check is run again.")
    simulated_name, simulation = st.session_state.get(SIMULATION, (None, None))
    if simulation is not None and simulated_name == name:
        _simulation_view(simulation)

    with st.expander("Definition (YAML)"):
        try:
            with transaction(engine, readonly=True) as session:
                text = to_yaml(definition_of(find_campaign(session, name)))
        except OutreachError as exc:
            st.error(f"The stored definition cannot be exported: {exc}")
        else:
            st.code(text, language="yaml")
            st.download_button(
                "Download YAML", text, file_name=f"{_slug(name)}.yaml", mime="application/x-yaml",
                key="campaign_yaml_download", on_click="ignore",
            )  # fmt: skip


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-") or "campaign"


# --- designer ------------------------------------------------------------------------------------


def _options_with(options: list[Any], *extra: Any) -> list[Any]:
    """Keep a value the form already has (an imported list or mailbox that no longer exists) selectable."""
    return options + [value for value in extra if value is not None and value not in options]


def _campaign_fields(form: dict[str, Any], lists: list[workspace.ListCount], mailbox_names: list[str]) -> None:
    st.text_input("Campaign name", key=_seed(_k("name"), form["name"]), max_chars=200)
    st.markdown("**Audience**")
    left, right = st.columns(2)
    list_names = [lst.name for lst in lists]
    counts = {lst.name: lst.members for lst in lists}
    left.selectbox(
        "Prospect list",
        _options_with([None, *list_names], form["audience_list"]),
        key=_seed(_k("audience_list"), form["audience_list"]),
        format_func=lambda n: "— any prospect —" if n is None else f"{n} ({counts.get(n, 0):,} prospects)",
    )
    right.text_area(
        "Filter on prospect fields",
        key=_seed(_k("audience_filter"), form["audience_filter"]),
        placeholder="country = DE, AT\nindustry = fintech",
        help="One field per line: field = value, several values separated by commas. With a list, only its "
        "members that match are chosen.",
        height=80,
    )
    st.multiselect(
        "Mailboxes (rotated; each keeps its own limits)",
        _options_with(mailbox_names, *form["mailboxes"]),
        key=_seed(_k("mailboxes"), list(form["mailboxes"])),
        help="Add mailboxes under Settings. With none chosen and none configured, mail goes to the local "
        "capture server.",
    )
    st.markdown("**Schedule**")
    zone, fallback, start, end = st.columns([2, 2, 1, 1])
    zone.selectbox(
        "Time zone", designer.timezone_choices(), key=_seed(_k("timezone"), form["timezone"]),
        format_func=lambda z: "each prospect's own zone" if z == "prospect" else z,
    )  # fmt: skip
    fallback.selectbox(
        "Zone for prospects without one", designer.timezone_choices()[1:],
        key=_seed(_k("fallback_timezone"), form["fallback_timezone"]),
    )  # fmt: skip
    start.text_input("Window from", key=_seed(_k("window_start"), form["window_start"]), placeholder="09:00")
    end.text_input("Window to", key=_seed(_k("window_end"), form["window_end"]), placeholder="17:00")
    days, stops = st.columns(2)
    days.multiselect("Days", list(DAY_NAMES), key=_seed(_k("days"), list(form["days"])))
    stops.multiselect(
        "Stop the sequence on", [t.value for t in StopTrigger], key=_seed(_k("stop_on"), list(form["stop_on"])),
        help="Bounces and unsubscribes always stop a sequence; domain_reply stops it when anyone at the "
        "prospect's company replies.",
    )  # fmt: skip
    opens, clicks = st.columns(2)
    opens.checkbox("Track opens", key=_seed(_k("track_opens"), form["track_opens"]))
    clicks.checkbox("Track clicks", key=_seed(_k("track_clicks"), form["track_clicks"]))
    st.caption("With both off, messages go out as plain text only.")
    left, right = st.columns(2)
    left.text_area(
        "Postal address for the footer (optional)", key=_seed(_k("postal_address"), form["postal_address"]),
        help="Leave empty to use the workspace's address from Settings.", height=80,
    )  # fmt: skip
    right.text_area(
        "Fallback values (optional)", key=_seed(_k("fallbacks"), form["fallbacks"]),
        placeholder="first_name = there", height=80,
        help="Used when a prospect has no value for a field: one field = value per line.",
    )  # fmt: skip


def _variant_fields(step: dict[str, Any], index: int, position: int, variant: dict[str, Any]) -> None:
    uid = variant["uid"]
    email = step["type"] == StepType.EMAIL.value
    name_col, remove_col = st.columns([5, 1])
    name_col.text_input("Variant name", key=_seed(_k("v", uid, "name"), variant["name"]), max_chars=50)
    remove_col.button(
        "Remove variant", key=f"dzb_v{uid}_remove", on_click=_edit, args=(designer.remove_variant, index, position),
        disabled=len(step["variants"]) < 2, icon=":material/delete:",
    )  # fmt: skip
    if email and not step["thread"]:
        st.text_input("Subject", key=_seed(_k("v", uid, "subject"), variant["subject"]))
    elif email:
        st.caption('Subject: "Re: " and the previous email\'s subject (a follow-up in the same thread).')
    st.text_area(
        "Body" if email else ("Connection note" if step["type"] == StepType.LINKEDIN.value else "Call script"),
        key=_seed(_k("v", uid, "body"), variant["body"]),
        help="Jinja placeholders such as {{ first_name | default('there') }}; a field without a default must "
        "exist for every prospect.",
    )  # fmt: skip
    if email:
        with st.expander("HTML version (optional)"):
            st.text_area("HTML", key=_seed(_k("v", uid, "html"), variant.get("html") or ""))


def _step_fields(form: dict[str, Any], index: int, step: dict[str, Any]) -> None:
    uid = step["uid"]
    with st.container(border=True):
        title, up, down, remove = st.columns([6, 1, 1, 1])
        title.markdown(f"**Step {index + 1}**")
        up.button(
            "Up", key=f"dzb_s{uid}_up", on_click=_edit, args=(designer.move_step, index, -1), disabled=index == 0,
            icon=":material/arrow_upward:",
        )  # fmt: skip
        down.button(
            "Down", key=f"dzb_s{uid}_down", on_click=_edit, args=(designer.move_step, index, 1),
            disabled=index == len(form["steps"]) - 1, icon=":material/arrow_downward:",
        )  # fmt: skip
        remove.button(
            "Remove", key=f"dzb_s{uid}_remove", on_click=_edit, args=(designer.remove_step, index),
            disabled=len(form["steps"]) < 2, icon=":material/delete:",
        )  # fmt: skip
        kind, delay, when, thread = st.columns(4)
        types = [t.value for t in StepType]
        step["type"] = kind.selectbox("Type", types, key=_seed(_k("s", uid, "type"), step["type"]))
        delay.text_input(
            "Delay after the previous touch", key=_seed(_k("s", uid, "delay"), step["delay"]),
            placeholder="3 business days", help='"0", "90 minutes", "4 hours", "2 days", "3 business days"',
        )  # fmt: skip
        when.selectbox(
            "Only when", [c.value for c in StepCondition], key=_seed(_k("s", uid, "when"), step["when"]),
            format_func=lambda c: c.replace("_", " "),
        )  # fmt: skip
        if step["type"] == StepType.EMAIL.value:
            step["thread"] = thread.checkbox(
                "Reply in the same thread", key=_seed(_k("s", uid, "thread"), step["thread"])
            )  # fmt: skip
            quote, attach = st.columns(2)
            quote.checkbox(
                "Quote the previous email below", disabled=index == 0,
                key=_seed(_k("s", uid, "quote_previous"), step.get("quote_previous", False)),
            )  # fmt: skip
            attach.checkbox(
                "Attach the matched demo's PDF", key=_seed(_k("s", uid, "attach_demo"), step.get("attach_demo", False)),
                help="When the demo chosen for the prospect's company has a PDF file, it goes out as an attachment.",
            )  # fmt: skip
        st.text_area(
            "This step's fallback values (optional)", key=_seed(_k("s", uid, "fallbacks"), step.get("fallbacks", "")),
            placeholder="demo_title = our product tour", height=68,
            help="Used in this step when a prospect has no value (e.g. no demo matches): one field = value per line.",
        )  # fmt: skip
        for position, variant in enumerate(step["variants"]):
            _variant_fields(step, index, position, variant)
        st.button(
            "Add variant (A/B test)", key=f"dzb_s{uid}_add_variant", on_click=_edit, args=(designer.add_variant, index),
            icon=":material/add:",
        )  # fmt: skip


def _designer() -> None:
    with transaction(engine, readonly=True) as session:
        lists = workspace.prospect_lists(session)
        mailbox_names = workspace.mailbox_names(session)
    form = _collect()
    top_left, top_right = st.columns([4, 1])
    top_left.caption("Build the sequence here; Save validates it with the same rules as a YAML definition.")
    top_right.button("Start over", key="designer_new", on_click=lambda: _load_form(designer.new_form()))
    _campaign_fields(form, lists, mailbox_names)
    st.markdown("**Steps**")
    for index, step in enumerate(form["steps"]):
        _step_fields(form, index, step)
    cols = st.columns(3)
    for col, step_type, label in zip(
        cols, StepType, ("Add email step", "Add LinkedIn step", "Add call step"), strict=True
    ):
        col.button(
            label, key=f"designer_add_{step_type.value}", on_click=_edit, args=(designer.add_step, step_type.value),
            icon=":material/add:",
        )  # fmt: skip
    form = _collect()
    check_col, save_col, download_col = st.columns(3)
    checked = check_col.button("Check", key="designer_check", width="stretch")
    saved = save_col.button("Save campaign", key="designer_save", type="primary", width="stretch")
    definition: Definition | None = None
    try:
        definition = designer.definition_from_form(form)
    except DefinitionError as exc:
        if checked or saved:
            _show_problems(exc.problems, form)
    download_col.download_button(
        "Download YAML", to_yaml(definition) if definition else "", file_name=f"{_slug(form['name'])}.yaml",
        mime="application/x-yaml", key="designer_download", disabled=definition is None, on_click="ignore",
        width="stretch",
    )  # fmt: skip
    if definition is None:
        return
    if checked:
        st.success(f"{definition.name}: the definition is valid ({len(definition.steps)} steps).")
    if saved:
        _save(definition)


def _save(definition: Definition) -> None:
    try:
        with transaction(engine) as session:
            ref = CampaignManager(session, secret_key=_secret_key()).create_campaign(definition)
    except OutreachError as exc:
        st.error(str(exc))
        return
    _counts.clear()
    verb = "Created" if ref.created else "Updated"
    _flash("success", f"{verb} campaign {ref.name} ({ref.state}); check and launch it in the Campaigns tab.")
    st.rerun()


# --- YAML import ---------------------------------------------------------------------------------


def _yaml_source() -> str:
    uploaded = st.session_state.get("yaml_file")
    if uploaded is not None:
        try:
            return uploaded.getvalue().decode("utf-8")
        except UnicodeDecodeError:
            raise DefinitionError(
                [Problem("(file)", None, f"{uploaded.name} is not UTF-8 text; save it as UTF-8 and upload it again")]
            ) from None
    text = st.session_state.get("yaml_text") or ""
    if not text.strip():
        raise DefinitionError([Problem("(YAML)", None, "upload a .yaml file or paste the definition first")])
    return text


def _import_yaml(save: bool) -> None:
    """Parse the uploaded or pasted YAML; save it (like `outreach campaign apply`) or open it in the designer."""
    st.session_state.pop(YAML_PROBLEMS, None)
    try:
        definition = parse_definition(_yaml_source())
    except DefinitionError as exc:
        st.session_state[YAML_PROBLEMS] = exc.problems
        return
    if not save:
        _load_form(designer.form_from_definition(definition))
        st.session_state[TAB] = "Designer"
        _flash("success", f"{definition.name} is open in the Designer tab; nothing is saved until you save it.")
        return
    try:
        with transaction(engine) as session:
            ref = CampaignManager(session, secret_key=_secret_key()).create_campaign(definition)
    except OutreachError as exc:
        st.session_state[YAML_PROBLEMS] = [Problem("(campaign)", None, str(exc))]
        return
    _counts.clear()
    st.session_state[TAB] = "Campaigns"
    verb = "Created" if ref.created else "Updated"
    _flash("success", f"{verb} campaign {ref.name} ({ref.state}) from YAML; check and launch it below.")


def _yaml_tab() -> None:
    st.caption(
        "A campaign definition as in `outreach campaign apply FILE.yaml`: the same checks, every problem with "
        "its key path and line, and nothing saved while there is one."
    )
    st.file_uploader("YAML file", type=["yaml", "yml"], key="yaml_file")
    st.text_area("…or paste it here", key="yaml_text", height=240, placeholder="name: Fintech CFOs Q1\naudience: …")
    save_col, open_col = st.columns(2)
    save_col.button(
        "Import and save", key="yaml_import", type="primary", width="stretch", on_click=_import_yaml, args=(True,)
    )
    open_col.button(
        "Open in the designer", key="yaml_to_designer", width="stretch", on_click=_import_yaml, args=(False,)
    )
    problems = st.session_state.get(YAML_PROBLEMS)
    if problems:
        _show_problems(problems)


# Only the open tab is read and drawn (the tabs rerun the page on a switch). The designer's widgets are
# not kept while another tab is open, so their values go to the form dict now and are seeded back from it.
_collect()
if tab_list.open is not False:
    with transaction(engine, readonly=True) as session:
        summaries = workspace.campaign_summaries(session, _counts(_db_key(), engine))
    with tab_list:
        _campaign_table(summaries)
        _manage(summaries)
if tab_design.open is not False:
    with tab_design:
        _designer()
if tab_yaml.open is not False:
    with tab_yaml:
        _yaml_tab()
