"""`outreach campaign …`, `outreach preview` and `outreach stats`: the campaign engine from the shell."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import func, select

from db.engine import transaction
from db.enums import TouchState
from db.models import CommunicationLog, Enrollment, Mailbox, OutreachCampaign
from outreach.campaigns import CampaignManager, engagement_counts, enrollment_counts, find_campaign
from outreach.cli import JsonFlag, emit, parse_now, user_errors
from outreach.config import load_settings
from outreach.errors import OutreachError
from outreach.runtime import open_checked_engine

campaign_app = typer.Typer(help="Campaigns: apply a definition, launch, pause, resume, archive, inspect.")
touch_app = typer.Typer(help="Touches: resolve the ones left in doubt by a crash; confirm or cancel late ones.")

NowOption = Annotated[str | None, typer.Option("--now", help="Act as if the clock read this ISO 8601 time.")]


def _manager_session() -> tuple[Any, str]:
    settings = load_settings()
    return open_checked_engine(settings), settings.secret_key()


@campaign_app.command("apply")
@user_errors
def apply(path: Path, as_json: JsonFlag = False) -> None:
    """Create a campaign from its YAML definition, or update the one with that name."""
    from outreach.sequence import parse_definition

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OutreachError(f"{path}: cannot read it ({exc})") from None
    try:
        definition = parse_definition(text)
    except OutreachError as exc:
        raise OutreachError(f"{path}: {exc}") from None
    engine, key = _manager_session()
    with transaction(engine) as session:
        ref = CampaignManager(session, secret_key=key).create_campaign(definition)
    verb = "created" if ref.created else "updated"
    emit({"id": ref.id, "name": ref.name, "created": ref.created, "state": str(ref.state)}, as_json,
         f"{verb} campaign {ref.name} (id {ref.id}, {ref.state})")  # fmt: skip


def _smtp_check(box: Mailbox) -> str | None:
    from outreach.mailboxes import smtp_settings
    from outreach.smtp_transport import check_connection

    try:
        check_connection(smtp_settings(box))
    except OutreachError as exc:
        return str(exc)
    return None


@campaign_app.command("launch")
@user_errors
def launch(
    name: str,
    skip_smtp_check: Annotated[bool, typer.Option(help="Do not test the mailboxes' SMTP connections first.")] = False,
    now: NowOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate everything, then enroll the audience and start sending on schedule."""
    engine, key = _manager_session()
    moment = parse_now(now)

    def progress(done: int, total: int) -> None:
        if not as_json and total:
            print(f"\renrolling {done}/{total}", end="", file=sys.stderr, flush=True)

    with transaction(engine) as session:
        campaign = find_campaign(session, name)
        check = CampaignManager(session, secret_key=key).launch(
            campaign, moment, smtp_check=None if skip_smtp_check else _smtp_check, progress=progress
        )
        result = {
            "id": campaign.id, "name": campaign.name, "state": str(campaign.state), "enrolled": check.enrollable,
            "audience": check.audience, "suppressed": check.suppressed, "already_enrolled": check.already_enrolled,
            "mailboxes": check.mailboxes, "first_days": check.first_days, "lint": check.lint,
            "warnings": check.warnings,
        }  # fmt: skip
    # After the commit, read-only: the estimate never holds the write lock, and cannot undo the launch.
    with transaction(engine, readonly=True) as session:
        result |= _finish_estimate(session, find_campaign(session, name), moment, key, size=check.audience)
    if not as_json:
        print(file=sys.stderr)
    days = ", ".join(f"{d}: {n}" for d, n in list(check.first_days.items())[:5])
    warnings = "".join(f"\nwarning: {w}" for w in [*check.warnings, *check.lint])  # shown, never blocking
    emit(
        result, as_json,
        f"launched {result['name']}: {result['enrolled']} enrolled; first touches {days}; {result['schedule']}"
        f"{warnings}",
    )  # fmt: skip


@campaign_app.command("simulate")
@user_errors
def simulate_command(
    name: str,
    days: Annotated[int, typer.Option("--days", help="How many days ahead to simulate.")] = 90,
    now: NowOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Which day and hour each touch would go out: a draft as if launched now, a running campaign from now."""
    from outreach.simulate import simulate

    engine, key = _manager_session()
    with transaction(engine, readonly=True) as session:  # a draft's trial launch is rolled back
        result = simulate(session, find_campaign(session, name), parse_now(now), secret_key=key, days=days)
    emit(result.as_dict(), as_json, result.report())


ESTIMATE_MAX_AUDIENCE = 20_000  # beyond this the year-ahead simulation takes minutes: point to the command


def _finish_estimate(session: Any, campaign: OutreachCampaign, now: datetime, key: str, *, size: int) -> dict[str, Any]:
    """'finishes in N days' for a campaign just launched: the simulation from its new state (a year ahead)."""
    from outreach.simulate import MAX_DAYS, SimulationError, simulate

    if size > ESTIMATE_MAX_AUDIENCE:
        later = f"see `outreach campaign simulate '{campaign.name}'` for when it finishes"
        return {"finishes_on": None, "finishes_in_days": None, "schedule": later}
    try:
        sim = simulate(session, campaign, now, secret_key=key, days=min(366, MAX_DAYS))
    except SimulationError:
        return {"finishes_on": None, "finishes_in_days": None, "schedule": "not simulated"}
    finishes_on = sim.finishes_on.isoformat() if sim.finishes_on else None
    return {"finishes_on": finishes_on, "finishes_in_days": sim.finishes_in_days, "schedule": sim.summary}


def _state_change(name: str, action: str, as_json: bool) -> None:
    engine, key = _manager_session()
    with transaction(engine) as session:
        campaign = find_campaign(session, name)
        manager = CampaignManager(session, secret_key=key)
        if action == "pause":
            manager.pause(campaign)
        elif action == "resume":
            manager.resume(campaign)
        else:
            manager.archive(campaign, datetime.now(UTC))
        result = {"id": campaign.id, "name": campaign.name, "state": str(campaign.state)}
    emit(result, as_json, f"{result['name']} is {result['state']}")


@campaign_app.command("pause")
@user_errors
def pause(name: str, as_json: JsonFlag = False) -> None:
    """Stop sending for now; nothing queued is lost."""
    _state_change(name, "pause", as_json)


@campaign_app.command("resume")
@user_errors
def resume(name: str, as_json: JsonFlag = False) -> None:
    """Continue a paused campaign where it stopped."""
    _state_change(name, "resume", as_json)


@campaign_app.command("archive")
@user_errors
def archive(name: str, as_json: JsonFlag = False) -> None:
    """Stop every pending touch and move the campaign out of the active lists."""
    _state_change(name, "archive", as_json)


def _touch_states(session: Any, campaign_id: int) -> dict[str, int]:
    rows = session.execute(
        select(CommunicationLog.state, func.count())
        .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
        .where(Enrollment.campaign_id == campaign_id)
        .group_by(CommunicationLog.state)
    )
    counts = {str(state): 0 for state in TouchState}
    counts.update({str(state): n for state, n in rows})
    return counts


@campaign_app.command("list")
@user_errors
def list_(as_json: JsonFlag = False) -> None:
    """Every campaign with its state and progress."""
    engine, _key = _manager_session()
    with transaction(engine, readonly=True) as session:
        rows = []
        for c in session.scalars(select(OutreachCampaign).order_by(OutreachCampaign.id)):
            touches = _touch_states(session, c.id)
            rows.append({"id": c.id, "name": c.name, "state": str(c.state), "steps": len(c.steps),
                         "enrollments": enrollment_counts(session, c.id), "sent": touches["sent"],
                         "in_doubt": touches["in_doubt"]})  # fmt: skip
    human = "\n".join(f"{r['id']}\t{r['name']}\t{r['state']}\tsent {r['sent']}" for r in rows) or "no campaigns yet"
    emit({"campaigns": rows}, as_json, human)


@campaign_app.command("show")
@user_errors
def show(name: str, as_json: JsonFlag = False) -> None:
    """One campaign: definition, state, enrollments and touches by state (in_doubt among them)."""
    engine, key = _manager_session()
    with transaction(engine, readonly=True) as session:
        c = find_campaign(session, name)
        mailboxes = CampaignManager(session, secret_key=key)._campaign_mailboxes(c)
        data = {
            "id": c.id, "name": c.name, "state": str(c.state), "paused_reason": c.paused_reason,
            "launched_at": c.launched_at, "finished_at": c.finished_at, "mailboxes": [m.name for m in mailboxes],
            "steps": [{"step": s.position + 1, "type": str(s.type), "delay": f"{s.delay_amount} {s.delay_unit}",
                       "when": str(s.condition), "variants": [v.name for v in s.variants if v.is_active]}
                      for s in c.steps],
            "enrollments": enrollment_counts(session, c.id), "touches": _touch_states(session, c.id),
            "definition": c.definition,
        }  # fmt: skip
    human = f"{data['name']} ({data['state']}): {len(data['steps'])} steps, " + ", ".join(
        f"{k} {v}" for k, v in data["touches"].items() if v
    )
    emit(data, as_json, human)


@touch_app.command("resolve")
@user_errors
def resolve(
    touch_id: int,
    sent: Annotated[bool, typer.Option("--sent/--resend", help="It did go out / send it again.")],
    as_json: JsonFlag = False,
) -> None:
    """Decide an in-doubt touch: it was sent (found in the Sent folder or the recipient has it), or resend."""
    engine, key = _manager_session()
    with transaction(engine) as session:
        manager = CampaignManager(session, secret_key=key)
        if not manager.resolve_in_doubt(touch_id, was_sent=sent, now=datetime.now(UTC)):
            raise OutreachError(f"touch {touch_id} is not in doubt")
    state = "sent" if sent else "queued"
    emit({"id": touch_id, "state": state}, as_json, f"touch {touch_id} is {state}")


@touch_app.command("held")
@user_errors
def held(
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only this campaign (name or id).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List touches held for confirmation because they became too late to go out (schedule.max_lateness)."""
    from outreach.late_touches import held_rows

    engine, _key = _manager_session()
    with transaction(engine, readonly=True) as session:
        rows = held_rows(session, limit=10_000)
        if campaign is not None:
            name = find_campaign(session, campaign).name
            rows = [r for r in rows if r["campaign"] == name]
    human = "\n".join(f"{r['id']}\t{r['campaign']}\t{r['prospect']}\t{r['why']}" for r in rows) or "no held touches"
    emit({"held": rows}, as_json, human)


def _decide_held(ids: list[int], every: bool, campaign: str | None, send: bool) -> dict[str, Any]:
    from outreach.late_touches import cancel, confirm, held_ids

    if not ids and not every:
        raise OutreachError("name the touches (IDs) or pass --all")
    engine, _key = _manager_session()
    now = datetime.now(UTC)
    with transaction(engine) as session:
        if every:
            ids = held_ids(session, find_campaign(session, campaign).id if campaign else None)
        for touch_id in ids:
            (confirm if send else cancel)(session, touch_id, now)
    return {"ids": ids, "state": "queued" if send else "cancelled"}


HeldIds = Annotated[list[int] | None, typer.Argument(help="Touch ids (see `outreach touch held`).")]
AllHeld = Annotated[bool, typer.Option("--all", help="Every held touch (of --campaign, if given).")]
HeldCampaign = Annotated[str | None, typer.Option("--campaign", help="With --all: only this campaign.")]


@touch_app.command("confirm")
@user_errors
def confirm_held(
    ids: HeldIds = None, every: AllHeld = False, campaign: HeldCampaign = None, as_json: JsonFlag = False
) -> None:
    """Send held (too late) touches after all: due now, at the mailbox's limits."""
    result = _decide_held(list(ids or []), every, campaign, send=True)
    emit(result, as_json, f"{len(result['ids'])} touch(es) confirmed; they go out at the mailboxes' limits")


@touch_app.command("cancel")
@user_errors
def cancel_held(
    ids: HeldIds = None, every: AllHeld = False, campaign: HeldCampaign = None, as_json: JsonFlag = False
) -> None:
    """Do not send held (too late) touches: each is cancelled and its prospect's sequence stops."""
    result = _decide_held(list(ids or []), every, campaign, send=False)
    emit(result, as_json, f"{len(result['ids'])} touch(es) cancelled; those sequences stopped")


def preview_command(
    campaign: str,
    prospect: Annotated[str, typer.Option("--prospect", help="The prospect's email address.")],
    step: Annotated[int, typer.Option("--step", help="Step number, from 1.")] = 1,
    variant: Annotated[str | None, typer.Option("--variant", help="Variant name.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The exact message that would be sent to a prospect for a step."""
    from outreach.preview import preview

    engine, key = _manager_session()
    with transaction(engine, readonly=True) as session:
        result = preview(session, campaign, prospect, datetime.now(UTC), secret_key=key, step_number=step,
                         variant_name=variant)  # fmt: skip
    if result.error and not as_json:
        raise OutreachError(f"step {step} variant {result.variant} does not render for {prospect}: {result.error}")
    human = "\n".join([*(f"{k}: {v}" for k, v in result.headers.items()), "", result.text])
    emit(result.as_dict(), as_json, human)


def stats_command(campaign: str, as_json: JsonFlag = False) -> None:
    """Per campaign, step and variant: sent, delivered, opened, clicked, replied, bounced … and A/B tests."""
    engine, _key = _manager_session()
    with transaction(engine, readonly=True) as session:
        data = engagement_counts(session, find_campaign(session, campaign))
    lines = [f"{data['campaign']}: sent {data['sent']}, replied {data['replied']}, bounced {data['bounced']}"]
    for s in data["steps"]:
        lines.append(f"  step {s['step']} ({s['type']}): sent {s['sent']}, replied {s['replied']}")
        for v in s["variants"]:
            lines.append(f"    {v['name']}: sent {v['sent']}, replied {v['replied']}")
        if "ab" in s:
            lines.append(f"    A/B ({s['ab']['status']}): {s['ab']['explanation']}")
            if "warning" in s["ab"]:
                lines.append(f"    warning: {s['ab']['warning']}")
    emit(data, as_json, "\n".join(lines))


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")
    app.add_typer(touch_app, name="touch")
    app.command("preview")(user_errors(preview_command))
    app.command("stats")(user_errors(stats_command))
