"""The REST API with keys: 401 without one, 403 revoked or read-only on a write route, and the happy paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from db.engine import dispose_engines, transaction
from db.enums import ApiScope, TlsMode
from db.models import ApiKey
from outreach.api_keys import create_api_key, list_api_keys, revoke_api_key
from outreach.campaigns import engagement_counts, find_campaign
from outreach.cli import app as cli_app
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.tokens import LinkToken, Purpose, sign
from outreach.tracking import create_app
from tests.factories import queued_touches
from tests.tracking_helpers import KEY, YAML, settings_for

CSV = b"email,first_name,company,timezone\nann@acme.example,Ann,Acme,America/New_York\nbob@globex.example,Bob,Globex,\n"
WRITE_ROUTES = [
    ("POST", "/api/v1/campaigns"),
    ("POST", "/api/v1/campaigns/Q1/launch"),
    ("POST", "/api/v1/campaigns/Q1/pause"),
    ("POST", "/api/v1/campaigns/Q1/resume"),
    ("POST", "/api/v1/prospects/import"),
    ("POST", "/api/v1/suppressions"),
]
READ_ROUTES = [
    ("GET", "/api/v1/campaigns"),
    ("GET", "/api/v1/campaigns/Q1"),
    ("GET", "/api/v1/campaigns/Q1/stats"),
    ("GET", "/api/v1/prospects"),
    ("GET", "/api/v1/prospects/1"),
    ("GET", "/api/v1/suppressions"),
    ("GET", "/api/v1/events"),
]


@pytest.fixture
def settings(tmp_path, db_url):
    return settings_for(tmp_path / "data", db_url)


@pytest.fixture
def client(engine, settings) -> TestClient:
    return TestClient(create_app(engine, settings), follow_redirects=False)


@pytest.fixture
def keys(engine) -> dict[str, str]:
    with transaction(engine) as s:
        made = {scope: create_api_key(s, f"{scope} key", scope).key for scope in ("read", "write")}
        revoked = create_api_key(s, "old", "write")
        revoke_api_key(s, revoked.info.prefix)
    return {**made, "revoked": revoked.key}


def _auth(key: str, style: str = "bearer") -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if style == "bearer" else {"X-API-Key": key}


def test_every_route_is_in_the_spec_and_refuses_a_missing_or_unknown_key(client, keys) -> None:
    spec = client.get("/openapi.json").json()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert {(m, p.replace("Q1", "{ref}").replace("/1", "/{prospect_id}")) for m, p in WRITE_ROUTES + READ_ROUTES} <= (
        documented
    )
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    bogus = keys["write"][:-4] + "AAAA"
    for method, path in WRITE_ROUTES + READ_ROUTES:
        basic = {"Authorization": f"Basic {keys['write']}"}
        for headers in ({}, _auth(bogus), _auth("ok_00000000.x", "header"), basic):
            answer = client.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"


def test_a_revoked_key_gets_403_everywhere_and_a_read_key_403_on_write_routes(client, keys) -> None:
    for method, path in WRITE_ROUTES + READ_ROUTES:
        assert client.request(method, path, headers=_auth(keys["revoked"])).status_code == 403
    for method, path in WRITE_ROUTES:
        answer = client.request(method, path, headers=_auth(keys["read"], "header"))
        assert answer.status_code == 403 and "read-only" in answer.json()["detail"]
    assert client.get("/api/v1/campaigns", headers=_auth(keys["read"])).status_code == 200


def test_keys_are_stored_hashed_and_never_listed(engine, keys) -> None:
    with transaction(engine, readonly=True) as s:
        stored = s.scalars(select(ApiKey.key_hash)).all()
        listed = list_api_keys(s)
    assert all(len(h) == 64 and h not in keys.values() for h in stored)
    shown = json.dumps([vars(k) for k in listed], default=str)
    assert not any(key in shown or key.split(".")[1] in shown for key in keys.values())
    assert [k.active for k in listed] == [True, True, False]


def test_campaign_lifecycle_prospects_stats_suppression_and_events(engine, client, keys) -> None:
    write, read = _auth(keys["write"]), _auth(keys["read"], "header")
    imported = client.post("/api/v1/prospects/import", headers=write, files={"file": ("leads.csv", CSV)},
                           data={"list": "cfos", "tags": ["api"]})  # fmt: skip
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"rows": 2, "imported": 2, "updated": 0, "duplicates": 0, "rejected": 0,
                               "suppressed": 0, "rejects_path": None}  # fmt: skip
    with transaction(engine) as s:
        save_mailbox(s, MailboxSpec("sales-1", "dana@sender.example", "127.0.0.1", 2525, tls=TlsMode.NONE))
    created = client.post("/api/v1/campaigns", headers={**write, "Content-Type": "application/yaml"}, content=YAML)
    assert created.status_code == 200 and created.json()["created"] is True
    again = client.post("/api/v1/campaigns", headers={**write, "Content-Type": "text/plain"}, content=YAML)
    assert again.json() == {**created.json(), "created": False}
    broken = client.post("/api/v1/campaigns", headers=write, content=YAML.replace("steps:", "stepz:"))
    assert broken.status_code == 400 and "stepz" in broken.json()["detail"]

    assert client.post("/api/v1/campaigns/Q1/pause", headers=write).status_code == 409  # a draft cannot pause
    launched = client.post("/api/v1/campaigns/Q1/launch?check_smtp=false", headers=write)
    assert launched.status_code == 200, launched.text
    assert (launched.json()["enrolled"], launched.json()["state"]) == (2, "running")
    assert client.post("/api/v1/campaigns/Q1/launch?check_smtp=false", headers=write).status_code == 409
    assert client.post("/api/v1/campaigns/Q1/pause", headers=write).json()["state"] == "paused"
    assert client.post("/api/v1/campaigns/Q1/resume", headers=write).json()["state"] == "running"

    listed = client.get("/api/v1/campaigns", headers=read).json()["campaigns"]
    assert [(c["name"], c["state"], c["enrollments"]["active"]) for c in listed] == [("Q1", "running", 2)]
    shown = client.get(f"/api/v1/campaigns/{listed[0]['id']}", headers=read).json()
    assert shown["name"] == "Q1" and [s["step"] for s in shown["steps"]] == [1, 2]
    assert client.get("/api/v1/campaigns/nope", headers=read).status_code == 404
    assert client.get("/api/v1/campaigns/99999999999999999999", headers=read).status_code == 404

    prospects = client.get("/api/v1/prospects", headers=read, params={"list": "cfos", "limit": 1}).json()
    assert prospects["total"] == 2 and len(prospects["prospects"]) == 1 and prospects["next_after_id"]
    rest = client.get("/api/v1/prospects", headers=read, params={"after_id": prospects["next_after_id"]}).json()
    emails = {prospects["prospects"][0]["email"], rest["prospects"][0]["email"]}
    assert emails == {"ann@acme.example", "bob@globex.example"}
    ann_id = next(p["id"] for p in [*prospects["prospects"], *rest["prospects"]] if p["email"].startswith("ann"))
    detail = client.get(f"/api/v1/prospects/{ann_id}", headers=read).json()
    assert detail["lists"] == ["cfos"] and detail["tags"] == ["api"] and detail["campaigns"][0]["campaign"] == "Q1"
    assert client.get("/api/v1/prospects/2147483647", headers=read).status_code == 404

    added = client.post("/api/v1/suppressions", headers=write, json={"entries": ["x@y.example", "@spam.example"]})
    assert added.json() == {"added": 2, "already": 0}
    bad = client.post("/api/v1/suppressions", headers=write, json={"entries": ["not an address"]})
    assert bad.status_code == 400 and "not an address" in bad.json()["detail"]
    entries = client.get("/api/v1/suppressions", headers=read).json()
    assert entries["total"] == 2 and {e["value"] for e in entries["entries"]} == {"x@y.example", "spam.example"}

    with transaction(engine, readonly=True) as s:
        expected = json.loads(json.dumps(engagement_counts(s, find_campaign(s, "Q1")), default=str))
    assert client.get("/api/v1/campaigns/Q1/stats", headers=read).json() == expected  # same JSON as the CLI


def test_events_feed_pages_by_cursor(engine, client, keys) -> None:
    with transaction(engine) as s:
        touch_ids = queued_touches(s, 3, datetime.now(UTC))
    for touch_id in touch_ids:
        for _ in range(2):
            client.get(f"/o/{sign(LinkToken(Purpose.OPEN, touch_id), KEY)}", headers={"User-Agent": "Mozilla/5.0"})
    read = _auth(keys["read"])
    seen, cursor, pages = [], 0, 0
    while True:
        page = client.get("/api/v1/events", headers=read, params={"after": cursor, "limit": 4}).json()
        seen += page["events"]
        cursor, pages = page["next_cursor"], pages + 1
        if not page["has_more"]:
            break
    assert pages == 2 and len(seen) == 6 and [e["id"] for e in seen] == sorted(e["id"] for e in seen)
    assert {e["kind"] for e in seen} == {"open"} and all(e["is_machine"] for e in seen)
    assert all(e["email"].endswith("@x.example") for e in seen)
    empty = client.get("/api/v1/events", headers=read, params={"after": cursor}).json()
    assert empty == {"events": [], "next_cursor": cursor, "has_more": False}
    humans = client.get("/api/v1/events", headers=read, params={"include_machine": "false"}).json()
    assert humans["events"] == []


@pytest.fixture
def cli(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("OUTREACH_DATABASE_URL", db_url)
    yield CliRunner()
    dispose_engines()


def _json(cli: CliRunner, *args: str) -> dict:
    result = cli.invoke(cli_app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_creates_lists_and_revokes_keys_and_the_api_obeys(engine, client, cli) -> None:
    made = _json(cli, "apikey", "create", "zapier", "--scope", "write")
    assert made["scope"] == "write" and made["key"].startswith(made["prefix"] + ".")
    assert client.get("/api/v1/campaigns", headers=_auth(made["key"])).status_code == 200
    listed = _json(cli, "apikey", "list")
    assert [k["prefix"] for k in listed["keys"]] == [made["prefix"]] and made["key"] not in json.dumps(listed)
    revoked = _json(cli, "apikey", "revoke", made["prefix"])
    assert revoked["prefix"] == made["prefix"] and revoked["revoked_at"]
    assert client.get("/api/v1/campaigns", headers=_auth(made["key"])).status_code == 403
    bad = cli.invoke(cli_app, ["apikey", "revoke", "ok_nothere"])
    assert bad.exit_code == 2 and "no API key" in bad.stderr
    bad_scope = cli.invoke(cli_app, ["apikey", "create", "x", "--scope", "admin"])
    assert bad_scope.exit_code == 2
    with transaction(engine, readonly=True) as s:
        assert [k.scope for k in list_api_keys(s)] == [ApiScope.WRITE]
