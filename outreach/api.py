"""The REST API under /api/v1: a face over the same services the CLI and the dashboard use.

Every route needs an API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`): none or an unknown
one is 401, a revoked one 403, a read key on a route that changes something 403. Domain errors become
400 (bad input), 404 (no such thing) or 409 (not in a state that allows it) with a message a person can
act on; request-shape errors are FastAPI's 422. Inputs are bounded (lengths, integer ranges, no NUL
characters) so no request can make the database fail with a 500.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import StringConstraints
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from db.engine import transaction
from db.enums import ApiScope, EventKind, SuppressionReason
from db.models import EngagementEvent, Mailbox, OutreachCampaign, Prospect
from outreach import api_models as m
from outreach.api_keys import Authenticated, KeyRejectedError, authenticate
from outreach.campaign_views import campaign_detail, campaign_rows
from outreach.campaigns import CampaignError, CampaignManager, engagement_counts
from outreach.config import Settings
from outreach.errors import OutreachError

PREFIX = "/api/v1"
MAX_ID = 2**31 - 1  # ids are INTEGER columns: larger numbers cannot name anything
MAX_DEFINITION_BYTES = 1_000_000
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
UPLOAD_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx")
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL; the pattern puts that in the published schema
Text = Annotated[str, StringConstraints(max_length=320, pattern=NO_NUL)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key in X-API-Key")


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_header_key)],
) -> Authenticated:
    presented = bearer.credentials if bearer is not None else header_key
    try:
        with transaction(_engine(request)) as session:
            return authenticate(session, presented)
    except KeyRejectedError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise HTTPException(exc.status, str(exc), headers=headers) from None


def _writer(caller: Annotated[Authenticated, Depends(_caller)]) -> Authenticated:
    if caller.scope is not ApiScope.WRITE:
        raise HTTPException(403, f"the API key '{caller.name}' is read-only; this route needs a write key")
    return caller


Reader = Annotated[Authenticated, Depends(_caller)]
Writer = Annotated[Authenticated, Depends(_writer)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": m.Error, "description": text}
    for code, text in (
        (400, "Bad input"),
        (401, "No API key, or not a valid one"),
        (403, "Key revoked, or read-only on a write route"),
        (404, "No such thing"),
    )
}
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": m.Error, "description": "Not possible in this state"}}
_TOO_LARGE: dict[int | str, dict[str, Any]] = {413: {"model": m.Error, "description": "Body too large"}}

router = APIRouter(prefix=PREFIX, responses=_ERRORS)


def _find_campaign(session: Session, ref: str) -> OutreachCampaign:
    """By name, else by id — bounded, so 'a number too large' or '²' is simply not found."""
    text = ref.strip()
    campaign = session.scalar(select(OutreachCampaign).where(OutreachCampaign.name == text))
    if campaign is None and text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID:
        campaign = session.get(OutreachCampaign, int(text))
    if campaign is None:
        raise HTTPException(404, f"no campaign named or numbered '{text}'")
    return campaign


def _now() -> datetime:
    return datetime.now(UTC)


# --- campaigns -----------------------------------------------------------------------------------


@router.get("/campaigns", tags=["campaigns"])
def list_campaigns(request: Request, _key: Reader) -> m.CampaignList:
    """Every campaign with its state and progress (as `outreach campaign list --json`)."""
    with transaction(_engine(request), readonly=True) as session:
        return m.CampaignList(campaigns=[m.CampaignSummary(**row) for row in campaign_rows(session)])


@router.get("/campaigns/{ref}", tags=["campaigns"])
def show_campaign(ref: Name, request: Request, _key: Reader) -> m.CampaignDetail:
    """One campaign by name or id (as `outreach campaign show --json`)."""
    with transaction(_engine(request), readonly=True) as session:
        return m.CampaignDetail(**campaign_detail(session, _find_campaign(session, ref)))


async def _bounded_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_YAML_BODY = {
    "requestBody": {
        "required": True,
        "description": "The campaign definition (YAML), as for `outreach campaign apply`.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


@router.post("/campaigns", tags=["campaigns"], openapi_extra=_YAML_BODY, responses=_TOO_LARGE)
async def apply_campaign(request: Request, _key: Writer) -> m.ApplyResult:
    """Create a campaign from its YAML definition, or update the one with that name."""
    raw = await _bounded_body(request, MAX_DEFINITION_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the definition must be UTF-8 text") from None
    return await run_in_threadpool(_apply, request, text)


def _apply(request: Request, text: str) -> m.ApplyResult:
    from outreach.sequence import parse_definition

    if "\x00" in text:
        raise HTTPException(400, "the definition contains a NUL character")
    try:
        definition = parse_definition(text)
        with transaction(_engine(request)) as session:
            ref = CampaignManager(session, secret_key=_settings(request).secret_key()).create_campaign(definition)
    except OutreachError as exc:
        raise HTTPException(400, str(exc)) from None
    except yaml.YAMLError as exc:  # the YAML reader refuses control characters before parsing starts
        raise HTTPException(400, f"the definition is not readable YAML: {exc}") from None
    return m.ApplyResult(id=ref.id, name=ref.name, created=ref.created, state=str(ref.state))


def _smtp_check(box: Mailbox) -> str | None:
    from outreach.mailboxes import smtp_settings
    from outreach.smtp_transport import check_connection

    try:
        check_connection(smtp_settings(box))
    except OutreachError as exc:
        return str(exc)
    return None


@router.post("/campaigns/{ref}/launch", tags=["campaigns"], responses=_CONFLICT)
def launch_campaign(
    ref: Name,
    request: Request,
    _key: Writer,
    check_smtp: Annotated[bool, Query(description="Log in to each mailbox's SMTP server first.")] = True,
) -> m.LaunchResult:
    """Validate everything, then enroll the audience and start sending on schedule."""
    with transaction(_engine(request)) as session:
        campaign = _find_campaign(session, ref)
        manager = CampaignManager(session, secret_key=_settings(request).secret_key())
        try:
            check = manager.launch(campaign, _now(), smtp_check=_smtp_check if check_smtp else None)
        except CampaignError as exc:
            raise HTTPException(409, str(exc)) from None
        return m.LaunchResult(
            id=campaign.id, name=campaign.name, state=str(campaign.state), enrolled=check.enrollable,
            audience=check.audience, suppressed=check.suppressed, already_enrolled=check.already_enrolled,
            mailboxes=check.mailboxes, first_days=check.first_days,
        )  # fmt: skip


def _state_change(request: Request, ref: str, action: Literal["pause", "resume"]) -> m.StateResult:
    with transaction(_engine(request)) as session:
        campaign = _find_campaign(session, ref)
        manager = CampaignManager(session, secret_key=_settings(request).secret_key())
        try:
            if action == "pause":
                manager.pause(campaign)
            else:
                manager.resume(campaign)
        except CampaignError as exc:
            raise HTTPException(409, str(exc)) from None
        return m.StateResult(id=campaign.id, name=campaign.name, state=str(campaign.state))


@router.post("/campaigns/{ref}/pause", tags=["campaigns"], responses=_CONFLICT)
def pause_campaign(ref: Name, request: Request, _key: Writer) -> m.StateResult:
    """Stop sending for now; nothing queued is lost."""
    return _state_change(request, ref, "pause")


@router.post("/campaigns/{ref}/resume", tags=["campaigns"], responses=_CONFLICT)
def resume_campaign(ref: Name, request: Request, _key: Writer) -> m.StateResult:
    """Continue a paused campaign where it stopped."""
    return _state_change(request, ref, "resume")


@router.get("/campaigns/{ref}/stats", tags=["stats"], response_model=m.CampaignStats)
def campaign_stats(ref: Name, request: Request, _key: Reader) -> JSONResponse:
    """The same object as `outreach stats CAMPAIGN --json` (`ab` only on steps with 2+ variants)."""
    with transaction(_engine(request), readonly=True) as session:
        data = engagement_counts(session, _find_campaign(session, ref))
    checked = m.CampaignStats.model_validate(data)  # the documented shape, or a loud failure here
    return JSONResponse(checked.model_dump(mode="json", exclude_unset=True))


# --- prospects -----------------------------------------------------------------------------------


def _upload_path(settings: Settings, name: str | None) -> Path:
    suffix = Path(name or "").suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise HTTPException(400, f"the file must be one of {', '.join(UPLOAD_SUFFIXES)}, not '{suffix or 'none'}'")
    folder = settings.data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"api-{uuid.uuid4().hex}{suffix}"


@router.post("/prospects/import", tags=["prospects"], responses=_TOO_LARGE)
def import_prospect_file(
    request: Request,
    _key: Writer,
    file: Annotated[UploadFile, File(description="CSV, TSV or XLSX of prospects.")],
    list_name: Annotated[Name | None, Form(alias="list", description="Add every prospect to this list.")] = None,
    tags: Annotated[list[Name] | None, Form(description="Tag every prospect; repeat the field.")] = None,
) -> m.ImportResult:
    """Import prospects; every row is counted as imported, updated, duplicate, rejected or suppressed."""
    from outreach.prospects import ImportOptions, import_prospects

    settings = _settings(request)
    if file.size is not None and file.size > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    path = _upload_path(settings, file.filename)
    try:
        with path.open("wb") as out:
            shutil.copyfileobj(file.file, out)
        options = ImportOptions(
            list_name=list_name, tags=tuple(tags or ()), rejects_dir=settings.data_dir / "rejects",
            source=f"API upload {Path(file.filename or 'file').name}"[:300],
        )  # fmt: skip
        with transaction(_engine(request)) as session:
            report = import_prospects(session, path, options, secret_key=settings.secret_key())
    except OutreachError as exc:
        raise HTTPException(400, str(exc)) from None
    finally:
        path.unlink(missing_ok=True)
    return m.ImportResult(**report.summary())


@router.get("/prospects", tags=["prospects"])
def list_prospects(
    request: Request,
    _key: Reader,
    q: Annotated[Text | None, Query(description="Substring of email, name or company.")] = None,
    list_name: Annotated[Name | None, Query(alias="list")] = None,
    tag: Annotated[Name | None, Query()] = None,
    company: Annotated[Text | None, Query()] = None,
    country: Annotated[Text | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Keyset cursor: next_after_id.")] = None,
) -> m.ProspectList:
    """A page of prospects, newest first."""
    from outreach.prospect_search import ProspectFilter, search_prospects

    flt = ProspectFilter(text=q, list_name=list_name, tag=tag, company=company, country=country)
    with transaction(_engine(request), readonly=True) as session:
        page = search_prospects(session, flt, page_size=limit, after_id=after_id)
    return m.ProspectList(
        prospects=[m.ProspectSummary(**vars(row)) for row in page.rows],
        total=page.total, total_capped=page.total_capped, next_after_id=page.next_after_id,
    )  # fmt: skip


@router.get("/prospects/{prospect_id}", tags=["prospects"])
def get_prospect(prospect_id: Id, request: Request, _key: Reader) -> m.ProspectDetail:
    """One prospect: fields, lists, tags, campaigns and the timeline."""
    from outreach.prospect_search import prospect_detail

    with transaction(_engine(request), readonly=True) as session:
        if session.get(Prospect, prospect_id) is None:
            raise HTTPException(404, f"no prospect with id {prospect_id}")
        detail = prospect_detail(session, prospect_id)
    return m.ProspectDetail(
        id=detail.id, email=detail.email, fields=detail.fields, custom_fields=detail.custom_fields,
        tags=detail.tags, lists=detail.lists, stage=detail.stage, score=detail.score,
        campaigns=[m.Membership(**vars(c)) for c in detail.campaigns],
        timeline=[m.TimelineEntry(**vars(t)) for t in detail.timeline],
    )  # fmt: skip


# --- suppression ---------------------------------------------------------------------------------


@router.get("/suppressions", tags=["suppression"])
def list_suppressions(
    request: Request,
    _key: Reader,
    search: Annotated[Text | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> m.SuppressionList:
    """The never-contact list, newest first."""
    from outreach.suppression import list_suppressions as entries_page

    with transaction(_engine(request), readonly=True) as session:
        entries, total = entries_page(session, search=search, limit=limit, offset=offset)
    return m.SuppressionList(entries=[m.SuppressionEntry(**vars(e)) for e in entries], total=total)


@router.post("/suppressions", tags=["suppression"])
def add_suppressions(body: m.SuppressRequest, request: Request, _key: Writer) -> m.SuppressResult:
    """Never contact these addresses or domains (a domain covers its subdomains). All or nothing."""
    from outreach.suppression import suppress

    if body.reason is SuppressionReason.FORGOTTEN:
        raise HTTPException(400, "reason 'forgotten' is set only by `outreach forget`")
    if any("\x00" in entry or len(entry) > 320 for entry in body.entries):
        raise HTTPException(400, "each entry must be an address or domain of at most 320 characters")
    try:
        with transaction(_engine(request)) as session:
            result = suppress(session, body.entries, reason=body.reason, source="API")
    except OutreachError as exc:
        raise HTTPException(400, str(exc)) from None
    return m.SuppressResult(added=result.added, already=result.already)


# --- events --------------------------------------------------------------------------------------


@router.get("/events", tags=["events"])
def events_feed(
    request: Request,
    _key: Reader,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Return events with a larger id (the cursor).")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    kind: Annotated[EventKind | None, Query()] = None,
    campaign: Annotated[Name | None, Query(description="Campaign name or id.")] = None,
    include_machine: Annotated[bool, Query(description="Include opens/clicks judged automated.")] = True,
) -> m.EventPage:
    """Events in id order after a cursor: poll with next_cursor to follow new activity."""
    with transaction(_engine(request), readonly=True) as session:
        query = (
            select(EngagementEvent, OutreachCampaign.name, Prospect.email)
            .outerjoin(OutreachCampaign, OutreachCampaign.id == EngagementEvent.campaign_id)
            .outerjoin(Prospect, Prospect.id == EngagementEvent.prospect_id)
            .where(EngagementEvent.id > after)
            .order_by(EngagementEvent.id)
            .limit(limit + 1)
        )
        if kind is not None:
            query = query.where(EngagementEvent.kind == kind)
        if campaign is not None:
            query = query.where(EngagementEvent.campaign_id == _find_campaign(session, campaign).id)
        if not include_machine:
            query = query.where(EngagementEvent.is_machine.is_(False))
        rows = session.execute(query).all()
        events = [_event(e, name, email) for e, name, email in rows[:limit]]
    return m.EventPage(events=events, next_cursor=events[-1].id if events else after, has_more=len(rows) > limit)


def _event(e: EngagementEvent, campaign: str | None, email: str | None) -> m.Event:
    return m.Event(
        id=e.id, kind=e.kind, occurred_at=e.occurred_at, campaign_id=e.campaign_id, campaign=campaign,
        prospect_id=e.prospect_id, email=email, communication_id=e.communication_id, is_machine=e.is_machine,
        url=e.url, details=dict(e.details or {}),
    )  # fmt: skip
