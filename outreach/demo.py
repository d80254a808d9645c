"""A demo workspace: a separate data dir filled with a plausible, generated month of outreach.

A newcomer runs `outreach demo`, then `OUTREACH_DATA_DIR=demo-data outreach up`, and sees every page
populated: a few thousand prospects (names, companies, industries, countries and time zones), lists,
three campaigns with A/B tests (one finished, two running), a month of touches, opens (some by privacy
proxies), clicks, replies classified by the real classifier, bounces, unsubscribes, lead stages and
LinkedIn/call tasks. Everything is drawn from one seeded random generator, so the same seed and the same
`now` give the same workspace. Engagement goes through the same services the product uses (the tracking
service's `record_hits`, `unsubscribe`, `ResponseTracker.parse_response`, `update_lead_status`,
`refresh_scores`), so the numbers on the pages follow the product's own rules.

The demo never touches a real workspace: it always writes SQLite in its own directory (whatever
OUTREACH_DATABASE_URL says), refuses a directory holding any other database, marks its database with
the `demo_workspace` setting (the dashboard shows DEMO in its header), and every address ends in the
reserved `.example` domain, so nothing it holds can ever reach a person.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session

from db.engine import make_engine, transaction
from db.enums import (
    CampaignState,
    EnrollmentState,
    EventKind,
    LeadStage,
    StepType,
    StopReason,
    TaskState,
    TaskType,
    TouchState,
)
from db.migrate import upgrade
from db.models import (
    AppSetting,
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    OutreachCampaign,
    Prospect,
    ProspectList,
    ProspectListMember,
    ProspectTag,
    ResponseAnalysis,
    Task,
)
from outreach.campaigns import POSTAL_ADDRESS_SETTING, CampaignManager
from outreach.config import load_settings
from outreach.engagement import Hit, record_hits, unsubscribe
from outreach.errors import OutreachError
from outreach.lead_scores import refresh_scores
from outreach.responses import ResponseTracker, update_lead_status
from outreach.sequence import parse_definition

DEMO_SETTING = "demo_workspace"
DEFAULT_DIR = "demo-data"
DEFAULT_SEED = 2026
DEFAULT_PROSPECTS = 3000
DAYS = 30
DB_FILE = "outreach.db"
DEMO_DOMAIN = "example"  # RFC 2606: reserved, never delivered
SENDER = "sales@northwind-outreach.example"
POSTAL = "Northwind Outreach Ltd · 12 Demo Street · London EC1A 1AA · United Kingdom"
HUMAN_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5"
PROXY_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) GoogleImageProxy"


class DemoError(OutreachError):
    """The demo workspace cannot be built where asked."""


# --- the people ----------------------------------------------------------------------------------

FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Anna", "Arjun", "Ben", "Carla", "Chen", "Chloe", "Daniel", "Diego", "Elena", "Emma",
    "Fatima", "Felix", "Grace", "Hannah", "Hiro", "Ines", "Isaac", "Jack", "Jana", "Jonas", "Julia", "Kai",
    "Karin", "Lars", "Leila", "Liam", "Lina", "Lucas", "Maya", "Mei", "Mila", "Nadia", "Noah", "Olivia", "Omar",
    "Paula", "Priya", "Rafael", "Rosa", "Sam", "Sara", "Sofia", "Tariq", "Theo", "Tom", "Vera", "Yusuf", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Andersen", "Baker", "Bauer", "Costa", "Dubois", "Eriksson", "Fischer", "Garcia", "Gupta", "Hansen", "Hughes",
    "Ibrahim", "Jansen", "Kim", "Kowalski", "Larsen", "Lopez", "Martin", "Meyer", "Moreau", "Nakamura", "Nguyen",
    "Novak", "Okafor", "Olsen", "Patel", "Petrov", "Quinn", "Rossi", "Santos", "Schmidt", "Silva", "Singh",
    "Smith", "Tanaka", "Taylor", "Torres", "Varga", "Wagner", "Walsh", "Weber", "Williams", "Wong", "Yilmaz",
)  # fmt: skip
COMPANY_STEMS = (
    "Acme", "Aurora", "Beacon", "Bluefin", "Brightline", "Cascade", "Cobalt", "Copper", "Crescent", "Delta",
    "Evergreen", "Falcon", "Fjord", "Granite", "Harbor", "Helix", "Horizon", "Ironwood", "Juniper", "Keystone",
    "Lumen", "Maple", "Meridian", "Nimbus", "Northstar", "Oakridge", "Orbit", "Pioneer", "Quartz", "Redwood",
    "Sable", "Summit", "Tidal", "Vertex", "Willow", "Zephyr",
)  # fmt: skip
INDUSTRIES = {
    "fintech": ("Pay", "Capital", "Ledger", "Finance"),
    "saas": ("Cloud", "Software", "Labs", "Systems"),
    "healthcare": ("Health", "Care", "Medical", "Bio"),
    "retail": ("Retail", "Stores", "Market", "Goods"),
    "logistics": ("Logistics", "Freight", "Shipping", "Supply"),
    "manufacturing": ("Industries", "Works", "Manufacturing", "Robotics"),
}
TITLES = (
    ("CFO", "c-level"), ("CEO", "c-level"), ("CTO", "c-level"), ("COO", "c-level"), ("VP Finance", "vp"),
    ("VP Sales", "vp"), ("VP Engineering", "vp"), ("Head of Operations", "head"), ("Head of Growth", "head"),
    ("Finance Director", "director"), ("IT Director", "director"), ("Procurement Manager", "manager"),
    ("Operations Manager", "manager"), ("Controller", "manager"),
)  # fmt: skip
PLACES = (
    ("US", "New York", "America/New_York"), ("US", "Chicago", "America/Chicago"), ("US", "Austin", "America/Chicago"),
    ("US", "San Francisco", "America/Los_Angeles"), ("CA", "Toronto", "America/Toronto"),
    ("GB", "London", "Europe/London"), ("GB", "Manchester", "Europe/London"), ("DE", "Berlin", "Europe/Berlin"),
    ("DE", "Munich", "Europe/Berlin"), ("FR", "Paris", "Europe/Paris"), ("NL", "Amsterdam", "Europe/Amsterdam"),
    ("SE", "Stockholm", "Europe/Stockholm"), ("ES", "Madrid", "Europe/Madrid"), ("IE", "Dublin", "Europe/Dublin"),
    ("AU", "Sydney", "Australia/Sydney"), ("SG", "Singapore", "Asia/Singapore"), ("IN", "Bengaluru", "Asia/Kolkata"),
)  # fmt: skip
SIZES = (12, 35, 80, 150, 240, 500, 1200, 3500, 9000)

# Reply texts per intent; the real classifier labels them (its label is what the pages show).
REPLIES = {
    "interested": (
        "Thanks for reaching out, this is timely. Could we set up a call next Tuesday or Wednesday afternoon?",
        "Yes, I'd be interested to see a demo. What does your availability look like this week?",
        "Sounds interesting. Please send over some times for a 30 minute call.",
    ),
    "question": (
        "How does pricing work for a team of our size? And do you integrate with NetSuite?",
        "Can you share a case study from a company like ours before we talk?",
    ),
    "not_interested": (
        "Not interested, thanks. We already have a solution in place.",
        "No thank you, this is not a priority for us this year.",
    ),
    "referral": ("I'm not the right person for this. Please contact my colleague jordan.lee@{domain} instead.",),
    "unsubscribe": ("Please remove me from your mailing list and do not contact me again.",),
}
OUT_OF_OFFICE = (
    "I am out of the office until {date} with limited access to email. I will reply when I return.",
    "Thank you for your message. I'm on annual leave and back on {date}.",
)
INTENT_WEIGHTS = {"interested": 28, "question": 16, "not_interested": 30, "referral": 6, "unsubscribe": 8}


# --- the campaigns --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignPlan:
    """One demo campaign: its YAML, when it launched, and how well each step-1 variant does."""

    yaml: str
    list_name: str
    launched_days_ago: int
    finished: bool
    audience: int
    reply_rates: dict[str, float]  # step-1 variant → chance of a reply to any of its emails
    open_rate: float = 0.45
    click_rate: float = 0.06
    bounce_rate: float = 0.03
    per_day: int = 120  # first touches a day (the mailboxes' limits spread a launch)


def _campaign_yaml(name: str, list_name: str, steps: str) -> str:
    return (
        f"name: {name}\n"
        f"audience: {{list: {list_name}}}\n"
        'schedule: {timezone: prospect, window: "09:00-17:00", days: [mon, tue, wed, thu, fri]}\n'
        "stop_on: [reply, bounce, unsubscribe]\n"
        "tracking: {opens: true, clicks: true}\n"
        f"steps:\n{steps}"
    )


PLANS = (
    CampaignPlan(
        _campaign_yaml(
            "Fintech CFOs — Q3",
            "Fintech CFOs",
            "  - type: email\n"
            "    variants:\n"
            "      - {name: A, subject: 'Quick idea for {{ company }}', body: \"Hi {{ first_name }},\\n\\n"
            "Finance teams like {{ company }}'s close the month two days faster with automated reconciliation.\\n"
            'Worth a look? https://northwind-outreach.example/cfo-guide"}\n'
            "      - {name: B, subject: '{{ company }}: month-end in 3 days?', body: \"Hi {{ first_name }},\\n\\n"
            "Would a 3-day close matter to {{ company }}? Here is how Meridian Pay did it: "
            'https://northwind-outreach.example/case-study"}\n'
            "  - {type: email, delay: 3 business days, when: no_reply, thread: true,"
            ' body: "Hi {{ first_name }}, just bringing this back to the top of your inbox."}\n'
            "  - {type: email, delay: 5 business days, when: no_reply, thread: true,"
            ' body: "{{ first_name }}, I\'ll close the loop here. Happy to help whenever the timing is right."}\n',
        ),
        "Fintech CFOs",
        launched_days_ago=29,
        finished=True,
        audience=700,
        reply_rates={"A": 0.05, "B": 0.11},
    ),
    CampaignPlan(
        _campaign_yaml(
            "SaaS leaders — onboarding",
            "SaaS leaders",
            "  - type: email\n"
            "    variants:\n"
            "      - {name: A, subject: 'Onboarding at {{ company }}', body: \"Hi {{ first_name }},\\n\\n"
            "We help SaaS teams cut onboarding time in half. See how: "
            'https://northwind-outreach.example/onboarding"}\n'
            "      - {name: B, subject: '{{ first_name }}, a question about onboarding', body: \"Hi "
            "{{ first_name }},\\n\\nHow long does it take a new customer of {{ company }} to go live today? "
            'https://northwind-outreach.example/onboarding"}\n'
            "  - {type: linkedin, delay: 2 business days, body: 'Hi {{ first_name }}, I wrote to you about onboarding"
            " at {{ company }}; happy to connect.'}\n"
            "  - {type: email, delay: 4 business days, when: no_reply, thread: true,"
            ' body: "Hi {{ first_name }}, did you get a chance to look at this?"}\n',
        ),
        "SaaS leaders",
        launched_days_ago=16,
        finished=False,
        audience=900,
        reply_rates={"A": 0.06, "B": 0.07},
        open_rate=0.5,
    ),
    CampaignPlan(
        _campaign_yaml(
            "EU retail & logistics — pilot",
            "EU retail & logistics",
            "  - type: email\n"
            "    variants:\n"
            "      - {name: A, subject: 'Fewer stock-outs at {{ company }}', body: \"Hi {{ first_name }},\\n\\n"
            "Retailers across Europe use our forecasts to cut stock-outs by a third. "
            'https://northwind-outreach.example/retail"}\n'
            "      - {name: B, subject: '{{ company }} and peak season', body: \"Hi {{ first_name }},\\n\\n"
            'Is peak season planning on your list this quarter? https://northwind-outreach.example/retail"}\n'
            "  - {type: call, delay: 3 business days, when: no_reply, body: 'Call {{ first_name }} at {{ company }}:"
            " ask about peak-season planning and stock-outs.'}\n",
        ),
        "EU retail & logistics",
        launched_days_ago=6,
        finished=False,
        audience=500,
        reply_rates={"A": 0.04, "B": 0.06},
        open_rate=0.4,
        per_day=150,
    ),
)


# --- the result -----------------------------------------------------------------------------------


@dataclass
class DemoSummary:
    data_dir: Path
    seed: int
    prospects: int = 0
    lists: int = 0
    campaigns: int = 0
    touches: int = 0
    opens: int = 0
    clicks: int = 0
    replies: int = 0
    bounces: int = 0
    unsubscribes: int = 0
    tasks: int = 0

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["data_dir"] = str(self.data_dir)
        return data


def is_demo(session: Session) -> bool:
    """Whether this workspace is a generated demo (the dashboard labels it DEMO)."""
    return session.get(AppSetting, DEMO_SETTING) is not None


# --- where it may be built -------------------------------------------------------------------------


def demo_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DB_FILE}"


def check_target(data_dir: Path) -> None:
    """Refuse a directory that already holds a database: a real workspace, or a demo built before."""
    db_file = data_dir / DB_FILE
    if not db_file.exists():
        return
    engine = make_engine(demo_database_url(data_dir))
    try:
        demo = "app_settings" in inspect(engine).get_table_names() and _marked(engine)
    finally:
        engine.dispose()
    if demo:
        raise DemoError(f"{data_dir} already holds a demo workspace; delete that folder to build a fresh one")
    raise DemoError(
        f"{data_dir} holds a workspace that is not a demo: the demo is never mixed into real data; "
        "choose another folder with --data-dir"
    )


def _marked(engine: Engine) -> bool:
    with transaction(engine, readonly=True) as session:
        return is_demo(session)


# --- building --------------------------------------------------------------------------------------


def build_demo(
    data_dir: Path,
    *,
    now: datetime | None = None,
    seed: int = DEFAULT_SEED,
    prospects: int = DEFAULT_PROSPECTS,
) -> DemoSummary:
    """Create `data_dir` with a migrated SQLite database full of a generated month of outreach."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    data_dir = data_dir.expanduser().resolve()
    check_target(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(demo_database_url(data_dir))
    try:
        upgrade(engine)
        with transaction(engine) as session:
            rng = random.Random(seed)  # noqa: S311  (synthetic data, not secrets)
            secret = load_settings({"OUTREACH_DATA_DIR": str(data_dir)}).secret_key()  # the workspace's own key
            summary = _Builder(session, rng, now, DemoSummary(data_dir, seed), secret).build(prospects)
    except BaseException:
        engine.dispose()
        _remove_database(data_dir)  # a half-built demo would look like a real workspace next time
        raise
    engine.dispose()
    return summary


def _remove_database(data_dir: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        (data_dir / f"{DB_FILE}{suffix}").unlink(missing_ok=True)


@dataclass
class _Person:
    id: int
    email: str
    first_name: str
    company: str
    domain: str


@dataclass
class _Builder:
    session: Session
    rng: random.Random
    now: datetime
    summary: DemoSummary
    secret_key: str
    people: dict[str, list[_Person]] = field(default_factory=dict)
    tracker: ResponseTracker = field(default_factory=ResponseTracker)
    serial: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))

    def build(self, count: int) -> DemoSummary:
        self.session.add(
            AppSetting(key=DEMO_SETTING, value={"seed": self.summary.seed, "built_at": self.now.isoformat()})
        )
        self.session.add(AppSetting(key=POSTAL_ADDRESS_SETTING, value={"value": POSTAL}))
        self._prospects(count)
        for plan in PLANS:
            self._campaign(plan)
        touched = list(self.session.scalars(select(Enrollment.prospect_id).distinct()))
        refresh_scores(self.session, touched, self.now)
        self._operator_moves()
        self.session.flush()
        return self.summary

    # prospects and lists

    def _prospects(self, count: int) -> None:
        lists = {name: ProspectList(name=name, description=desc) for name, desc in _LISTS.items()}
        self.session.add_all(lists.values())
        rows = [self._prospect_row(i) for i in range(count)]
        self.session.add_all(rows)
        self.session.flush()
        for prospect in rows:
            industry = prospect.industry or ""
            person = _Person(prospect.id, prospect.email, prospect.first_name or "", prospect.company or "", "")
            person.domain = prospect.company_domain or ""
            names = ["Everyone (demo import)"]
            if industry == "fintech":
                names.append("Fintech CFOs")
            elif industry == "saas":
                names.append("SaaS leaders")
            elif industry in ("retail", "logistics") and prospect.timezone and prospect.timezone.startswith("Europe"):
                names.append("EU retail & logistics")
            for name in names:
                self.session.add(ProspectListMember(list_id=lists[name].id, prospect_id=prospect.id))
                self.people.setdefault(name, []).append(person)
            self.session.add(ProspectTag(prospect_id=prospect.id, tag=industry))
            if prospect.employee_count and prospect.employee_count >= 1000:
                self.session.add(ProspectTag(prospect_id=prospect.id, tag="enterprise"))
        self.session.flush()
        self.summary.prospects = count
        self.summary.lists = len(lists)

    def _prospect_row(self, index: int) -> Prospect:
        rng = self.rng
        industry = rng.choices(list(INDUSTRIES), weights=(26, 30, 10, 14, 12, 8))[0]
        stem = rng.choice(COMPANY_STEMS)
        company = f"{stem} {rng.choice(INDUSTRIES[industry])}"
        domain = f"{company.lower().replace(' ', '')}.{DEMO_DOMAIN}"
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        title, seniority = rng.choice(TITLES)
        if industry == "fintech" and rng.random() < 0.5:
            title, seniority = "CFO", "c-level"
        country, city, zone = rng.choice(PLACES)
        email = f"{first}.{last}.{index}@{domain}".lower()
        created = self.now - timedelta(days=DAYS + 5, minutes=index)
        return Prospect(
            email=email, email_normalized=email, first_name=first, last_name=last, title=title, seniority=seniority,
            company=company, company_domain=domain, website=f"https://www.{domain}", industry=industry,
            employee_count=rng.choice(SIZES), city=city, country=country, timezone=zone,
            linkedin_url=f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{index}",
            source="demo", created_at=created, updated_at=created,
        )  # fmt: skip

    # campaigns

    def _campaign(self, plan: CampaignPlan) -> None:
        definition = parse_definition(plan.yaml)
        manager = CampaignManager(self.session, secret_key=self.secret_key)
        ref = manager.create_campaign(definition)
        campaign = self.session.get(OutreachCampaign, ref.id)
        assert campaign is not None
        mailbox = manager.sending_mailboxes(campaign)[0]  # the capture mailbox: the demo sends nowhere real
        launched = self.now - timedelta(days=plan.launched_days_ago)
        campaign.state = CampaignState.FINISHED if plan.finished else CampaignState.RUNNING
        campaign.launched_at = launched
        campaign.created_at = launched - timedelta(days=1)
        steps = sorted(campaign.steps, key=lambda s: s.position)
        audience = self.people.get(plan.list_name, [])[: plan.audience]
        for index, person in enumerate(audience):
            start = launched + timedelta(days=index // plan.per_day, minutes=self.rng.randint(0, 7 * 60))
            self._enrollment(plan, campaign, steps, mailbox.id, person, start)
        if plan.finished:
            campaign.finished_at = self.now - timedelta(days=2)
        self.summary.campaigns += 1

    def _enrollment(
        self, plan: CampaignPlan, campaign: OutreachCampaign, steps: Sequence[Any], mailbox_id: int,
        person: _Person, start: datetime,
    ) -> None:  # fmt: skip
        enrollment = Enrollment(
            campaign_id=campaign.id, prospect_id=person.id, mailbox_id=mailbox_id, state=EnrollmentState.ACTIVE,
            next_step=0, next_due_at=start, created_at=start, updated_at=start,
        )  # fmt: skip
        self.session.add(enrollment)
        self.session.flush()
        due, previous, variant_name = start, None, None
        for position, step in enumerate(steps):
            if due >= self.now or enrollment.state is not EnrollmentState.ACTIVE:
                break
            variant = self._variant(step, person, variant_name)
            variant_name = variant_name or variant.name
            touch = self._touch(enrollment, step, variant, mailbox_id, person, due, previous)
            enrollment.next_step = position + 1
            if step.type is StepType.EMAIL:
                self._engage(plan, enrollment, touch, person, variant_name, first=position == 0)
                previous = touch
            due = due + timedelta(days=3 if position == 0 else 5, hours=self.rng.randint(-3, 3))
        self._settle(plan, enrollment, steps, due)

    def _variant(self, step: Any, person: _Person, chosen: str | None) -> Any:
        active = [v for v in step.variants if v.is_active]
        by_name = {v.name: v for v in active}
        if chosen in by_name:
            return by_name[chosen]
        return active[person.id % len(active)]

    def _touch(
        self, enrollment: Enrollment, step: Any, variant: Any, mailbox_id: int, person: _Person, when: datetime,
        previous: CommunicationLog | None,
    ) -> CommunicationLog:  # fmt: skip
        body = _fill(variant.body, person)
        email = step.type is StepType.EMAIL
        subject = _fill(variant.subject, person) if variant.subject else None
        if email and step.thread and previous is not None:
            subject = f"Re: {previous.subject}"
        touch = CommunicationLog(
            enrollment_id=enrollment.id, step_id=step.id, variant_id=variant.id,
            mailbox_id=mailbox_id if email else None, channel=step.type, due_at=when, created_at=when,
            updated_at=when, subject=subject, body_text=body + (f"\n\n--\n{POSTAL}" if email else ""),
            links=[u for u in body.split() if u.startswith("https://")],
            in_reply_to=previous.message_id if (email and step.thread and previous) else None,
        )  # fmt: skip
        if email:
            touch.state, touch.sent_at, touch.attempts = TouchState.SENT, when, 1
            touch.message_id = f"<demo-{next(self.serial)}.{person.id}@northwind-outreach.{DEMO_DOMAIN}>"
        self.session.add(touch)
        self.session.flush()
        self.summary.touches += 1
        if not email:
            self._task(enrollment, step, touch, person, when)
        return touch

    def _task(self, enrollment: Enrollment, step: Any, touch: CommunicationLog, person: _Person, due: datetime) -> None:
        done = due < self.now - timedelta(days=2) and self.rng.random() < 0.8
        task = Task(
            type=TaskType(step.type.value), prospect_id=person.id, campaign_id=enrollment.campaign_id,
            communication_id=touch.id, due_at=due, body=touch.body_text or "", created_at=due, updated_at=due,
            state=TaskState.DONE if done else TaskState.OPEN,
        )  # fmt: skip
        if done:
            task.completed_at = due + timedelta(hours=self.rng.randint(1, 30))
            task.outcome = self.rng.choice(("connected", "left a voicemail", "request accepted", "no answer"))
            touch.state, touch.sent_at = TouchState.SENT, task.completed_at
        else:
            touch.state = TouchState.QUEUED
        self.session.add(task)
        self.summary.tasks += 1

    # engagement: through the product's own recording paths

    def _engage(
        self, plan: CampaignPlan, enrollment: Enrollment, touch: CommunicationLog, person: _Person, variant: str,
        *, first: bool,
    ) -> None:  # fmt: skip
        rng, sent = self.rng, touch.sent_at or touch.due_at
        if first and rng.random() < plan.bounce_rate:
            self._bounce(touch, person, sent + timedelta(minutes=rng.randint(1, 20)))
            return
        hits: list[Hit] = []
        if rng.random() < 0.18:  # a privacy proxy or scanner fetches the pixel within seconds
            hits.append(Hit(EventKind.OPEN, touch.id, sent + timedelta(seconds=rng.randint(1, 8)), PROXY_AGENT, None))
        opened = rng.random() < plan.open_rate
        if opened:
            at = _capped(sent + timedelta(minutes=rng.randint(20, 60 * 36)), self.now)
            hits.append(Hit(EventKind.OPEN, touch.id, at, HUMAN_AGENT, "198.51.100.7"))
            if touch.links and rng.random() < plan.click_rate / plan.open_rate:
                click_at = _capped(at + timedelta(minutes=rng.randint(1, 15)), self.now)
                hits.append(Hit(EventKind.CLICK, touch.id, click_at, HUMAN_AGENT, None, link_index=0, method="GET"))
        if hits:
            record_hits(self.session, hits)
            self.summary.opens += sum(1 for h in hits if h.kind is EventKind.OPEN)
            self.summary.clicks += sum(1 for h in hits if h.kind is EventKind.CLICK)
        if rng.random() < plan.reply_rates.get(variant, 0.05):
            self._reply(touch, person, _capped(sent + timedelta(hours=rng.randint(2, 72)), self.now))
        elif opened and rng.random() < 0.012:
            unsubscribe(self.session, touch.id, now=_capped(sent + timedelta(hours=3), self.now), method="one-click")
            self.summary.unsubscribes += 1

    def _reply(self, touch: CommunicationLog, person: _Person, when: datetime) -> None:
        rng = self.rng
        if rng.random() < 0.12:
            text = rng.choice(OUT_OF_OFFICE).format(date=(when + timedelta(days=rng.randint(3, 12))).strftime("%B %d"))
            subject = f"Automatic reply: {touch.subject}"
        else:
            intent = rng.choices(list(INTENT_WEIGHTS), weights=list(INTENT_WEIGHTS.values()))[0]
            text = rng.choice(REPLIES[intent]).format(domain=person.domain)
            subject = f"Re: {touch.subject}"
        message = EmailMessage()
        message["From"] = f"{person.first_name} <{person.email}>"
        message["To"] = SENDER
        message["Subject"] = subject
        message["Date"] = format_datetime(when)
        message["Message-ID"] = f"<reply-{next(self.serial)}@{person.domain}>"
        message["In-Reply-To"] = touch.message_id or ""
        message["References"] = touch.message_id or ""
        if subject.startswith("Automatic reply"):
            message["Auto-Submitted"] = "auto-replied"
        message.set_content(f"{text}\n\n{person.first_name}")
        self.tracker.parse_response(self.session, bytes(message), when)
        self.summary.replies += 1

    def _bounce(self, touch: CommunicationLog, person: _Person, when: datetime) -> None:
        """A delivery status notification (RFC 3464) for a mailbox that does not exist."""
        boundary = f"dsn-{next(self.serial)}"
        notice = "\r\n".join(
            [
                f"From: Mail Delivery System <mailer-daemon@mx.{person.domain}>",
                f"To: {SENDER}",
                "Subject: Undelivered Mail Returned to Sender",
                f"Date: {format_datetime(when)}",
                f"Message-ID: <{boundary}@mx.{person.domain}>",
                "MIME-Version: 1.0",
                f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
                "",
                f"--{boundary}",
                "Content-Type: text/plain; charset=us-ascii",
                "",
                f"Your message to {person.email} could not be delivered: the mailbox does not exist.",
                f"--{boundary}",
                "Content-Type: message/delivery-status",
                "",
                f"Reporting-MTA: dns; mx.{person.domain}",
                "",
                f"Final-Recipient: rfc822; {person.email}",
                "Action: failed",
                "Status: 5.1.1",
                "Diagnostic-Code: smtp; 550 5.1.1 user unknown",
                "",
                f"--{boundary}",
                "Content-Type: text/rfc822-headers",
                "",
                f"Message-ID: {touch.message_id}",
                f"To: {person.email}",
                f"Subject: {touch.subject}",
                "",
                f"--{boundary}--",
                "",
            ]
        )
        self.tracker.parse_response(self.session, notice.encode("ascii", "replace"), when)
        self.summary.bounces += 1

    def _settle(self, plan: CampaignPlan, enrollment: Enrollment, steps: Sequence[Any], due: datetime) -> None:
        """An enrollment nothing stopped: finished, or (in a running campaign) waiting for its next step."""
        if enrollment.state is not EnrollmentState.ACTIVE:
            return
        if enrollment.next_step >= len(steps) or plan.finished:
            enrollment.state, enrollment.next_due_at = EnrollmentState.FINISHED, None
            return
        enrollment.next_due_at = max(due, self.now + timedelta(hours=self.rng.randint(2, 96)))

    def _operator_moves(self) -> None:
        """Some interested leads booked meetings and some of those were won or lost, as a team would record."""
        interested = list(
            self.session.scalars(
                select(ResponseAnalysis.prospect_id)
                .where(ResponseAnalysis.intent == "interested", ResponseAnalysis.prospect_id.is_not(None))
                .order_by(ResponseAnalysis.received_at)
            )
        )
        for prospect_id in interested:
            roll = self.rng.random()
            when = self.now - timedelta(days=self.rng.randint(0, 10))
            if roll < 0.5:
                update_lead_status(self.session, prospect_id, LeadStage.MEETING, "meeting booked", now=when, by="demo")
            if roll < 0.2:
                update_lead_status(self.session, prospect_id, LeadStage.WON, "signed a pilot", now=when, by="demo")
            elif 0.4 < roll < 0.5:
                update_lead_status(self.session, prospect_id, LeadStage.LOST, "chose a competitor", now=when, by="demo")


_LISTS = {
    "Everyone (demo import)": "Every generated prospect",
    "Fintech CFOs": "Finance leaders at fintech companies",
    "SaaS leaders": "Founders and executives at SaaS companies",
    "EU retail & logistics": "Retail and logistics companies in European time zones",
}


def _fill(template: str | None, person: _Person) -> str:
    """The demo's own templates use only these two fields."""
    text = template or ""
    return text.replace("{{ first_name }}", person.first_name).replace("{{ company }}", person.company)


def _capped(moment: datetime, now: datetime) -> datetime:
    return min(moment, now - timedelta(minutes=1))


def demo_counts(session: Session) -> dict[str, int]:
    """What the demo holds, counted from the database (the tests compare it with the summary)."""

    def count(model: Any, *where: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    return {
        "prospects": count(Prospect),
        "lists": count(ProspectList),
        "campaigns": count(OutreachCampaign),
        "touches": count(CommunicationLog),
        "opens": count(EngagementEvent, EngagementEvent.kind == EventKind.OPEN),
        "clicks": count(EngagementEvent, EngagementEvent.kind == EventKind.CLICK),
        "bounces": count(EngagementEvent, EngagementEvent.kind == EventKind.BOUNCE),
        "unsubscribes": count(EngagementEvent, EngagementEvent.kind == EventKind.UNSUBSCRIBE),
        "replies": count(ResponseAnalysis),
        "tasks": count(Task),
        "stopped_replied": count(Enrollment, Enrollment.stop_reason == StopReason.REPLIED),
    }
