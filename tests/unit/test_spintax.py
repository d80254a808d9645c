"""Spintax: `{Hi|Hello}` picks one option per seed, the same one every time, and leaves Jinja and CSS alone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outreach.spintax import has_spintax, parse_spintax, resolve_spintax, spin_seed
from outreach.templating import render


def test_the_same_seed_always_picks_the_same_option() -> None:
    source = "{Hi|Hello|Hey} there, {quick|short} question"
    seed = spin_seed(42, 1, "A")
    assert len({resolve_spintax(source, seed) for _ in range(20)}) == 1


def test_different_prospects_get_every_option_over_a_few_hundred_seeds() -> None:
    outcomes = {resolve_spintax("{Hi|Hello|Hey}", spin_seed(i, 1, "A")) for i in range(300)}
    assert outcomes == {"Hi", "Hello", "Hey"}


def test_step_and_variant_are_part_of_the_seed() -> None:
    source = "{a|b|c|d|e|f|g|h}"
    picks = {resolve_spintax(source, spin_seed(7, step, variant)) for step in range(1, 6) for variant in "AB"}
    assert len(picks) > 1


def test_groups_nest_and_options_may_hold_jinja() -> None:
    source = "{Hi {{ first_name }}|{Hello|Hey} there}!"
    seen = {render(source, {"first_name": "Ann"}, spin_seed=str(i)) for i in range(200)}
    assert seen == {"Hi Ann!", "Hello there!", "Hey there!"}


def test_jinja_braces_css_and_unclosed_groups_are_not_spintax() -> None:
    for literal in ("{{ x | default('a') }}", "{% if a|length %}x{% endif %}", "p{margin:0}", "{a|b", "{solo}"):
        assert not has_spintax(literal), literal
    assert resolve_spintax("a{b|c", "s") == "a{b|c"
    assert resolve_spintax("{solo} and {x|x}", "s") == "{solo} and x"


def test_the_same_group_in_text_and_html_picks_the_same_option() -> None:
    for i in range(50):
        seed = spin_seed(i, 1, "A")
        text = resolve_spintax("{Hi|Hello|Hey} Ann", seed)
        html = resolve_spintax("<p>{Hi|Hello|Hey} Ann</p>", seed)
        assert html == f"<p>{text}</p>"


def test_a_repeated_group_may_differ_at_each_place() -> None:
    picks = {resolve_spintax("{a|b|c|d} {a|b|c|d}", str(i)) for i in range(100)}
    assert any(left != right for left, right in (p.split() for p in picks))


@given(st.text(max_size=300), st.text(max_size=20))
def test_resolution_never_fails_and_keeps_text_without_groups(source: str, seed: str) -> None:
    out = resolve_spintax(source, seed)
    if not has_spintax(source):
        assert out == source
    assert resolve_spintax(source, seed) == out
    assert parse_spintax(source)
