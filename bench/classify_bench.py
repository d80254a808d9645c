"""Reply classification benchmark: whole messages in, the full reading out, in one process.

    .venv/bin/python bench/classify_bench.py

Inputs, built in memory before timing: the 274 labelled replies of tests/fixtures/replies/ as real
messages (quoted history as their mail clients add it, the way the intent tests build them), and
every bounce / auto-reply / negative sample of ../shared/corpora. Each timed pass does what the inbox
does per message: parse the bytes (email, policy.default) and `classify_message` (kind; bounce report;
or quote stripping with mail-parser-reply plus our rules, VADER sentiment, intent, return date,
referral). Figures are the median of 3 timings of at least 2 s each, like ../shared/tools/peer_scores.py.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from test_reply_labels import labelled, message_for  # noqa: E402

from outreach.classify import classify_message  # noqa: E402
from outreach.inbound import parse_message  # noqa: E402

CORPORA = ROOT.parent / "shared" / "corpora"
SENT_AT = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)
OWN = frozenset({"sam@sender.example"})


def replies() -> list[bytes]:
    data = labelled()
    return [bytes(message_for(entry, data["sent"])) for entry in data["replies"]]


def machine_mail() -> list[bytes]:
    expected = json.loads((CORPORA / "expected.json").read_text(encoding="utf-8"))
    sections = (
        "bounces_sisimai",
        "bounces_flufl",
        "bounces_mail_deliverystatus_bounceparser",
        "autoreplies",
        "negatives",
    )
    return [(CORPORA / entry["sample"]).read_bytes() for section in sections for entry in expected[section]]


def classify(raw: bytes) -> None:
    message = parse_message(raw)
    classify_message(message.message, sent_at=message.sent_at or SENT_AT, own_addresses=OWN)


def rate(fn: Callable[[bytes], None], items: list[bytes], rounds: int = 3, min_s: float = 2.0) -> float:
    """Median items/second over `rounds` timings; each repeats full passes for at least min_s."""
    results = []
    for _ in range(rounds):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_s:
            for item in items:
                fn(item)
            done += len(items)
        results.append(done / (time.perf_counter() - start))
    return statistics.median(results)


def main() -> None:
    inputs = {"labelled replies (with quoted history)": replies(), "bounces, auto-replies, negatives": machine_mail()}
    classify(inputs["labelled replies (with quoted history)"][0])  # load VADER's lexicon outside the timing
    print("| inputs | messages (one pass) | messages/s |\n|---|---|---|")
    for label, items in inputs.items():
        print(f"| {label} | {len(items)} | {rate(classify, items):,.0f} |")


if __name__ == "__main__":
    main()
