"""The preview of a queued touch is what goes out: the same tracked links, and the same bytes for its Message-ID."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from db.engine import transaction
from db.enums import TouchState
from db.models import CommunicationLog
from outreach.campaigns import CampaignManager
from outreach.preview import Preview, preview
from outreach.sending import send_tick
from tests.smtp_sink import Sink
from tests.tracking_helpers import BASE, FIRST_SEND, KEY, ctx_at, launch, settings_for

_DKIM = re.compile(rb"\ADKIM-Signature:.*?\r\n(?=\S)", re.DOTALL)


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


def _preview(engine: Engine) -> Preview:
    with transaction(engine, readonly=True) as s:
        return preview(s, "Q1", "p0@acme.example", FIRST_SEND, secret_key=KEY, base_url=BASE)


def test_a_queued_touch_previews_with_the_tracked_links_that_are_sent(
    engine: Engine, sink: Sink, tmp_path: Path
) -> None:
    launch(engine, sink, people=1)
    with transaction(engine) as s:
        CampaignManager(s, secret_key=KEY).schedule_communications(FIRST_SEND)
    queued = _preview(engine)
    assert queued.source == "queued"
    tracked = re.findall(rf"{re.escape(BASE)}/c/[\w.-]+", queued.text)
    assert len(tracked) == 1 and "https://good.example/pricing" not in queued.text
    assert re.search(rf"{re.escape(BASE)}/o/[\w.-]+", queued.html or "")  # opens are on: the pixel is there too

    report = send_tick(engine, ctx_at(settings_for(tmp_path, str(engine.url)), FIRST_SEND))

    assert report.outcomes["sent"] == 1
    [received] = sink.received
    sent_text = received.message.get_body(("plain",)).get_content().replace("\r\n", "\n")  # read off the wire
    assert sent_text == queued.text  # the very same tracked URL, token and all
    with transaction(engine, readonly=True) as s:
        touch = s.scalar(select(CommunicationLog))
        assert touch.state is TouchState.SENT and touch.links == ["https://good.example/pricing"]


def test_the_preview_of_a_sent_touch_is_byte_for_byte_the_message_received(
    engine: Engine, sink: Sink, tmp_path: Path
) -> None:
    launch(engine, sink, people=1)
    send_tick(engine, ctx_at(settings_for(tmp_path, str(engine.url)), FIRST_SEND))
    [received] = sink.received

    shown = _preview(engine)  # same Message-ID (stored with the touch), same Date (the clock stood still)

    assert shown.source == "sent" and shown.message is not None
    assert shown.headers["Message-ID"] == received.message["Message-ID"]
    assert received.message.get_content_type() == "multipart/alternative"  # two parts: a boundary to agree on
    sent = _DKIM.sub(b"", received.raw)  # a signature the send path may add on top is not part of the message
    assert shown.message.encode() == sent
