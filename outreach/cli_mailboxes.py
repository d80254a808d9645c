"""`outreach mailbox …`: add, list and test sending mailboxes."""

from __future__ import annotations

from typing import Annotated

import typer

from db.engine import transaction
from db.enums import TlsMode
from outreach.cli import JsonFlag, emit, user_errors
from outreach.mailboxes import DEFAULT_DAILY_LIMIT, DEFAULT_PER_MINUTE, MailboxSpec, list_mailboxes, save_mailbox
from outreach.runtime import open_checked_engine

mailbox_app = typer.Typer(help="Sending mailboxes (SMTP, optional IMAP for replies).", no_args_is_help=True)


@mailbox_app.command("add")
@user_errors
def add(
    name: str,
    from_address: Annotated[str, typer.Option("--from", help="Sender address.")],
    smtp_host: Annotated[str, typer.Option("--smtp-host")],
    smtp_port: Annotated[int, typer.Option("--smtp-port")],
    user: Annotated[str | None, typer.Option("--user", help="SMTP login.")] = None,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Environment variable holding the password.")
    ] = None,
    tls: Annotated[TlsMode, typer.Option("--tls")] = TlsMode.STARTTLS,
    from_name: Annotated[str | None, typer.Option("--from-name", help="Display name.")] = None,
    imap_host: Annotated[str | None, typer.Option("--imap-host")] = None,
    imap_port: Annotated[int | None, typer.Option("--imap-port")] = None,
    daily_limit: Annotated[int, typer.Option("--daily-limit")] = DEFAULT_DAILY_LIMIT,
    per_minute: Annotated[int, typer.Option("--per-minute")] = DEFAULT_PER_MINUTE,
    as_json: JsonFlag = False,
) -> None:
    """Add a mailbox, or update the one with that name. Its password stays in the environment."""
    spec = MailboxSpec(
        name, from_address, smtp_host, smtp_port, user, password_env, tls, from_name,
        imap_host, imap_port, daily_limit, per_minute,
    )  # fmt: skip
    with transaction(open_checked_engine()) as session:
        saved = save_mailbox(session, spec)
    for warning in saved.warnings:
        typer.echo(f"warning: {warning}", err=True)
    verb = "added" if saved.created else "updated"
    emit(
        {"id": saved.id, "name": saved.name, "created": saved.created, "warnings": saved.warnings},
        as_json,
        f"{verb} mailbox {saved.name} (id {saved.id})",
    )


@mailbox_app.command("list")
@user_errors
def list_(as_json: JsonFlag = False) -> None:
    """List mailboxes with their limits and state (never a password)."""
    with transaction(open_checked_engine(), readonly=True) as session:
        boxes = list_mailboxes(session)
    human = "\n".join(f"{b['name']}\t{b['from']}\t{b['smtp']}\t{b['state']}" for b in boxes) or "no mailboxes yet"
    emit({"mailboxes": boxes}, as_json, human)


@mailbox_app.command("test")
@user_errors
def test(name: str, as_json: JsonFlag = False) -> None:
    """Connect and log in to the mailbox's SMTP server (sends nothing)."""
    from sqlalchemy import select

    from db.models import Mailbox
    from outreach.errors import OutreachError
    from outreach.mailboxes import smtp_settings
    from outreach.smtp_transport import check_connection

    with transaction(open_checked_engine(), readonly=True) as session:
        box = session.scalar(select(Mailbox).where(Mailbox.name == name))
        if box is None:
            raise OutreachError(f"no mailbox named '{name}'")
        settings = smtp_settings(box)
    answer = check_connection(settings)
    emit({"name": name, "ok": True, "answer": answer}, as_json, answer)


def register(app: typer.Typer) -> None:
    app.add_typer(mailbox_app, name="mailbox")
