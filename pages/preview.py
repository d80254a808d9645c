"""Preview: the exact message a prospect gets, and the libraries its personalization draws on.

Three tabs. Preview: pick campaign, step, variant and prospect; see subject, headers, text part, the HTML
part as source, why each snippet and demo was chosen, the content lint, the audience members whose
message does not render, the opener draft (editable), and send the message to yourself. Personalization
library: snippets with their tags, YAML import/export, and the optional language model that drafts
openers. Demo library: the demos `{{ demo_link }}` chooses from.

Everything a prospect (or a model) could have written is shown as plain text — st.code, st.text,
st.dataframe — never as HTML or through unsafe_allow_html / components.html.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import streamlit as st

from db.engine import transaction
from db.enums import UserRole
from outreach import workspace
from outreach.campaigns import find_campaign
from outreach.config import load_settings
from outreach.demo_files import demo_file_size, max_attachment_bytes, remove_demo_file, save_demo_file
from outreach.drafting import (
    ChatClient,
    ModelSettings,
    draft_openers,
    get_model_settings,
    prospects_to_draft,
    set_model_settings,
    store_drafts,
)
from outreach.errors import OutreachError
from outreach.personalization import (
    SNIPPET_KINDS,
    delete_demo,
    delete_snippet,
    demo_rows,
    demo_spec,
    draft_of,
    export_library,
    import_library,
    save_demo,
    save_draft,
    save_snippet,
    snippet_rows,
    snippet_spec,
)
from outreach.preview import Preview, incomplete_renders, preview, send_test_preview

TAB = "preview_tab"
TABS = ("Preview", "Personalization library", "Demo library")
FLASH = "preview_flash"
SOURCES = {
    "queued": "Queued: this is the stored message, exactly what goes out.",
    "sent": "Sent: this is the message that went out.",
    "rendered": "Not queued yet: rendered now from the templates, the way the worker will render it.",
}
CHOICE_SOURCES = {
    "draft": "opener draft",
    "prospect": "prospect's field",
    "library": "library",
    "fallback": "fallback text",
    "missing": "nothing",
}
NEW = "➕ New"
INCOMPLETE_PAGE = 100

engine = st.session_state.get("engine")
user = st.session_state.get("user")
if engine is None or user is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")


def _now() -> datetime:
    return datetime.now(UTC)


def _flash(kind: str, message: str) -> None:
    st.session_state[FLASH] = (kind, message)


def _show_flash() -> None:
    kind, message = st.session_state.pop(FLASH, (None, None))
    if kind == "success":
        st.success(message)
    elif kind == "error":
        st.error(message)


def _tags(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _joined(values: list[str] | None) -> str:
    return ", ".join(values or [])


# --- Preview tab ---------------------------------------------------------------------------------


def _show(result: Preview, email: str) -> None:
    st.caption(f"Variant {result.variant} · {SOURCES.get(result.source, result.source)}")
    if result.error:
        st.error(f"Step {result.step}, variant {result.variant} does not render for {email}: {result.error}")
        _choices(result)
        return
    if result.headers:
        st.dataframe(
            [{"header": name, "value": value} for name, value in result.headers.items()],
            hide_index=True,
            width="stretch",
        )
    if result.subject is not None:
        st.text("Subject")
        st.code(result.subject, language=None, wrap_lines=True)
    st.text("Text part" if result.subject is not None else "Note / script")
    st.code(result.text, language=None, wrap_lines=True)
    if result.html is not None:
        st.text("HTML part (source, not rendered)")
        st.code(result.html, language="html", wrap_lines=True)
    if result.attachments:
        st.text("Attachments: " + ", ".join(result.attachments))
    _choices(result)
    st.text("Content lint")
    if result.lint:
        st.dataframe(
            [{"where": w["where"], "warning": w["message"], "kind": w["code"]} for w in result.lint],
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption("No warnings: no leftover template code, empty fields, spam phrases or shouting found.")
    if result.message:
        with st.expander("The whole message, as the mail server receives it"):
            st.code(result.message, language=None, wrap_lines=True)


def _choices(result: Preview) -> None:
    if not result.personalization:
        return
    st.text("Why this content")
    if result.source != "rendered":
        st.caption("How the library chooses now; the stored message was rendered when the touch was queued.")
    st.dataframe(
        [
            {"field": c["field"], "from": CHOICE_SOURCES.get(c["source"], c["source"]), "value": c["value"] or "",
             "why": c["explanation"]}
            for c in result.personalization
        ],
        hide_index=True,
        width="stretch",
    )  # fmt: skip


def _draft_origin(draft: Any) -> str:
    if draft is None:
        return "none yet"
    if draft.model is None:
        return "written here"
    return f"drafted by {draft.model}" + (", edited" if draft.edited else "")


def _draft_editor(campaign_id: int, prospect_id: int, model_on: bool) -> None:
    """The stored opener draft for this prospect in this campaign: shown, editable, or drafted now."""
    with transaction(engine, readonly=True) as session:
        draft = draft_of(session, campaign_id, prospect_id)
        text = draft.text if draft else ""
        origin = _draft_origin(draft)
    if draft is None and not model_on:
        return
    st.subheader("Opener draft")
    st.caption(f"Used as {{{{ opener }}}} for this prospect in this campaign ({origin}). Empty it to remove it.")
    edited = st.text_area("Opener", value=text, key=f"preview_draft:{campaign_id}:{prospect_id}", height=90)
    save_col, model_col = st.columns(2)
    if save_col.button("Save opener", key="preview_draft_save"):
        with transaction(engine) as session:
            save_draft(session, campaign_id, prospect_id, edited, _now())
        _flash("success", "Opener saved; the preview above uses it.")
        st.rerun()
    if model_on and model_col.button("Draft with the language model", key="preview_draft_model"):
        _draft_one(campaign_id, prospect_id)


def _draft_one(campaign_id: int, prospect_id: int) -> None:
    with transaction(engine, readonly=True) as session:
        settings = get_model_settings(session)
        fields = workspace.prospect_fields(session, prospect_id) or {}
    context = {k.removeprefix("custom."): v for k, v in fields.items()}
    try:
        with ChatClient(settings) as client:
            text = client.draft_opener(context)
    except OutreachError as exc:
        st.error(f"No draft: {exc}")
        return
    with transaction(engine) as session:
        save_draft(session, campaign_id, prospect_id, text, _now(), model=settings.model)
    st.session_state.pop(f"preview_draft:{campaign_id}:{prospect_id}", None)
    _flash("success", "Drafted; review it below before launch.")
    st.rerun()


def _send_test(campaign: str, email: str, step_number: int, variant_name: str | None) -> None:
    st.subheader("Send a test to yourself")
    left, right = st.columns([3, 1])
    to = left.text_input("Your address", key="preview_test_to", placeholder="you@company.example")
    right.write("")
    if right.button("Send test to me", key="preview_send_test", disabled=not to):
        try:
            with transaction(engine, readonly=True) as session:
                sent = send_test_preview(
                    session, campaign, email, to, _now(), secret_key=load_settings().secret_key(),
                    step_number=step_number, variant_name=variant_name,
                )  # fmt: skip
        except OutreachError as exc:
            st.error(f"The test was not sent: {exc}")
        else:
            st.success(f"Sent to {sent.to_address} ({sent.server_reply}). The unsubscribe link in it goes nowhere.")


def _incomplete(campaign: str) -> None:
    st.subheader("Prospects whose message is incomplete")
    page = st.number_input("Page", min_value=1, value=1, step=1, key=f"preview_incomplete_page:{campaign}")
    try:
        with transaction(engine, readonly=True) as session:
            rows, checked = incomplete_renders(
                session, campaign, _now(), limit=INCOMPLETE_PAGE, offset=(int(page) - 1) * INCOMPLETE_PAGE
            )
    except OutreachError as exc:
        st.error(f"Cannot check the audience: {exc}")
        return
    first = (int(page) - 1) * INCOMPLETE_PAGE
    if not checked:
        st.caption("No audience members on this page.")
    elif rows:
        st.caption(f"Audience members {first + 1}–{first + checked}: {len(rows)} step/variant renders fail.")
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.caption(f"Audience members {first + 1}–{first + checked}: every step and variant renders.")


def _preview_tab() -> None:
    with transaction(engine, readonly=True) as session:
        campaigns = workspace.campaign_options(session)
        model_on = get_model_settings(session).enabled
    if not campaigns:
        st.info("No campaigns yet, so there is nothing to preview. Campaigns and their steps appear here once created.")
        return
    by_id = {c.id: c for c in campaigns}
    left, right = st.columns(2)
    campaign_id = left.selectbox(
        "Campaign", list(by_id), format_func=lambda i: f"{by_id[i].name} ({by_id[i].state})", key="preview_campaign"
    )
    search = right.text_input("Find a prospect", placeholder="email, name or company", key="preview_search")
    with transaction(engine, readonly=True) as session:
        steps = workspace.campaign_steps(session, campaign_id)
        matches = workspace.find_prospects(session, search)  # searched in the database, at most 50 shown
    prospects = {p.id: p for p in matches}
    prospect_id = None
    if matches:
        labels = {p.id: f"{p.email} — {p.name}" if p.name else p.email for p in matches}
        prospect_id = right.selectbox("Prospect", list(labels), format_func=labels.__getitem__, key="preview_prospect")
    elif search:
        right.caption("No prospect matches this search.")
    else:
        right.caption("No prospects yet.")
    if not steps:
        st.info("This campaign has no steps yet.")
        return
    by_number = {step.position + 1: step for step in steps}
    step_number = left.selectbox(
        "Step", list(by_number), key=f"preview_step:{campaign_id}",
        format_func=lambda n: f"Step {n} · {by_number[n].type}",
    )  # fmt: skip
    step = by_number[step_number]
    variant_names = [v.name for v in step.variants if v.is_active]
    variant_name = left.selectbox(
        "Variant", [None, *variant_names], key=f"preview_variant:{campaign_id}:{step_number}",
        format_func=lambda v: "the one the worker would choose" if v is None else f"Variant {v}",
    )  # fmt: skip
    name = by_id[campaign_id].name
    st.subheader("Message")
    if prospect_id is None:
        st.info("Find and pick a prospect to see the exact message they would get.")
    else:
        email = prospects[prospect_id].email
        try:
            with transaction(engine, readonly=True) as session:
                result = preview(
                    session, name, email, _now(), secret_key=load_settings().secret_key(), step_number=step_number,
                    variant_name=variant_name,
                )  # fmt: skip
        except OutreachError as exc:
            st.error(f"This step cannot be previewed: {exc}")
        else:
            _show(result, email)
    with st.expander(f"Step {step_number} as written"):
        delay = f"after {step.delay_amount} {step.delay_unit.replace('_', ' ')}" if step.delay_amount else "right away"
        thread = " · in the same thread" if step.thread else ""
        st.text(f"{delay} · when: {step.condition.replace('_', ' ')}{thread}")
        for variant in step.variants:
            st.text(f"Variant {variant.name}" + ("" if variant.is_active else " (inactive)"))
            if variant.subject is not None:
                st.code(variant.subject, language=None, wrap_lines=True)
            st.code(variant.body, language=None, wrap_lines=True)
    if prospect_id is not None:
        _prospect_details(campaign_id, prospect_id)
        _draft_editor(campaign_id, prospect_id, model_on)
        if str(step.type) == "email":
            _send_test(name, prospects[prospect_id].email, step_number, variant_name)
    _incomplete(name)


def _prospect_details(campaign_id: int, prospect_id: int) -> None:
    with transaction(engine, readonly=True) as session:
        fields = workspace.prospect_fields(session, prospect_id)
        enrollment = workspace.enrollment_of(session, campaign_id, prospect_id)
    st.subheader("Prospect")
    if fields is None:
        st.warning("This prospect no longer exists.")
        return
    st.dataframe(
        [{"field": name, "value": "" if value is None else str(value)} for name, value in fields.items()],
        hide_index=True,
        width="stretch",
    )
    if enrollment is None:
        st.caption("Not enrolled in this campaign.")
    else:
        st.dataframe([enrollment], hide_index=True, width="stretch")


# --- Personalization library tab -------------------------------------------------------------------


def _import_tab_section() -> None:
    st.text("Import or export the library as YAML")
    st.caption(
        "Sections openers:, value_props:, case_studies: (name, text and tags: industries, titles, company_sizes, "
        "technologies, pains) and demos: (title, url, description, tags, industries). Entries are matched by "
        "name (demos by title); nothing is saved while any entry has a problem."
    )
    uploaded = st.file_uploader("Library YAML file", type=["yaml", "yml"], key="library_file")
    pasted = st.text_area("…or paste it here", key="library_yaml", height=160, placeholder="openers:\n  - name: …")
    import_col, export_col = st.columns(2)
    if import_col.button("Import library", key="library_import", type="primary"):
        text = uploaded.getvalue().decode("utf-8", "replace") if uploaded is not None else pasted
        try:
            with transaction(engine) as session:
                result = import_library(session, text or "")
        except OutreachError as exc:
            problems = getattr(exc, "problems", [str(exc)])
            st.error(f"Nothing was imported: {len(problems)} problem(s).")
            st.dataframe([{"problem": p} for p in problems], hide_index=True, width="stretch")
        else:
            _flash(
                "success", f"Imported: {result.created} new, {result.updated} updated, {result.unchanged} unchanged."
            )
            st.rerun()
    with transaction(engine, readonly=True) as session:
        exported = export_library(session)
    export_col.download_button("Export library (YAML)", exported, "library.yaml", "application/x-yaml",
                               key="library_export")  # fmt: skip


def _snippet_form(rows: list[dict[str, Any]]) -> None:
    by_id = {r["id"]: r for r in rows}
    choice = st.selectbox(
        "Edit snippet", [NEW, *by_id], key="library_pick",
        format_func=lambda i: i if i == NEW else f"{by_id[i]['kind']}: {by_id[i]['name']}",
    )  # fmt: skip
    current = by_id.get(choice, {})
    suffix = choice if choice != NEW else "new"
    with st.form(f"snippet_form:{suffix}"):
        left, right = st.columns(2)
        kinds = list(SNIPPET_KINDS)
        kind = left.selectbox("Kind", kinds, index=kinds.index(current.get("kind", "opener")), key=f"sn_kind:{suffix}")
        name = right.text_input("Name", value=current.get("name", ""), key=f"sn_name:{suffix}")
        text = st.text_area("Text (may use fields and spintax)", value=current.get("text", ""), key=f"sn_text:{suffix}")
        industries = left.text_input("Industries", value=_joined(current.get("industries")), key=f"sn_ind:{suffix}")
        titles = right.text_input("Titles / seniority", value=_joined(current.get("titles")), key=f"sn_tit:{suffix}")
        sizes = left.text_input("Company sizes (1-50, 51-200, 1000+)", value=_joined(current.get("company_sizes")),
                                key=f"sn_size:{suffix}")  # fmt: skip
        techs = right.text_input("Technologies", value=_joined(current.get("technologies")), key=f"sn_tech:{suffix}")
        pains = left.text_input("Pains", value=_joined(current.get("pains")), key=f"sn_pain:{suffix}")
        active = right.checkbox("Active", value=current.get("active", True), key=f"sn_active:{suffix}")
        saved = st.form_submit_button("Save snippet", type="primary")
    if saved:
        tags = {
            "industries": industries,
            "titles": titles,
            "company_sizes": sizes,
            "technologies": techs,
            "pains": pains,
        }
        data = {"kind": kind, "name": name, "text": text, "active": active, **{k: _tags(v) for k, v in tags.items()}}
        try:
            with transaction(engine) as session:
                save_snippet(session, snippet_spec(data), current.get("id"))
        except OutreachError as exc:
            st.error(f"Not saved: {exc}")
        else:
            _flash("success", f"Saved {kind} '{name.strip()}'.")
            st.rerun()
    if current and st.button("Delete this snippet", key="library_delete"):
        with transaction(engine) as session:
            delete_snippet(session, current["id"])
        st.session_state.pop("library_pick", None)
        _flash("success", f"Deleted {current['kind']} '{current['name']}'.")
        st.rerun()


def _model_section() -> None:
    with transaction(engine, readonly=True) as session:
        settings = get_model_settings(session)
        campaigns = workspace.campaign_options(session)
    with st.expander("Language model for opener drafts (optional, off by default)", expanded=settings.enabled):
        st.caption(
            "An OpenAI-compatible chat-completions endpoint drafts one opener per prospect from the company "
            "profile (role and company facts only). Drafts are stored and reviewed here before launch; sending "
            "never calls the model. The key stays in an environment variable: give its name, not the key."
        )
        with st.form("model_settings"):
            enabled = st.checkbox("Use a language model", value=settings.enabled, key="llm_enabled")
            base_url = st.text_input("Base URL", value=settings.base_url, placeholder="http://127.0.0.1:8080/v1",
                                     key="llm_base_url")  # fmt: skip
            model = st.text_input("Model", value=settings.model, key="llm_model")
            key_env = st.text_input("Environment variable with the key (empty for none)", value=settings.api_key_env,
                                    key="llm_key_env")  # fmt: skip
            saved = st.form_submit_button("Save model settings", disabled=user.role != UserRole.ADMIN)
        if saved:
            new = ModelSettings(enabled, base_url.strip(), model.strip(), key_env.strip(), settings.timeout_seconds)
            try:
                with transaction(engine) as session:
                    set_model_settings(session, new)
            except OutreachError as exc:
                st.error(f"Not saved: {exc}")
            else:
                _flash("success", "Model settings saved.")
                st.rerun()
        if settings.enabled and campaigns:
            _draft_campaign(settings, campaigns)


def _draft_campaign(settings: ModelSettings, campaigns: list[Any]) -> None:
    by_id = {c.id: c for c in campaigns}
    left, mid, right = st.columns(3)
    campaign_id = left.selectbox("Draft openers for", list(by_id), format_func=lambda i: by_id[i].name,
                                 key="llm_campaign")  # fmt: skip
    count = mid.number_input("Prospects", min_value=1, max_value=500, value=25, key="llm_count")
    overwrite = right.checkbox("Redraft existing drafts", value=False, key="llm_overwrite")
    if not st.button("Draft openers", key="llm_draft"):
        return
    with transaction(engine, readonly=True) as session:
        todo = prospects_to_draft(session, find_campaign(session, campaign_id), limit=int(count), overwrite=overwrite)
    if not todo:
        st.info("Every prospect in the audience already has a draft (tick Redraft to replace them).")
        return
    bar = st.progress(0.0, text="Drafting…")
    try:
        with ChatClient(settings) as client:
            drafts, failed = draft_openers(todo, client.draft_opener, lambda d, t: bar.progress(d / t))
    except OutreachError as exc:
        st.error(f"No drafts: {exc}")
        return
    with transaction(engine) as session:
        stored = store_drafts(session, campaign_id, drafts, settings.model, _now())
    st.success(f"Drafted {stored} opener(s); review them in the Preview tab before launch.")
    if failed:
        st.dataframe([{"failed": f} for f in failed], hide_index=True, width="stretch")


def _library_tab() -> None:
    st.caption(
        "Openers, value propositions and case studies, tagged so each prospect gets the best fit: templates use "
        "{{ opener }}, {{ value_prop }} and {{ case_study }}. The Preview tab says why a snippet was chosen."
    )
    with transaction(engine, readonly=True) as session:
        rows = snippet_rows(session)
    if rows:
        st.dataframe(
            [{**r, **{k: _joined(r[k]) for k in ("industries", "titles", "company_sizes", "technologies", "pains")}}
             for r in rows],
            hide_index=True, width="stretch", column_order=["kind", "name", "text", "industries", "titles",
                                                            "company_sizes", "technologies", "pains", "active"],
        )  # fmt: skip
    else:
        st.info("The library is empty: add a snippet below or import a YAML file.")
    _snippet_form(rows)
    _import_tab_section()
    _model_section()


# --- Demo library tab ------------------------------------------------------------------------------


def _demo_tab() -> None:
    st.caption(
        "The demo that best fits each company fills {{ demo_link }}, {{ demo_title }} and {{ demo_description }} "
        "(industries must match; tags count when the company profile mentions them). No match: the step's "
        "fallbacks text. Demos are links — with click tracking on, the link is tracked like any other; a step with "
        "`attach_demo: true` also attaches the matched demo's PDF, when it has one."
    )
    with transaction(engine, readonly=True) as session:
        rows = demo_rows(session)
    if rows:
        st.dataframe(
            [{**r, "tags": _joined(r["tags"]), "industries": _joined(r["industries"])} for r in rows],
            hide_index=True, width="stretch", column_order=["title", "url", "description", "industries", "tags"],
        )  # fmt: skip
    else:
        st.info("No demos yet: add one below, or put a demos: section in a library YAML file.")
    by_id = {r["id"]: r for r in rows}
    choice = st.selectbox("Edit demo", [NEW, *by_id], key="demo_pick",
                          format_func=lambda i: i if i == NEW else by_id[i]["title"])  # fmt: skip
    current = by_id.get(choice, {})
    suffix = choice if choice != NEW else "new"
    with st.form(f"demo_form:{suffix}"):
        title = st.text_input("Title", value=current.get("title", ""), key=f"demo_title:{suffix}")
        url = st.text_input("Link (https://…)", value=current.get("url") or "", key=f"demo_url:{suffix}")
        description = st.text_area("Description", value=current.get("description") or "", key=f"demo_desc:{suffix}")
        left, right = st.columns(2)
        industries = left.text_input("Industries", value=_joined(current.get("industries")), key=f"demo_ind:{suffix}")
        tags = right.text_input("Tags", value=_joined(current.get("tags")), key=f"demo_tags:{suffix}")
        saved = st.form_submit_button("Save demo", type="primary")
    if saved:
        data = {"title": title, "url": url, "description": description or None, "tags": _tags(tags),
                "industries": _tags(industries)}  # fmt: skip
        try:
            with transaction(engine) as session:
                save_demo(session, demo_spec(data), current.get("id"))
        except OutreachError as exc:
            st.error(f"Not saved: {exc}")
        else:
            _flash("success", f"Saved demo '{title.strip()}'.")
            st.rerun()
    if current:
        _demo_pdf(current)
    if current and st.button("Delete this demo", key="demo_delete"):
        with transaction(engine) as session:
            delete_demo(session, current["id"])
        st.session_state.pop("demo_pick", None)
        _flash("success", f"Deleted demo '{current['title']}'.")
        st.rerun()


def _demo_pdf(current: dict[str, Any]) -> None:
    """Store or remove the PDF a step with `attach_demo: true` attaches (outreach.demo_files)."""
    data_dir = load_settings().data_dir
    with transaction(engine, readonly=True) as session:
        size = demo_file_size(session, current["id"])
    limit = max_attachment_bytes() / (1024 * 1024)
    st.caption(
        (f"PDF attached: {size / 1024:,.0f} KB." if size else "No PDF: steps that attach the demo send its link only.")
        + f" Attachments may be at most {limit:.1f} MB."
    )
    upload = st.file_uploader("PDF to attach", type=["pdf"], key=f"demo_pdf:{current['id']}")
    store_col, remove_col = st.columns(2)
    if store_col.button("Store PDF", key="demo_pdf_store", disabled=upload is None) and upload is not None:
        try:
            with transaction(engine) as session:
                save_demo_file(session, current["id"], upload.getvalue(), data_dir)
        except OutreachError as exc:
            st.error(f"Not stored: {exc}")
        else:
            _flash("success", f"Stored the PDF for '{current['title']}'.")
            st.rerun()
    if size and remove_col.button("Remove PDF", key="demo_pdf_remove"):
        with transaction(engine) as session:
            remove_demo_file(session, current["id"], data_dir)
        _flash("success", f"Removed the PDF of '{current['title']}'.")
        st.rerun()


# --- the page ------------------------------------------------------------------------------------

st.title("Preview")
_show_flash()
tab_preview, tab_library, tab_demos = st.tabs(TABS, key=TAB, on_change="rerun")
# With on_change="rerun" only the open tab runs (`.open`); where state is not tracked every tab runs.
with tab_preview:
    if tab_preview.open is not False:
        _preview_tab()
with tab_library:
    if tab_library.open is not False:
        _library_tab()
with tab_demos:
    if tab_demos.open is not False:
        _demo_tab()
