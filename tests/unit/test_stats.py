"""outreach.stats against statsmodels/scipy references, hand-checked numbers, properties, no peeking, Thompson."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, multivariate_normal, norm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize, proportions_ztest

from outreach.stats import (
    CHI_SQUARE,
    Z_TEST,
    Arm,
    Plan,
    achieved_power,
    chi_square,
    evaluate,
    holm_pairwise,
    obf_boundaries,
    obf_spending,
    planned_per_variant,
    probability_best,
    sequential_inflation,
    thompson_pick,
    wilson,
    z_test,
)

# --- reference values ------------------------------------------------------------------------------


def test_wilson_interval_matches_the_textbook_formula() -> None:
    # 10 of 100 at 95%: p=0.1, z=1.959964; centre (p + z²/2n)/(1 + z²/n), half-width z√(p(1-p)/n + z²/4n²)/(1 + z²/n)
    z = norm.ppf(0.975)
    n, p = 100, 0.1
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = wilson(10, 100)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)  # hand-checked


def test_z_test_equals_statsmodels_and_the_hand_computed_pooled_statistic() -> None:
    a, b = Arm("A", 800, 18), Arm("B", 800, 33)
    _stat, reference = proportions_ztest([18, 33], [800, 800])
    pooled = 51 / 1600
    z = (33 / 800 - 18 / 800) / math.sqrt(pooled * (1 - pooled) * (2 / 800))
    assert z_test(a, b) == pytest.approx(reference, rel=1e-12)
    assert z_test(a, b) == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    assert round(z_test(a, b), 4) == 0.0328


def test_chi_square_equals_scipy_contingency_without_correction() -> None:
    arms = [Arm("A", 500, 10), Arm("B", 480, 25), Arm("C", 510, 14)]
    table = np.array([[a.successes, a.sent - a.successes] for a in arms])
    _chi2, reference, _dof, _expected = chi2_contingency(table, correction=False)
    assert chi_square(arms) == pytest.approx(reference, rel=1e-10)


def test_two_arm_chi_square_and_z_test_agree() -> None:
    arms = [Arm("A", 300, 9), Arm("B", 310, 21)]
    assert chi_square(arms) == pytest.approx(z_test(*arms), rel=1e-9)


def test_holm_pairwise_equals_multipletests() -> None:
    arms = [Arm("A", 900, 20), Arm("B", 900, 45), Arm("C", 900, 28)]
    pairs = holm_pairwise(arms, 0.05)
    raw = [proportions_ztest([x.successes, y.successes], [x.sent, y.sent])[1] for x, y in [(arms[0], arms[1]),
           (arms[0], arms[2]), (arms[1], arms[2])]]  # fmt: skip
    reject, corrected, _s, _b = multipletests(raw, alpha=0.05, method="holm")
    assert [(p.first, p.second) for p in pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    assert [p.p_value for p in pairs] == pytest.approx(raw)
    assert [p.p_holm for p in pairs] == pytest.approx(list(corrected))
    assert [p.significant for p in pairs] == list(reject)
    # Holm by hand: the smallest raw p times 3, the next times 2 (kept monotone), the largest times 1
    order = np.argsort(raw)
    by_hand = np.maximum.accumulate([raw[i] * (3 - rank) for rank, i in enumerate(order)])
    assert sorted(p.p_holm for p in pairs) == pytest.approx(list(np.minimum(by_hand, 1)))


def test_planned_sample_equals_normal_ind_power() -> None:
    plan = Plan(mde=0.05, baseline=0.05, alpha=0.05, power=0.8)
    effect = proportion_effectsize(0.10, 0.05)
    reference = NormalIndPower().solve_power(effect_size=effect, alpha=0.05, power=0.8, ratio=1)
    assert planned_per_variant(plan) == math.ceil(reference) == 424
    # by hand: n = 2 (z_.975 + z_.8)² / h² with Cohen's h = 2 asin √.10 − 2 asin √.05
    h = 2 * math.asin(math.sqrt(0.10)) - 2 * math.asin(math.sqrt(0.05))
    by_hand = 2 * (norm.ppf(0.975) + norm.ppf(0.8)) ** 2 / h**2
    assert reference == pytest.approx(by_hand, rel=1e-5)  # the far tail adds ~1e-6
    # three variants: planned for the strictest Holm step, alpha / 3 pairs
    three = NormalIndPower().solve_power(effect_size=effect, alpha=0.05 / 3, power=0.8, ratio=1)
    assert planned_per_variant(plan, 3) == math.ceil(three)


def test_achieved_power_equals_normal_ind_power_and_reaches_the_plan_at_the_plan() -> None:
    plan = Plan()
    effect = proportion_effectsize(0.10, 0.05)
    assert achieved_power(plan, 200) == pytest.approx(NormalIndPower().power(effect, 200, 0.05, ratio=1))
    assert achieved_power(plan, planned_per_variant(plan)) >= 0.8 > achieved_power(plan, 300)


# --- sequential design -----------------------------------------------------------------------------


def test_obf_boundaries_spend_exactly_the_planned_alpha_per_look() -> None:
    """Reference: scipy's multivariate normal over the looks' joint distribution, corr(Z_i, Z_j) = √(t_i/t_j)."""
    looks = 3
    bounds = np.array(obf_boundaries(looks, 0.05))
    times = np.arange(1, looks + 1) / looks
    cov = np.sqrt(np.minimum.outer(times, times) / np.maximum.outer(times, times))
    assert bounds[0] == pytest.approx(norm.ppf(0.975) / math.sqrt(1 / 3), rel=1e-6)  # 1.96 √3 = 3.395
    for k in (2, 3):
        stay = multivariate_normal(mean=np.zeros(k), cov=cov[:k, :k]).cdf(bounds[:k], lower_limit=-bounds[:k], rng=7)
        assert 1 - stay == pytest.approx(obf_spending(times[k - 1], 0.05), abs=2e-5)
    assert [round(b, 3) for b in bounds] == [3.395, 2.407, 2.015]
    assert bounds[0] > bounds[1] > bounds[2] > norm.ppf(0.975)  # strict early, close to 1.96 at the end


def test_sequential_design_keeps_alpha_and_power_in_simulation() -> None:
    looks, alpha, power = 3, 0.05, 0.8
    bounds = np.array(obf_boundaries(looks, alpha))
    times = np.arange(1, looks + 1) / looks
    drift = (norm.ppf(1 - alpha / 2) + norm.ppf(power)) * math.sqrt(sequential_inflation(looks, alpha, power))
    rng = np.random.default_rng(11)
    steps = rng.normal(size=(200_000, looks)) * math.sqrt(1 / looks)
    null_z = np.cumsum(steps, axis=1) / np.sqrt(times)
    alt_z = np.cumsum(steps + drift / looks, axis=1) / np.sqrt(times)
    assert (np.abs(null_z) >= bounds).any(axis=1).mean() == pytest.approx(alpha, abs=0.003)
    assert (np.abs(alt_z) >= bounds).any(axis=1).mean() == pytest.approx(power, abs=0.005)
    assert 1.0 < sequential_inflation(looks, alpha, power) < 1.05  # O'Brien-Fleming costs little


def test_sequential_plan_is_the_fixed_plan_inflated() -> None:
    fixed, sequential = Plan(), Plan(sequential=True, looks=3)
    assert planned_per_variant(sequential) == math.ceil(
        NormalIndPower().solve_power(proportion_effectsize(0.1, 0.05), alpha=0.05, power=0.8)
        * sequential_inflation(3, 0.05, 0.8)
    )
    assert planned_per_variant(sequential) > planned_per_variant(fixed)


# --- no peeking ------------------------------------------------------------------------------------


def test_fixed_design_says_collecting_before_the_plan_however_large_the_difference() -> None:
    plan = Plan()
    early = evaluate([Arm("A", 200, 2), Arm("B", 200, 40)], plan)  # p would be ~1e-9
    assert (early.status, early.significant, early.winner) == ("collecting", False, None)
    assert early.p_value == pytest.approx(proportions_ztest([2, 40], [200, 200])[1])  # reported, decides nothing
    assert early.needed_per_variant == {"A": 224, "B": 224}
    assert "no peeking" in early.explanation and "424" in early.explanation
    uneven = evaluate([Arm("A", 500, 5), Arm("B", 423, 40)], plan)  # the smallest variant decides
    assert uneven.status == "collecting" and uneven.needed_per_variant == {"A": 0, "B": 1}


def test_fixed_design_reads_the_test_once_at_plan() -> None:
    at_plan = evaluate([Arm("A", 424, 12), Arm("B", 424, 34)], Plan())
    assert at_plan.status == "significant" and at_plan.winner == "B" and at_plan.losers == ("A",)
    assert at_plan.p_value == pytest.approx(proportions_ztest([12, 34], [424, 424])[1])
    assert at_plan.explanation.startswith("B wins: B replies 8.0% [")
    assert "p=0.00" in at_plan.explanation and "< 0.05 (z-test); planned 424 per variant reached" in at_plan.explanation
    same = evaluate([Arm("A", 424, 20), Arm("B", 424, 22)], Plan())
    assert (same.status, same.significant, same.winner) == ("no_difference", False, None)
    assert same.explanation.startswith("No significant difference at plan")


def test_sequential_design_stops_early_only_past_the_boundary() -> None:
    plan = Plan(sequential=True, looks=3)
    planned = planned_per_variant(plan)
    first_look = math.ceil(planned / 3)
    before = evaluate([Arm("A", first_look - 1, 0), Arm("B", first_look - 1, 30)], plan)
    assert before.status == "collecting" and not before.significant and before.winner is None
    # at the first look p≈0.003 would pass a fixed 0.05 test but not the O'Brien-Fleming boundary (p<0.00069)
    modest = evaluate([Arm("A", first_look, 4), Arm("B", first_look, 17)], plan)
    assert modest.look == 1 and modest.p_value < 0.01 and not modest.significant
    assert modest.status == "collecting" and modest.alpha_at_look == pytest.approx(2 * norm.sf(obf_boundaries(3)[0]))
    huge = evaluate([Arm("A", first_look, 2), Arm("B", first_look, 30)], plan)
    assert huge.significant and huge.winner == "B" and "look 1 of 3" in huge.explanation
    # once look 1 is recorded as "continue", it is not read again until look 2
    again = evaluate([Arm("A", first_look + 5, 2), Arm("B", first_look + 5, 35)], plan, look_done=1)
    assert again.status == "collecting" and not again.significant and again.winner is None


def test_three_variants_need_a_winner_that_beats_every_other() -> None:
    plan = Plan()
    n = planned_per_variant(plan, 3)
    clear = evaluate([Arm("A", n, 15), Arm("B", n, 60), Arm("C", n, 16)], plan)
    assert clear.test == CHI_SQUARE and clear.winner == "B" and set(clear.losers) == {"A", "C"}
    split = evaluate([Arm("A", n, 15), Arm("B", n, 50), Arm("C", n, 45)], plan)
    assert split.significant and split.winner is None and split.losers == ("A",)
    assert evaluate([Arm("A", 10, 1), Arm("B", 10, 2)], plan).test == Z_TEST


def test_nothing_to_test_gives_no_p_value() -> None:
    nothing = evaluate([Arm("A", 500, 0), Arm("B", 500, 0)], Plan())
    assert nothing.p_value is None and nothing.status == "no_difference" and nothing.winner is None


def test_ab_object_keeps_the_contract_keys() -> None:
    ab = evaluate([Arm("A", 10, 1), Arm("B", 12, 3)], Plan()).ab()
    assert {"metric", "test", "p_value", "significant", "winner", "variants"} <= set(ab)
    assert [set(v) for v in ab["variants"]] == [{"name", "sent", "replied", "rate", "ci_low", "ci_high"}] * 2


# --- properties --------------------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=5000).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n))
)


@settings(max_examples=40, deadline=None)
@given(st.lists(counts, min_size=2, max_size=4), st.sampled_from([False, True]))
def test_rates_intervals_and_p_values_are_well_formed(arms: list[tuple[int, int]], sequential: bool) -> None:
    plan = Plan(sequential=sequential, mde=0.1, baseline=0.1)
    named = [Arm(chr(65 + i), n, s) for i, (n, s) in enumerate(arms)]
    analysis = evaluate(named, plan)
    for row in analysis.variants:
        assert 0 <= row["ci_low"] <= row["rate"] <= row["ci_high"] <= 1
    if analysis.p_value is not None:
        assert 0 <= analysis.p_value <= 1
    assert analysis.winner is None or analysis.significant
    assert analysis.status == "collecting" or min(n for n, _ in arms) * plan.looks >= analysis.planned_per_variant
    assert 0 <= analysis.power <= 1 and all(v >= 0 for v in analysis.needed_per_variant.values())


# --- Thompson sampling -----------------------------------------------------------------------------


def test_thompson_is_deterministic_per_key() -> None:
    arms = [Arm("A", 40, 2), Arm("B", 40, 3)]
    picks = [thompson_pick(arms, f"7:{i}") for i in range(200)]
    assert picks == [thompson_pick(arms, f"7:{i}") for i in range(200)]
    assert len(set(picks)) == 2  # near-equal posteriors: both arms still get traffic


def test_thompson_favours_the_better_arm_on_simulated_data() -> None:
    rng = np.random.default_rng(3)
    truth = {"A": 0.03, "B": 0.09}
    sent, won = {"A": 0, "B": 0}, {"A": 0, "B": 0}
    for enrollment in range(3000):
        arms = [Arm(n, sent[n], won[n]) for n in ("A", "B")]
        name = arms[thompson_pick(arms, f"step:{enrollment}")].name
        sent[name] += 1
        won[name] += int(rng.random() < truth[name])
    assert sent["B"] > 0.75 * 3000 and sent["A"] >= 30  # exploits B, still explored A
    best = probability_best([Arm(n, sent[n], won[n]) for n in ("A", "B")])
    assert best["B"] > 0.95 and sum(best.values()) == pytest.approx(1)
