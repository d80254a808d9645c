"""The personalization and demo libraries in the database, YAML import/export, opener drafts, and drafting
through a local stub that speaks the OpenAI chat-completions protocol (loopback only, no network)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, func, select

from db.engine import transaction
from db.models import DemoAsset, PersonalizationSnippet, Prospect, ProspectList, ProspectListMember
from outreach.campaigns import CampaignManager, find_campaign
from outreach.drafting import (
    ChatClient,
    DraftError,
    ModelSettings,
    draft_openers,
    get_model_settings,
    prospects_to_draft,
    set_model_settings,
    store_drafts,
)
from outreach.personalization import (
    LibraryError,
    demo_spec,
    draft_of,
    export_library,
    import_library,
    library_items,
    save_demo,
    save_draft,
    save_snippet,
    snippet_spec,
)
from outreach.sequence import parse_definition

LIBRARY = (Path(__file__).resolve().parents[1] / "fixtures" / "personalization" / "library.yaml").read_text()
NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def _counts(engine: Engine) -> tuple[int, int]:
    with transaction(engine, readonly=True) as s:
        return s.scalar(select(func.count(PersonalizationSnippet.id))), s.scalar(select(func.count(DemoAsset.id)))


def test_import_is_validated_whole_idempotent_and_round_trips(engine: Engine) -> None:
    with transaction(engine) as s:
        first = import_library(s, LIBRARY)
    assert (first.created, first.updated, first.unchanged) == (16, 0, 0)
    with transaction(engine) as s:
        again = import_library(s, LIBRARY.replace("Ledgerly closed in 4 days", "Ledgerly closed in 3 days"))
        exported = export_library(s)
    assert (again.created, again.updated, again.unchanged) == (0, 1, 15)
    with transaction(engine) as s:
        assert (import_library(s, exported).unchanged, len(library_items(s))) == (16, 16)

    broken = (
        LIBRARY.replace("company_sizes: [1000+]", "company_sizes: [huge]")
        .replace("url: https://demo.example/healthcare", "url: javascript:alert(1)")
        .replace('text: "We cut deploy times for platform teams."', "text: '{{ unclosed'")
    ) + "  - {title: extra, url: 'https://x.example', colour: red}\n"
    with pytest.raises(LibraryError) as caught, transaction(engine) as s:
        import_library(s, broken)
    assert caught.value.problems == [
        "value_props[1].text (line 28): the text does not compile as a template: unexpected end of template, "
        "expected 'end of print statement'. (template line 1)",
        "case_studies[1].company_sizes (line 41): company size 'huge' is not a range; write e.g. 1-50, 51-200 or 1000+",
        "demos[1].url (line 56): 'javascript:alert(1)' is not an http(s) link",
        "demos[4].colour (line 64): Extra inputs are not permitted",
    ]
    with pytest.raises(LibraryError, match=r"openers \(line 65\): appears twice"), transaction(engine) as s:
        import_library(s, broken + "openers: []\n")
    assert _counts(engine) == (12, 4)  # nothing from the broken file was written


def test_one_entry_at_a_time_and_names_are_unique_per_kind(engine: Engine) -> None:
    with transaction(engine) as s:
        first = save_snippet(s, snippet_spec({"kind": "opener", "name": "hello", "text": "Hi {{ company }}"}))
        save_snippet(s, snippet_spec({"kind": "case_study", "name": "hello", "text": "Same name, other kind"}))
        other = save_snippet(s, snippet_spec({"kind": "opener", "name": "other", "text": "x"}))
        with pytest.raises(LibraryError, match="another opener is already called 'hello'"):
            save_snippet(s, snippet_spec({"kind": "opener", "name": "hello", "text": "x"}), other)
        assert save_snippet(s, snippet_spec({"kind": "opener", "name": "hello", "text": "Hey"}), first) == first
        save_demo(s, demo_spec({"title": "Tour", "url": "https://x.example/tour", "tags": "close, NetSuite, close"}))
        assert s.scalar(select(DemoAsset.tags)) == ["close", "NetSuite"]
    for bad, message in (
        ({"kind": "opener", "name": "x", "text": "{% if %}"}, "does not compile"),
        ({"kind": "teaser", "name": "x", "text": "x"}, "not a snippet kind"),
        ({"kind": "opener", "name": "", "text": "x"}, "name"),
    ):
        with pytest.raises(LibraryError, match=message):
            snippet_spec(bad)
    with pytest.raises(LibraryError, match="http"):
        demo_spec({"title": "x", "url": 'https://x.example/"><script>'})


def _campaign(engine: Engine, people: int = 3) -> tuple[int, list[int]]:
    with transaction(engine) as s:
        lst = ProspectList(name="cfos")
        s.add(lst)
        s.flush()
        ids = []
        for i in range(people):
            p = Prospect(email=f"p{i}@acme.example", email_normalized=f"p{i}@acme.example", first_name=f"Pat{i}",
                         company="Acme", title="CFO", industry="Fintech", phone="+1 555 0100",
                         custom_fields={"company_description": "Payments for clinics"})  # fmt: skip
            s.add(p)
            s.flush()
            s.add(ProspectListMember(list_id=lst.id, prospect_id=p.id))
            ids.append(p.id)
        yaml_text = "name: Q1\naudience: {list: cfos}\nsteps:\n  - {type: email, subject: Hi, body: '{{ opener }}'}\n"
        ref = CampaignManager(s, secret_key="k" * 48).create_campaign(parse_definition(yaml_text))
        return ref.id, ids


class StubModel(BaseHTTPRequestHandler):
    """Speaks POST /v1/chat/completions like an OpenAI-compatible server; remembers what it was asked."""

    requests: ClassVar[list[dict[str, Any]]] = []
    fail_for: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        prompt = body["messages"][-1]["content"]
        if self.path != "/v1/chat/completions" or any(word in prompt for word in self.fail_for):
            self._reply(500, {"error": {"message": "boom"}})
            return
        title = json.loads(prompt.split("\n", 1)[1]).get("title", "?")
        content = f'"Running finance as {title} at a clinic-payments company sounds busy."'
        self._reply(200, {"id": "c1", "object": "chat.completion", "model": body["model"],
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": content}}]})  # fmt: skip

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def stub_model() -> Iterator[str]:
    StubModel.requests, StubModel.fail_for = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openers_are_drafted_through_the_protocol_stored_and_editable(engine: Engine, stub_model: str) -> None:
    campaign_id, ids = _campaign(engine)
    settings = ModelSettings(enabled=True, base_url=stub_model, model="local-7b", api_key_env="STUB_KEY")
    with transaction(engine) as s:
        set_model_settings(s, settings)
        assert get_model_settings(s) == settings
        todo = prospects_to_draft(s, find_campaign(s, campaign_id), limit=10)
    StubModel.fail_for = {"never"}
    with ChatClient(settings, env={"STUB_KEY": "sk-test"}) as client:
        drafts, failed = draft_openers(todo[:2], client.draft_opener)
    with transaction(engine) as s:
        assert store_drafts(s, campaign_id, drafts, settings.model, NOW) == 2
        assert (
            draft_of(s, campaign_id, ids[0]).text == "Running finance as CFO at a clinic-payments company sounds busy."
        )
        left = prospects_to_draft(s, find_campaign(s, campaign_id), limit=10)
    assert failed == [] and [pid for pid, _ in left] == [ids[2]]
    request = StubModel.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "local-7b" and request["body"]["messages"][0]["role"] == "system"
    prompt = request["body"]["messages"][1]["content"]
    assert "Payments for clinics" in prompt and "Acme" in prompt
    assert "p0@acme.example" not in prompt and "Pat0" not in prompt and "555" not in prompt  # no personal data

    with transaction(engine) as s:  # the operator edits a draft, then empties it
        save_draft(s, campaign_id, ids[0], "  Saw   your\nlaunch.\x07 ", NOW)
        draft = draft_of(s, campaign_id, ids[0])
        assert (draft.text, draft.model, draft.edited) == ("Saw your launch.", "local-7b", True)
        save_draft(s, campaign_id, ids[0], "   ", NOW)
        assert draft_of(s, campaign_id, ids[0]) is None


def test_model_failures_are_reported_per_prospect_and_settings_are_checked(engine: Engine, stub_model: str) -> None:
    settings = ModelSettings(enabled=True, base_url=stub_model, model="local-7b")
    StubModel.fail_for = {"CFO"}
    with ChatClient(settings) as client:
        drafts, failed = draft_openers([(1, {"email": "a@x.example", "title": "CFO"}), (2, {"title": "CTO"})],
                                       client.draft_opener)  # fmt: skip
    assert list(drafts) == [2] and failed == [
        'a@x.example: the model answered HTTP 500: {"error": {"message": "boom"}}'
    ]
    with pytest.raises(DraftError, match="STUB_MISSING"):
        ChatClient(ModelSettings(enabled=True, base_url=stub_model, model="m", api_key_env="STUB_MISSING"), env={})
    with pytest.raises(DraftError, match="off"):
        ChatClient(ModelSettings())
    with pytest.raises(DraftError, match="base URL"), transaction(engine) as s:
        set_model_settings(s, ModelSettings(enabled=True, base_url="ftp://x", model="m"))
    with pytest.raises(DraftError, match="could not reach"):
        ChatClient(
            ModelSettings(enabled=True, base_url="http://127.0.0.1:9/v1", model="m", timeout_seconds=2)
        ).draft_opener({})
