"""The tracking service over HTTP: forged tokens, open-redirect attempts, unsubscribe safety and one-click,
machine opens and scanner clicks — against a campaign whose touches really went out over SMTP."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from db.engine import transaction
from db.enums import EnrollmentState, EventKind, StopReason, TouchState
from db.models import CommunicationLog, EngagementEvent, Enrollment, Suppression
from outreach import event_recorder
from outreach.campaigns import engagement_counts, find_campaign
from outreach.sending import send_tick
from outreach.suppression import is_suppressed
from outreach.tokens import MAC_BYTES, LinkToken, Purpose, sign
from outreach.tracking import PIXEL, create_app
from tests.smtp_sink import Sink
from tests.tracking_helpers import (
    BASE,
    FOLLOW_UP_DUE,
    KEY,
    LINKS,
    OLD_KEY,
    ctx_at,
    launch,
    mark_sent_at,
    send_first_touches,
    settings_for,
)

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605"
)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as s:
        yield s


@pytest.fixture
def settings(tmp_path, db_url):
    return settings_for(tmp_path / "data", db_url, previous=(OLD_KEY,))


@pytest.fixture
def touches(engine, sink, settings) -> dict[str, int]:
    launch(engine, sink, people=2)
    return send_first_touches(engine, settings, links=LINKS)


@pytest.fixture
def client(engine, settings) -> TestClient:
    return TestClient(create_app(engine, settings), follow_redirects=False)


def _snapshot(engine) -> tuple:
    """Everything a tracking request could change."""
    with transaction(engine, readonly=True) as s:
        return (
            s.execute(select(EngagementEvent.id, EngagementEvent.kind).order_by(EngagementEvent.id)).all(),
            s.execute(select(Suppression.value, Suppression.reason).order_by(Suppression.id)).all(),
            s.execute(select(Enrollment.id, Enrollment.state, Enrollment.stop_reason).order_by(Enrollment.id)).all(),
            s.execute(select(CommunicationLog.id, CommunicationLog.state).order_by(CommunicationLog.id)).all(),
        )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _forgeries(touch_ids: list[int], rng: random.Random) -> dict[Purpose, list[str]]:
    """Thousands of near-miss tokens per purpose: bit flips, swaps, splices, wrong keys, enumeration, junk."""
    out: dict[Purpose, list[str]] = {p: [] for p in Purpose}
    for purpose in Purpose:
        wrong = [p for p in Purpose if p is not purpose]
        for touch_id in touch_ids:
            for index in (0, 1) if purpose is Purpose.CLICK else (0,):
                good = sign(LinkToken(purpose, touch_id, index), KEY)
                for position in range(len(good)):  # every character replaced by 3 others
                    for shift in rng.sample(range(1, 64), 3):
                        chars = list(good)
                        chars[position] = ALPHABET[(ALPHABET.index(chars[position]) + shift) % 64]
                        out[purpose].append("".join(chars))
                raw = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4))
                for bit in range(len(raw) * 8):  # every single bit flipped
                    flipped = bytearray(raw)
                    flipped[bit // 8] ^= 1 << (bit % 8)
                    out[purpose].append(_b64(bytes(flipped)))
                out[purpose] += [good + "A", good[:-1], good[1:], good.upper(), good[::-1], good + "=", " " + good]
                last = ALPHABET.index(good[-1])  # the last character carries 2 padding bits the decoder ignores
                padded = [good[:-1] + ALPHABET[(last & ~3) | pad] for pad in range(4)]
                out[purpose] += [variant for variant in padded if variant != good]
                out[purpose] += [f"{good[:10]}+{good[10:]}", f"{good[:10]}.{good[10:]}"]  # the decoder skips them
                out[purpose] += [v for v in (good.replace("-", "+"), good.replace("_", "+")) if v != good]
                out[purpose] += [sign(LinkToken(w, touch_id, index), KEY) for w in wrong]  # swapped purpose
                out[purpose].append(sign(LinkToken(purpose, touch_id, index), "x" * 48))  # wrong key
                other = sign(LinkToken(purpose, touch_id + 1, index), KEY)
                body_len = len(raw) - MAC_BYTES
                spliced = base64.urlsafe_b64decode(other + "=" * (-len(other) % 4))[:body_len] + raw[body_len:]
                out[purpose].append(_b64(spliced))  # another touch's body with this touch's signature
        for touch_id in range(1, 151):  # enumeration: unsigned and zero-signed ids
            body = struct.pack(">cQH", purpose.value.encode(), touch_id, 0)
            out[purpose] += [_b64(body + bytes(MAC_BYTES)), _b64(body + rng.randbytes(MAC_BYTES))]
        out[purpose] += [_b64(rng.randbytes(23)) for _ in range(100)]
        out[purpose] += ["a", "0" * 31, "%2e%2e", "%3Cscript%3E", "A" * 200, "%C3%A9" * 31, "AAAA%00BBBB"]
    return out


async def _answers(app, requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    """Many requests in-process over ASGI (4x faster than TestClient's per-request portal)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return [await http.request(method, path, **kwargs) for method, path, kwargs in requests]


def test_thousands_of_forged_tokens_are_refused_on_every_route_and_change_nothing(engine, touches, settings) -> None:
    before = _snapshot(engine)
    forged = _forgeries(sorted(touches.values()), random.Random(2026))
    human = {"headers": {"User-Agent": BROWSER}}
    one_click = {"data": {"List-Unsubscribe": "One-Click"}}
    requests = [("GET", f"/o/{t}", human) for t in forged[Purpose.OPEN]]
    requests += [("GET", f"/c/{t}", human) for t in forged[Purpose.CLICK]]
    requests += [("HEAD", f"/c/{t}", human) for t in forged[Purpose.CLICK][::5]]
    requests += [("POST", f"/u/{t}", one_click) for t in forged[Purpose.UNSUBSCRIBE]]
    requests += [("GET", f"/u/{t}", {}) for t in forged[Purpose.UNSUBSCRIBE][::5]]
    requests += [("HEAD", f"/u/{t}", {}) for t in forged[Purpose.UNSUBSCRIBE][::5]]
    assert len(requests) > 4000
    answers = asyncio.run(_answers(create_app(engine, settings), requests))
    accepted = []
    for (method, path, _kwargs), answer in zip(requests, answers, strict=True):
        if path.startswith("/o/"):
            ok = answer.status_code == 200 and answer.content == PIXEL
        else:
            ok = answer.status_code == 404 and "location" not in answer.headers
        if not ok:
            accepted.append((method, path, answer.status_code))
    assert accepted == []
    assert _snapshot(engine) == before  # not one event, suppression or state change


def test_click_redirects_only_to_the_stored_url_whatever_the_request_says(engine, client, touches) -> None:
    touch = touches["p0@acme.example"]
    token = sign(LinkToken(Purpose.CLICK, touch, 1), KEY)
    attempts = ["", "?url=https://evil.example", "?next=//evil.example", "?redirect=javascript:alert(1)",
                "?u=data:text/html,x", "/../../evil.example", "?url=%2F%2Fevil.example"]  # fmt: skip
    locations = set()
    for suffix in attempts:
        answer = client.get(f"/c/{token}{suffix}", headers={"User-Agent": BROWSER})
        if answer.status_code in (301, 302, 303, 307, 308):
            locations.add(answer.headers["location"])
    assert locations == {LINKS[1]}
    assert client.get(f"/c/{sign(LinkToken(Purpose.CLICK, touch, 2), KEY)}").status_code == 404  # no such link


@pytest.mark.parametrize(
    "stored",
    ["//evil.example/x", "javascript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "/\\evil.example",
     "https:evil.example", "http://", " https://evil.example", "https://evil.example/\r\nSet-Cookie: a=b"],
)  # fmt: skip
def test_a_tainted_stored_link_is_never_a_redirect(engine, client, touches, stored: str) -> None:
    touch = touches["p0@acme.example"]
    with transaction(engine) as s:
        s.get(CommunicationLog, touch).links = [stored]
    answer = client.get(f"/c/{sign(LinkToken(Purpose.CLICK, touch, 0), KEY)}")
    assert answer.status_code == 404 and "location" not in answer.headers


def test_unsubscribe_get_and_head_change_nothing(engine, client, touches) -> None:
    before = _snapshot(engine)
    token = sign(LinkToken(Purpose.UNSUBSCRIBE, touches["p0@acme.example"]), KEY)
    for _ in range(3):
        page = client.get(f"/u/{token}")
        assert page.status_code == 200 and client.head(f"/u/{token}").status_code == 200
    assert "p***@acme.example" in page.text and "p0@acme.example" not in page.text
    assert '<form method="post">' in page.text and "<script" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "set-cookie" not in page.headers
    assert _snapshot(engine) == before


def _unsubscribe_path(sink: Sink, email: str) -> str:
    message = next(r.message for r in sink.received if r.rcpt_to == [email])
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(https://[^>]+)>", str(message["List-Unsubscribe"])).group(1)
    assert url.startswith(f"{BASE}/u/")
    return urlsplit(url).path


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_suppresses_at_once_and_the_next_tick_sends_nothing(
    engine, client, sink, touches, settings, encoding: str
) -> None:
    path = _unsubscribe_path(sink, "p0@acme.example")  # the link exactly as the mail carried it
    if encoding == "urlencoded":
        answer = client.post(path, content=b"List-Unsubscribe=One-Click",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    else:
        answer = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert answer.status_code == 200 and "set-cookie" not in answer.headers and "location" not in answer.headers
    assert "You are unsubscribed" in answer.text
    with transaction(engine, readonly=True) as s:
        assert is_suppressed(s, "p0@acme.example", KEY)
        states = dict(s.execute(select(Enrollment.prospect_id, Enrollment.stop_reason)).all())
        assert sorted(states.values(), key=str) == [None, StopReason.UNSUBSCRIBED]
        event = s.scalars(select(EngagementEvent).where(EngagementEvent.kind == EventKind.UNSUBSCRIBE)).one()
        assert event.details == {"method": "one-click"}
    before = _snapshot(engine)
    again = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200 and _snapshot(engine) == before  # idempotent
    sent_before = len(sink.received)
    send_tick(engine, ctx_at(settings, FOLLOW_UP_DUE))
    follow_ups = [r.rcpt_to for r in sink.received[sent_before:]]
    assert follow_ups == [["p1@acme.example"]]  # the follow-up went to p1 only


def test_the_page_button_unsubscribes_and_old_keys_still_work(engine, client, touches) -> None:
    token = sign(LinkToken(Purpose.UNSUBSCRIBE, touches["p1@acme.example"]), OLD_KEY)  # signed before a rotation
    answer = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    with transaction(engine, readonly=True) as s:
        assert is_suppressed(s, "p1@acme.example", KEY)
    assert "You are unsubscribed" in client.get(f"/u/{token}").text


@dataclass(frozen=True)
class Seen:
    is_machine: bool
    details: dict
    url: str | None


def _events(engine, kind: EventKind) -> list[Seen]:
    with transaction(engine, readonly=True) as s:
        rows = s.execute(
            select(EngagementEvent.is_machine, EngagementEvent.details, EngagementEvent.url)
            .where(EngagementEvent.kind == kind)
            .order_by(EngagementEvent.id)
        )
        return [Seen(*row) for row in rows]


def test_machine_opens_are_flagged_and_kept_out_of_the_open_rate(engine, client, touches, settings) -> None:
    touch = touches["p0@acme.example"]
    pixel = f"/o/{sign(LinkToken(Purpose.OPEN, touch), KEY)}"
    assert client.get(pixel, headers={"User-Agent": "Mozilla/5.0"}).content == PIXEL  # Apple MPP proxy
    apple_ip = TestClient(create_app(engine, settings), client=("17.58.101.4", 4431))
    assert apple_ip.get(pixel, headers={"User-Agent": BROWSER}).status_code == 200
    with transaction(engine, readonly=True) as s:
        assert engagement_counts(s, find_campaign(s, "Q1"))["opened"] == 0
    mark_sent_at(engine, touch, datetime.now(UTC) - timedelta(seconds=1))
    client.get(pixel, headers={"User-Agent": BROWSER})  # seconds after the send: a gateway
    mark_sent_at(engine, touch, datetime.now(UTC) - timedelta(hours=2))
    client.get(pixel, headers={"User-Agent": BROWSER})  # a person, two hours later
    events = _events(engine, EventKind.OPEN)
    assert [e.is_machine for e in events] == [True, True, True, False]
    reasons = [" ".join(e.details.get("machine_reasons", [])) for e in events]
    assert "Apple Mail Privacy Protection" in reasons[0] and "Apple network" in reasons[1]
    assert "within 10 s of the send" in reasons[2] and reasons[3] == ""
    with transaction(engine, readonly=True) as s:
        assert engagement_counts(s, find_campaign(s, "Q1"))["opened"] == 1


def test_scanner_clicks_are_flagged_but_still_redirected(engine, client, touches) -> None:
    touch = touches["p1@acme.example"]
    link = f"/c/{sign(LinkToken(Purpose.CLICK, touch, 0), KEY)}"
    assert client.head(link, headers={"User-Agent": BROWSER}).status_code == 302
    for agent in ("Mimecast Web Security", "Barracuda Sentinel (EE)", "python-requests/2.31", ""):
        assert client.get(link, headers={"User-Agent": agent}).headers["location"] == LINKS[0]
    mark_sent_at(engine, touch, datetime.now(UTC))
    client.get(link, headers={"User-Agent": BROWSER})  # within seconds of delivery
    mark_sent_at(engine, touch, datetime.now(UTC) - timedelta(minutes=5))
    client.get(link, headers={"User-Agent": BROWSER})  # a person
    events = _events(engine, EventKind.CLICK)
    assert [e.is_machine for e in events] == [True, True, True, True, True, True, False]
    assert "HEAD request" in events[0].details["machine_reasons"][0]
    assert {e.url for e in events} == {LINKS[0]} and events[-1].details == {"link": 0, "method": "GET"}
    with transaction(engine, readonly=True) as s:
        assert engagement_counts(s, find_campaign(s, "Q1"))["clicked"] == 1


def test_pixel_and_redirect_are_served_even_when_recording_fails(engine, client, touches, monkeypatch) -> None:
    def broken(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(event_recorder, "record_hits", broken)
    answer = client.get(f"/o/{sign(LinkToken(Purpose.OPEN, touches['p0@acme.example']), KEY)}")
    assert answer.status_code == 200 and answer.content == PIXEL
    assert answer.headers["content-type"] == "image/gif" and "no-store" in answer.headers["cache-control"]
    click = client.get(f"/c/{sign(LinkToken(Purpose.CLICK, touches['p0@acme.example'], 1), KEY)}")
    assert click.status_code == 302 and click.headers["location"] == LINKS[1]  # redirected without the record
    assert _events(engine, EventKind.OPEN) == _events(engine, EventKind.CLICK) == []


def test_a_touch_not_yet_marked_sent_counts_any_open_as_machine(engine, client, touches) -> None:
    touch = touches["p0@acme.example"]
    with transaction(engine) as s:
        s.get(CommunicationLog, touch).state = TouchState.SENDING
    client.get(f"/o/{sign(LinkToken(Purpose.OPEN, touch), KEY)}", headers={"User-Agent": BROWSER})
    (event,) = _events(engine, EventKind.OPEN)
    assert event.is_machine and event.details["machine_reasons"] == ["before the send was recorded"]
    with transaction(engine, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Enrollment).where(
            Enrollment.state == EnrollmentState.ACTIVE)) == 2  # fmt: skip


async def _concurrently(app, paths: list[str]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await asyncio.gather(*(http.get(p, headers={"User-Agent": BROWSER}) for p in paths))


def test_concurrent_opens_and_clicks_are_batched_and_none_is_lost(engine, touches, settings) -> None:
    app = create_app(engine, settings)
    ids = sorted(touches.values())
    paths = [f"/o/{sign(LinkToken(Purpose.OPEN, ids[i % 2]), KEY)}" for i in range(150)]
    paths += [f"/c/{sign(LinkToken(Purpose.CLICK, ids[i % 2], i % 2), KEY)}" for i in range(150)]
    answers = asyncio.run(_concurrently(app, paths))
    assert [a.status_code for a in answers] == [200] * 150 + [302] * 150
    assert {a.headers["location"] for a in answers[150:]} == set(LINKS)
    app.state.recorder.close()  # what the service's shutdown does: nothing queued may be left behind
    assert len(_events(engine, EventKind.OPEN)) == 150 and len(_events(engine, EventKind.CLICK)) == 150
