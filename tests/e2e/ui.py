"""How the browser tests find things on the dashboard and wait for Streamlit: every selector lives here.

Streamlit draws a page over a websocket after the HTML has loaded, and redraws it after each widget
change; while a script runs, the app root's `data-test-script-state` is not `notRunning` (the "Running…"
status widget shows only after 500 ms) and the elements of the previous run are marked stale. `settle`
waits for both to go. Tables (st.dataframe / st.data_editor) are drawn on a
canvas; their cells are read from the accessible grid the data grid keeps in the DOM for the visible rows.
When a page changes its labels, adapt the names here, not in the tests.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, Playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1400, "height": 1000}
TIMEOUT_MS = 30_000
SETTLE_MS = 300  # how long the page must stay idle to count as drawn

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-results" / "screenshots"

# The pages as app.py registers them: navigation label == the page's st.title.
PAGES = ("Prospects", "Campaigns", "Preview", "Inbox & Tasks", "Analytics", "Experiments", "Leads", "Settings")
PAGE_PATHS = {
    "Prospects": "prospects",
    "Campaigns": "campaigns",
    "Preview": "preview",
    "Inbox & Tasks": "inbox",
    "Analytics": "analytics",
    "Experiments": "experiments",
    "Leads": "leads",
    "Settings": "settings",
}

# --- selectors ------------------------------------------------------------------------------------
# The app root carries the script's run state; the "Running…" status widget only shows after 500 ms.
SCRIPT_STATE = "[data-test-script-state]"
STALE = '[data-stale="true"]'
SKELETON = '[data-testid="stSkeleton"]'
MAIN = '[data-testid="stMain"], [data-testid="stAppViewContainer"], section.main'
MAIN_BLOCK = '[data-testid="stMain"]'
MAX_SHOT_HEIGHT = 4000
APP_VIEW = '[data-testid="stAppViewContainer"]'
SIDEBAR = '[data-testid="stSidebar"]'
HEADER = '[data-testid="stHeader"]'
FILE_INPUT = '[data-testid="stFileUploaderDropzoneInput"]'
DATAFRAME = '[data-testid="stDataFrame"]'
GRID_CELL = '[data-testid="stDataFrame"] table [role="gridcell"], [data-testid="stDataFrame"] table td'
CODE = '[data-testid="stCode"] code, [data-testid="stCodeBlock"] code, pre code'
ALERT_ERROR = '[data-testid="stAlertContentError"]'
LOGIN_BUTTON = '[data-testid="stFormSubmitButton"] button:has-text("Log in")'
EXCEPTION = '[data-testid="stException"]'


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless; Playwright's own browser download is never used."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def settle(page: Page, timeout_ms: int = TIMEOUT_MS) -> float:
    """Wait until no script runs and nothing on screen is stale or a skeleton, for SETTLE_MS in a row.

    Returns the moment (time.monotonic) the page became idle, for timing page loads.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    page.wait_for_selector(APP_VIEW, timeout=timeout_ms)
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        busy = page.evaluate(
            """([app, stale, skeleton]) => {
                const root = document.querySelector(app);
                return root === null
                    || root.getAttribute('data-test-script-state') !== 'notRunning'
                    || root.getAttribute('data-test-connection-state') !== 'CONNECTED'
                    || document.querySelector(stale) !== null
                    || document.querySelector(skeleton) !== null;
            }""",
            [SCRIPT_STATE, STALE, SKELETON],
        )
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif (now - quiet_since) * 1000 >= SETTLE_MS:
            return quiet_since
        page.wait_for_timeout(50)
    raise PlaywrightTimeout(f"the page was still running after {timeout_ms} ms")


def wait_for_text(page: Page, text: str | re.Pattern[str], timeout_ms: int = TIMEOUT_MS) -> Locator:
    """The first visible element with this text (settled first, so it is not a leftover of the last run)."""
    settle(page, timeout_ms)
    found = page.get_by_text(text).first
    found.wait_for(state="visible", timeout=timeout_ms)
    return found


def heading(page: Page, title: str) -> Locator:
    return page.get_by_role("heading", name=title, exact=True)


def assert_no_exception(page: Page) -> None:
    shown = page.locator(EXCEPTION)
    assert shown.count() == 0, shown.first.inner_text()


# --- login and navigation -------------------------------------------------------------------------


def login(page: Page, base_url: str, username: str, password: str, path: str = "") -> None:
    page.goto(base_url + path)
    wait_for_first_render(page, LOGIN_BUTTON)
    if not login_form_shown(page):
        errors = page.locator(ALERT_ERROR).all_inner_texts()
        raise AssertionError(f"no login form at {base_url + path}: {errors or page.inner_text('body')[:500]}")
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.locator(SIDEBAR).get_by_text("Log out").wait_for(timeout=TIMEOUT_MS)
    settle(page)


def wait_for_first_render(page: Page, expected: str) -> None:
    """After a page load: wait until the script has drawn `expected` (a selector) or an error.

    The first load runs the script twice (the page, then app.py's gate), with a quiet moment between
    the runs, so being idle alone does not mean the page is drawn.
    """
    page.locator(f"{expected}, {ALERT_ERROR}, {EXCEPTION}").first.wait_for(timeout=TIMEOUT_MS)
    settle(page)


def login_form_shown(page: Page) -> bool:
    return page.get_by_role("button", name="Log in").count() == 1


def open_page(page: Page, title: str) -> None:
    """Click the page in the sidebar navigation and wait for its title."""
    page.locator(SIDEBAR).get_by_role("link", name=title, exact=True).click()
    heading(page, title).wait_for(timeout=TIMEOUT_MS)
    settle(page)
    assert_no_exception(page)


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    settle(page)


# --- widgets --------------------------------------------------------------------------------------


def click(page: Page, label: str, nth: int = 0) -> None:
    page.get_by_role("button", name=label, exact=True).nth(nth).click()
    settle(page)


def fill(page: Page, label: str, value: str, nth: int = 0, *, wait: bool = True) -> None:
    """A text input or text area, committed the way a user commits it (leaving the field).

    With wait=False the next field is typed while the page reruns, as a quick user does; Streamlit
    keeps every committed value. Settle before reading the page.
    """
    box = page.get_by_label(label, exact=True).nth(nth)
    box.fill(value)
    box.press("Tab")
    if wait:
        settle(page)


def choose(page: Page, label: str, option: str | re.Pattern[str], nth: int = 0) -> None:
    """Pick an option of a selectbox."""
    _open_dropdown(page, page.get_by_label(label, exact=True).nth(nth))
    page.get_by_role("option", name=option).first.click()
    settle(page)


def _open_dropdown(page: Page, box: Locator) -> None:
    """Click a select box until its options show (a click right after another widget may only focus it)."""
    for _ in range(3):
        box.click()
        try:
            page.get_by_role("option").first.wait_for(state="visible", timeout=2_000)
            return
        except PlaywrightTimeout:
            box.press("ArrowDown")
            if page.get_by_role("option").count():
                return
    raise PlaywrightTimeout("the select box did not open")


def multiselect(page: Page, label: str, options: list[str], nth: int = 0) -> None:
    """Add options to a multiselect (options already chosen are left as they are)."""
    box = page.get_by_label(label, exact=True).nth(nth)
    for option in options:
        _open_dropdown(page, box)
        page.get_by_role("option", name=option, exact=True).first.click()
        settle(page)
    page.keyboard.press("Escape")
    settle(page)


def checkbox(page: Page, label: str, checked: bool) -> None:
    box = page.get_by_role("checkbox", name=label, exact=True)
    if box.is_checked() != checked:
        box.locator("xpath=..").click()
        settle(page)


def upload(page: Page, path: Path, nth: int = 0) -> None:
    page.locator(FILE_INPUT).nth(nth).set_input_files(str(path))
    settle(page)


def download(page: Page, label: str, target: Path) -> Path:
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_role("button", name=label, exact=True).first.click()
    info.value.save_as(target)
    return target


def edit_grid_cell(page: Page, grid: int, column: int, row: int, value: str) -> None:
    """Type into one cell of an editable table (st.data_editor), as a user does with the keyboard.

    The grid is a canvas: focus its first cell through the accessible grid, walk to the cell with the
    arrow keys, open the editor with Enter, type the value and confirm it with Enter.
    """
    table = page.locator(DATAFRAME).nth(grid)
    table.locator("td").first.focus()
    for key in ["ArrowRight"] * column + ["ArrowDown"] * row:
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.keyboard.type(value)
    page.keyboard.press("Enter")
    settle(page)


def edit_grid_cell_until(page: Page, grid: int, column: int, row: int, value: str, attempts: int = 3) -> None:
    """edit_grid_cell, checked: the canvas grid can miss keys typed while it is still re-rendering, so the
    edit is repeated (the same value into the same cell) until the grid shows it."""
    for _ in range(attempts):
        edit_grid_cell(page, grid, column, row, value)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if value in grid_texts(page):
                return
            time.sleep(0.25)
    raise AssertionError(f"the table never showed {value!r} after {attempts} edits")


def grid_texts(page: Page) -> list[str]:
    """The text of every table cell the data grids keep in the DOM (the rows on screen)."""
    return [text.strip() for text in page.locator(GRID_CELL).all_inner_texts()]


def grid_rows(page: Page) -> list[list[str]]:
    """Every table row the data grids keep in the DOM, as lists of cell texts (header rows included)."""
    return page.evaluate(
        """(sel) => Array.from(document.querySelectorAll(sel + ' table tr')).map(
            (tr) => Array.from(tr.querySelectorAll('td, th')).map((c) => c.innerText.trim()))""",
        DATAFRAME,
    )


def row_of(rows: list[list[str]], text: str) -> list[str]:
    """The first row with a cell containing `text` (an empty list when none has)."""
    return next((row for row in rows if any(text in cell for cell in row)), [])


def code_texts(page: Page) -> list[str]:
    return page.locator(CODE).all_inner_texts()


# --- page-specific readings (adapt here when a page changes) ----------------------------------------
MAPPING_GRID = 1  # Prospects → Import: the sample rows, then the mapping editor


def launch_campaign(page: Page) -> None:
    """Campaigns → Manage: run the launch check, then launch."""
    click(page, "Check launch")
    wait_for_text(page, "Everything checks out")
    click(page, "Launch")


def analytics_sent(page: Page) -> int:
    """The number of sent touches Analytics shows (the row whose state cell reads "sent")."""
    for row in grid_rows(page):
        if row and row[0].strip().lower() == "sent":
            numbers = [int(c.replace(",", "")) for c in row[1:] if c.replace(",", "").isdigit()]
            if numbers:
                return numbers[0]
    return 0


def screenshot(page: Page, name: str) -> Path:
    """A full-page picture in test-results/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    settle(page)
    full_screenshot(page, path)
    return path


def full_screenshot(page: Page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main area, so grow the viewport to the content first."""
    height = page.evaluate(
        """(sel) => Math.max(...Array.from(document.querySelectorAll(sel)).map((e) => e.scrollHeight), 0)""",
        MAIN,
    )
    size = page.viewport_size or VIEWPORT
    page.set_viewport_size({"width": size["width"], "height": min(max(int(height), size["height"]), MAX_SHOT_HEIGHT)})
    try:
        page.wait_for_timeout(200)
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(size)
