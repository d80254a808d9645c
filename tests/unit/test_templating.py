"""Sandboxed templates: missing fields are errors, defaults work, internals are out of reach, runaways fail fast."""

from __future__ import annotations

import time

import pytest

from outreach.templating import (
    MAX_OUTPUT_CHARS,
    RenderError,
    TemplateProblem,
    compile_template,
    fields_without_default,
    render,
    undeclared_fields,
)


def test_fields_are_filled_in() -> None:
    assert render("Quick idea for {{ company }}", {"company": "Acme"}) == "Quick idea for Acme"


def test_a_missing_field_is_an_error_naming_it() -> None:
    with pytest.raises(RenderError, match="first_name") as caught:
        render("Hi {{ first_name }},", {"company": "Acme"})
    assert caught.value.field == "first_name"


def test_default_fills_a_missing_field() -> None:
    assert render("Hi {{ first_name | default('there') }},", {}) == "Hi there,"
    assert render("Hi {{ first_name | d('there') }},", {}) == "Hi there,"
    assert render("Hi {{ first_name | default('there') }},", {"first_name": "Ann"}) == "Hi Ann,"


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_none_or_blank_counts_as_missing(empty: str | None) -> None:
    assert render("Hi {{ first_name | default('there') }},", {"first_name": empty}) == "Hi there,"
    with pytest.raises(RenderError, match="first_name"):
        render("Hi {{ first_name }},", {"first_name": empty})


def test_is_defined_guards_an_optional_field() -> None:
    source = "{% if city is defined %}See you in {{ city }}.{% endif %}"
    assert render(source, {}) == ""
    assert render(source, {"city": "Oslo"}) == "See you in Oslo."


def test_a_missing_attribute_is_an_error_too() -> None:
    with pytest.raises(RenderError):
        render("{{ company.name }}", {"company": "Acme"})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ company.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__['os'] }}",
        "{{ company._secret }}",
    ],
)
def test_the_sandbox_blocks_python_internals(source: str) -> None:
    with pytest.raises(RenderError, match=r"sandbox|unsafe|undefined|missing"):
        render(source, {"company": "Acme"})


def test_the_sandbox_forbids_mutating_the_context() -> None:
    with pytest.raises(RenderError):
        render("{{ tags.append('x') }}", {"tags": ["a"]})


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ 'a' * 10**8 }}", "repetition"),
        ("{{ 10**8 * 'a' }}", "repetition"),
        ("{{ [1] * 10**9 }}", "repetition"),
        ("{{ 10 ** 100000 }}", "too large"),
        ("{{ '%0999999999d' % 1 }}", "width"),
        ("{{ '%*d' % (10**9, 1) }}", "'\\*' widths"),
        ("{{ '{:>999999999}'.format('a') }}", "width"),
        ("{{ 'a' | center(10**9) }}", "center"),
        ("{{ 'a'.center(10**9) }}", "str.center"),
        ("{{ 'a'.ljust(10**9) }}", "str.ljust"),
        ("{{ ('x' * 1000).replace('', 'y' * 1000) }}", "str.replace"),
        ("{{ ('x' * 1000) | replace('', 'y' * 1000) }}", "replace"),
        ("{{ range(900) | join('x' * 1000) }}", "join"),
        ("{{ ('x' * 100).join(range(900) | map('string') | list * 10) }}", "str.join"),
        ("{{ ('a\nb' * 1000) | indent(10**6) }}", "indent"),
        ("{{ '%0999999999d' | format(1) }}", "width"),
        ("{% for i in range(10**8) %}{% endfor %}", "range"),
        ("{{ [1] | batch(10**9, 'x') | list }}", "batch"),
        ("{{ [1] | slice(10**9) | list }}", "slice"),
        ("{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}", "longer than"),
    ],
)
def test_runaway_templates_fail_fast(source: str, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RenderError, match=reason):
        render(source, {})
    assert time.perf_counter() - started < 0.5


def test_output_size_limit_counts_values_too() -> None:
    with pytest.raises(RenderError, match="longer than"):
        render("{{ blob }}{{ blob }}", {"blob": "x" * (MAX_OUTPUT_CHARS // 2 + 1)})
    assert len(render("{{ blob }}", {"blob": "x" * 1000})) == 1000


def test_harmless_arithmetic_and_formatting_still_work() -> None:
    assert render("{{ '-' * 3 }} {{ 2 ** 10 }} {{ '%05.1f' % 3.14159 }} {{ '{:>4}'.format(7) }}", {}) == (
        "--- 1024 003.1    7"
    )
    assert render("{% for i in range(3) %}{{ i }}{% endfor %}", {}) == "012"
    assert render("{{ name | center(7) }}", {"name": "Ann"}) == "  Ann  "


def test_autoescape_only_for_html() -> None:
    context = {"company": "<b>Acme</b> & Co"}
    assert render("{{ company }}", context) == "<b>Acme</b> & Co"
    assert render("<p>{{ company }}</p>", context, html=True) == "<p>&lt;b&gt;Acme&lt;/b&gt; &amp; Co</p>"


def test_a_template_that_does_not_compile_reports_jinjas_line() -> None:
    with pytest.raises(TemplateProblem) as caught:
        compile_template("Hi {{ first_name }},\n\nAbout {{ company }")
    assert caught.value.line == 3
    assert "unexpected" in caught.value.message


def test_an_unknown_filter_does_not_compile() -> None:
    with pytest.raises(TemplateProblem, match="shout"):
        compile_template("{{ company | shout }}")


def test_compiled_templates_are_cached() -> None:
    assert compile_template("Hi {{ x }}") is compile_template("Hi {{ x }}")
    assert compile_template("Hi {{ x }}", html=True) is not compile_template("Hi {{ x }}")


def test_undeclared_fields_lists_every_variable_read() -> None:
    source = "{{ a }} {{ b | default('') }} {% for t in tags %}{{ t }}{% endfor %} {% set z = 1 %}{{ z }}"
    assert undeclared_fields(source) == {"a", "b", "tags"}


def test_fields_without_default_skips_defaulted_and_tested_fields() -> None:
    source = (
        "Hi {{ first_name | default('there') }} from {{ company }}."
        "{% if city is defined %} In {{ city }}?{% endif %}"
        "{{ title | upper }} {{ deal.size | default('') }}"
        "{% for t in tags %}{{ t }}{% endfor %}{{ range(2) | list }}"
    )
    assert fields_without_default(source) == {"company", "title", "deal", "tags"}


def test_a_field_defaulted_once_but_used_bare_elsewhere_is_needed() -> None:
    assert fields_without_default("{{ x | default('') }} and {{ x }}") == {"x"}


def test_field_discovery_reports_broken_templates() -> None:
    with pytest.raises(TemplateProblem):
        fields_without_default("{% if %}")
