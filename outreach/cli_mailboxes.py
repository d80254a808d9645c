"""`outreach mailbox …`: add, list and test sending mailboxes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from db.engine import transaction
from db.enums import TlsMode
from outreach.cli import JsonFlag, emit, user_errors
from outreach.mailboxes import DEFAULT_DAILY_LIMIT, DEFAULT_PER_MINUTE, MailboxSpec, list_mailboxes, save_mailbox
from outreach.ramp import set_ramp
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
    ramp_start: Annotated[
        int | None, typer.Option("--ramp-start", help="Ramp-up: sends on its first day (0 removes the ramp).")
    ] = None,
    ramp_increment: Annotated[
        int | None, typer.Option("--ramp-increment", help="Ramp-up: sends added each day, up to the daily limit.")
    ] = None,
    ramp_from: Annotated[
        datetime | None, typer.Option("--ramp-from", formats=["%Y-%m-%d"], help="Ramp-up's first day (default today).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a mailbox, or update the one with that name. Its password stays in the environment."""
    spec = MailboxSpec(
        name, from_address, smtp_host, smtp_port, user, password_env, tls, from_name,
        imap_host, imap_port, daily_limit, per_minute,
    )  # fmt: skip
    with transaction(open_checked_engine()) as session:
        saved = save_mailbox(session, spec)
        ramp = set_ramp(session, name, ramp_start, ramp_increment, ramp_from.date() if ramp_from else None,
                        datetime.now(UTC))  # fmt: skip
    for warning in saved.warnings:
        typer.echo(f"warning: {warning}", err=True)
    verb = "added" if saved.created else "updated"
    ramp_data = {"start": ramp.start, "increment": ramp.increment, "started_on": str(ramp.started_on)} if ramp else None
    emit(
        {"id": saved.id, "name": saved.name, "created": saved.created, "warnings": saved.warnings, "ramp": ramp_data},
        as_json,
        f"{verb} mailbox {saved.name} (id {saved.id})" + (f"; ramp-up {ramp}" if ramp else ""),
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


# --- pause / resume / health ---------------------------------------------------------------------


@mailbox_app.command("pause")
@user_errors
def pause(
    name: str,
    reason: Annotated[str, typer.Option("--reason", help="Shown next to the mailbox.")] = "paused by the operator",
    as_json: JsonFlag = False,
) -> None:
    """Stop sending through a mailbox; its prospects not contacted yet move to the campaigns' other mailboxes."""
    from outreach.mailbox_actions import pause_mailbox

    with transaction(open_checked_engine()) as session:
        moved = pause_mailbox(session, name, reason, datetime.now(UTC))
    data = {"name": name, "state": "paused", "moved": dict(moved.moved), "waiting": moved.waiting,
            "stranded": moved.stranded}  # fmt: skip
    emit(data, as_json, f"paused mailbox {name}: {moved.in_words()}")


@mailbox_app.command("resume")
@user_errors
def resume(name: str, as_json: JsonFlag = False) -> None:
    """Send through the mailbox again; its health window starts afresh now."""
    from outreach.mailbox_actions import resume_mailbox

    with transaction(open_checked_engine()) as session:
        resume_mailbox(session, name, datetime.now(UTC))
    emit({"name": name, "state": "active"}, as_json, f"mailbox {name} is active again")


@mailbox_app.command("health")
@user_errors
def health(
    window_days: Annotated[int | None, typer.Option("--window-days", help="Set: the rolling window.")] = None,
    min_sends: Annotated[int | None, typer.Option("--min-sends", help="Set: sends needed before judging.")] = None,
    max_bounce: Annotated[float | None, typer.Option("--max-bounce-rate", help="Set: percent, e.g. 5.")] = None,
    max_failure: Annotated[float | None, typer.Option("--max-failure-rate", help="Set: percent.")] = None,
    max_unsubscribe: Annotated[
        float | None, typer.Option("--max-unsubscribe-rate", help="Set: percent (unsubscribes and complaints).")
    ] = None,
    auto_pause: Annotated[
        bool | None, typer.Option("--auto-pause/--no-auto-pause", help="Set: pause mailboxes above a threshold.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Each mailbox's bounce, failure and unsubscribe rates over the window; options change the thresholds."""
    from dataclasses import asdict, replace

    from outreach.mailbox_health import get_thresholds, mailbox_health, set_thresholds

    changes = {
        "window_days": window_days, "min_sends": min_sends, "auto_pause": auto_pause,
        "max_bounce_rate": None if max_bounce is None else max_bounce / 100,
        "max_failure_rate": None if max_failure is None else max_failure / 100,
        "max_unsubscribe_rate": None if max_unsubscribe is None else max_unsubscribe / 100,
    }  # fmt: skip
    changes = {k: v for k, v in changes.items() if v is not None}
    now = datetime.now(UTC)
    with transaction(open_checked_engine(), readonly=not changes) as session:
        limits = set_thresholds(session, replace(get_thresholds(session), **changes)) if changes else None
        limits = limits or get_thresholds(session)
        rows = mailbox_health(session, now, limits)
    human = "\n".join(f"{h.name}\t{h.state}\t{h.sent} sent\t{h.verdict}" for h in rows) or "no mailboxes yet"
    emit({"thresholds": asdict(limits), "mailboxes": [h.as_json() for h in rows]}, as_json, human)


# --- DKIM ----------------------------------------------------------------------------------------

dkim_app = typer.Typer(
    help="DKIM keys per sending domain: generate or import, and the DNS record.", no_args_is_help=True
)
mailbox_app.add_typer(dkim_app, name="dkim")
SelectorOption = Annotated[str, typer.Option("--selector", help="The DNS selector: SELECTOR._domainkey.DOMAIN.")]
ReplaceFlag = Annotated[bool, typer.Option("--replace", help="Replace the domain's existing key.")]


def _show_record(record: object, as_json: bool, verb: str) -> None:
    from outreach.dkim import DkimRecord

    assert isinstance(record, DkimRecord)
    human = (
        f"{verb} DKIM key for {record.domain} (RSA {record.key_bits}, selector {record.selector}).\n"
        f"Publish this DNS record:\n{record.zone_line}"
    )
    emit(record.as_dict(), as_json, human)


@dkim_app.command("generate")
@user_errors
def dkim_generate(
    domain: str, selector: SelectorOption = "outreach", replace: ReplaceFlag = False, as_json: JsonFlag = False
) -> None:
    """Generate an RSA 2048 key for DOMAIN (stored encrypted) and print the TXT record to publish."""
    from outreach.config import load_settings
    from outreach.dkim import generate_key

    with transaction(open_checked_engine()) as session:
        record = generate_key(
            session, domain, keys=load_settings().secret_keys(), now=datetime.now(UTC), selector=selector,
            replace=replace,
        )  # fmt: skip
    _show_record(record, as_json, "generated")


@dkim_app.command("import")
@user_errors
def dkim_import(
    domain: str,
    key_file: Annotated[Path, typer.Option("--key-file", help="PEM private key (unencrypted RSA).")],
    selector: SelectorOption = "outreach",
    replace: ReplaceFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Import DOMAIN's existing private key (PEM) so mail keeps verifying against the record already in DNS."""
    from outreach.config import load_settings
    from outreach.dkim import DkimError, import_key

    try:
        pem = key_file.read_bytes()
    except OSError as exc:
        raise DkimError(f"--key-file: cannot read {key_file} ({exc.strerror})") from None
    with transaction(open_checked_engine()) as session:
        record = import_key(
            session, domain, pem, keys=load_settings().secret_keys(), now=datetime.now(UTC), selector=selector,
            replace=replace,
        )  # fmt: skip
    _show_record(record, as_json, "imported")


@dkim_app.command("show")
@user_errors
def dkim_show(domain: str, as_json: JsonFlag = False) -> None:
    """The DNS TXT record to publish for DOMAIN (never the private key)."""
    from outreach.dkim import dns_record

    with transaction(open_checked_engine(), readonly=True) as session:
        record = dns_record(session, domain)
    _show_record(record, as_json, "the")


@dkim_app.command("list")
@user_errors
def dkim_list(as_json: JsonFlag = False) -> None:
    """Every domain with a DKIM key, and its record."""
    from outreach.dkim import list_records

    with transaction(open_checked_engine(), readonly=True) as session:
        records = list_records(session)
    human = "\n".join(r.zone_line for r in records) or "no DKIM keys yet: outreach mailbox dkim generate DOMAIN"
    emit({"keys": [r.as_dict() for r in records]}, as_json, human)


@dkim_app.command("selector")
@user_errors
def dkim_selector(domain: str, selector: str, as_json: JsonFlag = False) -> None:
    """Sign with another selector (the same key, published under another name)."""
    from outreach.dkim import set_selector

    with transaction(open_checked_engine()) as session:
        record = set_selector(session, domain, selector, datetime.now(UTC))
    _show_record(record, as_json, "the")


@dkim_app.command("delete")
@user_errors
def dkim_delete(domain: str, as_json: JsonFlag = False) -> None:
    """Forget DOMAIN's key: its mail goes out unsigned."""
    from outreach.dkim import delete_key, normalize_domain

    with transaction(open_checked_engine()) as session:
        delete_key(session, domain)
    emit({"domain": normalize_domain(domain), "deleted": True}, as_json, f"deleted the DKIM key of {domain}")


def register(app: typer.Typer) -> None:
    app.add_typer(mailbox_app, name="mailbox")
