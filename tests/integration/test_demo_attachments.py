"""Demo PDFs as attachments, delivered to a real SMTP server on loopback (SQLite and PostgreSQL).

A step with `attach_demo: true` carries the matched demo's PDF; a prospect no demo fits gets the message
without one; files are refused when not a PDF or over the limit, and a file that outgrew the limit fails
its touch alone instead of going out without the promised attachment. The preview shows the same file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from db.engine import transaction
from db.enums import TlsMode, TouchState
from db.models import CommunicationLog, DemoAsset, Enrollment, Prospect, ProspectList, ProspectListMember
from outreach.campaigns import CampaignManager, find_campaign
from outreach.demo_files import MAX_BYTES_ENV, DemoFileError, save_demo_file
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.personalization import DemoSpec, save_demo
from outreach.preview import preview
from outreach.sending import send_tick
from outreach.sequence import parse_definition
from tests.smtp_sink import Sink
from tests.tracking_helpers import BASE, KEY, ctx_at, settings_for

NOW = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n" * 20
YAML = """
name: Demos
audience: {list: demo-list}
mailboxes: [sales-1]
postal_address: "Outreach Inc, 1 Main St"
tracking: {opens: false, clicks: false}
schedule: {timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}
steps:
  - type: email
    attach_demo: true
    fallbacks: {demo_title: "a short overview"}
    subject: "For {{ company }}"
    body: "Hi {{ first_name }}, attached: {{ demo_title }}."
"""


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as server:
        yield server


def setup(engine: Engine, sink: Sink, data_dir: Path, people: dict[str, str]) -> None:
    """A mailbox on the sink, one demo for fintech with its PDF, prospects (email → industry), launched.

    `data_dir` is OUTREACH_DATA_DIR: the worker's and the preview's, where the PDF is stored.
    """
    with transaction(engine) as s:
        save_mailbox(s, MailboxSpec("sales-1", "dana@sender.example", "127.0.0.1", sink.port, tls=TlsMode.NONE))
        spec = DemoSpec(title="Fintech tour: ledgers", url="https://demo.example/fintech", industries=["fintech"])
        save_demo_file(s, save_demo(s, spec), PDF, data_dir)
        lst = ProspectList(name="demo-list")
        s.add(lst)
        s.flush()
        for email, industry in people.items():
            person = Prospect(email=email, email_normalized=email, first_name="Pat", company="Acme", industry=industry)
            s.add(person)
            s.flush()
            s.add(ProspectListMember(list_id=lst.id, prospect_id=person.id))
        manager = CampaignManager(s, secret_key=KEY)
        manager.create_campaign(parse_definition(YAML))
        manager.launch(find_campaign(s, "Demos"), NOW - timedelta(hours=1))


def touches(engine: Engine) -> dict[str, CommunicationLog]:
    with transaction(engine, readonly=True) as s:
        rows = s.execute(
            select(Prospect.email, CommunicationLog)
            .join(Enrollment, Enrollment.prospect_id == Prospect.id)
            .join(CommunicationLog, CommunicationLog.enrollment_id == Enrollment.id)
        ).all()
        s.expunge_all()
        return dict(rows)


def test_the_matched_demo_pdf_is_delivered_and_previewed_and_no_match_sends_without(
    engine: Engine, sink: Sink, data_env: Path
) -> None:
    setup(engine, sink, data_env, {"cfo@bank.example": "fintech", "owner@shop.example": "retail"})

    report = send_tick(engine, ctx_at(settings_for(data_env), NOW))

    assert report.outcomes["sent"] == 2
    got = {r.rcpt_to[0]: r.message for r in sink.received}
    [attached] = list(got["cfo@bank.example"].iter_attachments())
    assert (attached.get_content_type(), attached.get_filename()) == ("application/pdf", "Fintech tour ledgers.pdf")
    assert attached.get_content() == PDF
    assert "attached: Fintech tour: ledgers." in got["cfo@bank.example"].get_body(("plain",)).get_content()
    assert list(got["owner@shop.example"].iter_attachments()) == []  # no demo fits a shop: the fallback text
    assert "attached: a short overview." in got["owner@shop.example"].get_body(("plain",)).get_content()

    with transaction(engine, readonly=True) as s:
        shown = preview(s, "Demos", "cfo@bank.example", NOW, secret_key=KEY, base_url=BASE)
    assert shown.error is None and shown.attachments == ["Fintech tour ledgers.pdf"]
    sent = next(r.raw for r in sink.received if r.rcpt_to == ["cfo@bank.example"])
    assert shown.message is not None and shown.message.encode() == sent  # same Message-ID: the same bytes


def test_a_file_that_outgrew_the_limit_fails_its_touch_alone(
    engine: Engine, sink: Sink, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(engine, sink, data_env, {"cfo@bank.example": "fintech", "owner@shop.example": "retail"})
    monkeypatch.setenv(MAX_BYTES_ENV, str(len(PDF) - 1))  # the operator lowered the limit after uploading

    report = send_tick(engine, ctx_at(settings_for(data_env), NOW))

    assert report.outcomes["sent"] == 1 and [r.rcpt_to for r in sink.received] == [["owner@shop.example"]]
    failed = touches(engine)["cfo@bank.example"]
    assert failed.state is TouchState.FAILED and "over the" in (failed.last_error or "")
    with transaction(engine, readonly=True) as s:
        shown = preview(s, "Demos", "cfo@bank.example", NOW, secret_key=KEY, base_url=BASE)
    assert shown.error is not None and "over the" in shown.error


def test_only_pdfs_within_the_limit_are_stored(engine: Engine, tmp_path: Path) -> None:
    with transaction(engine) as s:
        demo_id = save_demo(s, DemoSpec(title="Tour", url="https://demo.example/tour"))
        with pytest.raises(DemoFileError, match="not a PDF"):
            save_demo_file(s, demo_id, b"MZ\x90\x00 an executable", tmp_path)
        with pytest.raises(DemoFileError, match="at most"):
            save_demo_file(s, demo_id, PDF, tmp_path, max_bytes=len(PDF) - 1)
        stored = save_demo_file(s, demo_id, PDF, tmp_path, max_bytes=len(PDF))
        demo = s.get(DemoAsset, demo_id)
        assert (demo.file_path, demo.file_size) == (stored, len(PDF))
    assert (tmp_path / stored).read_bytes() == PDF
    assert sorted(p.name for p in (tmp_path / "demos").iterdir()) == [Path(stored).name]
