"""The dashboard's reads (outreach.workspace) on SQLite and PostgreSQL: counts, pages, filters, no secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from db.enums import (
    CampaignState,
    EnrollmentState,
    Intent,
    ResponseKind,
    StepType,
    SuppressionKind,
    SuppressionReason,
    TaskState,
    TaskType,
    TouchState,
)
from db.models import (
    CommunicationLog,
    Enrollment,
    Mailbox,
    MessageVariant,
    OutreachCampaign,
    Prospect,
    ProspectList,
    ProspectListMember,
    ResponseAnalysis,
    SequenceStep,
    Suppression,
    Task,
    WorkerHeartbeat,
)
from outreach import workspace
from outreach.config import load_settings
from outreach.users import create_user

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- builders ------------------------------------------------------------------------------------


def add_prospect(session: Session, email: str, *, created: datetime = NOW, **fields: object) -> Prospect:
    prospect = Prospect(email=email, email_normalized=email.lower(), created_at=created, **fields)
    session.add(prospect)
    session.flush()
    return prospect


def add_campaign(session: Session, name: str, variants_per_step: list[list[str]], **fields: object) -> OutreachCampaign:
    campaign = OutreachCampaign(name=name, **fields)
    for position, names in enumerate(variants_per_step):
        step = SequenceStep(position=position, type=StepType.EMAIL, delay_amount=position * 3)
        step.variants = [MessageVariant(name=n, subject=f"{{{{ company }}}} {n}", body=f"Hi {n}") for n in names]
        campaign.steps.append(step)
    session.add(campaign)
    session.flush()
    return campaign


def enroll(session: Session, campaign: OutreachCampaign, prospect: Prospect, state: EnrollmentState) -> Enrollment:
    enrollment = Enrollment(campaign_id=campaign.id, prospect_id=prospect.id, state=state)
    session.add(enrollment)
    session.flush()
    return enrollment


def add_touch(
    session: Session, enrollment: Enrollment, step: SequenceStep, variant: MessageVariant | None, state: TouchState
) -> CommunicationLog:
    sent = state in (TouchState.SENT, TouchState.BOUNCED)
    touch = CommunicationLog(
        enrollment_id=enrollment.id,
        step_id=step.id,
        variant_id=variant.id if variant else None,
        channel=StepType.EMAIL,
        state=state,
        due_at=NOW,
        sent_at=NOW if sent else None,
    )
    session.add(touch)
    session.flush()
    return touch


def add_reply(
    session: Session, message_id: str, kind: ResponseKind, *, touch: CommunicationLog | None = None, **fields: object
) -> ResponseAnalysis:
    reply = ResponseAnalysis(
        message_id=message_id, kind=kind, communication_id=touch.id if touch else None, received_at=NOW, **fields
    )
    session.add(reply)
    session.flush()
    return reply


# --- empty workspace -----------------------------------------------------------------------------


def test_an_empty_workspace_reads_as_zeros_and_empty_lists(session) -> None:
    totals = workspace.prospect_totals(session)
    assert (totals.prospects, totals.role_addresses, totals.disposable, totals.suppressions) == (0, 0, 0, 0)
    assert totals.lists == []
    assert workspace.find_prospects(session, None) == []
    assert workspace.campaign_summaries(session) == []
    assert set(workspace.inbound_counts(session).values()) == {0}
    assert workspace.open_task_rows(session, limit=10) == []
    assert workspace.worker_statuses(session, NOW) == []
    assert workspace.mailbox_rows(session) == []
    assert workspace.count_users(session) == 0


# --- prospects -----------------------------------------------------------------------------------


def test_prospect_totals_count_flags_suppressions_and_list_members(session) -> None:
    a = add_prospect(session, "a@acme.test", is_role_address=True)
    b = add_prospect(session, "b@acme.test", is_disposable=True)
    add_prospect(session, "c@acme.test")
    cfos, empty = ProspectList(name="cfos"), ProspectList(name="empty")
    session.add_all([cfos, empty])
    session.flush()
    session.add_all(
        [ProspectListMember(list_id=cfos.id, prospect_id=a.id), ProspectListMember(list_id=cfos.id, prospect_id=b.id)]
    )
    session.add(
        Suppression(
            kind=SuppressionKind.DOMAIN, value="spam.test", value_hash="h" * 64, reason=SuppressionReason.MANUAL
        )
    )
    session.flush()

    totals = workspace.prospect_totals(session)

    assert (totals.prospects, totals.role_addresses, totals.disposable, totals.suppressions) == (3, 1, 1, 1)
    assert [(item.name, item.members) for item in totals.lists] == [("cfos", 2), ("empty", 0)]


def test_prospect_search_matches_email_name_or_company_and_treats_wildcards_literally(session) -> None:
    add_prospect(session, "dana@bank.test", first_name="Dana", company="Big Bank", is_role_address=True)
    add_prospect(session, "sam@shop.test", first_name="Sam", last_name="Lee", company="100% Shop")
    add_prospect(session, "alex@other.test", company="Other")

    def found(search: str) -> list[str]:
        return [option.email for option in workspace.find_prospects(session, search)]

    assert found("BIG bank") == ["dana@bank.test"]
    assert found("lee") == ["sam@shop.test"]
    assert found("100%") == ["sam@shop.test"]
    assert found("%") == ["sam@shop.test"]  # '%' is a character, not "anything"
    assert found("_") == []
    assert found("") == ["alex@other.test", "dana@bank.test", "sam@shop.test"]


def test_prospect_picker_and_fields_include_custom_fields(session) -> None:
    dana = add_prospect(session, "dana@bank.test", first_name="Dana", custom_fields={"pain": "onboarding"})
    add_prospect(session, "sam@shop.test")

    [option] = workspace.find_prospects(session, "dana")
    fields = workspace.prospect_fields(session, dana.id)

    assert (option.id, option.email, option.name) == (dana.id, "dana@bank.test", "Dana")
    assert fields is not None and fields["first_name"] == "Dana" and fields["custom.pain"] == "onboarding"
    assert workspace.prospect_fields(session, dana.id + 1000) is None


# --- campaigns -----------------------------------------------------------------------------------


def test_campaign_summaries_count_steps_and_enrollments_by_state(session) -> None:
    running = add_campaign(session, "Fintech", [["A", "B"], ["A"], ["A"]], state=CampaignState.RUNNING)
    add_campaign(session, "Draft", [])
    people = [add_prospect(session, f"p{i}@acme.test") for i in range(4)]
    for person, state in zip(
        people, [EnrollmentState.ACTIVE, EnrollmentState.ACTIVE, EnrollmentState.STOPPED, EnrollmentState.FINISHED]
    ):
        enroll(session, running, person, state)

    by_name = {c.name: c for c in workspace.campaign_summaries(session)}

    assert by_name["Fintech"].state is CampaignState.RUNNING and by_name["Fintech"].steps == 3
    assert by_name["Fintech"].enrollments == {"active": 2, "paused": 0, "stopped": 1, "finished": 1}
    assert by_name["Draft"].steps == 0 and set(by_name["Draft"].enrollments.values()) == {0}


def test_campaign_touch_counts_are_folded_from_steps_into_their_own_campaign(session) -> None:
    first = add_campaign(session, "First", [["A", "B"], ["A"]], state=CampaignState.RUNNING)
    second = add_campaign(session, "Second", [["A"]], state=CampaignState.RUNNING)
    ada, bob = add_prospect(session, "ada@acme.test"), add_prospect(session, "bob@acme.test")
    a1, b1, b2 = (enroll(session, c, p, EnrollmentState.ACTIVE) for c, p in ((first, ada), (first, bob), (second, bob)))
    add_touch(session, a1, first.steps[0], first.steps[0].variants[0], TouchState.SENT)
    add_touch(session, a1, first.steps[1], first.steps[1].variants[0], TouchState.IN_DOUBT)
    add_touch(session, b1, first.steps[0], first.steps[0].variants[1], TouchState.BOUNCED)
    add_touch(session, b2, second.steps[0], second.steps[0].variants[0], TouchState.SENT)

    by_name = {c.name: c for c in workspace.campaign_summaries(session)}

    assert {k: v for k, v in by_name["First"].touches.items() if v} == {"sent": 1, "in_doubt": 1, "bounced": 1}
    assert {k: v for k, v in by_name["Second"].touches.items() if v} == {"sent": 1}
    assert list(by_name["First"].touches) == [state.value for state in TouchState]  # every state, in order
    assert by_name["Second"].enrollments["active"] == 1


def test_campaign_steps_show_raw_templates_in_order_and_enrollment_status(session) -> None:
    campaign = add_campaign(session, "Fintech", [["A", "B"], ["A"]])
    dana = add_prospect(session, "dana@bank.test")
    enroll(session, campaign, dana, EnrollmentState.ACTIVE)

    steps = workspace.campaign_steps(session, campaign.id)

    assert [s.position for s in steps] == [0, 1]
    assert [(v.name, v.subject, v.body) for v in steps[0].variants] == [
        ("A", "{{ company }} A", "Hi A"),
        ("B", "{{ company }} B", "Hi B"),
    ]
    assert steps[1].delay_amount == 3
    assert workspace.enrollment_of(session, campaign.id, dana.id)["state"] == "active"
    assert workspace.enrollment_of(session, campaign.id, dana.id + 1000) is None
    assert [c.name for c in workspace.campaign_options(session)] == ["Fintech"]


# --- inbox and tasks -----------------------------------------------------------------------------


def test_inbound_counts_and_rows_with_prospect_and_campaign(session) -> None:
    campaign = add_campaign(session, "Fintech", [["A"]])
    dana = add_prospect(session, "dana@bank.test")
    add_reply(
        session,
        "<r1@x>",
        ResponseKind.REPLY,
        prospect_id=dana.id,
        campaign_id=campaign.id,
        intent=Intent.INTERESTED,
        sentiment=0.8,
        subject="Re: idea",
    )
    add_reply(session, "<b1@x>", ResponseKind.BOUNCE, subject="Undeliverable")
    add_reply(session, "<u1@x>", ResponseKind.UNMATCHED)

    counts = workspace.inbound_counts(session)
    replies = workspace.inbound_rows(session, limit=10, kind=ResponseKind.REPLY)

    assert counts == {"reply": 1, "auto_reply": 0, "bounce": 1, "unmatched": 1}
    assert len(replies) == 1
    assert replies[0] | {"received": None} == {
        "received": None,
        "kind": "reply",
        "intent": "interested",
        "sentiment": 0.8,
        "from": "",
        "subject": "Re: idea",
        "prospect": "dana@bank.test",
        "campaign": "Fintech",
    }
    assert len(workspace.inbound_rows(session, limit=2)) == 2


def test_open_tasks_only_open_ones_soonest_first(session) -> None:
    dana = add_prospect(session, "dana@bank.test", first_name="Dana", company="Big Bank")
    session.add_all(
        [
            Task(type=TaskType.CALL, prospect_id=dana.id, due_at=NOW + timedelta(days=2), body="call later"),
            Task(type=TaskType.LINKEDIN, prospect_id=dana.id, due_at=NOW, body="connect"),
            Task(type=TaskType.CALL, prospect_id=dana.id, due_at=NOW, state=TaskState.DONE, body="done already"),
        ]
    )
    session.flush()

    rows = workspace.open_task_rows(session, limit=10)

    assert [r["instructions"] for r in rows] == ["connect", "call later"]
    assert rows[0]["prospect"] == "dana@bank.test" and rows[0]["name"] == "Dana" and rows[0]["type"] == "linkedin"
    assert workspace.count_open_tasks(session) == 2


# --- settings ------------------------------------------------------------------------------------


def test_workspace_info_shows_where_the_secret_key_comes_from_never_the_key(tmp_path: Path) -> None:
    key = "k" * 48
    env = {
        "OUTREACH_DATA_DIR": str(tmp_path),
        "OUTREACH_DATABASE_URL": "postgresql://outreach:hunter2-secret@db.internal:5432/outreach",
        "OUTREACH_SECRET_KEY": key,
    }

    info = workspace.workspace_info(load_settings(env))
    text = repr(info)

    assert "hunter2-secret" not in text and key not in text
    assert info.database == "postgresql+psycopg://outreach:***@db.internal:5432/outreach"
    assert "OUTREACH_SECRET_KEY" in info.secret_key_source


def test_workspace_info_names_the_key_file_when_the_key_is_generated(tmp_path: Path) -> None:
    settings = load_settings({"OUTREACH_DATA_DIR": str(tmp_path)})
    assert "on first use" in workspace.workspace_info(settings).secret_key_source
    key = settings.secret_key()

    info = workspace.workspace_info(settings)

    assert str(tmp_path / "secret_key") in info.secret_key_source and key not in repr(info)


def test_worker_statuses_say_alive_or_stale(session) -> None:
    session.add_all(
        [
            WorkerHeartbeat(
                worker_id="fresh", hostname="h", pid=1, started_at=NOW, last_seen_at=NOW - timedelta(seconds=20)
            ),
            WorkerHeartbeat(
                worker_id="gone", hostname="h", pid=2, started_at=NOW, last_seen_at=NOW - timedelta(minutes=10)
            ),
        ]
    )
    session.flush()

    statuses = workspace.worker_statuses(session, NOW)

    assert [(w.worker_id, w.seconds_ago, w.alive) for w in statuses] == [("fresh", 20, True), ("gone", 600, False)]


def test_mailboxes_show_password_variable_names_only(session) -> None:
    session.add(
        Mailbox(
            name="sales-1",
            from_address="dana@sender.test",
            smtp_host="smtp.test",
            smtp_port=587,
            smtp_user="dana",
            password_env="SALES1_SMTP_PASSWORD",
            imap_host="imap.test",
            imap_port=993,
        )
    )
    session.flush()

    [row] = workspace.mailbox_rows(session)

    assert row["password env var"] == "SALES1_SMTP_PASSWORD"
    assert row["smtp"] == "smtp.test:587" and row["imap"] == "imap.test:993"
    assert not any("password" in key and key != "password env var" for key in row)


def test_count_users(session) -> None:
    create_user(session, "dana", "correct horse battery")
    assert workspace.count_users(session) == 1
