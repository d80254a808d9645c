"""The product as a user runs it (`outreach up` on free ports, a temporary data dir) and a headless Chromium.

One product per test module: the modules run on different xdist workers (`--dist loadfile`) and each
seeds its own workspace. The browser is Debian's Chromium (scripts/test-services.sh installs it);
each test gets a fresh browser context that records dialogs, console errors and page errors, so a test
can assert that nothing a prospect typed ran as script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page, sync_playwright

from outreach.capture import CapturedMessage, list_captured
from tests.e2e import ui
from tests.integration.test_up import ADMIN_PASSWORD, UpProcess, running_up

ADMIN = "admin"
STARTUP_S = 180  # `up` itself gives its parts 60 s; a machine busy with other test workers may need them all


@dataclass
class Product:
    """A running `outreach up` and what a test needs to reach it: URLs, its data dir and its CLI."""

    up: UpProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.up.ports['dashboard']}/"

    @property
    def data_dir(self) -> Path:
        return self.up.data_dir

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTREACH_")}
        env.update(OUTREACH_DATA_DIR=str(self.data_dir), OUTREACH_CAPTURE_SMTP_PORT=str(self.up.ports["smtp"]))
        return env

    def run(self, *args: str) -> str:
        """Run `outreach ARGS` against this workspace, as an operator would; its output."""
        result = subprocess.run(
            [sys.executable, "-m", "outreach", *args], env=self.env(), capture_output=True, text=True, timeout=90
        )
        assert result.returncode == 0, f"outreach {' '.join(args)}: {result.stderr}"
        return result.stdout

    def cli(self, *args: str) -> dict[str, Any]:
        """`outreach ARGS --json`: its one JSON object."""
        return json.loads(self.run(*args, "--json"))

    def send_due(self, ahead: timedelta = timedelta(minutes=3)) -> str:
        """A second worker pass as if the clock were `ahead` later: first touches are jittered over two
        minutes after launch, and the test need not wait for them. Workers share the work through the
        database's claims, so this and the running worker never send a touch twice."""
        return self.run("worker", "--once", "--now", (datetime.now(UTC) + ahead).isoformat())

    def captured(self) -> list[CapturedMessage]:
        return list_captured(self.data_dir / "capture")

    def wait_for_captured(self, count: int, timeout: float = 60) -> list[CapturedMessage]:
        """The capture SMTP's messages once the worker has sent `count` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.captured()
            if len(messages) >= count:
                return messages
            if self.up.proc.poll() is not None:
                break
            time.sleep(0.25)
        pytest.fail(f"{len(self.captured())} of {count} messages captured; worker output:\n{self.up.err}")


@dataclass
class Watched:
    """A page and everything it said that a script could have caused."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    with running_up(tmp_path_factory.mktemp("e2e")) as up:
        up.wait_for_line(r"^Outreach is running", timeout=STARTUP_S)  # every part answers
        up.child_pids()
        yield Product(up)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(ui.CHROMIUM).exists():
        pytest.fail(f"{ui.CHROMIUM} is missing: run scripts/test-services.sh (it installs Debian's chromium)")
    with sync_playwright() as playwright:
        launched = ui.launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=ui.VIEWPORT, accept_downloads=True)
    ctx.set_default_timeout(ui.TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so a fixture can tell that its test failed."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def watched(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Watched]:
    """A page whose dialogs and errors are recorded; a failing test leaves a screenshot of where it stopped."""
    page = context.new_page()
    seen = Watched(page)

    def on_dialog(dialog: Dialog) -> None:
        seen.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
    yield seen
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ui.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        ui.full_screenshot(page, ui.SCREENSHOTS / f"FAILED-{request.node.name}.png")


def reply_to(message: CapturedMessage, sender: str, body: str, subject: str | None = None) -> EmailMessage:
    """A reply from `sender` to a message the worker sent, threaded on its Message-ID."""
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = message.mail_from
    reply["Subject"] = subject or f"Re: {message.subject}"
    reply["Message-ID"] = f"<reply-{int(time.time() * 1000)}@{sender.split('@')[1]}>"
    reply["In-Reply-To"] = message.message_id
    reply["References"] = message.message_id
    reply.set_content(body)
    return reply


__all__ = ["ADMIN", "ADMIN_PASSWORD", "Product", "Watched", "reply_to"]
