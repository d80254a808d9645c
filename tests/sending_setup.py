"""Campaigns ready to send, for the sending fault and crash tests: mailboxes at a sink, prospects, a launch.

Everything is built through the real services (save_mailbox, CampaignManager) except the prospects,
which are bulk-inserted so that a few thousand cost well under a second.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, insert, select

from db.engine import transaction
from db.enums import TlsMode, TouchState
from db.models import CommunicationLog, Prospect, ProspectList, ProspectListMember
from outreach.campaigns import CampaignManager, find_campaign
from outreach.mailboxes import MailboxSpec, save_mailbox
from outreach.sequence import parse_definition

KEY = "k" * 48
ALL_DAY = 'schedule: {timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}'
ONE_STEP = """
  - type: email
    subject: "Idea for {{ company }}"
    body: "Hi {{ first_name | default('there') }}, a short note for {{ company }}."
"""


def campaign_yaml(name: str, mailboxes: Sequence[str], steps: str = ONE_STEP, schedule: str = ALL_DAY) -> str:
    """A campaign that may send at any hour of any day, so tests do not depend on the wall clock."""
    return f"""
name: {name}
audience: {{list: {name}-list}}
mailboxes: [{", ".join(mailboxes)}]
postal_address: "Outreach Inc, 1 Main St, Springfield"
{schedule}
steps:{steps}"""


@dataclass(frozen=True)
class Box:
    name: str
    per_minute: int = 100_000
    daily_limit: int = 100_000


def address(i: int) -> str:
    return f"p{i}@acme{i % 5}.example"


def launch_campaign(
    engine: Engine,
    sink_port: int,
    *,
    people: int | Sequence[str],
    launch_at: datetime,
    name: str = "Load",
    boxes: Sequence[Box] = (Box("sales-1"),),
    steps: str = ONE_STEP,
    company: str = "Acme",
    schedule: str = ALL_DAY,
) -> list[str]:
    """Mailboxes pointing at the sink, prospects in a list, the campaign applied and launched. Returns addresses."""
    emails = [address(i) for i in range(people)] if isinstance(people, int) else list(people)
    with transaction(engine) as s:
        for box in boxes:
            save_mailbox(
                s,
                MailboxSpec(
                    box.name, f"{box.name}@sender.example", "127.0.0.1", sink_port, tls=TlsMode.NONE,
                    per_minute=box.per_minute, daily_limit=box.daily_limit,
                ),
            )  # fmt: skip
        lst = ProspectList(name=f"{name}-list")
        s.add(lst)
        s.flush()
        rows = [{"email": e, "email_normalized": e.lower(), "first_name": f"P{i}", "company": company}
                for i, e in enumerate(emails)]  # fmt: skip
        ids = s.execute(insert(Prospect).returning(Prospect.id), rows).scalars().all()
        s.execute(insert(ProspectListMember), [{"list_id": lst.id, "prospect_id": pid} for pid in ids])
        manager = CampaignManager(s, secret_key=KEY)
        manager.create_campaign(parse_definition(campaign_yaml(name, [b.name for b in boxes], steps, schedule)))
        manager.launch(find_campaign(s, name), launch_at)
    return emails


def touch_states(engine: Engine) -> Counter[TouchState]:
    with transaction(engine, readonly=True) as s:
        rows = s.execute(select(CommunicationLog.state, func.count()).group_by(CommunicationLog.state))
        return Counter({state: n for state, n in rows})


@dataclass
class FaultRule:
    """A sink rule: a reply per recipient and attempt number, with a log of every attempt in order.

    `plan` maps a recipient to the replies of its successive attempts ("451 …", "550 …", "DROP");
    attempts beyond the list are accepted. `refuse` may decide on the fly for anyone else.
    """

    plan: dict[str, list[str]] = field(default_factory=dict)
    refuse: Callable[[str, int], str | None] | None = None
    attempts: list[tuple[str, str | None]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, rcpt: str) -> str | None:
        with self.lock:
            n = self.counts[rcpt]
            self.counts[rcpt] += 1
            replies = self.plan.get(rcpt, [])
            reply = replies[n] if n < len(replies) else (self.refuse(rcpt, n) if self.refuse else None)
            self.attempts.append((rcpt, reply))
            return reply
