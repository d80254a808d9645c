"""The tracking / API service (FastAPI): open pixel, click redirect, unsubscribe, the REST API, health.

Every tracking route starts by verifying the signed token; a token that does not verify gets the same
answer as one that never existed (404; the pixel is always the image) and touches nothing. The click
redirect's destination comes only from the touch's stored `links` — never from the request — so the
service cannot be used as an open redirect. GET and HEAD on the unsubscribe page change nothing (mail
scanners prefetch links); POST does it, RFC 8058 one-click included: no cookies, no redirect, 200.
The database work lives in outreach.engagement (opens and clicks are group-committed by
outreach.event_recorder); these functions only translate HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import html
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from db.engine import transaction
from db.enums import EventKind
from db.migrate import schema_status
from outreach import __version__, engagement
from outreach.api import router as api_router
from outreach.config import Settings, load_settings
from outreach.engagement import Hit
from outreach.errors import OutreachError
from outreach.event_recorder import EventRecorder
from outreach.tokens import Purpose, verify

log = logging.getLogger("outreach.tracking")

OPEN_WAIT_S = 2.0  # the pixel waits at most this long for its open to be committed
# The smallest transparent GIF (43 bytes).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}
REDIRECT_HEADERS = {**NO_STORE, "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}


def _now() -> datetime:
    return datetime.now(UTC)


def _client_ip(request: Request) -> str | None:
    # uvicorn resolves X-Forwarded-For only from trusted proxies (--forwarded-allow-ips), so this is safe.
    return request.client.host if request.client else None


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A small self-contained page: no scripts, no external assets, every dynamic value escaped by callers."""
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex, nofollow"><title>{html.escape(title)}</title>'
        "<style>body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f6f7f9;"
        "color:#1f2328;margin:0;padding:48px 16px}main{max-width:460px;margin:0 auto;background:#fff;"
        "border:1px solid #d8dee4;border-radius:8px;padding:32px}h1{font-size:20px;margin:0 0 12px}"
        "button{font-size:16px;padding:10px 20px;border:0;border-radius:6px;background:#1f6feb;color:#fff;"
        "cursor:pointer}p{line-height:1.5}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=PAGE_HEADERS)


def _not_found_page() -> HTMLResponse:
    return _page(
        "Link not recognised",
        "<p>This unsubscribe link is not valid. If you keep receiving messages, reply to one of them with "
        "the word “unsubscribe” and you will be removed.</p>",
        status=404,
    )


def _confirm_page(masked: str, already: bool) -> HTMLResponse:
    who = html.escape(masked)
    if already:
        return _page("You are unsubscribed", f"<p><strong>{who}</strong> will not receive further messages.</p>")
    return _page(
        "Unsubscribe",
        f"<p>Stop all further messages to <strong>{who}</strong>?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


def _add_tracking_routes(app: FastAPI, engine: Engine, settings: Settings, recorder: EventRecorder) -> None:
    keys = settings.secret_keys()

    @app.get("/o/{token}", include_in_schema=False)
    async def open_pixel(token: str, request: Request) -> Response:
        """Always the image, fast; a verified token also records the open (a failure only logs).

        The answer waits for the open to be committed, but never longer than OPEN_WAIT_S: a database
        busy with something else delays the record, not the image.
        """
        parsed = verify(token, keys, Purpose.OPEN)
        if parsed is not None:
            hit = Hit(EventKind.OPEN, parsed.touch_id, _now(), request.headers.get("user-agent"), _client_ip(request))
            pending = asyncio.ensure_future(recorder.record(hit))
            pending.add_done_callback(_retrieve)  # a late failure is logged by the recorder, not re-raised
            try:
                await asyncio.wait_for(asyncio.shield(pending), OPEN_WAIT_S)
            except TimeoutError:
                log.warning("recording an open is taking over %s s; the pixel was served first", OPEN_WAIT_S)
            except Exception:
                log.exception("recording an open failed; the pixel was served anyway")
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    @app.api_route("/c/{token}", methods=["GET", "HEAD"], include_in_schema=False)
    async def click(token: str, request: Request) -> Response:
        """302 to the stored URL for this touch and link; 404 for anything else, recording nothing."""
        parsed = verify(token, keys, Purpose.CLICK)
        if parsed is None:
            return Response(status_code=404, headers=NO_STORE)
        hit = Hit(
            EventKind.CLICK, parsed.touch_id, _now(), request.headers.get("user-agent"),
            link_index=parsed.link_index, method=request.method,
        )  # fmt: skip
        try:
            result = await recorder.record(hit)
        except Exception:
            log.exception("recording a click failed; redirecting without it")
            result = await run_in_threadpool(_stored_destination, engine, parsed.touch_id, parsed.link_index)
        if not isinstance(result, str):
            return Response(status_code=404, headers=NO_STORE)
        return RedirectResponse(result, status_code=302, headers=REDIRECT_HEADERS)

    @app.api_route("/u/{token}", methods=["GET", "HEAD"], include_in_schema=False)
    def unsubscribe_page(token: str) -> Response:
        """The confirmation page; reading it never unsubscribes (link scanners load pages too)."""
        parsed = verify(token, keys, Purpose.UNSUBSCRIBE)
        if parsed is None:
            return _not_found_page()
        with transaction(engine, readonly=True) as session:
            page = engagement.unsubscribe_page(session, parsed.touch_id, secret_key=keys[0])
        if page is None:
            return _not_found_page()
        return _confirm_page(page.masked_address, page.already_unsubscribed)

    @app.post("/u/{token}", include_in_schema=False)
    async def unsubscribe(token: str, request: Request) -> Response:
        """RFC 8058 one-click (List-Unsubscribe=One-Click, url-encoded or multipart) or the page's button."""
        parsed = verify(token, keys, Purpose.UNSUBSCRIBE)
        if parsed is None:
            return _not_found_page()
        method = await _unsubscribe_method(request)
        result = await _run(engine, parsed.touch_id, method, request.headers.get("user-agent"))
        if result is None:
            return _not_found_page()
        return _page(
            "You are unsubscribed",
            f"<p><strong>{html.escape(result.masked_address)}</strong> will not receive further messages.</p>",
        )


async def _unsubscribe_method(request: Request) -> str:
    """'one-click' when the body says List-Unsubscribe=One-Click; any POST to a valid link unsubscribes."""
    try:
        form = await request.form(max_files=0, max_fields=10)
    except (StarletteHTTPException, MultiPartException, ValueError, UnicodeDecodeError):
        # A malformed body must not block an opt-out: the signed token is the authority.
        log.info("unsubscribe POST with an unreadable body; honoured on the token alone")
        return "post"
    value = form.get("List-Unsubscribe")
    await form.close()
    return "one-click" if isinstance(value, str) and value.strip() == "One-Click" else "post"


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def _stored_destination(engine: Engine, touch_id: int, link_index: int) -> str | None:
    with transaction(engine, readonly=True) as session:
        return engagement.stored_destination(session, touch_id, link_index)


async def _run(
    engine: Engine, touch_id: int, method: str, user_agent: str | None
) -> engagement.UnsubscribeResult | None:
    def work() -> engagement.UnsubscribeResult | None:
        with transaction(engine) as session:
            return engagement.unsubscribe(session, touch_id, now=_now(), method=method, user_agent=user_agent)

    return await run_in_threadpool(work)


def create_app(engine: Engine, settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    recorder = EventRecorder(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(recorder.close)  # write every queued open and click before exiting

    app = FastAPI(
        lifespan=lifespan,
        title="Outreach tracking and API",
        version=__version__,
        description="Campaign management over an API key (Authorization: Bearer <key> or X-API-Key).",
    )
    app.state.engine, app.state.settings, app.state.recorder = engine, settings, recorder

    @app.exception_handler(OutreachError)
    def domain_error(_request: Request, exc: OutreachError) -> JSONResponse:
        """A domain error no route translated: still the user's to fix, so 400 with its message."""
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        """Liveness and readiness: the database answers and its schema is the one this code needs."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            status = schema_status(engine)
        except SQLAlchemyError:
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        body = {"status": "ok" if status.up_to_date else "error", "database": "ok", "schema": status.current}
        return JSONResponse(body, status_code=200 if status.up_to_date else 503)

    _add_tracking_routes(app, engine, settings, recorder)
    app.include_router(api_router)
    return app


def app_from_environment() -> FastAPI:
    """The app built from the environment, for `uvicorn --factory outreach.tracking:app_from_environment`
    (several uvicorn workers, a different server, or a process manager other than `outreach serve`)."""
    from outreach.runtime import open_checked_engine

    settings = load_settings()
    return create_app(open_checked_engine(settings), settings)
