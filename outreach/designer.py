"""The campaign designer's form as plain data, and the two-way mapping to the campaign Definition.

The Campaigns page keeps one form dict in its session state and draws widgets from it; everything that
decides something lives here, so it is tested without Streamlit: turning the form into a Definition
(validated by outreach.sequence, exactly like YAML), turning a Definition back into a form, and the
edits the page offers (add, remove and move steps; add and remove variants).

Each step and variant carries a `uid`, unique within the form, that the page uses for widget keys: a
widget then stays with its step when steps move, instead of with a position.

A form is JSON-like data:

    {"name": str, "audience_list": str | None, "audience_filter": "country = DE, AT",
     "mailboxes": [str], "timezone": "prospect" | IANA name, "fallback_timezone": str,
     "window_start": "09:00", "window_end": "17:00", "days": ["mon", ...], "stop_on": ["reply", ...],
     "track_opens": bool, "track_clicks": bool, "postal_address": str, "fallbacks": "first_name = there",
     "steps": [{"uid", "type", "delay", "when", "thread", "quote_previous": bool, "attach_demo": bool,
                "fallbacks": "demo_link = …", "extra": {...},
                "variants": [{"uid", "name", "subject", "body", "html", "weight", "extra": {...}}]}],
     "extra": {...}, "next_uid": int}

`extra` keeps every definition key the form has no field for (at the top level and inside schedule,
tracking and audience; per step; per variant), so opening a campaign in the designer and saving it again
never drops a key — including keys added to the definition model later.
"""

from __future__ import annotations

import copy
import csv
import re
import string
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from db.enums import StepCondition, StepType
from outreach.schedule import DAY_NAMES, format_delay, format_window
from outreach.sequence import (
    DEFAULT_STOP_ON,
    PROSPECT_ZONE,
    Definition,
    DefinitionError,
    Problem,
    from_data,
    to_data,
)

Form = dict[str, Any]

FILTER_PATH = "audience.filter"
FALLBACKS_PATH = "fallbacks"
_PATH_PART = re.compile(r"\[(\d+)\]|\.?([A-Za-z_]+)")
# The definition keys the form has fields for; everything else travels in the form's `extra`.
_FORM_KEYS = {
    (): {"name", "audience", "mailboxes", "schedule", "stop_on", "tracking", "postal_address", "fallbacks", "steps"},
    ("audience",): {"list", "filter"},
    ("schedule",): {"timezone", "fallback_timezone", "window", "days"},
    ("tracking",): {"opens", "clicks"},
}
_STEP_KEYS = {"type", "delay", "when", "thread", "quote_previous", "attach_demo", "fallbacks", "variants"}
_VARIANT_KEYS = {"name", "subject", "body", "html", "weight"}


def _variant(uid: int, name: str) -> dict[str, Any]:
    return {"uid": uid, "name": name, "subject": "", "body": "", "html": None, "weight": 1.0, "extra": {}}


def _step(uid: int, variant_uid: int, step_type: str) -> dict[str, Any]:
    return {
        "uid": uid,
        "type": step_type,
        "delay": "0",
        "when": StepCondition.ALWAYS.value,
        "thread": False,
        "quote_previous": False,
        "attach_demo": False,
        "fallbacks": "",
        "extra": {},
        "variants": [_variant(variant_uid, "A")],
    }


def new_form() -> Form:
    """A blank campaign: one email step with one variant, weekday business hours, the default stop rules."""
    return {
        "name": "",
        "audience_list": None,
        "audience_filter": "",
        "mailboxes": [],
        "timezone": PROSPECT_ZONE,
        "fallback_timezone": "UTC",
        "window_start": "09:00",
        "window_end": "17:00",
        "days": list(DAY_NAMES[:5]),
        "stop_on": [stop.value for stop in DEFAULT_STOP_ON],
        "track_opens": False,
        "track_clicks": True,
        "postal_address": "",
        "fallbacks": "",
        "extra": {},
        "steps": [_step(1, 2, StepType.EMAIL.value)],
        "next_uid": 3,
    }


# --- "field = value, value" lines ----------------------------------------------------------------


def _split_values(text: str) -> list[str]:
    """Comma-separated values; a value containing a comma is written in double quotes."""
    row = next(csv.reader([text], skipinitialspace=True), [])
    return [value.strip() for value in row if value.strip()]


def _join_values(values: list[str]) -> str:
    """The inverse of _split_values: values with a comma or a leading quote are quoted, quotes doubled."""
    quoted = [f'"{v.replace(chr(34), chr(34) * 2)}"' if "," in v or v.startswith('"') else v for v in values]
    return ", ".join(quoted)


def parse_filter(text: str) -> tuple[dict[str, list[str]], list[Problem]]:
    """`field = value, value` per line → {field: [values]}; lines that cannot be read become problems."""
    result: dict[str, list[str]] = {}
    problems = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        field, sep, values = line.partition("=")
        field = field.strip()
        parsed = _split_values(values) if sep else []
        if not sep or not field or not parsed:
            problems.append(
                Problem(
                    FILTER_PATH,
                    None,
                    f'filter line {number} "{line}": write one field per line as field = value '
                    "(several values separated by commas), e.g. country = DE, AT",
                )
            )
            continue
        result.setdefault(field, []).extend(parsed)
    return result, problems


def format_filter(fields: Mapping[str, tuple[str, ...] | list[str]] | None) -> str:
    """The inverse of parse_filter."""
    return "\n".join(f"{field} = {_join_values(list(values))}" for field, values in (fields or {}).items())


def parse_fallbacks(text: str) -> tuple[dict[str, str], list[Problem]]:
    """`field = value` per line → {field: value} (the value is taken as written, commas included)."""
    result: dict[str, str] = {}
    problems = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        field, sep, value = line.partition("=")
        if not sep or not field.strip():
            problems.append(
                Problem(
                    FALLBACKS_PATH,
                    None,
                    f'fallback line {number} "{line}": write field = value, e.g. first_name = there',
                )
            )
            continue
        result[field.strip()] = value.strip()
    return result, problems


def format_fallbacks(fallbacks: Mapping[str, str]) -> str:
    return "\n".join(f"{field} = {value}" for field, value in fallbacks.items())


# --- form → Definition ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _optional(value: Any) -> str | None:
    """Blank text means "not given", so the validator reports a missing value rather than an empty one."""
    text = _text(value)
    return text if text.strip() else None


def _variant_data(variant: Mapping[str, Any], step_type: str, thread: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": _text(variant.get("name")).strip(), "body": _text(variant.get("body"))}
    if step_type == StepType.EMAIL.value:
        # A threaded follow-up reuses "Re: <previous subject>": the page hides its subject box.
        subject = None if thread else _optional(variant.get("subject"))
        if subject is not None:
            data["subject"] = subject.strip()
        html = _optional(variant.get("html"))
        if html is not None:
            data["html"] = html
    weight = variant.get("weight")
    if weight not in (None, 1, 1.0):
        data["weight"] = weight
    return _with_extra(data, variant.get("extra"))


def _with_extra(data: dict[str, Any], extra: Any) -> dict[str, Any]:
    """Add the keys the form has no field for; a value the form sets wins (sub-mappings are merged)."""
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(data.get(key), Mapping):
            data[key] = _with_extra(dict(data[key]), value)
        elif key not in data:
            data[key] = copy.deepcopy(value)
    return data


def _step_data(step: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    step_type = _text(step.get("type")) or StepType.EMAIL.value
    email = step_type == StepType.EMAIL.value
    thread = bool(step.get("thread")) and email
    data: dict[str, Any] = {"type": step_type, "delay": _text(step.get("delay")).strip() or "0"}
    when = _text(step.get("when")) or StepCondition.ALWAYS.value
    if when != StepCondition.ALWAYS.value:
        data["when"] = when
    if thread:
        data["thread"] = True
    if step.get("quote_previous") and email:
        data["quote_previous"] = True
    if step.get("attach_demo") and email:
        data["attach_demo"] = True
    fallbacks, problems = parse_fallbacks(_text(step.get("fallbacks")))
    if fallbacks:
        data["fallbacks"] = fallbacks
    data["variants"] = [_variant_data(v, step_type, thread) for v in step.get("variants") or []]
    return _with_extra(data, step.get("extra")), problems


def form_to_data(form: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """The raw definition data the form describes, plus problems only the form can have (unreadable lines)."""
    audience: dict[str, Any] = {}
    if _optional(form.get("audience_list")):
        audience["list"] = _text(form.get("audience_list")).strip()
    filters, problems = parse_filter(_text(form.get("audience_filter")))
    if filters:
        audience["filter"] = filters
    fallbacks, fallback_problems = parse_fallbacks(_text(form.get("fallbacks")))
    problems += fallback_problems
    window = f"{_text(form.get('window_start')).strip()}-{_text(form.get('window_end')).strip()}"
    data: dict[str, Any] = {
        "name": _text(form.get("name")),
        "audience": audience,
        "mailboxes": list(form.get("mailboxes") or []),
        "schedule": {
            "timezone": _text(form.get("timezone")) or PROSPECT_ZONE,
            "fallback_timezone": _text(form.get("fallback_timezone")) or "UTC",
            "window": window,
            "days": list(form.get("days") or []),
        },
        "stop_on": list(form.get("stop_on") or []),
        "tracking": {"opens": bool(form.get("track_opens")), "clicks": bool(form.get("track_clicks"))},
        "steps": [],
    }
    for index, step in enumerate(form.get("steps") or []):
        step_data, step_problems = _step_data(step)
        data["steps"].append(step_data)
        problems += [replace(p, path=f"steps[{index}].fallbacks") for p in step_problems]
    postal = _optional(form.get("postal_address"))
    if postal is not None:
        data["postal_address"] = postal.strip()
    if fallbacks:
        data["fallbacks"] = fallbacks
    return _with_extra(data, form.get("extra")), problems


def definition_from_form(form: Mapping[str, Any]) -> Definition:
    """Validate the form through outreach.sequence (the YAML's own rules); DefinitionError lists every problem."""
    data, problems = form_to_data(form)
    try:
        definition = from_data(data)
    except DefinitionError as exc:
        found = exc.problems
        if not data["name"].strip():
            found = [Problem("name", None, "give the campaign a name") if p.path == "name" else p for p in found]
        if any(p.path == FILTER_PATH for p in problems):
            # An unreadable filter line was left out; "choose prospects" about the rest would only confuse.
            found = [p for p in found if p.path != "audience"]
        raise DefinitionError(problems + found) from None
    if problems:
        raise DefinitionError(problems)
    return definition


# --- Definition → form ---------------------------------------------------------------------------


def form_from_definition(definition: Definition) -> Form:
    """A form showing an existing definition, so it can be edited and saved again unchanged."""
    uid = 0

    def next_uid() -> int:
        nonlocal uid
        uid += 1
        return uid

    data = to_data(definition)
    steps = []
    for step, step_data in zip(definition.steps, data["steps"], strict=True):
        step_uid = next_uid()
        variants = [
            {
                "uid": next_uid(),
                "name": v.name,
                "subject": v.subject or "",
                "body": v.body,
                "html": v.html,
                "weight": v.weight,
                "extra": _extra(v_data, _VARIANT_KEYS),
            }
            for v, v_data in zip(step.variants, step_data["variants"], strict=True)
        ]
        steps.append(
            {
                "uid": step_uid,
                "type": step.type.value,
                "delay": format_delay(step.delay),
                "when": step.when.value,
                "thread": step.thread,
                "quote_previous": step.quote_previous,
                "attach_demo": step.attach_demo,
                "fallbacks": format_fallbacks(step.fallbacks),
                "extra": _extra(step_data, _STEP_KEYS),
                "variants": variants,
            }
        )
    start, _, end = format_window(definition.schedule.window).partition("-")
    return {
        "name": definition.name,
        "audience_list": definition.audience.list_name,
        "audience_filter": format_filter(definition.audience.filter),
        "mailboxes": list(definition.mailboxes),
        "timezone": definition.schedule.timezone,
        "fallback_timezone": definition.schedule.fallback_timezone,
        "window_start": start,
        "window_end": end,
        "days": list(definition.schedule.days),
        "stop_on": [stop.value for stop in definition.stop_on],
        "track_opens": definition.tracking.opens,
        "track_clicks": definition.tracking.clicks,
        "postal_address": definition.postal_address or "",
        "fallbacks": format_fallbacks(definition.fallbacks),
        "extra": _definition_extra(data),
        "steps": steps,
        "next_uid": uid + 1,
    }


def _extra(data: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {key: copy.deepcopy(value) for key, value in data.items() if key not in known}


def _definition_extra(data: Mapping[str, Any]) -> dict[str, Any]:
    """The definition's keys outside the form's fields, nested where they were (e.g. schedule.holidays)."""
    extra = _extra(data, _FORM_KEYS[()])
    for (section,), known in ((path, keys) for path, keys in _FORM_KEYS.items() if path):
        inner = _extra(data.get(section) or {}, known)
        if inner:
            extra[section] = inner
    return extra


# --- edits the page offers -----------------------------------------------------------------------


def _take_uid(form: Form) -> int:
    uid = int(form.get("next_uid") or 1)
    form["next_uid"] = uid + 1
    return uid


def _next_variant_name(names: list[str]) -> str:
    """A, B, C … then V27, V28 …: the first name not used yet in this step."""
    taken = {name.strip().upper() for name in names}
    for letter in string.ascii_uppercase:
        if letter not in taken:
            return letter
    number = len(names) + 1
    while f"V{number}" in taken:
        number += 1
    return f"V{number}"


def add_step(form: Mapping[str, Any], step_type: str = StepType.EMAIL.value) -> Form:
    """A new last step; follow-ups start two business days after the previous touch, emails in its thread."""
    new = copy.deepcopy(dict(form))
    steps = new.setdefault("steps", [])
    step = _step(_take_uid(new), _take_uid(new), step_type)
    if steps:
        step["delay"] = "2 business days"
        earlier_email = any(s.get("type") == StepType.EMAIL.value for s in steps)
        step["thread"] = step_type == StepType.EMAIL.value and earlier_email
    steps.append(step)
    return new


def remove_step(form: Mapping[str, Any], index: int) -> Form:
    new = copy.deepcopy(dict(form))
    steps = new.get("steps") or []
    if 0 <= index < len(steps):
        del steps[index]
    return new


def move_step(form: Mapping[str, Any], index: int, offset: int) -> Form:
    """Swap a step with its neighbour (offset -1 = up, +1 = down); out-of-range moves change nothing."""
    new = copy.deepcopy(dict(form))
    steps = new.get("steps") or []
    target = index + offset
    if 0 <= index < len(steps) and 0 <= target < len(steps):
        steps[index], steps[target] = steps[target], steps[index]
    return new


def add_variant(form: Mapping[str, Any], step_index: int) -> Form:
    """Another version of a step's message for an A/B test, starting as a copy of the step's first one."""
    new = copy.deepcopy(dict(form))
    steps = new.get("steps") or []
    if not 0 <= step_index < len(steps):
        return new
    variants = steps[step_index].setdefault("variants", [])
    variant = _variant(_take_uid(new), _next_variant_name([str(v.get("name", "")) for v in variants]))
    if variants:
        variant["subject"], variant["body"] = variants[0].get("subject", ""), variants[0].get("body", "")
    variants.append(variant)
    return new


def remove_variant(form: Mapping[str, Any], step_index: int, variant_index: int) -> Form:
    """Remove one variant; a step keeps at least one."""
    new = copy.deepcopy(dict(form))
    steps = new.get("steps") or []
    if 0 <= step_index < len(steps):
        variants = steps[step_index].get("variants") or []
        if len(variants) > 1 and 0 <= variant_index < len(variants):
            del variants[variant_index]
    return new


# --- problems in the marketer's words ------------------------------------------------------------


def describe_path(path: str, form: Mapping[str, Any] | None = None) -> str:
    """`steps[1].variants[0].subject` → `step 2, variant A, subject`: where to look in the designer."""
    parts: list[str | int] = []
    for index, key in _PATH_PART.findall(path):
        parts.append(int(index) if index else key)
    if not parts or parts[0] != "steps":
        return path.replace("_", " ").replace(".", " › ")
    words = []
    steps = list((form or {}).get("steps") or [])
    step: Mapping[str, Any] | None = None
    rest = parts[1:]
    if rest and isinstance(rest[0], int):
        step = steps[rest[0]] if rest[0] < len(steps) else None
        words.append(f"step {rest[0] + 1}")
        rest = rest[1:]
    if len(rest) >= 2 and rest[0] == "variants" and isinstance(rest[1], int):
        variants = list((step or {}).get("variants") or [])
        name = str(variants[rest[1]].get("name") or "").strip() if rest[1] < len(variants) else ""
        words.append(f"variant {name}" if name else f"variant {rest[1] + 1}")
        rest = rest[2:]
    words += [str(part).replace("_", " ") for part in rest]
    return ", ".join(words) if words else "steps"


@cache
def timezone_choices() -> tuple[str, ...]:
    """The schedule's time zone options: each prospect's own zone first, then UTC and every IANA name."""
    return (PROSPECT_ZONE, "UTC", *sorted(zone for zone in available_timezones() if zone != "UTC"))
