"""MessageGenerator without a database: fields, snippets, demos, fallbacks, drafts, follow-ups, and hostile values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from outreach.generator import MessageGenerator, PreviousTouch, quote_text
from outreach.personalization import items_from_specs, parse_library
from outreach.sequence import Step
from outreach.templating import TemplateError

NOW = datetime(2026, 3, 5, 14, 0, tzinfo=UTC)
NY = ZoneInfo("America/New_York")
LIBRARY = (Path(__file__).resolve().parents[1] / "fixtures" / "personalization" / "library.yaml").read_text()
ITEMS = items_from_specs(*parse_library(LIBRARY))
CFO = {"email": "ann@ledgerly.example", "first_name": "Ann", "company": "Ledgerly", "title": "CFO",
       "industry": "Fintech", "employee_count": 120}  # fmt: skip


def _step(**data: Any) -> Step:
    return Step.model_validate({"type": "email", **data})


def _render(step: Step, fields: dict[str, Any], generator: MessageGenerator | None = None, **kw: Any) -> Any:
    gen = generator or MessageGenerator(ITEMS)
    options = {"prospect_id": 7, "fallbacks": {}, "now": NOW, "tz": NY} | kw
    return gen.render(step, 1, step.variants[0], fields, **options)


def test_library_values_fill_the_template_and_say_why() -> None:
    step = _step(
        subject="{Quick|Short} idea for {{ company }}",
        body="{{ opener }}\n\n{{ value_prop }} {{ case_study }}",
        html='<p>{{ opener }}</p><p><a href="{{ demo_link }}">{{ demo_title }}</a></p>',
    )
    touch = _render(step, CFO)
    assert touch.subject in ("Quick idea for Ledgerly", "Short idea for Ledgerly")
    assert touch.text.startswith("Saw that Ledgerly keeps growing its finance team")
    assert "close the books in half the time" in touch.text and "Ledgerly closed in 4 days" in touch.text
    assert '<a href="https://demo.example/fintech-close">Fintech close tour</a>' in touch.html
    assert {c.field: c.item for c in touch.choices} == {
        "opener": "fintech-cfo", "value_prop": "close-faster", "case_study": "ledgerly", "demo": "Fintech close tour"
    }  # fmt: skip
    assert _render(step, CFO) == touch  # same inputs, same message


def test_only_the_values_a_template_uses_are_chosen() -> None:
    touch = _render(_step(subject="Hi", body="{{ opener }}"), CFO)
    assert [c.field for c in touch.choices] == ["opener"]


def test_no_match_uses_the_steps_fallback_text_then_the_campaigns() -> None:
    step = _step(subject="Hi", body="See {{ demo_title }}: {{ demo_link }}",
                 fallbacks={"demo_link": "https://demo.example/tour", "demo_title": "our tour"})  # fmt: skip
    generator = MessageGenerator([item for item in ITEMS if item.name != "Product overview"])
    touch = _render(step, {"company": "Mystery Co"}, generator)
    assert touch.text == "See our tour: https://demo.example/tour"
    [demo] = touch.choices
    assert demo.source == "fallback" and "the step's fallback text" in demo.explanation
    campaign_level = _render(_step(subject="Hi", body="{{ case_study }}"), {"company": "X"},
                             fallbacks={"case_study": "Teams like yours save hours."})  # fmt: skip
    assert campaign_level.text == "Teams like yours save hours."
    assert campaign_level.choices[0].explanation.endswith("the campaign's fallback text")


def test_no_match_and_no_fallback_fails_that_message_naming_the_field() -> None:
    with pytest.raises(TemplateError, match="case_study"):
        _render(_step(subject="Hi", body="{{ case_study }}"), {"company": "Mystery Co"})


def test_a_draft_wins_and_is_data_never_a_template() -> None:
    generator = MessageGenerator(ITEMS, drafts={7: "Loved your {{ config }} talk."}.get)
    touch = _render(_step(subject="Hi", body="{{ opener }}"), CFO, generator)
    assert touch.text == "Loved your {{ config }} talk."
    assert touch.choices[0].source == "draft"


def test_the_prospects_own_field_wins_over_the_library() -> None:
    touch = _render(_step(subject="Hi", body="{{ opener }}"), CFO | {"opener": "Congrats on the Series B."})
    assert touch.text == "Congrats on the Series B." and touch.choices[0].source == "prospect"


def test_a_snippet_that_needs_a_missing_field_gives_way_to_the_next() -> None:
    items = items_from_specs(*parse_library("""
openers:
  - {name: a-named, text: "Hi {{ nickname }}", industries: [fintech]}
  - {name: b-plain, text: "Hello there"}
"""))  # fmt: skip
    touch = _render(_step(subject="Hi", body="{{ opener }}"), CFO, MessageGenerator(items))
    assert touch.text == "Hello there"
    assert "'a-named' skipped: missing field 'nickname'" in touch.choices[0].explanation


def test_follow_up_reads_and_quotes_the_previous_email() -> None:
    previous = PreviousTouch("Idea for Ledgerly", "Hi Ann,\n\nQuick idea.", "<html><body><p>Hi Ann</p></body></html>",
                             NOW - timedelta(days=3), "Dana", "dana@sender.example")  # fmt: skip
    step = _step(
        subject="Re: {{ previous.subject }}",
        body='Following up on "{{ previous.subject }}" from {{ previous.sent_at | ago }}.',
        html="<p>Following up</p>",
        quote_previous=True,
    )
    touch = _render(step, CFO, previous=previous)
    assert touch.subject == "Re: Idea for Ledgerly"
    assert touch.text == (
        'Following up on "Idea for Ledgerly" from 3 days ago.\n\n'
        "On Mon, 2 Mar 2026 at 09:00, Dana <dana@sender.example> wrote:\n> Hi Ann,\n>\n> Quick idea."
    )
    assert '<blockquote type="cite"' in touch.html and "<p>Hi Ann</p></blockquote>" in touch.html
    assert "<html>" not in touch.html.split("<blockquote")[1]  # the previous body only, not a nested document


def test_a_threaded_step_reuses_the_subject() -> None:
    touch = _render(_step(body="Bump", thread=True), CFO, thread_subject="Re: Idea for Ledgerly")
    assert touch.subject == "Re: Idea for Ledgerly"


def test_quote_text_without_a_send_time() -> None:
    assert quote_text(PreviousTouch("s", "line"), NY) == "I wrote:\n> line"


HOSTILE = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["\r\n", "Ann\r\nBcc: x@evil.example", "<script>alert(1)</script>", "{{ 7*7 }}", "{% raw %}",
                     "😀👩‍💻", "\x00\x1b[31m", "'; DROP TABLE prospects; --", "{Hi|Hello}", "None", "   "]),
    st.text(min_size=9_000, max_size=10_000),
    st.integers(),
    st.none(),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=HOSTILE, company=HOSTILE, industry=HOSTILE, title=HOSTILE, note=HOSTILE)
def test_any_field_value_renders_or_fails_with_a_clear_error(first: Any, company: Any, industry: Any, title: Any,
                                                             note: Any) -> None:  # fmt: skip
    fields = {"email": "p@x.example", "first_name": first, "company": company, "industry": industry,
              "title": title, "company_description": note}  # fmt: skip
    step = _step(
        subject="{Quick|Short} idea for {{ company | title_case }}",
        body="Hi {{ first_name | first_word | default('there') }},\n{{ opener }}\n{{ company | possessive }} "
        "{{ company_description | default('') }}\n{{ demo_link | default('') }}",
        html="<p>Hi {{ first_name | default('there') }}</p><p>{{ opener }}</p>",
    )
    try:
        touch = _render(step, fields)
    except TemplateError as exc:
        assert str(exc)  # a message a marketer can act on, never another exception type
        return
    blank = first is None or (isinstance(first, str) and not first.strip())
    expected = "there" if blank else (str(first).split() or [""])[0]
    assert touch.text.startswith(f"Hi {expected},\n")  # the value itself, verbatim: never evaluated
    assert touch.html.startswith(f"<p>Hi {'there' if blank else escape(str(first))}</p>")  # escaped in HTML
    assert "\n" not in touch.subject and "\r" not in touch.subject
