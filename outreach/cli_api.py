"""`outreach apikey …` and `outreach webhook …`: API keys and outgoing webhooks from the shell. A face only."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from db.engine import transaction
from db.enums import ApiScope
from outreach.cli import JsonFlag, emit, user_errors
from outreach.runtime import open_checked_engine

apikey_app = typer.Typer(help="API keys for the REST API (/api/v1).", no_args_is_help=True)
webhook_app = typer.Typer(help="Webhooks: signed events to your CRM or automation.", no_args_is_help=True)


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@apikey_app.command("create")
@user_errors
def apikey_create(
    name: Annotated[str, typer.Argument(help="What the key is for (shown in lists).")],
    scope: Annotated[ApiScope, typer.Option("--scope", help="read: look only; write: also change.")] = ApiScope.READ,
    as_json: JsonFlag = False,
) -> None:
    """Create a key. It is printed this once and cannot be shown again."""
    from outreach.api_keys import create_api_key

    with transaction(open_checked_engine()) as session:
        created = create_api_key(session, name, scope)
    info = created.info
    data = {"id": info.id, "name": info.name, "prefix": info.prefix, "scope": str(info.scope), "key": created.key}
    human = f"{created.key}\n(API key {info.prefix}, {info.scope}; store it now: it is not shown again)"
    emit(data, as_json, human)


@apikey_app.command("list")
@user_errors
def apikey_list(as_json: JsonFlag = False) -> None:
    """Every key by prefix, scope and last use (never the key itself)."""
    from outreach.api_keys import list_api_keys

    with transaction(open_checked_engine(), readonly=True) as session:
        keys = list_api_keys(session)
    rows = [
        {"id": k.id, "name": k.name, "prefix": k.prefix, "scope": str(k.scope), "created_at": _when(k.created_at),
         "last_used_at": _when(k.last_used_at), "revoked_at": _when(k.revoked_at), "active": k.active}
        for k in keys
    ]  # fmt: skip
    human = "\n".join(
        f"{r['prefix']}\t{r['scope']}\t{'active' if r['active'] else 'revoked'}\t{r['name']}" for r in rows
    )
    emit({"keys": rows}, as_json, human or "no API keys yet")


@apikey_app.command("revoke")
@user_errors
def apikey_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (ok_…), as `apikey list` shows.")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key for good: requests with it get 403 from now on."""
    from outreach.api_keys import revoke_api_key

    with transaction(open_checked_engine()) as session:
        info = revoke_api_key(session, prefix)
    emit({"prefix": info.prefix, "revoked_at": _when(info.revoked_at)}, as_json, f"revoked {info.prefix}")


@webhook_app.command("add")
@user_errors
def webhook_add(
    url: Annotated[str, typer.Argument(help="https:// URL that receives the events.")],
    event: Annotated[
        list[str], typer.Option("--event", help="reply_received, lead_status_changed, unsubscribed, bounced, task_due")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Register a URL for events; prints the signing secret once."""
    from outreach.webhooks import create_webhook

    with transaction(open_checked_engine()) as session:
        created = create_webhook(session, url, event)
    hook = created.webhook
    data = {"id": hook.id, "url": hook.url, "events": hook.events, "secret": created.secret}
    human = f"webhook {hook.id} → {hook.url} ({', '.join(hook.events)})\nsigning secret (shown once): {created.secret}"
    emit(data, as_json, human)


@webhook_app.command("list")
@user_errors
def webhook_list(as_json: JsonFlag = False) -> None:
    """Webhooks with their health (never their secrets)."""
    from outreach.webhooks import list_webhooks

    with transaction(open_checked_engine(), readonly=True) as session:
        hooks = list_webhooks(session)
    rows = [
        {"id": h.id, "url": h.url, "events": h.events, "active": h.is_active, "failure_count": h.failure_count,
         "last_status": h.last_status, "last_delivery_at": _when(h.last_delivery_at)}
        for h in hooks
    ]  # fmt: skip
    human = "\n".join(f"{r['id']}\t{r['url']}\t{','.join(r['events'])}\tfailures {r['failure_count']}" for r in rows)
    emit({"webhooks": rows}, as_json, human or "no webhooks yet")


@webhook_app.command("remove")
@user_errors
def webhook_remove(webhook_id: int, as_json: JsonFlag = False) -> None:
    """Delete a webhook and its delivery log."""
    from outreach.webhooks import delete_webhook

    with transaction(open_checked_engine()) as session:
        delete_webhook(session, webhook_id)
    emit({"id": webhook_id, "removed": True}, as_json, f"removed webhook {webhook_id}")


@webhook_app.command("test")
@user_errors
def webhook_test(webhook_id: int, as_json: JsonFlag = False) -> None:
    """Queue a `test` event for a webhook; the worker delivers it."""
    from outreach.webhooks import send_test

    with transaction(open_checked_engine()) as session:
        delivery_id = send_test(session, webhook_id)
    emit({"id": webhook_id, "delivery": delivery_id}, as_json, f"queued test delivery {delivery_id}")


@webhook_app.command("deliveries")
@user_errors
def webhook_deliveries(
    webhook_id: Annotated[int | None, typer.Option("--webhook", help="Only this webhook's deliveries.")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The delivery log, newest first."""
    from outreach.webhooks import list_deliveries

    with transaction(open_checked_engine(), readonly=True) as session:
        deliveries = list_deliveries(session, webhook_id=webhook_id, limit=limit)
    rows = [
        {"id": d.id, "webhook": d.webhook_id, "event": d.event, "event_id": d.event_id, "state": str(d.state),
         "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
         "created_at": _when(d.created_at), "next_attempt_at": _when(d.next_attempt_at),
         "delivered_at": _when(d.delivered_at)}
        for d in deliveries
    ]  # fmt: skip
    human = "\n".join(
        f"{r['id']}\t{r['event']}\t{r['state']}\tattempts {r['attempts']}\t{r['last_status'] or r['last_error'] or ''}"
        for r in rows
    )
    emit({"deliveries": rows}, as_json, human or "no deliveries yet")


def register(app: typer.Typer) -> None:
    app.add_typer(apikey_app, name="apikey")
    app.add_typer(webhook_app, name="webhook")
