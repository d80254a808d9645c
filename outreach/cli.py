"""The `outreach` command: a face over the outreach services, no logic of its own.

Reporting commands take --json and then print exactly one JSON object on stdout. Bad input exits 2
with a one-line error on stderr and writes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from outreach.errors import OutreachError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    help="Outreach: prospects, sequences, sending, tracking, replies and analytics, self-hosted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn domain errors into the contract's exit 2 with a one-line message."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OutreachError as exc:
            raise fail(str(exc)) from None

    return wrapper


def emit(data: dict[str, Any], as_json: bool, human: str) -> None:
    typer.echo(json.dumps(data, default=str) if as_json else human)


def parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--now: '{value}' is not an ISO 8601 time (e.g. 2026-03-02T09:00:00+00:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _logging() -> None:
    logging.basicConfig(
        level=os.environ.get("OUTREACH_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # revision checks are not news
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # job runs and registrations are not news


# --- db ------------------------------------------------------------------------------------------


@db_app.command("upgrade")
@user_errors
def db_upgrade(as_json: JsonFlag = False) -> None:
    """Apply pending migrations (safe to run any number of times)."""
    from outreach.runtime import upgrade_database

    before, after = upgrade_database()
    human = f"database already at {after}" if before == after else f"database upgraded {before or 'empty'} → {after}"
    emit({"from": before, "to": after, "changed": before != after}, as_json, human)


@db_app.command("status")
@user_errors
def db_status(as_json: JsonFlag = False) -> None:
    """Show the schema revision of the database and the one this version needs."""
    from db.migrate import schema_status
    from outreach.runtime import open_engine

    status = schema_status(open_engine())
    human = f"current {status.current or 'none'}, needed {status.head}" + (
        "" if status.up_to_date else " — run `outreach db upgrade`"
    )
    emit({"current": status.current, "head": status.head, "up_to_date": status.up_to_date}, as_json, human)


# --- users ---------------------------------------------------------------------------------------


@user_app.command("add")
@user_errors
def user_add(
    username: str,
    password_env: Annotated[str, typer.Option(help="Name of the environment variable holding the password.")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the user the admin role.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Add a dashboard user; the password is read from an environment variable, never the command line."""
    from db.engine import transaction
    from db.enums import UserRole
    from outreach.runtime import open_checked_engine
    from outreach.users import create_user

    password = os.environ.get(password_env)
    if not password:
        raise fail(f"--password-env: the environment variable {password_env} is not set")
    with transaction(open_checked_engine()) as session:
        user = create_user(session, username, password, UserRole.ADMIN if admin else UserRole.MEMBER)
    emit({"id": user.id, "username": user.username, "role": user.role}, as_json, f"added {user.role} {user.username}")


@user_app.command("list")
@user_errors
def user_list(as_json: JsonFlag = False) -> None:
    """List dashboard users."""
    from db.engine import transaction
    from outreach.runtime import open_checked_engine
    from outreach.users import list_users

    with transaction(open_checked_engine(), readonly=True) as session:
        users = list_users(session)
    rows = [{"username": u.username, "role": u.role, "active": u.is_active} for u in users]
    emit({"users": rows}, as_json, "\n".join(f"{u['username']}\t{u['role']}" for u in rows) or "no users yet")


# --- processes -----------------------------------------------------------------------------------


@app.command("worker")
@user_errors
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run every job once and exit.")] = False,
    now: Annotated[str | None, typer.Option("--now", help="Run as if the clock read this ISO 8601 time.")] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=64, help="SMTP connections used in parallel by each send tick.")
    ] = 1,
) -> None:
    """The background worker (APScheduler): sending, inbox polling, triggers. Run as many as you like."""
    from outreach.runtime import open_checked_engine
    from outreach.worker import JOBS, build_scheduler, run_once, stopping

    _logging()
    engine = open_checked_engine()
    start = parse_now(now)
    if once:
        for job_id, summary in run_once(engine, start, concurrency=concurrency):
            typer.echo(f"{job_id}: {summary or 'nothing to do'}")
        return
    offset = start - datetime.now(UTC) if now else None
    clock = (lambda: datetime.now(UTC) + offset) if offset is not None else None
    scheduler = build_scheduler(engine, clock, concurrency=concurrency)
    logging.getLogger("outreach.worker").info(
        "worker started with jobs: %s; %d SMTP connection(s) per send tick", ", ".join(j.id for j in JOBS), concurrency
    )

    def stop(*_: object) -> None:
        stopping.set()  # running send ticks hand their unsent claims back and return
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.start()
    logging.getLogger("outreach.worker").info("worker stopped")


@app.command("serve")
@user_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """The tracking / API service alone (FastAPI + uvicorn)."""
    import uvicorn

    from outreach.netutil import require_free_port
    from outreach.runtime import open_checked_engine
    from outreach.tracking import create_app

    engine = open_checked_engine()
    require_free_port(host, port, "tracking/API service", "--port")
    uvicorn.run(create_app(engine), host=host, port=port, log_level="info", server_header=False, access_log=False)


@app.command("dashboard")
@user_errors
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
) -> None:
    """The Streamlit dashboard alone."""
    from outreach.dashboard_process import exec_dashboard

    exec_dashboard(host, port)


@app.command("capture-smtp", hidden=True)
@user_errors
def capture_smtp(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 1025,
) -> None:
    """The local capture SMTP server: stores every message under $OUTREACH_DATA_DIR/capture/."""
    from outreach.capture import serve_capture
    from outreach.config import load_settings

    _logging()
    serve_capture(load_settings().capture_dir, host, port)


@app.command("up")
@user_errors
def up(
    host: Annotated[str, typer.Option(help="Address every part listens on.")] = "127.0.0.1",
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port.")] = 8501,
    api_port: Annotated[int, typer.Option(help="Tracking/API service port.")] = 8000,
    smtp_port: Annotated[int, typer.Option(help="Capture SMTP port (used while no real mailbox exists).")] = 1025,
) -> None:
    """Migrate, then run dashboard, tracking/API service, one worker and (if needed) the capture SMTP."""
    from outreach.supervisor import UpOptions, run_up

    raise typer.Exit(run_up(UpOptions(host, dashboard_port, api_port, smtp_port)))


from outreach import cli_mailboxes  # noqa: E402  (sub-commands need the helpers above)

cli_mailboxes.register(app)

from outreach import cli_prospects  # noqa: E402

cli_prospects.register(app)

from outreach import cli_campaigns  # noqa: E402

cli_campaigns.register(app)

from outreach import cli_inbox  # noqa: E402

cli_inbox.register(app)

from outreach import cli_api  # noqa: E402

cli_api.register(app)

from outreach import cli_demo  # noqa: E402

cli_demo.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
