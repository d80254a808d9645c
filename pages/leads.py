"""Leads: scored leads (sortable, filtered and paged in SQL), the pipeline by stage, why each lead scores
what it does, the ideal customer profile the fit part is scored against, and the outcome model."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from db.engine import transaction
from db.enums import LeadStage
from outreach import lead_scores
from outreach.errors import OutreachError
from outreach.scoring import GRADE_CUTOFFS, GRADES, SENIORITY_NAMES

PAGE_SIZE = 50
TOP_PER_STAGE = 5
REFRESH_NOW_LIMIT = 20_000  # above this the worker's nightly pass re-scores (a page run must stay short)
FLASH = "leads_flash"

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Leads")
cutoffs = ", ".join(f"{grade} ≥ {cutoff:g}" for grade, cutoff in GRADE_CUTOFFS)
st.caption(
    f"Score = fit with the ideal customer profile + engagement (human opens, clicks, replies by intent, meetings), "
    f"each engagement point halving every half-life. Grades: {cutoffs}, D below."
)
if FLASH in st.session_state:
    st.success(st.session_state.pop(FLASH))


def _label(stage: LeadStage | str) -> str:
    return str(stage).replace("_", " ")


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def _profile_editor(total: int) -> None:
    """The ideal customer profile; saving it re-scores the leads (or leaves that to the nightly pass)."""
    with transaction(engine, readonly=True) as session:
        profile = lead_scores.load_profile(session)
    with st.form("leads_profile"):
        st.subheader("Ideal customer profile")
        industries = st.text_input("Industries (comma-separated)", ", ".join(profile.industries))
        titles = st.text_input("Title keywords (comma-separated)", ", ".join(profile.title_keywords))
        seniorities = st.multiselect("Seniority", list(SENIORITY_NAMES), default=list(profile.seniorities))
        low, high = st.columns(2)
        min_employees = low.text_input("Company size from (employees)", str(profile.min_employees or ""))
        max_employees = high.text_input("Company size up to (employees)", str(profile.max_employees or ""))
        half_life = st.number_input(
            "Engagement half-life (days)", min_value=0.5, max_value=365.0, value=float(profile.half_life_days)
        )
        if not st.form_submit_button("Save profile and re-score"):
            return
    data = {
        "industries": _split(industries), "title_keywords": _split(titles), "seniorities": seniorities,
        "min_employees": min_employees.strip() or None, "max_employees": max_employees.strip() or None,
        "half_life_days": half_life,
    }  # fmt: skip
    try:
        with transaction(engine) as session:
            lead_scores.save_profile(session, data)
    except OutreachError as exc:
        st.error(str(exc))
        return
    if total <= REFRESH_NOW_LIMIT:
        with st.spinner("Re-scoring leads…"):
            count = lead_scores.refresh_all(engine, datetime.now(UTC))
        st.session_state[FLASH] = f"Profile saved; re-scored {count} leads."
    else:
        st.session_state[FLASH] = f"Profile saved; the worker re-scores all {total} leads in its nightly pass."
    st.rerun()


with transaction(engine, readonly=True) as session:
    board = lead_scores.pipeline_board(session, top=TOP_PER_STAGE)
total = sum(column.count for column in board)

if total == 0:
    st.info("No qualified leads yet. Prospects get a stage and a score here as they are contacted and reply.")
    _profile_editor(total)
    st.stop()

table_tab, board_tab, lead_tab, profile_tab = st.tabs(["Leads", "Pipeline", "Breakdown", "Profile & model"])

# --- the table ---------------------------------------------------------------------------------------
with table_tab:
    stage_col, grade_col, sort_col, order_col = st.columns(4)
    stage = stage_col.selectbox(
        "Stage",
        [None, *(c.stage for c in board if c.count)],
        format_func=lambda s: "All stages" if s is None else _label(s),
        key="leads_stage",
    )
    grade = grade_col.selectbox(
        "Grade", [None, *GRADES], format_func=lambda g: "All grades" if g is None else g, key="leads_grade"
    )
    sort = sort_col.selectbox("Sort by", list(lead_scores.SORTS), key="leads_sort")
    descending = order_col.selectbox("Order", ["highest first", "lowest first"], key="leads_order") == "highest first"
    search = st.text_input("Search email or company", key="leads_search")
    where = lead_scores.LeadFilter(stage=stage, grade=grade, search=search or None)
    with transaction(engine, readonly=True) as session:
        matching = lead_scores.count_leads(session, where)
    page_count = max(1, -(-matching // PAGE_SIZE))
    table = st.empty()
    page = (
        st.pagination(page_count, key=f"leads_page:{stage}:{grade}:{sort}:{descending}:{search}")
        if page_count > 1
        else 1
    )
    with transaction(engine, readonly=True) as session:
        rows = lead_scores.lead_table(
            session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, sort=sort, descending=descending, where=where
        )
    table.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_order=["email", "name", "company", "title", "stage", "score", "grade", "last activity", "stage since"],
        column_config={
            "score": st.column_config.NumberColumn(format="%.1f"),
            "last activity": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "stage since": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )
    st.caption(f"{matching} matching lead(s); page {page} of {page_count}.")

    def _csv() -> str:
        with transaction(engine, readonly=True) as export_session:
            return "".join(lead_scores.export_csv(export_session, where))

    st.download_button("Download CSV", data=_csv, file_name="leads.csv", mime="text/csv", key="leads_csv")

# --- the pipeline board ------------------------------------------------------------------------------
with board_tab:
    open_columns = [c for c in board if c.stage in lead_scores.BOARD_STAGES]
    for column, slot in zip(open_columns, st.columns(len(open_columns)), strict=True):
        slot.metric(_label(column.stage), column.count)
    closed = [c for c in board if c.stage in lead_scores.CLOSED_STAGES]
    st.caption("Closed: " + " · ".join(f"{_label(c.stage)} {c.count}" for c in closed))
    st.dataframe(
        {
            _label(c.stage): [
                f"{r['name'] or r['email']} · {r['score']:.0f} ({r['grade']})" for r in c.top
            ] + [""] * (TOP_PER_STAGE - len(c.top))
            for c in board
            if c.count
        },
        hide_index=True,
        width="stretch",
    )  # fmt: skip
    st.caption(f"The {TOP_PER_STAGE} best-scored leads of each stage.")

# --- one lead's breakdown ----------------------------------------------------------------------------
with lead_tab:
    if not rows:
        st.info("No lead on this page of the table: change the filters on the Leads tab.")
    else:
        chosen = st.selectbox(
            "Lead (from the current page of the table)",
            [r["prospect_id"] for r in rows],
            format_func=lambda pid: next(f"{r['email']} · {r['score']:.1f} ({r['grade']})" for r in rows
                                         if r["prospect_id"] == pid),
            key="leads_breakdown",
        )  # fmt: skip
        with transaction(engine, readonly=True) as session:
            detail = lead_scores.lead_breakdown(session, chosen)
        if detail is not None:
            score_m, grade_m, fit_m, engagement_m, probability_m = st.columns(5)
            score_m.metric("Score", f"{detail.score:.1f}")
            grade_m.metric("Grade", detail.grade)
            fit_m.metric("Fit", "—" if detail.fit is None else f"{detail.fit:.1f}")
            engagement_m.metric("Engagement", "—" if detail.engagement is None else f"{detail.engagement:.1f}")
            probability_m.metric(
                "P(meeting)", "—" if detail.probability is None else f"{detail.probability:.0%}",
                help="From the outcome model, once enough leads reached (or missed) a meeting.",
            )  # fmt: skip
            st.dataframe(
                [{"points": r.get("points"), "reason": r.get("text"), "part": r.get("part")} for r in detail.reasons],
                hide_index=True,
                width="stretch",
                column_config={"points": st.column_config.NumberColumn(format="%+.1f")},
            )
            st.dataframe(
                [
                    {"": "stage", "value": _label(detail.stage)},
                    {"": "why this stage", "value": detail.stage_reason or "—"},
                    {"": "scored at", "value": detail.scored_at or "not scored yet"},
                    {"": "half-life (days)", "value": f"{detail.half_life_days:g}" if detail.half_life_days else "—"},
                ],
                hide_index=True,
            )

# --- the profile and the outcome model ---------------------------------------------------------------
with profile_tab:
    _profile_editor(total)
    st.subheader("Outcome model")
    with transaction(engine, readonly=True) as session:
        status = lead_scores.outcome_status(session)
    if status.model is None:
        st.info(f"P(meeting) is not shown: {status.message}.")
    else:
        model = status.model
        st.success(f"{status.message}. Base rate {model.base_rate:.0%}; Brier score {model.brier:.3f}.")
        st.dataframe(
            [
                {"feature": c.feature.replace("_", " "), "log-odds per unit": c.log_odds,
                 "odds ratio": c.odds_ratio, "95% low": c.low, "95% high": c.high}
                for c in model.coefficients
            ],
            hide_index=True,
            width="stretch",
            column_config={k: st.column_config.NumberColumn(format="%.3f")
                           for k in ("log-odds per unit", "odds ratio", "95% low", "95% high")},
        )  # fmt: skip
    for note in status.notes:
        st.caption(note)
    if st.button("Refit the model and re-score every lead now", key="leads_refit"):
        now = datetime.now(UTC)
        with st.spinner("Refitting and re-scoring…"):
            summary = lead_scores.nightly_refresh(engine, now)
        st.session_state[FLASH] = summary[:1].upper() + summary[1:] + "."
        st.rerun()
