"""Campaign definitions: the contract's YAML parses; every kind of mistake is reported with its path and line."""

from __future__ import annotations

import textwrap
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from db.enums import DelayUnit, StepCondition, StepType, StopReason
from outreach.errors import OutreachError
from outreach.schedule import Delay, Window
from outreach.sequence import (
    Audience,
    Definition,
    DefinitionError,
    Problem,
    Step,
    StopTrigger,
    Variant,
    from_data,
    missing_fields,
    parse_definition,
    template_fields,
    to_data,
    to_yaml,
)

CONTRACT_EXAMPLE = textwrap.dedent(
    """\
    name: Fintech CFOs Q1
    audience: {list: fintech-cfos}          # or a filter on prospect fields
    mailboxes: [sales-1, sales-2]           # rotated; each keeps its own limits
    schedule: {timezone: prospect, window: "09:00-17:00", days: [mon, tue, wed, thu, fri]}
    stop_on: [reply, bounce, unsubscribe]
    tracking: {opens: false, clicks: true}    # per campaign; plain-text-only when both are off
    steps:
      - type: email
        variants:
          - {name: A, subject: "Quick idea for {{ company }}", body: "Hi {{ first_name | default('there') }}, ..."}
          - {name: B, subject: "{{ company }} + faster onboarding", body: "..."}
      - {type: email, delay: 3 business days, when: no_reply, thread: true, body: "..."}
      - {type: linkedin, delay: 2 days, body: "Connect note for {{ first_name }}"}
      - {type: call, delay: 2 days, body: "Call script ..."}
    """
)

MINIMAL = textwrap.dedent(
    """\
    name: Minimal
    audience: {list: leads}
    steps:
      - type: email
        subject: Hello {{ company }}
        body: Hi there
    """
)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text)
    return caught.value.problems


def only_problem(text: str) -> Problem:
    found = problems_of(text)
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------------------------------ the contract's example


def test_contract_example_parses_into_the_typed_model() -> None:
    definition = parse_definition(CONTRACT_EXAMPLE)

    assert definition.name == "Fintech CFOs Q1"
    assert definition.audience == Audience(list="fintech-cfos")
    assert definition.mailboxes == ("sales-1", "sales-2")
    assert definition.schedule.timezone == "prospect"
    assert definition.schedule.window == Window(9 * 60, 17 * 60)
    assert definition.schedule.day_set == frozenset(range(5))
    assert definition.stop_on == (StopTrigger.REPLY, StopTrigger.BOUNCE, StopTrigger.UNSUBSCRIBE)
    assert (definition.tracking.opens, definition.tracking.clicks) == (False, True)

    first, follow_up, linkedin, call = definition.steps
    assert first.type is StepType.EMAIL
    assert first.delay == Delay(0, DelayUnit.DAYS)
    assert first.when is StepCondition.ALWAYS
    assert [v.name for v in first.variants] == ["A", "B"]
    assert first.variants[0].subject == "Quick idea for {{ company }}"

    assert follow_up.delay == Delay(3, DelayUnit.BUSINESS_DAYS)
    assert follow_up.when is StepCondition.NO_REPLY
    assert follow_up.thread is True
    assert follow_up.variants == (Variant(name="A", subject=None, body="..."),)

    assert linkedin.type is StepType.LINKEDIN and linkedin.delay == Delay(2, DelayUnit.DAYS)
    assert call.type is StepType.CALL and call.variants[0].body == "Call script ..."


def test_stop_triggers_map_to_enrollment_stop_reasons() -> None:
    assert [t.reason for t in parse_definition(CONTRACT_EXAMPLE).stop_on] == [
        StopReason.REPLIED,
        StopReason.BOUNCED,
        StopReason.UNSUBSCRIBED,
    ]


def test_defaults_fill_what_a_minimal_definition_leaves_out() -> None:
    definition = parse_definition(MINIMAL)
    assert definition.schedule.window == Window(540, 1020)
    assert definition.schedule.days == ("mon", "tue", "wed", "thu", "fri")
    assert definition.stop_on == (StopTrigger.REPLY, StopTrigger.BOUNCE, StopTrigger.UNSUBSCRIBE)
    assert definition.mailboxes == ()
    assert definition.steps[0].variants == (Variant(name="A", subject="Hello {{ company }}", body="Hi there"),)


def test_audience_filter_accepts_scalars_and_lists() -> None:
    text = MINIMAL.replace("audience: {list: leads}", "audience: {filter: {country: US, industry: [Fintech, Banking]}}")
    audience = parse_definition(text).audience
    assert audience.list_name is None
    assert audience.filter == {"country": ("US",), "industry": ("Fintech", "Banking")}


def test_schedule_zone_is_the_prospects_or_the_fallback() -> None:
    text = MINIMAL + "schedule: {timezone: prospect, fallback_timezone: Europe/Berlin}\n"
    schedule = parse_definition(text).schedule
    assert schedule.zone_for("America/New_York") == ZoneInfo("America/New_York")
    assert schedule.zone_for("Nowhere/Special") == ZoneInfo("Europe/Berlin")
    assert schedule.zone_for(None) == ZoneInfo("Europe/Berlin")
    fixed = parse_definition(MINIMAL + "schedule: {timezone: Asia/Tokyo}\n").schedule
    assert fixed.zone_for("America/New_York") == ZoneInfo("Asia/Tokyo")


# ------------------------------------------------------------------------------------------ one problem each


def test_unknown_key_names_path_line_and_suggestion() -> None:
    problem = only_problem(MINIMAL.replace("    body: Hi there", "    body: Hi there\n    subjct: x"))
    assert problem.path == "steps[0].subjct"
    assert problem.line == 7
    assert 'did you mean "subject"' in problem.message


def test_unknown_top_level_key() -> None:
    problem = only_problem(MINIMAL + "mailbox: [sales-1]\n")
    assert (problem.path, problem.line) == ("mailbox", 7)
    assert 'did you mean "mailboxes"' in problem.message


def test_bad_delay_is_reported_with_examples() -> None:
    text = CONTRACT_EXAMPLE.replace("delay: 3 business days", "delay: 3 buisness days")
    problem = only_problem(text)
    assert str(problem) == (
        'steps[1].delay (line 12): "3 buisness days" is not a delay; '
        'use e.g. "3 business days", "2 days", "4 hours", "90 minutes"'
    )


def test_bad_when_suggests_the_right_condition() -> None:
    problem = only_problem(CONTRACT_EXAMPLE.replace("when: no_reply", "when: no_replied"))
    assert (problem.path, problem.line) == ("steps[1].when", 12)
    assert 'did you mean "no_reply"' in problem.message


def test_thread_on_the_first_step_is_refused() -> None:
    problem = only_problem(MINIMAL.replace("  - type: email\n", "  - type: email\n    thread: true\n"))
    assert (problem.path, problem.line) == ("steps[0].thread", 5)


def test_duplicate_variant_names_are_refused() -> None:
    problem = only_problem(CONTRACT_EXAMPLE.replace("{name: B,", "{name: A,"))
    assert (problem.path, problem.line) == ("steps[0].variants[1].name", 11)
    assert 'name "A" is used twice' in problem.message


def test_email_without_subject_is_refused_unless_threaded() -> None:
    problem = only_problem(MINIMAL.replace("    subject: Hello {{ company }}\n", ""))
    assert (problem.path, problem.line) == ("steps[0].subject", 4)
    assert "needs a subject" in problem.message


def test_threaded_follow_up_must_not_set_its_own_subject() -> None:
    problem = only_problem(CONTRACT_EXAMPLE.replace("thread: true, body:", 'thread: true, subject: "New", body:'))
    assert problem.path == "steps[1].subject"
    assert "Re:" in problem.message


def test_linkedin_steps_have_no_subject() -> None:
    problem = only_problem(CONTRACT_EXAMPLE.replace("{type: linkedin, delay: 2 days,", "{type: linkedin, subject: Hi,"))
    assert (problem.path, problem.line) == ("steps[2].subject", 13)


def test_open_conditions_need_open_tracking() -> None:
    problem = only_problem(CONTRACT_EXAMPLE.replace("when: no_reply", "when: no_open"))
    assert (problem.path, problem.line) == ("steps[1].when", 12)
    assert "tracking.opens" in problem.message
    assert parse_definition(CONTRACT_EXAMPLE.replace("when: no_reply", "when: clicked")).steps[1].when == "clicked"


def test_template_that_does_not_compile_names_the_yaml_line_of_the_error() -> None:
    text = MINIMAL.replace("    body: Hi there", "    body: |\n      Hi there,\n\n      {{ company }\n")
    problem = only_problem(text)
    assert problem.path == "steps[0].body"
    assert problem.line == 9
    assert "does not compile" in problem.message and "unexpected '}'" in problem.message


def test_subject_template_error_in_a_variant() -> None:
    problem = only_problem(CONTRACT_EXAMPLE.replace('"{{ company }} + faster', '"{% if %} + faster'))
    assert (problem.path, problem.line) == ("steps[0].variants[1].subject", 11)


def test_invalid_yaml_reports_its_line() -> None:
    problem = only_problem(MINIMAL.replace("    body: Hi there", "    body: [Hi there"))
    assert problem.path == "(YAML)"
    assert problem.line is not None and problem.line >= 6
    assert "invalid YAML" in problem.message


def test_a_control_character_is_invalid_yaml_not_a_crash() -> None:
    problem = only_problem(MINIMAL.replace("    body: Hi there", "    body: Hi\x07there"))
    assert problem.path == "(YAML)" and "invalid YAML" in problem.message


def test_duplicate_keys_are_not_silently_dropped() -> None:
    problem = only_problem(MINIMAL + "name: Other\n")
    assert (problem.path, problem.line) == ("name", 7)


def test_unknown_time_zone_suggests_a_close_one() -> None:
    problem = only_problem(MINIMAL + "schedule: {timezone: Europe/Berln}\n")
    assert (problem.path, problem.line) == ("schedule.timezone", 7)
    assert "Europe/Berlin" in problem.message


def test_opt_outs_always_stop_the_sequence() -> None:
    problem = only_problem(MINIMAL + "stop_on: [reply]\n")
    assert problem.path == "stop_on"
    assert "unsubscribe" in problem.message


def test_subject_and_variants_together_are_ambiguous() -> None:
    text = MINIMAL + "  - type: email\n    subject: x\n    variants: [{name: A, subject: y, body: z}]\n"
    problem = only_problem(text)
    assert (problem.path, problem.line) == ("steps[1]", 7)


def test_missing_required_keys() -> None:
    found = problems_of("name: x\nsteps: []\n")
    assert [(p.path, p.line) for p in found] == [("audience", 1), ("steps", 2)]


def test_yes_no_values_in_filters_are_caught() -> None:
    problem = only_problem(MINIMAL.replace("{list: leads}", "{filter: {country: NO}}"))
    assert problem.path == "audience.filter.country"
    assert "quotes" in problem.message


@pytest.mark.parametrize("text", ["", "# nothing\n", "- a list\n", "just text\n"])
def test_empty_or_non_mapping_documents_are_refused(text: str) -> None:
    assert problems_of(text)


# ------------------------------------------------------------------------------------------ many problems


def test_all_problems_are_reported_together_in_line_order() -> None:
    text = textwrap.dedent(
        """\
        name: Everything wrong
        audience: {list: leads, filtr: {}}
        schedule: {window: "25:00-17:00", days: [mon, thurs]}
        steps:
          - type: email
            thread: true
            variants:
              - {name: A, subject: "Hi {{ x }", body: b}
              - {name: A, subject: s, body: b, wieght: 2}
          - {type: sms, body: hi}
          - {type: email, delay: 3 buisness days, body: "no subject"}
        """
    )
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text)
    error = caught.value
    located = [(p.path, p.line) for p in error.problems]
    assert located == [
        ("audience.filtr", 2),
        ("schedule.window", 3),
        ("schedule.days", 3),
        ("steps[0].thread", 6),
        ("steps[0].variants[0].subject", 8),
        ("steps[0].variants[1].wieght", 9),
        ("steps[0].variants[1].name", 9),
        ("steps[1].type", 10),
        ("steps[2].delay", 11),
        ("steps[2].subject", 11),
    ]
    assert isinstance(error, OutreachError)
    assert "10 problems" in str(error)
    assert "steps[2].delay (line 11)" in str(error)


# ------------------------------------------------------------------------------------------ round trips


def test_to_yaml_round_trips_the_contract_example() -> None:
    definition = parse_definition(CONTRACT_EXAMPLE)
    assert parse_definition(to_yaml(definition)) == definition


def test_to_yaml_round_trips_every_feature() -> None:
    definition = Definition(
        name="All features: \"quoted\" & 'single'",
        audience=Audience(list="cfos", filter={"country": ("NO", "US"), "employee_count": ("100",)}),
        mailboxes=("sales-1",),
        schedule={"timezone": "America/New_York", "fallback_timezone": "Europe/Berlin", "window": "22:00-02:00"},
        stop_on=("bounce", "unsubscribe", "domain_reply"),
        tracking={"opens": True, "clicks": False},
        postal_address="Acme Inc.\n1 Main Street\nSpringfield, 12345",
        fallbacks={"first_name": "there", "company": "your team"},
        steps=[
            Step(
                type="email",
                variants=[
                    Variant(name="Short", subject="Hi: {{ first_name }}", body="Line 1\n\n  indented\ntrailing  \n"),
                    Variant(name="Long", subject="Über {{ company }}", body="b", html="<p>{{ company }}</p>", weight=2),
                ],
            ),
            Step(type="email", delay="90 minutes", when="opened", thread=True, variants=[Variant(body="yes")]),
            Step(type="call", delay="1 business day", when="no_reply", variants=[Variant(name="B", body="0")]),
        ],
    )
    text = to_yaml(definition)
    assert parse_definition(text) == definition
    assert from_data(to_data(definition)) == definition


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != ""),
    body=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="{}%#\x00"), min_size=1, max_size=80
    ).filter(lambda s: s.strip() != ""),
    postal=st.none() | st.text(max_size=40),
)
def test_to_yaml_round_trips_arbitrary_text(name: str, body: str, postal: str | None) -> None:
    definition = Definition(
        name=name,
        audience=Audience(list="l"),
        postal_address=postal,
        steps=[Step(type="linkedin", variants=[Variant(body=body)])],
    )
    assert parse_definition(to_yaml(definition)) == definition


def test_direct_construction_applies_the_same_rules() -> None:
    with pytest.raises(ValidationError, match="first step"):
        Definition(
            name="x",
            audience=Audience(list="l"),
            steps=[Step(type="email", thread=True, variants=[Variant(subject="s", body="b")])],
        )


def test_stored_data_with_problems_raises_definition_error_without_lines() -> None:
    data = to_data(parse_definition(MINIMAL))
    data["steps"][0]["delay"] = "soon"
    with pytest.raises(DefinitionError) as caught:
        from_data(data)
    assert [(p.path, p.line) for p in caught.value.problems] == [("steps[0].delay", None)]


# ------------------------------------------------------------------------------------------ fields


def test_template_fields_are_those_used_without_default() -> None:
    assert template_fields(parse_definition(CONTRACT_EXAMPLE)) == {"company", "first_name"}


def test_fallbacks_cover_fields() -> None:
    definition = parse_definition(CONTRACT_EXAMPLE + "fallbacks: {first_name: there}\n")
    assert template_fields(definition) == {"company"}


def test_missing_fields_point_at_the_template_that_needs_them() -> None:
    definition = parse_definition(CONTRACT_EXAMPLE)
    found = missing_fields(definition, {"company", "email"}, source=CONTRACT_EXAMPLE)
    assert [(p.path, p.line) for p in found] == [("steps[2].body", 13)]
    assert '"first_name"' in found[0].message and "default" in found[0].message
    assert missing_fields(definition, {"company", "first_name"}) == []


def test_missing_fields_without_source_use_model_paths() -> None:
    found = missing_fields(parse_definition(CONTRACT_EXAMPLE), set())
    assert {p.path for p in found} == {
        "steps[0].variants[0].subject",
        "steps[0].variants[1].subject",
        "steps[2].variants[0].body",
    }
    assert all(p.line is None for p in found)
