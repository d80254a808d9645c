"""Starting the Streamlit dashboard as a process of its own (`outreach dashboard`, and `up` runs that).

The process replaces itself with `python -m streamlit run app.py` (exec), so signals from the
supervisor or the terminal reach Streamlit directly and no idle Python parent stays behind.
This module never imports Streamlit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sqlalchemy import Engine

from db.engine import transaction
from outreach.errors import OutreachError
from outreach.netutil import require_free_port
from outreach.runtime import open_checked_engine
from outreach.users import ADMIN_USERNAME, ensure_admin

APP_SCRIPT = Path(__file__).resolve().parent.parent / "app.py"
ADMIN_PASSWORD_ENV = "OUTREACH_ADMIN_PASSWORD"  # noqa: S105 (the variable's name, not a password)


def ensure_first_admin(engine: Engine) -> None:
    """Create the first dashboard admin when there are no users; a generated password is printed once here."""
    from_env = os.environ.get(ADMIN_PASSWORD_ENV) or None
    try:
        with transaction(engine) as session:
            generated = ensure_admin(session, from_env)
    except OutreachError as exc:
        if from_env is None:
            raise
        raise OutreachError(f"{ADMIN_PASSWORD_ENV}: {exc}") from None
    if generated:
        # stdout only, never a log: the operator sees it once in the terminal that started Outreach.
        print(
            f"Created dashboard user '{ADMIN_USERNAME}' with password {generated} — shown once; change it in Settings.",
            flush=True,
        )


def streamlit_command(host: str, port: int) -> list[str]:
    """The argv that runs the dashboard script with Streamlit, quiet and without a file watcher."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_SCRIPT),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]


def exec_dashboard(host: str, port: int) -> None:
    """Check the schema, the first admin and the port, then become the Streamlit server (never returns)."""
    engine = open_checked_engine()
    ensure_first_admin(engine)
    engine.dispose()
    require_free_port(host, port, "dashboard", "--port")
    if not APP_SCRIPT.is_file():
        raise OutreachError(f"the dashboard script {APP_SCRIPT} is missing: reinstall Outreach")
    sys.stdout.flush()
    sys.stderr.flush()
    command = streamlit_command(host, port)
    os.execv(command[0], command)  # noqa: S606 (fixed argv, our own interpreter)
