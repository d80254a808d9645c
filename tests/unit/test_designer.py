"""The designer's form ↔ Definition mapping and its edits: pure functions, no Streamlit, no database."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from db.enums import DelayUnit, StepCondition, StepType
from outreach import designer
from outreach.schedule import Delay
from outreach.sequence import DefinitionError, parse_definition, to_yaml

FULL = textwrap.dedent(
    """\
    name: Fintech CFOs Q1
    audience:
      list: fintech-cfos
      filter: {country: [DE, AT], company: "Acme, Inc"}
    mailboxes: [sales-1, sales-2]
    schedule: {timezone: Europe/Berlin, fallback_timezone: America/New_York, window: "08:30-16:00", days: [mon, wed]}
    stop_on: [reply, bounce, unsubscribe, domain_reply]
    tracking: {opens: true, clicks: false}
    postal_address: "Outreach Inc\\n1 Main St"
    fallbacks: {first_name: there}
    steps:
      - type: email
        variants:
          - {name: A, subject: "Quick idea for {{ company }}", body: "Hi {{ first_name }}", html: "<p>Hi</p>"}
          - {name: B, subject: "{{ company }} + us", body: "Hello", weight: 2}
      - {type: email, delay: 3 business days, when: no_open, thread: true, body: "Following up"}
      - {type: linkedin, delay: 2 days, body: "Connect note for {{ first_name }}"}
      - {type: call, delay: 90 minutes, when: no_reply, body: "Call script"}
    """
)


def filled_form(**changes: Any) -> dict[str, Any]:
    """A blank form with what a marketer must fill in: a name, an audience and the first email's texts."""
    form = designer.new_form()
    form.update(name="Q1", audience_list="cfos")
    form["steps"][0]["variants"][0].update(
        subject="Idea for {{ company }}", body="Hi {{ first_name | default('there') }}"
    )
    form.update(changes)
    return form


def problems_of(form: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(DefinitionError) as caught:
        designer.definition_from_form(form)
    return {p.path: p.message for p in caught.value.problems}


# --- form → Definition ---------------------------------------------------------------------------


def test_a_filled_blank_form_is_the_same_campaign_as_its_yaml() -> None:
    definition = designer.definition_from_form(filled_form())

    assert definition == parse_definition(
        textwrap.dedent(
            """\
            name: Q1
            audience: {list: cfos}
            steps:
              - {type: email, subject: "Idea for {{ company }}", body: "Hi {{ first_name | default('there') }}"}
            """
        )
    )


def test_every_definition_survives_the_designer_unchanged() -> None:
    original = parse_definition(FULL)

    form = designer.form_from_definition(original)

    assert designer.definition_from_form(form) == original
    assert to_yaml(designer.definition_from_form(form)) == to_yaml(original)
    assert form["audience_filter"] == 'country = DE, AT\ncompany = "Acme, Inc"'
    assert (form["window_start"], form["window_end"]) == ("08:30", "16:00")
    assert form["steps"][1]["thread"] is True and form["steps"][3]["delay"] == "90 minutes"


def test_two_steps_with_two_variants_become_rows_the_manager_can_store() -> None:
    form = designer.add_variant(filled_form(), 0)
    form["steps"][0]["variants"][1].update(subject="{{ company }} + us", body="Hello")
    form = designer.add_step(form)
    form["steps"][1].update(delay="3 business days", when="no_reply")
    form["steps"][1]["variants"][0]["body"] = "Following up"

    definition = designer.definition_from_form(form)

    assert [v.name for v in definition.steps[0].variants] == ["A", "B"]
    second = definition.steps[1]
    assert (second.type, second.delay, second.when, second.thread) == (
        StepType.EMAIL,
        Delay(3, DelayUnit.BUSINESS_DAYS),
        StepCondition.NO_REPLY,
        True,
    )
    assert second.variants[0].subject is None  # a threaded follow-up reuses "Re: <previous subject>"


def test_subjects_and_html_are_left_out_where_the_step_cannot_use_them() -> None:
    form = filled_form()
    form = designer.add_step(form, StepType.CALL.value)
    form["steps"][1]["variants"][0].update(subject="left over from an email", body="Call them", html="<p>x</p>")
    form = designer.add_step(form)  # an email after an email: threaded by default
    form["steps"][2]["variants"][0].update(subject="typed before ticking thread", body="Bump")

    definition = designer.definition_from_form(form)

    call, follow_up = definition.steps[1], definition.steps[2]
    assert (call.variants[0].subject, call.variants[0].html) == (None, None)
    assert follow_up.thread and follow_up.variants[0].subject is None


def test_mistakes_are_reported_by_key_path_and_nothing_is_built() -> None:
    form = filled_form(name="  ", window_start="9am")
    form = designer.add_step(form)
    form["steps"][0]["variants"][0]["body"] = "   "
    form["steps"][1].update(delay="3 weeks", when="opened")
    form["steps"][1]["variants"][0]["body"] = "{{ first_name"

    problems = problems_of(form)

    assert problems["name"] == "give the campaign a name"
    assert problems["steps[0].variants[0].body"] == "the body is empty"
    assert "is not a delay" in problems["steps[1].delay"]
    assert problems["steps[1].when"] == "when: opened needs tracking.opens: true"
    assert problems["steps[1].variants[0].body"].startswith("the template does not compile")
    assert "is not a window" in problems["schedule.window"]


def test_an_unreadable_filter_line_is_reported_with_its_line_and_the_rest_still_checked() -> None:
    form = filled_form(audience_list=None, audience_filter="country = DE\nindustry fintech")
    form["steps"][0]["variants"][0]["subject"] = ""

    problems = problems_of(form)

    assert problems["audience.filter"].startswith('filter line 2 "industry fintech": write one field per line')
    assert "audience" not in problems  # the readable line still chooses prospects
    assert problems["steps[0].variants[0].subject"].startswith("an email needs a subject")


def test_an_empty_audience_says_how_to_choose_prospects() -> None:
    problems = problems_of(filled_form(audience_list=None, audience_filter=""))

    assert problems == {"audience": "choose prospects with list: NAME or filter: {field: value}"}


def test_fallback_lines_need_an_equals_sign() -> None:
    problems = problems_of(filled_form(fallbacks="first_name = there\ncompany"))

    assert problems == {
        "fallbacks": 'fallback line 2 "company": write field = value, e.g. first_name = there',
    }
    definition = designer.definition_from_form(filled_form(fallbacks="first_name = there, friend"))
    assert definition.fallbacks == {"first_name": "there, friend"}


# --- filters -------------------------------------------------------------------------------------


def test_filter_values_with_commas_and_quotes_round_trip() -> None:
    fields = {"company": ["Acme, Inc", 'The "Best" Co'], "country": ["DE"], "title": ['"Chief" officer, EMEA']}

    text = designer.format_filter(fields)
    parsed, problems = designer.parse_filter(text)

    assert problems == [] and parsed == fields


def test_filter_lines_ignore_blanks_and_comments_and_merge_repeated_fields() -> None:
    parsed, problems = designer.parse_filter("# who\n\ncountry = DE\ncountry = AT, CH\n")

    assert problems == [] and parsed == {"country": ["DE", "AT", "CH"]}


@pytest.mark.parametrize("line", ["country", "= DE", "country =", "country = ,"])
def test_a_filter_line_without_field_or_value_is_a_problem(line: str) -> None:
    parsed, problems = designer.parse_filter(line)

    assert parsed == {} and [p.path for p in problems] == ["audience.filter"]


# --- edits ---------------------------------------------------------------------------------------


def uids(form: dict[str, Any]) -> list[int]:
    return [s["uid"] for s in form["steps"]] + [v["uid"] for s in form["steps"] for v in s["variants"]]


def test_edits_return_a_new_form_and_keep_every_uid_unique() -> None:
    form = filled_form()
    before = repr(form)

    edited = designer.add_variant(designer.add_step(designer.add_step(form, "linkedin"), "call"), 2)

    assert repr(form) == before, "the original form is untouched"
    assert len(set(uids(edited))) == len(uids(edited)) == 7
    assert max(uids(edited)) < edited["next_uid"]
    loaded = designer.form_from_definition(parse_definition(FULL))
    assert designer.add_step(loaded)["steps"][-1]["uid"] > max(uids(loaded))


def test_follow_up_steps_wait_and_emails_after_an_email_reply_in_thread() -> None:
    form = designer.add_step(designer.add_step(filled_form(), "linkedin"), "email")

    linkedin, email = form["steps"][1], form["steps"][2]
    assert (linkedin["delay"], linkedin["thread"]) == ("2 business days", False)
    assert (email["delay"], email["thread"]) == ("2 business days", True)


def test_moving_a_step_swaps_it_with_its_neighbour_and_out_of_range_moves_do_nothing() -> None:
    form = designer.add_step(designer.add_step(filled_form(), "linkedin"), "call")
    order = [s["type"] for s in form["steps"]]

    assert [s["type"] for s in designer.move_step(form, 2, -1)["steps"]] == ["email", "call", "linkedin"]
    assert [s["type"] for s in designer.move_step(form, 0, 1)["steps"]] == ["linkedin", "email", "call"]
    assert [s["type"] for s in designer.move_step(form, 0, -1)["steps"]] == order
    assert [s["type"] for s in designer.move_step(form, 2, 1)["steps"]] == order


def test_removing_a_step_keeps_the_others_in_order() -> None:
    form = designer.add_step(designer.add_step(filled_form(), "linkedin"), "call")

    assert [s["type"] for s in designer.remove_step(form, 1)["steps"]] == ["email", "call"]
    assert designer.remove_step(form, 9)["steps"] == form["steps"]


def test_new_variants_get_the_next_free_letter_and_start_as_a_copy() -> None:
    form = designer.add_variant(designer.add_variant(filled_form(), 0), 0)
    form = designer.remove_variant(form, 0, 1)  # B goes; the next new one is B again

    form = designer.add_variant(form, 0)

    variants = form["steps"][0]["variants"]
    assert [v["name"] for v in variants] == ["A", "C", "B"]
    assert {v["subject"] for v in variants} == {"Idea for {{ company }}"}


def test_a_step_keeps_its_last_variant() -> None:
    form = designer.remove_variant(filled_form(), 0, 0)

    assert [v["name"] for v in form["steps"][0]["variants"]] == ["A"]


def test_after_z_variants_are_numbered() -> None:
    form = filled_form()
    for _ in range(27):
        form = designer.add_variant(form, 0)

    names = [v["name"] for v in form["steps"][0]["variants"]]
    assert names[25:] == ["Z", "V27", "V28"]


# --- words for the marketer ----------------------------------------------------------------------


def test_paths_are_described_in_the_designer_s_words() -> None:
    form = designer.add_variant(filled_form(), 0)

    assert designer.describe_path("steps[0].variants[1].subject", form) == "step 1, variant B, subject"
    assert designer.describe_path("steps[2].delay", form) == "step 3, delay"
    assert designer.describe_path("steps[0].variants[5].body", form) == "step 1, variant 6, body"
    assert designer.describe_path("schedule.fallback_timezone") == "schedule › fallback timezone"
    assert designer.describe_path("name") == "name"


def test_time_zone_choices_start_with_the_prospect_s_own_zone() -> None:
    choices = designer.timezone_choices()

    assert choices[:2] == ("prospect", "UTC") and "Europe/Berlin" in choices and choices.count("UTC") == 1
