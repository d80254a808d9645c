"""Rendering benchmark: personalized two-part messages per second on one core.

    .venv/bin/python bench/render_bench.py                # 20,000 distinct prospects
    .venv/bin/python bench/render_bench.py --prospects 5000 --library 60

Each message is what the planner stores for a touch: `MessageGenerator.render` with the personalization
library of tests/fixtures/personalization (plus `--library` extra tagged snippets), i.e. profile building,
snippet and demo matching with explanations, spintax, the sandboxed render of subject, text and HTML with
filters. Prospects are generated with varied industries, titles, sizes and profile text, all distinct, so
nothing is a cache hit on the prospect side. One process, one thread; the figure is the median of 3
timed passes of at least 2 s of this process's CPU time (`time.process_time`: on a shared machine, wall
time mostly measures the neighbours; wall-clock rates are printed too). `--mime` also builds the MIME
message (outreach.mailer) for reference.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outreach.generator import MessageGenerator  # noqa: E402
from outreach.mailer import OutgoingMessage, build_message  # noqa: E402
from outreach.personalization import items_from_specs, parse_library  # noqa: E402
from outreach.sequence import Step  # noqa: E402

LIBRARY = ROOT / "tests" / "fixtures" / "personalization" / "library.yaml"
NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
INDUSTRIES = ["Fintech", "Banking", "SaaS", "Software", "Hospital & Health Care", "E-commerce", "Retail",
              "Logistics", "Manufacturing", "Financial Services"]  # fmt: skip
TITLES = ["CFO", "VP Finance", "Controller", "CTO", "VP Engineering", "COO", "Head of Growth", "Marketing Manager",
          "Founder", "Director of Operations"]  # fmt: skip
TECH = ["NetSuite", "Salesforce", "Kubernetes", "AWS", "Shopify", "GitHub", "HubSpot", "Snowflake"]
PAINS = ["month-end close takes too long", "cart abandonment", "returns eat margin", "slow deploys",
         "manual reconciliation", "staffing gaps"]  # fmt: skip
STEP = Step.model_validate(
    {
        "type": "email",
        "subject": "{Quick|Short} idea for {{ company | title_case }}",
        "body": (
            "{Hi|Hello} {{ first_name | first_word | default('there') }},\n\n{{ opener }}\n\n{{ value_prop }} "
            "{{ case_study | default('') }}\n\nHere is a {short|quick} demo: {{ demo_link }}\n\n"
            "{Worth a chat|Open to a quick call} this week?\nDana"
        ),
        "html": (
            "<p>{Hi|Hello} {{ first_name | first_word | default('there') }},</p><p>{{ opener }}</p>"
            "<p>{{ value_prop }} {{ case_study | default('') }}</p>"
            '<p>Here is a {short|quick} demo: <a href="{{ demo_link }}">{{ demo_title }}</a></p>'
            "<p>{Worth a chat|Open to a quick call} this week?<br>Dana</p>"
        ),
        "fallbacks": {"demo_link": "https://demo.example/overview", "demo_title": "a short overview"},
    }
)


def _extra_library(count: int, rng: random.Random) -> str:
    lines = ["openers:"]
    for i in range(count):
        lines += [
            f"  - name: extra-{i}",
            f"    text: 'Extra opener {i} for {{{{ company }}}}.'",
            f"    industries: [{rng.choice(INDUSTRIES).lower()}]",
            f"    titles: [{rng.choice(TITLES).lower()}]",
            f"    technologies: [{rng.choice(TECH).lower()}]",
            f"    pains: [{rng.choice(PAINS).split()[0]}]",
        ]
    return "\n".join(lines) + "\n"


def _prospects(count: int, rng: random.Random) -> list[dict[str, object]]:
    out = []
    for i in range(count):
        out.append(
            {
                "email": f"p{i}@company{i}.example", "first_name": rng.choice(["Ann Marie", "bo", "Chen", "Dana"]),
                "last_name": f"Person{i}", "company": f"{rng.choice(['ACME', 'Globex', 'initech'])} {i}",
                "title": rng.choice(TITLES), "industry": rng.choice(INDUSTRIES),
                "employee_count": rng.choice([12, 45, 120, 480, 2500, None]),
                "technologies": ", ".join(rng.sample(TECH, 2)), "company_description": rng.choice(PAINS) + f" ({i})",
            }
        )  # fmt: skip
    return out


def _pass(
    generator: MessageGenerator, prospects: list[dict[str, object]], mime: bool, seconds: float
) -> tuple[float, float]:
    """Render through the prospects (cycling) for at least `seconds` of CPU; (messages per CPU s, per wall s)."""
    tz, done = ZoneInfo("America/New_York"), 0
    cpu, wall = time.process_time(), time.perf_counter()
    while True:
        for index, fields in enumerate(prospects):
            touch = generator.render(STEP, 1, STEP.variants[0], fields, prospect_id=index, fallbacks={}, now=NOW, tz=tz)
            if mime:
                build_message(OutgoingMessage("dana@sender.example", str(fields["email"]), touch.subject or "",
                                              touch.text, "<b@sender.example>", NOW, html_body=touch.html))  # fmt: skip
            done += 1
        used = time.process_time() - cpu
        if used >= seconds:
            return done / used, done / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prospects", type=int, default=20_000)
    parser.add_argument("--library", type=int, default=0, help="extra tagged openers on top of the fixture's 16 items")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--mime", action="store_true", help="also build the MIME message")
    args = parser.parse_args()
    rng = random.Random(7)
    snippets, demos = parse_library(LIBRARY.read_text())
    if args.library:
        extra, _ = parse_library(_extra_library(args.library, rng))
        snippets += extra
    generator = MessageGenerator(items_from_specs(snippets, demos))
    prospects = _prospects(args.prospects, rng)
    _pass(generator, prospects[:200], args.mime, 0.2)  # warm the template caches
    rates = [_pass(generator, prospects, args.mime, args.seconds) for _ in range(3)]
    median = statistics.median(cpu for cpu, _wall in rates)
    what = "rendered + MIME-built" if args.mime else "rendered (subject + text + HTML)"
    print(f"library: {len(snippets)} snippets, {len(demos)} demos; prospects: {len(prospects):,}")
    print(f"{what}: {median:,.0f} messages per CPU second (passes: {', '.join(f'{c:,.0f}' for c, _ in rates)})")
    print(f"wall clock: {', '.join(f'{w:,.0f}' for _, w in rates)} messages/s (load average {os.getloadavg()[0]:.1f})")
    if not args.mime:  # the target is for rendering; MIME building is printed for reference only
        print(f"target >= 5,000/s: {'met' if median >= 5000 else 'MISSED'}")


if __name__ == "__main__":
    main()
