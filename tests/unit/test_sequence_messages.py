"""The definition keys the message generator adds: per-step fallbacks and quote_previous, checked with lines."""

from __future__ import annotations

import textwrap

import pytest

from outreach.sequence import DefinitionError, missing_fields, parse_definition, template_fields, to_yaml

FOLLOW_UPS = textwrap.dedent(
    """\
    name: Follow-ups
    audience: {list: leads}
    steps:
      - type: email
        subject: "Idea for {{ company }}"
        body: "{{ opener }} Here is a demo: {{ demo_link }}"
        fallbacks: {demo_link: "https://demo.example/tour"}
      - type: email
        delay: 3 days
        thread: true
        quote_previous: true
        body: "Following up on my note from {{ previous.sent_at | ago }}."
    """
)


def _problems(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text)
    return [str(p) for p in caught.value.problems]


def test_step_fallbacks_and_quoting_parse_and_round_trip() -> None:
    definition = parse_definition(FOLLOW_UPS)
    assert definition.steps[0].fallbacks == {"demo_link": "https://demo.example/tour"}
    assert definition.steps[1].quote_previous is True
    assert parse_definition(to_yaml(definition)) == definition


def test_generated_values_and_step_fallbacks_are_never_fields_prospects_lack() -> None:
    definition = parse_definition(FOLLOW_UPS)
    assert template_fields(definition) == {"company"}
    assert missing_fields(definition, {"company"}) == []


def test_a_step_fallback_covers_only_its_own_step() -> None:
    text = FOLLOW_UPS.replace("Following up on my note", "About {{ region }}: following up").replace(
        'fallbacks: {demo_link: "https://demo.example/tour"}', 'fallbacks: {region: "your region"}'
    )
    assert template_fields(parse_definition(text)) == {"company", "region"}


def test_quoting_needs_an_earlier_email_and_an_email_step() -> None:
    first = FOLLOW_UPS.replace('    body: "{{ opener }}', '    quote_previous: true\n    body: "{{ opener }}')
    assert _problems(first) == [
        "steps[0].quote_previous (line 6): there is no earlier email step to quote; remove quote_previous"
    ]
    call = FOLLOW_UPS + "  - {type: call, quote_previous: true, body: Call them}\n"
    assert _problems(call) == [
        "steps[2].quote_previous (line 13): only email steps can quote the previous email; remove quote_previous"
    ]


def test_previous_in_the_first_step_is_reported_with_its_line() -> None:
    text = FOLLOW_UPS.replace("{{ opener }} Here", "Re {{ previous.subject }}: here")
    assert _problems(text) == [
        "steps[0].body (line 6): uses previous, but no email comes before this step; remove it or wrap it in "
        "{% if previous is defined %}…{% endif %}"
    ]
    guarded = FOLLOW_UPS.replace("{{ opener }} Here", "{% if previous is defined %}{{ previous.subject }}{% endif %}")
    parse_definition(guarded)


def test_a_misspelt_key_gets_a_suggestion() -> None:
    assert _problems(FOLLOW_UPS.replace("fallbacks:", "fallback:")) == [
        'steps[0].fallback (line 7): unknown key "fallback" (did you mean "fallbacks"?)'
    ]
