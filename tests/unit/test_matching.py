"""Snippet and demo matching on a labelled fixture, and the rules that make each choice explainable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from outreach.generator import MessageGenerator
from outreach.matching import Candidate, TagError, best, parse_size, profile_of, rank, score
from outreach.personalization import items_from_specs, parse_library

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "personalization"
LIBRARY = (FIXTURES / "library.yaml").read_text(encoding="utf-8")
LABELLED = yaml.safe_load((FIXTURES / "prospects.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def generator() -> MessageGenerator:
    return MessageGenerator(items_from_specs(*parse_library(LIBRARY)))


@pytest.mark.parametrize("case", LABELLED, ids=[c["fields"]["company"] + "/" + c["expect"]["opener"] for c in LABELLED])
def test_the_labelled_prospects_get_the_expected_snippets_and_demo(generator: MessageGenerator, case: Any) -> None:
    fields = case["fields"]
    wanted = {"opener", "value_prop", "case_study", "demo_link"}
    chosen = generator.personalize_outreach(fields, wanted=wanted, prospect_id=None, seed="s").choices
    chosen += generator.attach_demos(fields, wanted=wanted).choices
    picked = {choice.field: choice.item for choice in chosen}
    assert picked == case["expect"], [c.explanation for c in chosen]


def test_the_explanation_says_which_tags_matched_and_by_how_much(generator: MessageGenerator) -> None:
    fields = LABELLED[0]["fields"]
    [opener] = generator.personalize_outreach(fields, wanted={"opener"}, prospect_id=None, seed="s").choices
    assert opener.value == "Saw that Ledgerly keeps growing its finance team; month-end close must be getting heavier."
    assert "'fintech-cfo' scored 5" in opener.explanation
    assert "industry 'Fintech' matches 'fintech' (+3)" in opener.explanation
    assert "title 'CFO' matches 'cfo' (+2)" in opener.explanation
    [demo] = generator.attach_demos(fields, wanted={"demo_link"}).choices
    assert "uses" not in demo.explanation and "the profile mentions 'netsuite' (+1)" in demo.explanation


def test_nothing_fitting_is_reported_with_the_reasons(generator: MessageGenerator) -> None:
    fields = {"company": "Cloudly", "title": "CTO", "industry": "SaaS"}
    [case] = generator.personalize_outreach(fields, wanted={"case_study"}, prospect_id=None, seed="s").choices
    assert case.source == "missing" and case.item is None
    assert "tagged for industry fintech" in case.explanation


def test_a_known_mismatch_excludes_and_an_unknown_field_does_not() -> None:
    cfo_fintech = Candidate(1, "cfo", industries=("fintech",), titles=("cfo",))
    assert score(cfo_fintech, profile_of({"industry": "Healthcare", "title": "CFO"})).excluded
    assert score(cfo_fintech, profile_of({"industry": "Fintech", "title": "CTO"})).excluded
    unknown = score(cfo_fintech, profile_of({"title": "CFO"}))
    assert unknown.excluded is None and unknown.score == 2 and unknown.eligible


def test_industry_found_only_in_the_profile_text_counts_less() -> None:
    candidate = Candidate(1, "x", industries=("fintech",))
    scored = score(candidate, profile_of({"company_description": "A fintech for freelancers"}))
    assert scored.score == 1 and "mentions 'fintech'" in scored.reasons[0]


def test_whole_words_only_and_hyphens_either_way() -> None:
    assert score(Candidate(1, "x", titles=("cfo",)), profile_of({"title": "CFOtech lead"})).excluded
    assert score(Candidate(1, "x", industries=("ecommerce",)), profile_of({"industry": "E-commerce"})).score == 3
    assert score(Candidate(1, "x", industries=("e-commerce",)), profile_of({"industry": "ecommerce"})).score == 3


def test_company_size_ranges() -> None:
    assert parse_size("51-200") == (51, 200)
    assert parse_size("1,000+") == (1000, None)
    for bad in ("big", "200-51", "10k"):
        with pytest.raises(TagError):
            parse_size(bad)
    sized = Candidate(1, "x", sizes=("51-200",))
    assert score(sized, profile_of({"employee_count": 51})).score == 2
    excluded = score(sized, profile_of({"employee_count": 201})).excluded
    assert excluded == "tagged for 51-200 employees; the company has 201"


def test_ties_go_to_more_reasons_then_the_name() -> None:
    profile = profile_of({"industry": "Fintech", "technologies": "Stripe"})
    a = Candidate(1, "b-item", industries=("fintech",))
    b = Candidate(2, "a-item", industries=("fintech",))
    c = Candidate(3, "c-item", technologies=("stripe",), keywords=("fintech",))  # 1.5 + 1 = 2.5 < 3
    assert [s.candidate.name for s in rank([a, b, c], profile)] == ["a-item", "b-item", "c-item"]


def test_a_tagged_candidate_needs_points_and_an_untagged_one_is_the_fallback() -> None:
    tagged = Candidate(1, "tagged", technologies=("stripe",))
    generic = Candidate(2, "generic")
    assert best([tagged], profile_of({})) is None
    picked = best([tagged, generic], profile_of({}))
    assert picked is not None and picked.candidate.name == "generic"
