"""Lead scores: decay halves points every half-life, reasons add up to the score, grades, fit, the outcome model."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from outreach.scoring import (
    MAX_COUNTED,
    IdealCustomerProfile,
    ProspectFacts,
    ScoringError,
    Signal,
    SignalKind,
    decay_factor,
    fit_outcome_model,
    format_points,
    grade_for,
    infer_seniority,
    score_lead,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ICP = IdealCustomerProfile(
    industries=("fintech",), title_keywords=("cfo", "finance"), seniorities=("c-level", "vp"),
    min_employees=50, max_employees=500,
)  # fmt: skip
CFO = ProspectFacts(industry="Fintech", title="CFO", seniority=None, employee_count=120)


def reply(intent: str, days: float) -> Signal:
    return Signal(SignalKind.REPLY, NOW - timedelta(days=days), intent=intent)


def engagement_points(signals: list[Signal], half_life: float = 14.0) -> float:
    return score_lead(ProspectFacts(), signals, IdealCustomerProfile(half_life_days=half_life), NOW).engagement


def test_a_signal_one_half_life_old_is_worth_half_its_points() -> None:
    assert engagement_points([reply("interested", 0)]) == 25
    assert engagement_points([reply("interested", 14)]) == 12.5
    assert engagement_points([reply("interested", 28)]) == pytest.approx(6.25, abs=0.05)
    assert engagement_points([reply("interested", 14)], half_life=7) == pytest.approx(6.25, abs=0.05)
    assert engagement_points([reply("interested", 7)], half_life=7) == 12.5


def test_decay_factor_is_exponential_and_ignores_the_future() -> None:
    for half_life in (0.5, 3, 14, 90):
        for age in (0.0, 1.0, 5.5, 40.0):
            assert decay_factor(age + half_life, half_life) == pytest.approx(decay_factor(age, half_life) / 2)
    assert decay_factor(-3, 14) == 1.0


def test_negative_signals_decay_toward_zero_too() -> None:
    assert engagement_points([reply("out_of_office", 0)]) == -10
    assert engagement_points([reply("out_of_office", 14)]) == -5


def test_reasons_add_up_to_the_score_whatever_the_signals() -> None:
    rng = random.Random(7)
    kinds = [SignalKind.OPEN, SignalKind.CLICK, SignalKind.REPLY, SignalKind.BOUNCE, SignalKind.MEETING]
    intents = ["interested", "question", "referral", "other", "out_of_office", "not_interested", "unsubscribe"]
    for _ in range(300):
        signals = [
            Signal(kind, NOW - timedelta(days=rng.uniform(0, 120)), intent=rng.choice(intents),
                   detail="https://acme.test/demo")
            for kind in rng.choices(kinds, k=rng.randint(0, 12))
        ]  # fmt: skip
        icp = IdealCustomerProfile(industries=("fintech",), half_life_days=rng.uniform(1, 60))
        scored = score_lead(CFO, signals, icp, NOW)
        assert round(sum(r.points for r in scored.reasons), 1) == scored.score
        assert round(scored.fit + scored.engagement, 1) == scored.score
        assert scored.grade == grade_for(scored.score)


def test_reasons_read_like_the_marketer_expects() -> None:
    signals = [
        reply("interested", 2),
        Signal(SignalKind.CLICK, NOW - timedelta(hours=3), detail="https://www.acme.test/demo?utm=x"),
        reply("out_of_office", 0.5),
    ]
    scored = score_lead(ProspectFacts(), signals, IdealCustomerProfile(half_life_days=1000 / 3), NOW)
    texts = [r.text for r in scored.reasons if r.part == "engagement"]
    assert "+5 clicked acme.test/demo today" in texts
    assert "−10 out of office today" in texts
    assert any(t.startswith("+24.9 positive reply 2 days ago") for t in texts)


def test_fit_scores_each_matching_part_of_the_profile() -> None:
    scored = score_lead(CFO, [], ICP, NOW)
    assert scored.fit == 20 + 15 + 10 + 15
    assert [r.text for r in scored.reasons] == [
        "+20 industry Fintech matches the ideal profile",
        "+15 title CFO contains “cfo”",
        "+10 seniority c-level is in the ideal profile",
        "+15 company size 120 is in 50–500 employees",
    ]
    outsider = ProspectFacts(industry="Retail", title="Store clerk", employee_count=10_000)
    assert score_lead(outsider, [], ICP, NOW).fit == 0


def test_industries_and_titles_match_whole_words_only() -> None:
    icp = IdealCustomerProfile(industries=("it", "banking & finance"), title_keywords=("cto",))
    assert score_lead(ProspectFacts(industry="Fintech"), [], icp, NOW).fit == 0
    assert score_lead(ProspectFacts(industry="IT Services"), [], icp, NOW).fit == 20
    assert score_lead(ProspectFacts(industry="Banking"), [], icp, NOW).fit == 20
    assert score_lead(ProspectFacts(title="Director"), [], icp, NOW).fit == 0  # "cto" inside "director"
    assert score_lead(ProspectFacts(title="CTO & co-founder"), [], icp, NOW).fit == 15


def test_without_a_profile_fit_is_not_scored_and_says_so() -> None:
    scored = score_lead(CFO, [], IdealCustomerProfile(), NOW)
    assert scored.fit == 0 and scored.score == 0 and scored.grade == "D"
    assert "no ideal customer profile" in scored.reasons[0].text


def test_seniority_is_read_from_the_title_when_missing() -> None:
    assert infer_seniority("VP Finance") == "vp"
    assert infer_seniority("Chief Financial Officer") == "c-level"
    assert infer_seniority("Head of Payments") == "director"
    assert infer_seniority("Accountant") == "individual"
    assert infer_seniority("Vpn engineer") == "individual"  # "vp" must be a word
    assert infer_seniority(None) is None


@pytest.mark.parametrize(
    ("score", "grade"),
    [(100, "A"), (60, "A"), (59.9, "B"), (35, "B"), (34.9, "C"), (15, "C"), (14.9, "D"), (0, "D"), (-40, "D")],
)
def test_grade_cut_offs(score: float, grade: str) -> None:
    assert grade_for(score) == grade


def test_only_the_newest_opens_count_and_the_rest_are_named() -> None:
    opens = [Signal(SignalKind.OPEN, NOW - timedelta(minutes=m)) for m in range(1, 8)]
    scored = score_lead(ProspectFacts(), opens, IdealCustomerProfile(), NOW)
    assert scored.engagement == 3 * MAX_COUNTED["open"]
    assert any(r.text == "0 for 4 older opens (the newest 3 count)" for r in scored.reasons)
    assert scored.features["human_opens"] == 7


def test_points_are_formatted_with_sign_and_a_real_minus() -> None:
    assert [format_points(p) for p in (25, 18.6, -10, 0, -0.4)] == ["+25", "+18.6", "−10", "0", "−0.4"]


def test_a_bad_profile_names_the_field() -> None:
    with pytest.raises(ScoringError, match="half-life"):
        IdealCustomerProfile.from_data({"half_life_days": 0})
    with pytest.raises(ScoringError, match="minimum"):
        IdealCustomerProfile.from_data({"min_employees": 500, "max_employees": 50})
    with pytest.raises(ScoringError, match="seniority"):
        IdealCustomerProfile.from_data({"seniorities": ["emperor"]})
    with pytest.raises(ScoringError, match="min employees"):
        IdealCustomerProfile.from_data({"min_employees": "lots"})
    assert IdealCustomerProfile.from_data(ICP.to_data()) == ICP


def test_the_outcome_model_waits_for_enough_outcomes() -> None:
    rows = [({"human_clicks": 1.0}, True)] * 5 + [({"human_clicks": 0.0}, False)] * 40
    fit = fit_outcome_model(rows, NOW)
    assert fit.model is None
    assert fit.message.startswith("not enough outcomes yet (5 of 20 meetings/won")


def test_the_outcome_model_learns_what_predicts_a_meeting_and_is_calibrated() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(800):
        clicks = float(rng.integers(0, 4))
        industry = float(rng.integers(0, 2))
        p = 1 / (1 + np.exp(-(-2.5 + 0.9 * clicks + 0.2 * industry)))
        rows.append(({"human_clicks": clicks, "fit_industry": industry}, bool(rng.random() < p)))
    fit = fit_outcome_model(rows, NOW)
    assert fit.model is not None
    coefficients = {c.feature: c for c in fit.model.coefficients}
    assert coefficients["human_clicks"].low < 0.9 < coefficients["human_clicks"].high
    assert coefficients["human_clicks"].low > 0
    assert "fit_title is the same for every lead: left out" in fit.notes
    predicted = np.mean([fit.model.probability(f) for f, _ in rows])
    assert predicted == pytest.approx(np.mean([o for _, o in rows]), abs=0.02)
    assert fit.model.probability({"human_clicks": 3}) > fit.model.probability({"human_clicks": 0})
