"""`outreach inbox …`: ingest replies, bounces and auto-replies from files (IMAP polling lives in the worker)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from db.engine import transaction
from outreach.cli import JsonFlag, emit, user_errors
from outreach.inbound import iter_messages
from outreach.responses import IngestResult, ResponseTracker
from outreach.runtime import open_checked_engine

inbox_app = typer.Typer(help="Replies, bounces and auto-replies.", no_args_is_help=True)


@inbox_app.command("ingest")
@user_errors
def ingest(
    path: Annotated[Path, typer.Argument(help="An .eml file, an mbox file or a maildir folder.")],
    as_json: JsonFlag = False,
) -> None:
    """Match each message to the touch it answers and apply it (stop, suppress); safe to run twice."""
    messages = iter_messages(path)  # a bad path fails here, before the database is touched
    engine = open_checked_engine()
    tracker = ResponseTracker()
    now = datetime.now(UTC)
    with transaction(engine) as session:
        results = [(label, tracker.parse_response(session, raw, now)) for label, raw in messages]
    emit({"messages": [r.to_json() for _, r in results]}, as_json, _summary(results))


def _summary(results: list[tuple[str, IngestResult]]) -> str:
    """One line per message, then the totals."""
    lines = [_line(label, result) for label, result in results]
    counts = Counter("duplicate" if r.duplicate else str(r.kind) for _, r in results)
    totals = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "no messages"
    lines.append(f"ingested {len(results)} message{'s' if len(results) != 1 else ''}: {totals}")
    return "\n".join(lines)


def _line(label: str, result: IngestResult) -> str:
    who = result.prospect or "no prospect"
    where = f" in {result.campaign}" if result.campaign else ""
    if result.duplicate:
        return f"{label}: already ingested ({result.kind}, {who}{where})"
    detail = f", {result.intent}" if result.intent else ""
    if result.bounce:
        hard = "hard" if result.bounce.permanent else "soft"
        detail = f", {hard} {result.bounce.status or 'without status'}"
    actions = f" — {'; '.join(result.actions)}" if result.actions else ""
    return f"{label}: {result.kind} from {who}{where}{detail}{actions}"


def register(app: typer.Typer) -> None:
    app.add_typer(inbox_app, name="inbox")
