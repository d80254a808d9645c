"""Experiments in the database: looks recorded once, promotion stops losers, Thompson is preview = send, CLI JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from db.engine import dispose_engines, transaction
from db.enums import EventKind, ExperimentAction, TouchState
from db.models import (
    CommunicationLog,
    EngagementEvent,
    Enrollment,
    ExperimentDecision,
    MessageVariant,
    Prospect,
    ProspectList,
    ProspectListMember,
)
from outreach import experiments
from outreach.campaigns import CampaignManager, engagement_counts, find_campaign
from outreach.cli import app as cli_app
from outreach.preview import preview
from outreach.sequence import DefinitionError, parse_definition, to_yaml
from tests.dashboard_helpers import (
    app_database,
    app_factory,
    assert_ok,
    button,
    keep_steady_state,
    logged_in_app,
    open_page,
    texts,
)
from tests.factories import mailbox

KEY = "k" * 48
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# baseline 10%, mde 40 points: the plan is 19 sends per variant, so a test reaches it with a few dozen rows
SMALL_PLAN = "{mde: 0.4, baseline: 0.1"


def campaign_yaml(experiment: str, name: str = "AB") -> str:
    return f"""
name: {name}
audience: {{list: ab-list}}
mailboxes: [sales-1]
postal_address: "Outreach Inc, 1 Main St, Springfield"
schedule: {{timezone: UTC, window: "00:00-24:00", days: [mon, tue, wed, thu, fri, sat, sun]}}
tracking: {{opens: true, clicks: true}}
experiment: {experiment}
steps:
  - type: email
    variants:
      - {{name: A, subject: "Idea for {{{{ company }}}}", body: "Hi A"}}
      - {{name: B, subject: "{{{{ company }}}} + us", body: "Hi B"}}
"""


def launch(session: Session, experiment: str, people: int) -> CampaignManager:
    mailbox(session)
    lst = ProspectList(name="ab-list")
    session.add(lst)
    session.flush()
    rows = [{"email": f"p{i}@acme.test", "email_normalized": f"p{i}@acme.test", "company": "Acme"}
            for i in range(people)]  # fmt: skip
    ids = list(session.execute(insert(Prospect).returning(Prospect.id), rows).scalars())
    session.execute(insert(ProspectListMember), [{"list_id": lst.id, "prospect_id": pid} for pid in ids])
    manager = CampaignManager(session, secret_key=KEY)
    manager.create_campaign(parse_definition(campaign_yaml(experiment)))
    manager.launch(find_campaign(session, "AB"), T0)
    return manager


def plan(session: Session, limit: int, now: datetime) -> Counter[str]:
    """One planner tick of `limit` enrollments; the variants it assigned."""
    before = set(session.scalars(select(CommunicationLog.id)))
    CampaignManager(session, secret_key=KEY).schedule_communications(now, limit=limit)
    rows = session.execute(
        select(MessageVariant.name).join(CommunicationLog, CommunicationLog.variant_id == MessageVariant.id)
        .where(CommunicationLog.id.not_in(before) if before else CommunicationLog.id.is_not(None))
    ).scalars()  # fmt: skip
    return Counter(rows)


def send_all_and_reply(session: Session, replies: dict[str, int], now: datetime) -> None:
    """Queued touches become sent; the first `replies[name]` sent touches without a reply get one."""
    session.execute(
        update(CommunicationLog)
        .where(CommunicationLog.state == TouchState.QUEUED)
        .values(state=TouchState.SENT, sent_at=now)
    )
    campaign = find_campaign(session, "AB")
    for name, count in replies.items():
        touches = session.scalars(
            select(CommunicationLog)
            .join(MessageVariant, MessageVariant.id == CommunicationLog.variant_id)
            .where(MessageVariant.name == name, ~CommunicationLog.id.in_(select(EngagementEvent.communication_id)))
            .order_by(CommunicationLog.id)
            .limit(count)
        ).all()
        assert len(touches) == count
        session.add_all(
            EngagementEvent(
                kind=EventKind.REPLY,
                campaign_id=campaign.id,
                communication_id=t.id,
                enrollment_id=t.enrollment_id,
                occurred_at=now,
            )
            for t in touches
        )
    session.flush()


def decisions(session: Session) -> list[ExperimentDecision]:
    return list(session.scalars(select(ExperimentDecision).order_by(ExperimentDecision.id)))


# --- no peeking, recording, promotion --------------------------------------------------------------


def test_before_the_plan_nothing_is_decided_and_assignment_stays_balanced(session) -> None:
    launch(session, SMALL_PLAN + ", auto_promote: true}", people=40)
    assert plan(session, 30, T0 + timedelta(minutes=5)) == {"A": 15, "B": 15}
    send_all_and_reply(session, {"A": 0, "B": 12}, T0 + timedelta(hours=1))  # striking, but 15 < 19 planned
    assert plan(session, 10, T0 + timedelta(hours=2)) == {"A": 5, "B": 5}
    assert decisions(session) == []
    ab = engagement_counts(session, find_campaign(session, "AB"))["steps"][0]["ab"]
    assert (ab["status"], ab["significant"], ab["winner"]) == ("collecting", False, None)
    assert ab["p_value"] < 0.05  # the current p-value is reported, but decides nothing before the plan
    assert ab["planned_per_variant"] == 19 and ab["needed_per_variant"] == {"A": 4, "B": 4}


def test_auto_promotion_records_the_decision_and_stops_assigning_the_loser(session) -> None:
    launch(session, SMALL_PLAN + ", auto_promote: true}", people=80)
    assert plan(session, 40, T0 + timedelta(minutes=5)) == {"A": 20, "B": 20}
    send_all_and_reply(session, {"A": 1, "B": 12}, T0 + timedelta(hours=1))

    assert plan(session, 20, T0 + timedelta(hours=2)) == {"B": 20}

    [decision] = decisions(session)
    assert (decision.action, decision.winner, decision.stopped, decision.decided_by) == (
        ExperimentAction.PROMOTED, "B", ["A"], "auto",
    )  # fmt: skip
    assert decision.p_value is not None and decision.p_value < 0.05 and decision.look == 1
    assert decision.created_at == T0 + timedelta(hours=2)
    assert decision.counts == [{"name": "A", "sent": 20, "successes": 1}, {"name": "B", "sent": 20, "successes": 12}]
    assert "A stopped automatically" in decision.reason
    # re-applying the definition (which re-activates its variants) does not bring the loser back
    CampaignManager(session, secret_key=KEY).create_campaign(parse_definition(campaign_yaml(SMALL_PLAN + "}")))
    assert plan(session, 20, T0 + timedelta(hours=3)) == {"B": 20}
    assert len(decisions(session)) == 1  # the final decision is taken once
    ab = engagement_counts(session, find_campaign(session, "AB"))["steps"][0]["ab"]
    assert ab["significant"] and ab["winner"] == "B" and ab["stopped"] == ["A"]
    assert ab["p_value"] == pytest.approx(decision.p_value)  # frozen at the decision, not re-tested


def test_without_auto_promotion_the_winner_is_logged_and_the_operator_promotes(session) -> None:
    launch(session, SMALL_PLAN + "}", people=70)
    plan(session, 40, T0 + timedelta(minutes=5))
    send_all_and_reply(session, {"A": 1, "B": 12}, T0 + timedelta(hours=1))
    assert plan(session, 10, T0 + timedelta(hours=2)) == {"A": 5, "B": 5}  # still both
    [winner] = decisions(session)
    assert (winner.action, winner.winner, winner.stopped) == (ExperimentAction.WINNER, "B", [])

    step_id = find_campaign(session, "AB").steps[0].id
    found = experiments.promote(session, step_id, by="dana", now=T0 + timedelta(hours=3))
    assert found.stopped == {"A"}
    assert plan(session, 10, T0 + timedelta(hours=4)) == {"B": 10}
    promoted = decisions(session)[-1]
    assert (promoted.action, promoted.decided_by, promoted.stopped) == (ExperimentAction.PROMOTED, "dana", ["A"])
    with pytest.raises(experiments.ExperimentError, match="already promoted"):
        experiments.promote(session, step_id, by="dana", now=T0 + timedelta(hours=5))


def test_promotion_is_refused_while_collecting(session) -> None:
    launch(session, SMALL_PLAN + "}", people=10)
    plan(session, 10, T0 + timedelta(minutes=5))
    send_all_and_reply(session, {"B": 5}, T0 + timedelta(hours=1))
    with pytest.raises(experiments.ExperimentError, match="not significant at plan"):
        experiments.promote(session, find_campaign(session, "AB").steps[0].id, by="dana", now=T0)
    assert decisions(session) == []


def test_sequential_design_records_each_look_once(session) -> None:
    launch(session, SMALL_PLAN + ", design: sequential, looks: 2}", people=60)
    planned = experiments.review(session, find_campaign(session, "AB"), find_campaign(session, "AB").steps[0])
    first_look = -(-planned.analysis.planned_per_variant // 2)
    plan(session, 2 * first_look, T0 + timedelta(minutes=5))
    send_all_and_reply(session, {"A": 2, "B": 4}, T0 + timedelta(hours=1))
    plan(session, 2, T0 + timedelta(hours=2))
    plan(session, 2, T0 + timedelta(hours=3))
    [look] = decisions(session)
    assert (look.action, look.look) == (ExperimentAction.CONTINUE, 1)
    assert look.p_value is not None and look.p_value > look.alpha  # did not cross O'Brien-Fleming's bound
    ab = engagement_counts(session, find_campaign(session, "AB"))["steps"][0]["ab"]
    assert ab["status"] == "collecting" and ab["winner"] is None and ab["look"] == 1


def test_open_rate_counts_human_opens_only_and_carries_the_warning(session) -> None:
    launch(session, "{metric: open_rate}", people=10)
    plan(session, 10, T0 + timedelta(minutes=5))
    send_all_and_reply(session, {}, T0 + timedelta(hours=1))
    campaign = find_campaign(session, "AB")
    touches = session.scalars(select(CommunicationLog).order_by(CommunicationLog.id)).all()
    by_variant = {v.id: v.name for v in campaign.steps[0].variants}
    session.add_all(
        EngagementEvent(
            kind=EventKind.OPEN,
            campaign_id=campaign.id,
            communication_id=t.id,
            is_machine=by_variant[t.variant_id] == "A",
        )
        for t in touches
    )
    session.flush()
    found = experiments.review(session, campaign, campaign.steps[0])
    assert [(a.name, a.sent, a.successes) for a in found.arms] == [("A", 5, 0), ("B", 5, 5)]
    ab = engagement_counts(session, campaign)["steps"][0]["ab"]
    assert ab["metric"] == "open_rate" and ab["warning"].startswith("Opens are unreliable")
    assert [v["rate"] for v in ab["variants"]] == [0.0, 1.0]


# --- Thompson sampling -----------------------------------------------------------------------------


def test_thompson_allocation_is_deterministic_favours_the_leader_and_preview_shows_the_send(session, data_env) -> None:
    launch(session, "{allocation: thompson}", people=90)
    first = plan(session, 30, T0 + timedelta(minutes=5))
    send_all_and_reply(session, {"A": 0, "B": first["B"] * 2 // 3}, T0 + timedelta(hours=1))
    campaign = find_campaign(session, "AB")
    waiting = session.scalars(
        select(Prospect.email)
        .join(Enrollment, Enrollment.prospect_id == Prospect.id)
        .where(~Enrollment.id.in_(select(CommunicationLog.enrollment_id)))
        .order_by(Prospect.id)
    ).all()
    shown = {email: preview(session, "AB", email, T0, secret_key=KEY).variant for email in waiting[:20]}
    assigned = plan(session, 60, T0 + timedelta(hours=2))
    assert assigned["B"] > 45  # P(B best) ≈ 1 after 0/15 vs 9/15
    for email, variant in shown.items():
        touch = session.scalar(
            select(MessageVariant.name)
            .join(CommunicationLog, CommunicationLog.variant_id == MessageVariant.id)
            .join(Enrollment, Enrollment.id == CommunicationLog.enrollment_id)
            .join(Prospect, Prospect.id == Enrollment.prospect_id)
            .where(Prospect.email == email)
        )
        assert touch == variant, email
    step = campaign.steps[0]
    found = experiments.review(session, campaign, step)
    again = [experiments.choose_variant(found, list(step.variants), {}, f"{step.id}:{i}").name for i in range(50)]
    assert again == [experiments.choose_variant(found, list(step.variants), {}, f"{step.id}:{i}").name
                     for i in range(50)]  # fmt: skip


# --- the definition ----------------------------------------------------------------------------------


def test_experiment_settings_validate_and_round_trip() -> None:
    text = campaign_yaml("{metric: click_rate, mde: 0.02, design: sequential, looks: 4, allocation: thompson}")
    definition = parse_definition(text)
    assert definition.experiment.looks == 4 and str(definition.experiment.metric) == "click_rate"
    assert parse_definition(to_yaml(definition)) == definition
    with pytest.raises(DefinitionError) as bad:
        parse_definition(
            campaign_yaml("{metric: open_rate, mde: 0.9, peek: true}").replace("opens: true", "opens: false")
        )
    problems = {p.path: p.message for p in bad.value.problems}
    assert "open_rate needs tracking.opens: true" in problems["experiment.metric"]
    assert 'unknown key "peek"' in problems["experiment.peek"]
    with pytest.raises(DefinitionError, match=r"experiment.*baseline \+ mde must stay below 1"):
        parse_definition(campaign_yaml("{mde: 0.9, baseline: 0.2}"))


# --- the command line --------------------------------------------------------------------------------


@pytest.fixture
def cli(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("OUTREACH_DATABASE_URL", db_url)
    yield CliRunner()
    dispose_engines()


def test_stats_json_carries_the_contract_ab_object(engine: Engine, cli: CliRunner) -> None:
    with transaction(engine) as session:
        launch(session, SMALL_PLAN + "}", people=40)
        plan(session, 40, T0 + timedelta(minutes=5))
        send_all_and_reply(session, {"A": 2, "B": 11}, T0 + timedelta(hours=1))

    result = cli.invoke(cli_app, ["stats", "AB", "--json"])

    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    [step] = data["steps"]
    ab = step["ab"]
    assert {"metric", "test", "p_value", "significant", "winner", "variants"} <= set(ab)
    assert (ab["metric"], ab["test"], ab["significant"], ab["winner"]) == (
        "reply_rate", "two-proportion z-test", True, "B",
    )  # fmt: skip
    assert 0 < ab["p_value"] < 0.05
    assert [{k: v[k] for k in ("name", "sent", "replied")} for v in ab["variants"]] == [
        {"name": "A", "sent": 20, "replied": 2}, {"name": "B", "sent": 20, "replied": 11},
    ]  # fmt: skip
    for v in ab["variants"]:
        assert set(v) == {"name", "sent", "replied", "rate", "ci_low", "ci_high"}
        assert v["ci_low"] <= v["rate"] == v["replied"] / v["sent"] <= v["ci_high"]
    assert [v["replied"] for v in step["variants"]] == [2, 11]
    assert ab["status"] == "significant" and ab["planned_per_variant"] == 19
    human = cli.invoke(cli_app, ["stats", "AB"])
    assert "A/B (significant): B wins: B replies 55.0%" in human.stdout


# --- the page ----------------------------------------------------------------------------------------


@pytest.fixture
def app_db(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    keep_steady_state(monkeypatch)
    yield from app_database(db_url, monkeypatch)


def test_page_explains_the_verdict_shows_intervals_and_log_and_promotes(app_db: Engine) -> None:
    with transaction(app_db) as session:
        launch(session, SMALL_PLAN + "}", people=50)
        plan(session, 40, T0 + timedelta(minutes=5))
        send_all_and_reply(session, {"A": 1, "B": 12}, T0 + timedelta(hours=1))
        plan(session, 4, T0 + timedelta(hours=2))  # the planner reads the test at plan and logs the winner
        opens = campaign_yaml("{metric: open_rate}", name="Opens")
        CampaignManager(session, secret_key=KEY).create_campaign(parse_definition(opens))

    at = open_page(logged_in_app(app_factory(), app_db), "experiments")

    [verdict] = [s.value for s in at.success]
    assert verdict.startswith("B wins: B replies 60.0% [") and "vs A 5.0% [" in verdict
    assert "< 0.05 (z-test); planned 19 per variant reached" in verdict
    assert any(w.value.startswith("Opens are unreliable") for w in at.warning)
    assert any(i.value.startswith("Collecting (no peeking)") for i in at.info)
    assert len(at.get("plotly_chart")) == 2
    progress = at.get("progress")
    assert len(progress) == 2 and "Smallest variant 20 of 19 planned sends" in progress[0].proto.text
    variants, log = at.dataframe[0].value, at.dataframe[1].value
    assert list(variants["variant"]) == ["A", "B"] and list(variants["sent"]) == [20, 20]
    assert list(variants["replied"]) == [1, 12] and list(variants["assigned"]) == ["active", "active"]
    assert list(log["decision"]) == ["winner"] and list(log["who"]) == ["auto"]
    assert "Metric reply rate · minimum detectable effect 40 points" in texts(at)

    button(at, "Stop A and send B").click().run()

    assert_ok(at)
    assert any("A stopped in AB, step 1" in s.value for s in at.success)
    variants, log = at.dataframe[0].value, at.dataframe[1].value
    assert list(variants["assigned"]) == ["stopped", "active"]
    assert list(log["decision"]) == ["winner", "promoted"] and list(log["who"]) == ["auto", "dana"]
    assert not [b for b in at.button if b.label.startswith("Stop ")]
