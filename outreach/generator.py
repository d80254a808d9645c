"""Turning a step's variant into the exact text a prospect receives (the preview shows the same text).

The personalization library, demo matching and follow-up quoting extend this with the Messages issue;
what is here is the part every touch needs: the prospect's fields, the campaign's fallbacks, the
sandboxed render, and the `Re:` subject of threaded follow-ups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from db.models import Prospect
from outreach.mailer import reply_subject
from outreach.sequence import Step, Variant
from outreach.templating import render

PROSPECT_FIELDS = (
    "email", "first_name", "last_name", "title", "seniority", "company", "company_domain", "website",
    "industry", "employee_count", "city", "state", "country", "timezone", "linkedin_url", "phone",
)  # fmt: skip


@dataclass(frozen=True)
class RenderedTouch:
    subject: str | None
    text: str
    html: str | None


def prospect_context(prospect: Prospect, fallbacks: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Template variables for one prospect: standard fields, custom fields, then fallbacks where empty."""
    context: dict[str, Any] = {name: value for name, value in (prospect.custom_fields or {}).items()}
    context |= {name: getattr(prospect, name) for name in PROSPECT_FIELDS}
    names = [n for n in (prospect.first_name, prospect.last_name) if n]
    context["full_name"] = " ".join(names) or None
    for name, value in (fallbacks or {}).items():
        if context.get(name) in (None, ""):
            context[name] = value
    return context


def available_fields(prospect: Prospect) -> set[str]:
    """Fields this prospect actually has a value for."""
    context = prospect_context(prospect)
    return {name for name, value in context.items() if value not in (None, "")}


def render_touch(
    step: Step, variant: Variant, context: Mapping[str, Any], previous_subject: str | None = None
) -> RenderedTouch:
    """Render one touch. Raises templating.RenderError naming the missing field: that touch fails alone."""
    if step.thread and previous_subject is not None:
        subject: str | None = reply_subject(previous_subject)
    else:
        subject = render(variant.subject, context) if variant.subject else None
    text = render(variant.body, context)
    html = render(variant.html, context, html=True) if variant.html else None
    return RenderedTouch(subject=subject, text=text, html=html)
