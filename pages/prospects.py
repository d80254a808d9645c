"""Prospects: import a file (mapping, dry run, then import), browse and act on prospects, lists, suppression,
export.

A face over outreach/: every decision is made by the services (prospects, prospect_search, prospect_lists,
suppression, erasure, export) and the page's plain-data helpers (prospect_views, uploads). Text that came
from a file or a prospect is only ever shown in tables and widget values, never as Markdown or HTML.
Tabs run lazily: only the open one queries the database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import plotly.express as px
import streamlit as st

from db.engine import transaction
from outreach import prospect_views as views
from outreach import workspace
from outreach.config import load_settings
from outreach.erasure import forget
from outreach.errors import OutreachError
from outreach.export import EXPORT_KINDS, FORMATS
from outreach.prospect_lists import (
    add_matching_to_list,
    add_to_list,
    create_list,
    delete_list,
    list_lists,
    tag_matching,
    tag_prospects,
)
from outreach.prospect_mapping import list_presets, load_preset, save_preset
from outreach.prospect_search import ProspectFilter, ProspectPage, filter_choices, prospect_detail, search_prospects
from outreach.prospects import FilePreview, ImportOptions, ImportReport, dry_run, import_prospects, preview_file
from outreach.suppression import list_suppressions, suppress, unsuppress
from outreach.uploads import StoredUpload, remove_stale_uploads, remove_upload, save_upload, shown_message

PAGE_SIZES = (25, 50, 100, 200)
SUPPRESSIONS_PER_PAGE = 100
UPLOAD_TYPES = ["csv", "tsv", "txt", "xlsx"]
EXPORTERS = "HubSpot, Apollo, LinkedIn, Salesforce, Mailchimp or lemlist"
NO_PROSPECTS = (
    f"No prospects yet. Upload a CSV or XLSX export from {EXPORTERS} in the Import tab, "
    "or run `outreach import FILE --list NAME`."
)
# List names are stored with surrounding spaces removed, so these choices can never be a real list's name.
NEW_LIST = " New list… "
NO_LIST = " No list "
TABS = ["Browse", "Import", "Lists", "Suppression", "Export"]
EXPORT_MIME = {"csv": "text/csv", "json": "application/json"}

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

settings = load_settings()
state = st.session_state


def _done(message: str) -> None:
    """Report a change after a rerun, so every count on the page already includes it."""
    state["prospects_flash"] = message
    st.rerun()


def _list_label(choice: str) -> str:
    return choice.strip()


# --- Browse --------------------------------------------------------------------------------------


def _filters(choices: dict[str, list[str]]) -> tuple[ProspectFilter, int]:
    top = st.columns([3, 2, 2])
    text = top[0].text_input("Search", placeholder="email, name or company", key="prospects_search")
    list_name = top[1].selectbox("List", choices["lists"], index=None, placeholder="All lists", key="prospects_list")
    tag = top[2].selectbox("Tag", choices["tags"], index=None, placeholder="Any tag", key="prospects_tag")
    bottom = st.columns([3, 2, 2])
    company = bottom[0].text_input("Company contains", key="prospects_company")
    country = bottom[1].selectbox(
        "Country", choices["countries"], index=None, placeholder="Any country", key="prospects_country"
    )
    page_size = bottom[2].selectbox("Rows per page", PAGE_SIZES, index=1, key="prospects_page_size")
    flt = ProspectFilter(
        text=text.strip() or None,
        list_name=list_name,
        tag=tag,
        company=company.strip() or None,
        country=country,
    )
    return flt, int(page_size)


def _cursor(signature: tuple[ProspectFilter, int]) -> dict[str, Any]:
    """Keyset paging state: the `after_id` of every page visited so far; a new filter starts at page 1."""
    cursor = state.get("prospects_cursor")
    if cursor is None or cursor["signature"] != signature:
        generation = cursor["generation"] + 1 if cursor else 0
        cursor = {"signature": signature, "after": [None], "generation": generation}
        state["prospects_cursor"] = cursor
    return cursor


def _turn_page(cursor: dict[str, Any], after_id: int | None) -> None:
    """Next page when `after_id` is given, else the previous one; the row selection starts afresh."""
    if after_id is not None:
        cursor["after"].append(after_id)
    elif len(cursor["after"]) > 1:
        cursor["after"].pop()
    cursor["generation"] += 1


def _browse() -> None:
    with transaction(engine, readonly=True) as session:
        choices = filter_choices(session)
    flt, page_size = _filters(choices)
    cursor = _cursor((flt, page_size))
    with transaction(engine, readonly=True) as session:
        page = search_prospects(
            session, flt, page=len(cursor["after"]), page_size=page_size, after_id=cursor["after"][-1]
        )
    if page.total == 0:
        st.info(NO_PROSPECTS if flt == ProspectFilter() else "No prospect matches these filters: clear one of them.")
        return
    event = st.dataframe(
        views.prospect_table(page),
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="multi-row",
        key=f"prospects_table_{cursor['generation']}",
    )
    previous, where, following = st.columns([1, 4, 1], vertical_alignment="center")
    previous.button(
        "Previous",
        disabled=len(cursor["after"]) == 1,
        on_click=_turn_page,
        args=(cursor, None),
        key="prospects_previous",
    )
    where.caption(f"Page {page.page} · {views.total_text(page)} matching")
    following.button(
        "Next",
        disabled=page.next_after_id is None,
        on_click=_turn_page,
        args=(cursor, page.next_after_id),
        key="prospects_next",
    )
    selected = [page.rows[i].id for i in event.selection.rows if i < len(page.rows)]
    _bulk_actions(flt, page, selected)
    if len(selected) == 1:
        _detail(selected[0])
    else:
        st.caption("Select one row to see that prospect's fields, lists, campaigns and timeline.")


def _bulk_actions(flt: ProspectFilter, page: ProspectPage, selected: list[int]) -> None:
    st.subheader("Add to a list or tag")
    scope = st.radio(
        "Apply to",
        ["selected", "matching"],
        format_func=lambda s: "Selected rows" if s == "selected" else "Every prospect matching the filters",
        horizontal=True,
        key="prospects_scope",
    )
    count = f"{len(selected):,} selected" if scope == "selected" else f"{views.total_text(page)} matching"
    st.caption(f"Applies to {count}.")
    blocked = scope == "selected" and not selected
    with transaction(engine, readonly=True) as session:
        lists = [item.name for item in list_lists(session)]
    left, right = st.columns(2)
    with left:
        choice = st.selectbox("List", [NEW_LIST, *lists], format_func=_list_label, key="bulk_list_choice")
        name = st.text_input("New list name", key="bulk_new_list") if choice == NEW_LIST else choice
        if st.button("Add to list", disabled=blocked or not name.strip(), key="bulk_add_to_list"):
            try:
                with transaction(engine) as session:
                    if scope == "selected":
                        added = add_to_list(session, name, selected)
                    else:
                        added = add_matching_to_list(session, name, flt)
            except OutreachError as exc:
                st.error(str(exc))
            else:
                _done(f"Added {added:,} prospects to the list (the others were in it already).")
    with right:
        tags = views.split_tags(st.text_input("Tags (comma-separated)", key="bulk_tags"))
        if st.button("Add tags", disabled=blocked or not tags, key="bulk_add_tags"):
            try:
                with transaction(engine) as session:
                    if scope == "selected":
                        added = tag_prospects(session, selected, tags)
                    else:
                        added = tag_matching(session, flt, tags)
            except OutreachError as exc:
                st.error(str(exc))
            else:
                _done(f"Added {added:,} tags (prospects that had a tag already were left as they were).")


def _detail(prospect_id: int) -> None:
    try:
        with transaction(engine, readonly=True) as session:
            detail = prospect_detail(session, prospect_id)
    except OutreachError as exc:
        st.error(str(exc))
        return
    st.subheader("Prospect")
    st.dataframe(views.detail_fields(detail), hide_index=True, width="stretch", key="prospect_fields")
    st.markdown("**Custom fields**")
    if detail.custom_fields:
        st.dataframe(views.custom_field_rows(detail), hide_index=True, width="stretch", key="prospect_custom")
    else:
        st.caption("No custom fields: columns the mapping keeps as custom fields appear here.")
    st.markdown("**Campaigns**")
    if detail.campaigns:
        st.dataframe(views.campaign_rows(detail), hide_index=True, width="stretch", key="prospect_campaigns")
    else:
        st.caption("Not in any campaign yet.")
    st.markdown("**Timeline**")
    if detail.timeline:
        st.dataframe(views.timeline_rows(detail), hide_index=True, width="stretch", key="prospect_timeline")
    else:
        st.caption("Nothing has happened yet: touches, opens, clicks, replies, stage changes and tasks appear here.")


# --- Import --------------------------------------------------------------------------------------


def _drop_upload() -> None:
    """Forget the current upload: its stored file, preview, dry run, and the mapping edits."""
    upload = state.pop("import_upload", None)
    if upload is not None:
        remove_upload(upload, settings.data_dir)
    for key in ("import_preview", "import_dry_run", "import_preset"):
        state.pop(key, None)
    state["import_editor_version"] = state.get("import_editor_version", 0) + 1


def _take_upload() -> StoredUpload | None:
    """The stored copy of the file in the uploader, saved once per file under a generated name."""
    uploaded = st.file_uploader(
        "Prospect file (CSV, TSV or XLSX)",
        type=UPLOAD_TYPES,
        key="import_file",
        help=f"Exports from {EXPORTERS} are recognised; any other layout can be mapped by hand.",
    )
    if uploaded is None:
        if state.pop("import_upload_id", None) is not None:
            _drop_upload()
        return None
    if state.get("import_upload_id") != uploaded.file_id:
        _drop_upload()
        state.pop("import_result", None)
        remove_stale_uploads(settings.data_dir, datetime.now(UTC))
        uploaded.seek(0)
        try:
            state["import_upload"] = save_upload(uploaded, uploaded.name, settings.data_dir)
        except OutreachError as exc:
            st.error(str(exc))
            return None
        state["import_upload_id"] = uploaded.file_id
    return state.get("import_upload")


def _preview(upload: StoredUpload) -> FilePreview | None:
    preview = state.get("import_preview")
    if preview is not None:
        return preview
    try:
        preset_mapping = None
        if state.get("import_preset"):
            with transaction(engine, readonly=True) as session:
                preset_mapping = load_preset(session, state["import_preset"])
        preview = preview_file(upload.path, preset_mapping=preset_mapping)
    except OutreachError as exc:
        st.error(shown_message(str(exc), upload))
        return None
    state["import_preview"] = preview
    return preview


def _presets(mapping: dict[str, str] | None) -> None:
    with transaction(engine, readonly=True) as session:
        names = [p.name for p in list_presets(session)]
    load_col, load_button, save_col, save_button = st.columns([3, 1, 3, 1], vertical_alignment="bottom")
    chosen = load_col.selectbox(
        "Start from a saved mapping", names, index=None, placeholder="No preset", key="import_preset_choice"
    )
    if load_button.button("Apply preset", disabled=chosen is None, key="import_apply_preset"):
        _drop_preview_for_preset(chosen)
    name = save_col.text_input("Save this mapping as", placeholder="e.g. HubSpot contacts", key="import_preset_name")
    if save_button.button("Save preset", disabled=mapping is None or not name.strip(), key="import_save_preset"):
        try:
            with transaction(engine) as session:
                save_preset(session, name, mapping or {})
        except OutreachError as exc:
            st.error(str(exc))
        else:
            st.success("Saved the mapping as a preset.")


def _drop_preview_for_preset(name: str | None) -> None:
    state["import_preset"] = name
    state.pop("import_preview", None)
    state.pop("import_dry_run", None)
    state["import_editor_version"] = state.get("import_editor_version", 0) + 1
    st.rerun()


def _mapping_editor(preview: FilePreview) -> dict[str, str] | None:
    if not preview.has_email:
        st.warning("No column was recognised as the email address: set one column's 'maps to' to email.")
    edited = st.data_editor(
        views.editor_rows(preview.mapping, preview.samples),
        key=f"import_mapping_{state.get('import_editor_version', 0)}",
        hide_index=True,
        num_rows="fixed",
        width="stretch",
        column_config={
            "column": st.column_config.TextColumn("column in the file", disabled=True),
            "example": st.column_config.TextColumn("example", disabled=True),
            "maps_to": st.column_config.SelectboxColumn("maps to", options=list(views.TARGET_CHOICES), required=True),
            "custom_name": st.column_config.TextColumn(
                "custom field name", help="The name templates use, e.g. {{ lifecycle_stage }}"
            ),
        },
    )
    try:
        return views.mapping_from_rows(edited)
    except OutreachError as exc:
        st.error(str(exc))
        return None


def _list_and_tags() -> tuple[str | None, tuple[str, ...]]:
    with transaction(engine, readonly=True) as session:
        lists = [item.name for item in list_lists(session)]
    left, right = st.columns(2)
    with left:
        choice = st.selectbox(
            "Add the prospects to a list", [NO_LIST, NEW_LIST, *lists], format_func=_list_label, key="import_list"
        )
        if choice == NEW_LIST:
            list_name = st.text_input("New list name", key="import_new_list").strip() or None
        else:
            list_name = None if choice == NO_LIST else choice
    tags = views.split_tags(right.text_input("Tag every prospect (comma-separated)", key="import_tags"))
    return list_name, tags


def _import_tab() -> None:
    upload = _take_upload()
    if upload is None:
        if "import_result" in state:
            _report(*state["import_result"], dry=False)
        else:
            st.caption(
                "Upload a file to see how it is read and how its columns map; a dry run then shows every row's "
                "outcome before anything is written."
            )
        return
    preview = _preview(upload)
    if preview is None:
        return
    st.subheader("1 · How the file was read")
    st.caption(views.read_summary(preview))
    st.dataframe(views.sample_rows(preview.header, preview.samples), hide_index=True, key="import_samples")
    st.subheader("2 · Map the columns")
    mapping = _mapping_editor(preview)
    _presets(mapping)
    st.subheader("3 · List and tags")
    list_name, tags = _list_and_tags()
    st.subheader("4 · Dry run, then import")
    if mapping is None:
        return
    options = ImportOptions(
        list_name=list_name,
        tags=tags,
        mapping=mapping,
        rejects_dir=settings.data_dir / "rejects",
        source=upload.display_name,
    )
    run_col, import_col = st.columns(2)
    if run_col.button("Dry run", type="primary", key="import_dry_run_button"):
        _dry_run(upload, options)
    checked = state.get("import_dry_run")
    current = checked is not None and checked[0] == options
    clicked = import_col.button(
        "Import",
        type="primary" if current else "secondary",
        disabled=not current,
        help="Run a dry run of these settings first.",
        key="import_button",
    )
    if checked is not None and not current:
        st.warning("The mapping, list or tags changed since the dry run: run it again before importing.")
    if clicked:
        _import(upload, options)
    elif current:
        _report(upload.display_name, checked[1], dry=True)


def _dry_run(upload: StoredUpload, options: ImportOptions) -> None:
    try:
        with st.spinner("Dry run: reading every row…"), transaction(engine) as session:
            report = dry_run(session, upload.path, options, secret_key=settings.secret_key())
    except OutreachError as exc:
        state.pop("import_dry_run", None)
        st.error(shown_message(str(exc), upload))
        return
    state["import_dry_run"] = (options, report)


def _import(upload: StoredUpload, options: ImportOptions) -> None:
    bar = st.progress(0.0, text="Importing…")

    def progress(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0, text=f"Importing… {done:,} of about {total:,} rows")

    try:
        with transaction(engine) as session:
            report = import_prospects(
                session, upload.path, options, secret_key=settings.secret_key(), progress=progress
            )
    except OutreachError as exc:
        bar.empty()
        st.error(shown_message(str(exc), upload) + " Nothing was imported.")
        return
    bar.progress(1.0, text=f"Done: {report.rows:,} rows")
    state["import_result"] = (upload.display_name, report)
    _drop_upload()
    _report(upload.display_name, report, dry=False)


def _report(file_name: str, report: ImportReport, *, dry: bool) -> None:
    """Counts by outcome, rejects with their download, empty template fields and the mapping used."""
    which = "dry" if dry else "final"
    if dry:
        st.info("Dry run: nothing has been written. These are the counts the import will report.")
    else:
        st.success(f"Import finished: {report.imported:,} new prospects, {report.updated:,} updated.")
    counts = views.outcome_counts(report)
    columns = st.columns(len(counts) + 1)
    columns[0].metric("Rows", f"{report.rows:,}")
    for column, (outcome, count) in zip(columns[1:], counts.items(), strict=True):
        column.metric(outcome.capitalize(), f"{count:,}")
    st.caption(views.accounting_line(report))
    chart = px.bar(x=list(counts), y=list(counts.values()), labels={"x": "outcome", "y": "rows"})
    st.plotly_chart(chart, width="stretch", key=f"import_chart_{which}")
    if report.rejected:
        st.markdown("**Rejected rows** (row numbers count the header and any lines above it)")
        st.dataframe(views.reject_rows(report), hide_index=True, width="stretch", key=f"import_rejects_{which}")
        if report.rejected > len(report.rejects):
            st.caption(f"Showing the first {len(report.rejects):,} of {report.rejected:,}; the CSV holds them all.")
        st.download_button(
            "Download rejects CSV",
            data=lambda: views.rejects_csv(report),  # built on click: the file can hold 100k rows
            file_name=f"{Path(file_name).stem or 'import'}-rejects.csv",
            mime="text/csv",
            on_click="ignore",
            key=f"import_rejects_download_{which}",
        )
    st.markdown("**Template fields that would be empty**")
    empty = views.empty_field_rows(report)
    if empty:
        st.dataframe(empty, hide_index=True, key=f"import_empty_{which}")
    else:
        st.caption("Every template field has a value for every prospect in the file.")
    with st.expander("Mapping used"):
        st.dataframe(views.mapping_table(report), hide_index=True, key=f"import_mapping_used_{which}")


# --- Lists ---------------------------------------------------------------------------------------


def _lists_tab() -> None:
    with transaction(engine, readonly=True) as session:
        lists = list_lists(session)
    if lists:
        st.dataframe(
            [
                {
                    "list": item.name,
                    "members": item.members,
                    "description": views.shown(item.description),
                    "created": views.shown(item.created_at),
                }
                for item in lists
            ],
            hide_index=True,
            width="stretch",
            key="lists_table",
        )
    else:
        st.info("No lists yet. Create one below, pick one when importing, or add prospects to one under Browse.")
    st.subheader("New list")
    with st.form("new_list", clear_on_submit=True):
        name = st.text_input("Name")
        description = st.text_input("Description (optional)")
        submitted = st.form_submit_button("Create list")
    if submitted:
        try:
            with transaction(engine) as session:
                create_list(session, name, description.strip() or None)
        except OutreachError as exc:
            st.error(str(exc))
        else:
            _done("Created the list.")
    if not lists:
        return
    st.subheader("Delete a list")
    members = {item.name: item.members for item in lists}
    doomed = st.selectbox("List to delete", list(members), index=None, placeholder="Pick a list", key="delete_list")
    if doomed is None:
        return
    confirmed = st.checkbox(
        f"Yes, delete this list ({members[doomed]:,} members). The prospects themselves stay.", key="delete_confirm"
    )
    if st.button("Delete list", disabled=not confirmed, key="delete_list_button"):
        try:
            with transaction(engine) as session:
                delete_list(session, doomed)
        except OutreachError as exc:
            st.error(str(exc))
        else:
            state.pop("delete_confirm", None)
            _done("Deleted the list; its prospects stay.")


# --- Suppression ---------------------------------------------------------------------------------


def _suppression_tab() -> None:
    st.caption("Addresses and domains here are never imported and never contacted; a domain covers its subdomains.")
    search = st.text_input("Search the list", placeholder="address or domain", key="suppression_search")
    with transaction(engine, readonly=True) as session:
        _entries, total = list_suppressions(session, search=search or None, limit=1)
    if total == 0:
        st.info(
            "Nothing matches."
            if search
            else "Nothing is suppressed yet. Add addresses or domains below, "
            "or run `outreach suppress ADDRESS`; unsubscribes and bounces are added by themselves."
        )
    else:
        page_count = -(-total // SUPPRESSIONS_PER_PAGE)
        page = st.pagination(page_count, key=f"suppression_page:{search}") if page_count > 1 else 1
        with transaction(engine, readonly=True) as session:
            entries, total = list_suppressions(
                session,
                search=search or None,
                limit=SUPPRESSIONS_PER_PAGE,
                offset=(min(page, page_count) - 1) * SUPPRESSIONS_PER_PAGE,
            )
        st.dataframe(views.suppression_rows(entries), hide_index=True, width="stretch", key="suppression_table")
        st.caption(f"{total:,} entries · page {page} of {page_count}")
    left, right = st.columns(2)
    with left, st.form("suppress", clear_on_submit=True):
        text = st.text_area("Add addresses or domains", placeholder="ann@example.com\nexample.org", height=120)
        submitted = st.form_submit_button("Suppress")
    if submitted:
        _suppress(text)
    with right, st.form("unsuppress", clear_on_submit=True):
        entry = st.text_input("Remove an address or domain")
        removed = st.form_submit_button("Remove from the list")
    if removed:
        _unsuppress(entry)
    _forget_form()


def _suppress(text: str) -> None:
    entries = views.split_entries(text)
    if not entries:
        st.error("Enter at least one email address or domain, one per line.")
        return
    try:
        with transaction(engine) as session:
            result = suppress(session, entries, source="dashboard")
    except OutreachError as exc:
        st.error(f"{exc}. Nothing was added.")
        return
    _done(f"Suppressed {result.added:,} new entries ({result.already:,} were on the list already).")


def _unsuppress(entry: str) -> None:
    if not entry.strip():
        st.error("Enter the address or domain to remove.")
        return
    try:
        with transaction(engine) as session:
            removed = unsuppress(session, entry)
    except OutreachError as exc:
        st.error(str(exc))
        return
    if not removed:
        st.warning("That address or domain is not on the list (forgotten people stay suppressed for good).")
        return
    _done("Removed from the suppression list.")


def _forget_form() -> None:
    st.subheader("Forget a person")
    st.caption(
        "Erases the person everywhere: prospect, lists, tags, messages, events, replies and tasks. Only a keyed "
        "hash of the address stays, so a later import or reply can never make them sendable again. "
        "This cannot be undone."
    )
    with st.form("forget", clear_on_submit=True):
        address = st.text_input("Email address")
        typed = st.text_input("Type the address again to confirm")
        submitted = st.form_submit_button("Forget this person", type="primary")
    if not submitted:
        return
    if not views.confirmation_matches(address, typed):
        st.error("The confirmation does not match the address: nothing was erased.")
        return
    try:
        with st.spinner("Erasing…"), transaction(engine) as session:
            result = forget(session, address, secret_key=settings.secret_key())
    except OutreachError as exc:
        st.error(str(exc))
        return
    if not result.prospect_found:
        _done("No prospect had that address; it is now suppressed by a keyed hash so it can never be contacted.")
        return
    erased = sum(result.deleted.values())
    _done(f"Forgotten: {erased:,} records erased; only a keyed hash stays on the suppression list.")


# --- Export --------------------------------------------------------------------------------------


def _export_builder(kind: str, fmt: str) -> Callable[[], bytes]:
    def build() -> bytes:
        with transaction(engine, readonly=True) as session:
            return views.export_bytes(session, kind, fmt)

    return build


def _export_tab() -> None:
    st.caption(
        "Files are built when you click. In CSV files, cells a spreadsheet would run as a formula (starting "
        "with = + - @, a tab or a carriage return) get a leading apostrophe."
    )
    descriptions = {
        "prospects": "every prospect with its fields, custom fields, tags and lists",
        "leads": "every prospect's lead stage and score",
        "activity": "every touch, open, click and reply, oldest first",
    }
    today = date.today()
    for kind in EXPORT_KINDS:
        label, *buttons = st.columns([4, 1, 1], vertical_alignment="center")
        label.markdown(f"**{kind.capitalize()}**: {descriptions.get(kind, kind)}")
        for column, fmt in zip(buttons, FORMATS, strict=True):
            column.download_button(
                f"{kind.capitalize()} {fmt.upper()}",
                data=_export_builder(kind, fmt),
                file_name=views.export_file_name(kind, fmt, today),
                mime=EXPORT_MIME[fmt],
                on_click="ignore",
                key=f"export_{kind}_{fmt}",
            )


# --- the page ------------------------------------------------------------------------------------


def _totals(box: Any) -> None:
    """The counts above the tabs, drawn last so they include whatever this run changed."""
    with transaction(engine, readonly=True) as session:
        totals = workspace.prospect_totals(session)
    cols = box.columns(4)
    cols[0].metric("Prospects", totals.prospects)
    cols[1].metric("Role addresses", totals.role_addresses, help="info@, sales@ and the like: rarely a person")
    cols[2].metric("Disposable addresses", totals.disposable)
    cols[3].metric("Suppressed", totals.suppressions, help="addresses and domains that are never contacted")


st.title("Prospects")
totals_box = st.container()
if flash := state.pop("prospects_flash", None):
    st.success(flash)
tabs = dict(zip(TABS, st.tabs(TABS, key="prospects_tab", on_change="rerun"), strict=True))
sections = {
    "Browse": _browse,
    "Import": _import_tab,
    "Lists": _lists_tab,
    "Suppression": _suppression_tab,
    "Export": _export_tab,
}
for label, render in sections.items():
    if tabs[label].open:
        with tabs[label]:
            render()
_totals(totals_box)
