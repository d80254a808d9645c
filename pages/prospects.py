"""Prospects: how many there are, the lists they are in, and a searchable, paged table of them."""

from __future__ import annotations

import streamlit as st

from db.engine import transaction
from outreach import workspace

PAGE_SIZE = 50

engine = st.session_state.get("engine")
if engine is None or st.session_state.get("user") is None:
    # Only app.py's login gate sets these. Streamlit runs a page file without app.py on the first run after
    # a start, while it still serves the pages/ folder directly: send that request through the gate.
    st.switch_page("app.py")

st.title("Prospects")

with transaction(engine, readonly=True) as session:
    totals = workspace.prospect_totals(session)

cols = st.columns(4)
cols[0].metric("Prospects", totals.prospects)
cols[1].metric("Role addresses", totals.role_addresses, help="info@, sales@ and the like: rarely a person")
cols[2].metric("Disposable addresses", totals.disposable)
cols[3].metric("Suppressed", totals.suppressions, help="addresses and domains that are never contacted")

if totals.prospects == 0:
    st.info("No prospects yet. Once prospects are imported, they are listed here with their lists and flags.")
    st.stop()

st.subheader("Lists")
if totals.lists:
    st.dataframe(
        [{"list": item.name, "members": item.members} for item in totals.lists], hide_index=True, width="content"
    )
else:
    st.caption("No lists yet: every prospect is outside any list.")

st.subheader("All prospects")
left, right = st.columns([2, 1])
search = left.text_input("Search", placeholder="email, name or company", key="prospects_search")
list_names = {item.id: item.name for item in totals.lists}
list_id = right.selectbox(
    "List", [None, *list_names], format_func=lambda i: "All lists" if i is None else list_names[i], key="prospects_list"
)

with transaction(engine, readonly=True) as session:
    matching = workspace.count_prospects(session, search=search, list_id=list_id)
if matching == 0:
    st.info("No prospect matches this search.")
    st.stop()

table = st.empty()
page_count = -(-matching // PAGE_SIZE)
page = 1
if page_count > 1:
    # The key follows the filter, so a new search starts again at page 1.
    page = st.pagination(page_count, key=f"prospects_page:{search}:{list_id}")
with transaction(engine, readonly=True) as session:
    rows = workspace.prospect_rows(
        session, limit=PAGE_SIZE, offset=(min(page, page_count) - 1) * PAGE_SIZE, search=search, list_id=list_id
    )
table.dataframe(rows, hide_index=True, width="stretch")
st.caption(f"{matching} matching · page {page} of {page_count}")
