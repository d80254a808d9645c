"""A marketer's first campaign in a real browser, against the product as `outreach up` runs it.

Log in, import a CSV (fixing one column's mapping, dry run first), design a two-step campaign with an
A/B test, preview a prospect's message, launch, let the worker send into the capture SMTP, see the sends
in Analytics, ingest a reply, find it labelled in the Inbox, see the lead move, and export the leads.
Every page the journey visits is saved as a screenshot under test-results/screenshots/.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from tests.e2e import ui
from tests.e2e.conftest import ADMIN, ADMIN_PASSWORD, Product, Watched, reply_to

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DATA = Path(__file__).parent / "data"
CAMPAIGN = "Journey Q1"
LIST = "journey"
ADA = "ada@lovelace-engines.example"
REPLY = "Yes, this sounds interesting. Could we talk next Tuesday afternoon? Ada"


def _import_prospects(page: ui.Page) -> None:
    ui.open_page(page, "Prospects")
    ui.screenshot(page, "01-prospects-empty")
    ui.open_tab(page, "Import")
    ui.upload(page, DATA / "prospects.csv")
    ui.wait_for_text(page, "2 · Map the columns")
    cells = ui.grid_texts(page)
    assert "Notes" in cells and "custom field" in cells  # the free-text column is kept unless told otherwise
    ui.edit_grid_cell_until(page, ui.MAPPING_GRID, column=2, row=7, value="ignore")  # Notes → ignore
    ui.choose(page, "Add the prospects to a list", "New list…")
    ui.fill(page, "New list name", LIST)
    ui.click(page, "Dry run")
    ui.wait_for_text(page, "Dry run: nothing has been written")
    ui.screenshot(page, "02-prospects-import-dry-run")
    ui.click(page, "Import")
    ui.wait_for_text(page, "Import finished: 3 new prospects, 0 updated.")
    ui.screenshot(page, "03-prospects-imported")


def _design_campaign(page: ui.Page) -> None:
    ui.open_page(page, "Campaigns")
    ui.open_tab(page, "Designer")
    ui.fill(page, "Campaign name", CAMPAIGN, wait=False)
    ui.fill(page, "Window from", "00:00", wait=False)  # every hour of every day: the worker sends at once
    ui.fill(page, "Window to", "23:59", wait=False)
    ui.fill(page, "Postal address for the footer (optional)", "Outreach Ltd, 1 Test Street, London", wait=False)
    ui.fill(page, "Subject", "Quick idea for {{ company }}", wait=False)
    ui.fill(page, "Body", "Hi {{ first_name | default('there') }}, a short note about {{ company }}.")
    ui.choose(page, "Prospect list", re.compile(rf"^{LIST} \(3 prospects\)"))
    ui.multiselect(page, "Days", ["sat", "sun"])
    ui.click(page, "Add variant (A/B test)")
    ui.fill(page, "Variant name", "B", nth=1, wait=False)
    ui.fill(page, "Subject", "{{ company }} + faster onboarding", nth=1, wait=False)
    ui.fill(page, "Body", "Hello {{ first_name | default('there') }}, onboarding at {{ company }} in days.", nth=1)
    ui.click(page, "Add email step")
    ui.fill(page, "Delay after the previous touch", "3 days", nth=1, wait=False)
    ui.fill(page, "Body", "Hi {{ first_name | default('there') }}, bumping this up in case it got buried.", nth=2)
    ui.click(page, "Check")
    ui.wait_for_text(page, f"{CAMPAIGN}: the definition is valid (2 steps).")
    ui.screenshot(page, "04-campaigns-designer")
    ui.click(page, "Save campaign")
    ui.wait_for_text(page, f"Created campaign {CAMPAIGN}")


def _preview(page: ui.Page) -> None:
    ui.open_page(page, "Preview")
    ui.fill(page, "Find a prospect", "ada")
    ui.wait_for_text(page, "Message")
    codes = "\n".join(ui.code_texts(page))
    assert "Ada" in codes and "Analytical Engines" in codes, codes  # the exact text Ada would get
    assert "{{" not in codes.split("Step 1 as written")[0]
    ui.screenshot(page, "05-preview")


def _launch(page: ui.Page) -> None:
    ui.open_page(page, "Campaigns")
    ui.choose(page, "Campaign", CAMPAIGN)
    ui.launch_campaign(page)
    ui.wait_for_text(page, f"Launched {CAMPAIGN}: 3 prospects enrolled; it is running.")
    ui.screenshot(page, "06-campaigns-launched")


def _leads_row(page: ui.Page, email: str) -> list[str]:
    """The Leads table's cells on Ada's row (the row starts at her address or name)."""
    ui.open_page(page, "Leads")
    return ui.row_of(ui.grid_rows(page), email)


def test_a_marketer_imports_designs_launches_and_follows_up(product: Product, watched: Watched, tmp_path: Path) -> None:
    page = watched.page
    ui.login(page, product.url, ADMIN, ADMIN_PASSWORD)
    _import_prospects(page)
    _design_campaign(page)
    _preview(page)
    _launch(page)

    product.send_due()
    sent = product.wait_for_captured(3)  # step 1 to all three, from `up`'s worker and the pass above
    assert len(sent) == 3  # never twice
    to_ada = next(m for m in sent if ADA in m.rcpt_to)
    assert re.fullmatch(r"Quick idea for Analytical Engines|Analytical Engines \+ faster onboarding", to_ada.subject)

    ui.open_page(page, "Analytics")
    assert ui.analytics_sent(page) >= 3
    ui.screenshot(page, "07-analytics")
    before = _leads_row(page, ADA)

    eml = tmp_path / "reply.eml"
    eml.write_bytes(bytes(reply_to(to_ada, ADA, REPLY)))
    [ingested] = product.cli("inbox", "ingest", str(eml))["messages"]
    assert (ingested["kind"], ingested["intent"]) == ("reply", "interested"), ingested

    ui.open_page(page, "Inbox & Tasks")
    row = ui.row_of(ui.grid_rows(page), ADA)
    assert "interested" in row, row
    ui.screenshot(page, "08-inbox")

    after = _leads_row(page, ADA)
    assert after != before, (before, after)  # the reply moved the lead (stage, score)
    assert "interested" in after, after
    ui.screenshot(page, "09-leads")

    ui.open_page(page, "Prospects")
    ui.open_tab(page, "Export")
    exported = ui.download(page, "Leads CSV", tmp_path / "leads.csv")
    rows = list(csv.DictReader(exported.open(encoding="utf-8")))
    ada = next(r for r in rows if ADA in r.values())
    assert "interested" in ada.values(), ada
    ui.screenshot(page, "10-prospects-export")

    for number, name in ((11, "Experiments"), (12, "Settings")):
        ui.open_page(page, name)
        ui.screenshot(page, f"{number}-{name.lower()}")
    assert watched.dialogs == [] and watched.page_errors == [], (watched.dialogs, watched.page_errors)
