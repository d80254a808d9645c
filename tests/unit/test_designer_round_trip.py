"""Opening a campaign in the designer and saving it again changes nothing: every key of the model survives."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

from pydantic import BaseModel

from outreach import designer
from outreach.sequence import Definition, InDoubtPolicy, parse_definition, to_yaml

# Every key the definition model has, each away from its default (a default would round-trip by luck).
EVERY_KEY = textwrap.dedent(
    """\
    name: Every key
    audience:
      list: fintech-cfos
      filter: {country: [DE, AT], company: "Acme, Inc"}
    mailboxes: [sales-1, sales-2]
    schedule:
      timezone: Europe/Berlin
      fallback_timezone: America/New_York
      window: "08:30-16:00"
      days: [mon, wed]
      holidays: [US, DE]
      optimize_send_time: true
      max_lateness: 2 days
    stop_on: [reply, bounce, unsubscribe, domain_reply]
    tracking: {opens: true, clicks: false}
    postal_address: "Outreach Inc\\n1 Main St"
    fallbacks: {first_name: there}
    in_doubt: resend
    experiment:
      {metric: positive_rate, mde: 0.04, baseline: 0.06, alpha: 0.1, power: 0.9, design: sequential, looks: 4,
       auto_promote: true, allocation: thompson}
    steps:
      - type: email
        attach_demo: true
        fallbacks: {demo_title: "our product tour"}
        variants:
          - {name: A, subject: "Idea for {{ company }}", body: "Hi {{ first_name }}, see {{ demo_title }}",
             html: "<p>Hi</p>", weight: 3}
          - {name: B, subject: "{{ company }} + us", body: "Hello", weight: 0.5}
      - type: email
        delay: 3 business days
        when: no_open
        thread: true
        quote_previous: true
        fallbacks: {opener: "A quick follow-up"}
        body: "{{ opener }}"
      - {type: linkedin, delay: 2 days, body: "Connect note for {{ first_name }}"}
      - {type: call, delay: 90 minutes, when: no_reply, body: "Call script"}
    """
)


def _unset_keys(model: BaseModel, path: str) -> Iterator[str]:
    """Model fields the fixture leaves at their default, anywhere in the tree (steps: set in at least one)."""
    for name, value in vars(model).items():
        if name not in model.model_fields_set:
            yield f"{path}{name}"
        if isinstance(value, BaseModel):
            yield from _unset_keys(value, f"{path}{name}.")


def _unset_anywhere(definition: Definition) -> set[str]:
    unset = set(_unset_keys(definition, ""))
    step_sets = [set(_unset_keys(step, "steps[].")) for step in definition.steps]
    variant_sets = [set(_unset_keys(v, "variants[].")) for step in definition.steps for v in step.variants]
    return unset | set.intersection(*step_sets) | set.intersection(*variant_sets)


def test_the_fixture_sets_every_key_of_the_definition_model() -> None:
    """A key added to the model must be added above too, so the round trip below covers it."""
    assert _unset_anywhere(parse_definition(EVERY_KEY)) == set()


def test_a_definition_with_every_key_survives_the_designer_form_unchanged() -> None:
    definition = parse_definition(EVERY_KEY)
    form = designer.form_from_definition(definition)
    assert designer.definition_from_form(form) == definition


def test_the_designer_shows_the_step_keys_it_used_to_drop() -> None:
    form = designer.form_from_definition(parse_definition(EVERY_KEY))
    first, second = form["steps"][0], form["steps"][1]
    assert (first["attach_demo"], first["fallbacks"]) == (True, "demo_title = our product tour")
    assert (second["quote_previous"], second["fallbacks"]) == (True, "opener = A quick follow-up")
    assert form["extra"]["in_doubt"] == "resend"  # no field for it in the form: carried as it was
    assert form["extra"]["schedule"]["holidays"] == ["US", "DE"]  # nested keys stay where they were


def test_editing_step_fallbacks_in_the_form_is_saved_and_bad_lines_name_the_step() -> None:
    form = designer.form_from_definition(parse_definition(EVERY_KEY))
    form["steps"][1]["fallbacks"] = "opener = Hello again\nnot a line"
    problems = []
    try:
        designer.definition_from_form(form)
    except designer.DefinitionError as exc:
        problems = [p.path for p in exc.problems]
    assert problems == ["steps[1].fallbacks"]
    form["steps"][1]["fallbacks"] = "opener = Hello again"
    form["extra"] = {"in_doubt": "hold"}
    saved = designer.definition_from_form(form)
    assert saved.steps[1].fallbacks == {"opener": "Hello again"}
    assert saved.in_doubt is InDoubtPolicy.HOLD


def test_a_new_step_starts_without_quote_attachment_or_fallbacks() -> None:
    form = designer.add_step(designer.new_form())
    step = form["steps"][-1]
    assert (step["quote_previous"], step["attach_demo"], step["fallbacks"], step["extra"]) == (False, False, "", {})


def test_the_yaml_export_keeps_every_key_too() -> None:
    definition = parse_definition(EVERY_KEY)
    assert parse_definition(to_yaml(definition)) == definition
