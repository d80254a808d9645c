"""The tracking / API service (FastAPI). Pixel, click, unsubscribe and the REST API join with their issue."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from db.migrate import schema_status
from outreach import __version__


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="Outreach tracking and API", version=__version__)

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

    return app
