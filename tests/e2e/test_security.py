"""What a stranger and a hostile prospect file can do in the browser: nothing.

Without logging in, every page's address shows only the login form. With a prospect whose fields and
reply carry script, event-handler HTML and `javascript:` links, every page and the message preview show
those values as inert text: no dialog opens, no handler runs (the payloads would set `window.__xss`),
and no `<img src=x>` or `javascript:` link reaches the DOM.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import ui
from tests.e2e.conftest import ADMIN, ADMIN_PASSWORD, Product, Watched, reply_to

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DATA = Path(__file__).parent / "data"
MALLORY = "mallory@xss-probe.example"
CAMPAIGN = "XSS probe"
REPLY = "<script>window.__xss='reply';alert('reply')</script> Interested! <img src=x onerror=alert('reply-img')>"
INJECTED = """() => ({
    flag: window.__xss ?? null,
    images: document.querySelectorAll('img[src="x"]').length,
    jsLinks: document.querySelectorAll('a[href^="javascript:" i]').length,
    handlers: document.querySelectorAll('[onerror], [onload], [onmouseover]').length,
    scripts: Array.from(document.scripts).filter((s) => s.text.includes('__xss')).length,
})"""
CLEAN = {"flag": None, "images": 0, "jsLinks": 0, "handlers": 0, "scripts": 0}


def test_every_page_shows_only_the_login_form_without_a_session(product: Product, watched: Watched) -> None:
    page = watched.page
    for title, path in ui.PAGE_PATHS.items():
        page.goto(product.url + path)
        ui.wait_for_first_render(page, ui.LOGIN_BUTTON)
        assert ui.login_form_shown(page), f"/{path}: no login form"
        assert ui.heading(page, title).count() == 0, f"/{path} drew its page without a login"
        assert ui.grid_rows(page) == [], f"/{path} showed a table without a login"
        assert page.locator(ui.SIDEBAR).get_by_role("link").count() == 0, f"/{path} showed the navigation"
    ui.screenshot(page, "00-login")


def _seed_hostile_workspace(product: Product, tmp_path: Path) -> None:
    """A prospect made of payloads, a campaign that sent to them, and their reply full of markup."""
    imported = product.cli("import", str(DATA / "xss_prospects.csv"), "--list", "xss")
    assert imported["imported"] == 1, imported
    product.cli("campaign", "apply", str(DATA / "xss_campaign.yaml"))
    product.run("campaign", "launch", CAMPAIGN)
    product.send_due()
    [sent] = product.wait_for_captured(1)
    eml = tmp_path / "hostile-reply.eml"
    eml.write_bytes(bytes(reply_to(sent, MALLORY, REPLY, subject="\"><img src=x onerror=alert('subject')>")))
    [ingested] = product.cli("inbox", "ingest", str(eml))["messages"]
    assert ingested["kind"] == "reply", ingested


def _assert_inert(watched: Watched, where: str) -> None:
    assert watched.page.evaluate(INJECTED) == CLEAN, where
    assert watched.dialogs == [], f"{where}: {watched.dialogs}"
    assert watched.page_errors == [], f"{where}: {watched.page_errors}"


def test_script_in_prospect_fields_and_replies_never_runs(product: Product, watched: Watched, tmp_path: Path) -> None:
    _seed_hostile_workspace(product, tmp_path)
    page = watched.page
    ui.login(page, product.url, ADMIN, ADMIN_PASSWORD)
    shown = []
    for title in ui.PAGES:
        ui.open_page(page, title)
        _assert_inert(watched, title)
        shown.append("\n".join(ui.grid_texts(page) + ui.code_texts(page)) + page.inner_text(ui.MAIN_BLOCK))

    ui.open_page(page, "Preview")
    ui.choose(page, "Campaign", CAMPAIGN)
    ui.fill(page, "Find a prospect", "mallory")
    ui.wait_for_text(page, "Message")
    _assert_inert(watched, "Preview of Mallory's message")
    preview = "\n".join(ui.code_texts(page))
    assert "<script>window.__xss='script';alert('script')</script>" in preview  # shown, as text
    assert "javascript:window.__xss='website'" in preview
    ui.screenshot(page, "xss-preview-message")

    everything = "\n".join(shown)
    assert "<script>window.__xss='script'" in everything  # the payload is visible somewhere as text
    assert watched.page.evaluate(INJECTED) == CLEAN
