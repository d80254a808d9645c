"""Template safety: known Jinja SSTI payloads reach nothing, runaways fail the one message, and the new filters.

The corpus collects payloads from public SSTI cheat sheets (PayloadsAllTheThings, HackTricks, PortSwigger)
adapted to our names: attribute walks to `__globals__`, `|attr` and `format`/`format_map` detours,
Flask-only globals, escaped underscores, loops over subclasses, macros, `self`, `lipsum`, `namespace`.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from markupsafe import escape

from outreach.templating import RenderError, TemplateProblem, compile_template, render

CANARY_ENV = "OUTREACH_SSTI_CANARY"
CANARY = "canary-7f3a9c2e51"

SSTI_PAYLOADS = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ {}.__class__.__base__ }}",
    "{{ (1).__class__.__base__ }}",
    "{{ ''.__class__.__mro__[-1].__subclasses__()[40]('/etc/passwd').read() }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('id').read() }}",
    "{{ self }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self.__dict__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__['os'].environ }}",
    "{{ namespace(a=1).__class__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ lipsum.__globals__.os.environ }}",
    "{{ range.__globals__ }}",
    "{{ range.__init__.__globals__ }}",
    "{{ dict.__init__.__globals__ }}",
    "{{ dict.mro() }}",
    "{{ ''|attr('__class__') }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ ()|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ request|attr('application')|attr('\\x5f\\x5fglobals\\x5f\\x5f') }}",
    "{{ ''|attr(['_'*2,'class','_'*2]|join) }}",
    "{{ ''['__class__'] }}",
    "{{ ''['\\x5f\\x5fclass\\x5f\\x5f'] }}",
    "{{ company.__class__.__init__.__globals__ }}",
    "{{ company.__dict__ }}",
    "{{ company|attr('__dict__') }}",
    "{{ company.__getattribute__('__class__') }}",
    "{{ '{0.__class__}'.format(company) }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{.__globals__}'.format(range) }}",
    "{{ '{0.__init__.__globals__}'.format(namespace) }}",
    "{{ '{x.__class__}'.format_map({'x': company}) }}",
    "{{ '{x}'.format_map({'x': range}) }}",
    "{{ '%s'|format(range) }}",
    "{{ '%r' % (range,) }}",
    "{{ '%s' % self }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{% set x = ''.__class__ %}{{ x }}",
    "{% with a = ''.__class__.__mro__ %}{{ a }}{% endwith %}",
    "{{ company.upper.__self__ }}",
    "{{ company.upper.__globals__ }}",
    "{{ company.format.__globals__ }}",
    "{{ company.upper }}",
    "{{ company.upper ~ '' }}",
    "{{ company.upper|string }}",
    "{{ range|string }}",
    "{{ range|pprint }}",
    "{{ self|string }}",
    "{{ url_for.__globals__ }}",
    "{{ get_flashed_messages.__globals__ }}",
    "{{ g.pop.__globals__ }}",
    "{{ __builtins__ }}",
    "{{ __import__('os').popen('id').read() }}",
    "{{ eval('1+1') }}",
    "{{ exec('import os') }}",
    "{{ os.environ }}",
    "{{ environ }}",
    "{% import 'os' as os %}{{ os }}",
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
    "{% for x in [1] %}{{ loop.__class__.__mro__ }}{% endfor %}",
    "{% for x in [1] %}{{ loop }}{% endfor %}",
    "{% macro m() %}{% endmacro %}{{ m.__globals__ }}",
    "{% macro m() %}{% endmacro %}{{ m._func.__globals__ }}",
    "{% macro m() %}{% endmacro %}{{ m }}",
    "{{ caller }}",
    "{{ [].pop }}",
    "{{ {}.update }}",
    "{{ tags.append('x') }}",
    "{{ company|map('upper') }}",
    "{{ range(10)|list|attr('__class__') }}",
    "{% set ns = namespace() %}{% set ns.a = ''.__class__ %}{{ ns.a }}",
    "{{ ''.__class__.__subclasses__ }}",
    "{{ company.__len__() }}",
]

# What would show that a payload reached a Python object or the environment.
LEAK = re.compile(
    r"(<|&lt;)(class|function|module|built-in|bound method|method|frozen|code|generator|jinja2|TemplateReference|"
    r"Macro|LoopContext|Namespace)| at 0x[0-9a-f]+|os\.environ|" + CANARY
)


def test_the_corpus_is_large() -> None:
    assert len(SSTI_PAYLOADS) >= 50


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
@pytest.mark.parametrize("html", [False, True], ids=["text", "html"])
def test_ssti_payloads_reach_no_python_object_or_environment(
    payload: str, html: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CANARY_ENV, CANARY)
    context = {"company": "Acme", "tags": ["a"], "secret_key": CANARY}
    try:
        out = render(payload.replace("secret_key", "nothing"), context, html=html)
    except (RenderError, TemplateProblem):
        return  # refused: the message fails alone, with a clear error
    assert not LEAK.search(out), out[:200]


@pytest.mark.parametrize("payload", SSTI_PAYLOADS[:20])
def test_payloads_in_prospect_data_are_just_text(payload: str) -> None:
    """A field value is data: it is never compiled, so a payload in a CSV column prints as written."""
    assert render("Hi {{ first_name }}", {"first_name": payload}) == f"Hi {payload}"
    assert render("<p>{{ first_name }}</p>", {"first_name": payload}, html=True) == f"<p>{escape(payload)}</p>"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}", "longer than"),
        ("{% set x = 'aaaaaaaaaa' %}" + "{% set x = x ~ x %}" * 30 + "{{ x|length }}", "~"),
        ("{% set x = 'aaaaaaaaaa' %}" + "{% set x = x + x %}" * 30 + "{{ x|length }}", r"\+"),
        ("{% set l = [1] %}" + "{% set l = [l, l] %}" * 30 + "{{ l|length }}", "list or dict"),
        ("{% set x = 10**1000 %}" + "{% set x = x*x %}" * 30 + "{{ x }}", "product"),
        ("{{ dict(a=[1]*9999, b=[1]*9999) }}", "list or dict"),
    ],
)
def test_runaways_fail_the_one_message_quickly(source: str, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RenderError, match=reason):
        render(source, {"s": "x" * 3000}, time_limit=0.2)
    assert time.perf_counter() - started < 1.0


def test_the_render_time_limit_names_itself() -> None:
    with pytest.raises(RenderError, match=r"took longer than 0\.2 s"):
        render("{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}", {"s": "x" * 5000}, time_limit=0.2)


def test_ordinary_loops_and_literals_still_work() -> None:
    source = "{% for t in tags %}{{ loop.index }}:{{ t }}{{ ', ' if not loop.last }}{% endfor %} {{ {'a': [1, 2]} }}"
    assert render(source, {"tags": ["x", "y"]}) == "1:x, 2:y {'a': [1, 2]}"
    assert render("{{ tags | map('upper') | join('/') }} {{ (1, 2) }}", {"tags": ["a", "b"]}) == "A/B (1, 2)"


def test_a_generator_cannot_be_printed_and_the_error_says_what_to_do() -> None:
    with pytest.raises(RenderError, match=r"\| list or \| join"):
        render("{{ tags | map('upper') }}", {"tags": ["a"]})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ name | first_word }}", "Mary"),
        ("{{ 'ACME CORP' | title_case }}", "Acme Corp"),
        ('{{ "o\'neil-smith" | title_case }}', "O'Neil-Smith"),
        ("{{ 'McDonald and IBM' | title_case }}", "McDonald And IBM"),
        ("{{ 'Acme' | possessive }}", "Acme's"),
        ("{{ 'James' | possessive }}", "James'"),
        ("{{ company | title_case | possessive }}", "Globex's"),
    ],
)
def test_filters(source: str, expected: str) -> None:
    assert render(source, {"name": "Mary Ann", "company": "GLOBEX"}) == expected


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=20), "just now"),
        (timedelta(minutes=1), "a minute ago"),
        (timedelta(minutes=5), "5 minutes ago"),
        (timedelta(hours=1), "an hour ago"),
        (timedelta(hours=30), "yesterday"),
        (timedelta(days=3), "3 days ago"),
        (timedelta(days=9), "last week"),
        (timedelta(days=20), "2 weeks ago"),
        (timedelta(days=45), "last month"),
        (timedelta(days=100), "3 months ago"),
        (timedelta(days=400), "last year"),
        (timedelta(days=1000), "2 years ago"),
        (timedelta(days=-2), "just now"),
    ],
)
def test_ago_reads_like_a_person(delta: timedelta, expected: str) -> None:
    now = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    assert render("{{ sent | ago }}", {"sent": now - delta, "now": now}) == expected
    assert render("{{ sent | ago }}", {"sent": (now - delta).isoformat(), "now": now}) == expected


def test_ago_needs_the_render_time_and_a_date() -> None:
    with pytest.raises(RenderError, match="time the message is rendered"):
        render("{{ sent | ago }}", {"sent": datetime(2026, 1, 1, tzinfo=UTC)})
    with pytest.raises(RenderError, match="date and time"):
        render("{{ 'soon' | ago }}", {"now": datetime(2026, 1, 1, tzinfo=UTC)})


def test_new_filters_compile_and_a_missing_value_names_the_field() -> None:
    compile_template("{{ first_name | first_word | title_case | possessive }}")
    with pytest.raises(RenderError, match="first_name"):
        render("{{ first_name | first_word }}", {})
