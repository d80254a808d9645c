"""Sandboxed Jinja2 for subjects and bodies: a template can read fields, never reach Python internals or run away.

Templates are written by operators, values come from prospects. The sandbox stops attribute games
(`''.__class__`), StrictUndefined turns a missing field into an error unless the template says
`{{ field | default('…') }}`, and size guards make `{{ 'a' * 10**8 }}` fail that one message quickly
instead of eating the worker's memory. Loops are timed (a render has `RENDER_SECONDS`), and nothing that
is not data — functions, classes, template internals — can be printed or turned into text. Spintax
(`{Hi|Hello}`) is resolved per seed before Jinja sees the text (outreach.spintax). Compiled templates
are cached by source.
"""

from __future__ import annotations

import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import date, datetime
from datetime import time as clock_time
from decimal import Decimal
from functools import lru_cache, wraps
from types import ModuleType
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    UndefinedError,
    filters,
    meta,
    nodes,
    pass_context,
    pass_environment,
    pass_eval_context,
)
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, TemplateReference, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

from outreach.errors import OutreachError
from outreach.spintax import resolve_spintax
from outreach.text_filters import ago, first_word, possessive, title_case

MAX_OUTPUT_CHARS = 100_000  # a rendered subject or body larger than this is a mistake, not an email
MAX_RANGE = 1_000  # range() items; a sequence has no use for more
MAX_FORMAT_WIDTH = 1_000  # widths in '%10s' / '{:>10}' / center(10)
MAX_POWER_BITS = 4_096  # 10**8 is fine, 10**10**10 is not
MAX_CONTAINER_ITEMS = 10_000  # items in a list/dict built by a template, nested ones counted each time
RENDER_SECONDS = 0.5  # one subject or body; real templates take well under a millisecond
_CHECK_EVERY = 32  # loop iterations between clock reads
DEFAULT_FILTERS = frozenset({"default", "d"})
DEFINED_TESTS = frozenset({"defined", "undefined"})

_UNDEFINED_NAME = re.compile(r"^'(?P<name>[^']+)' is undefined$")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?")


class TemplateError(OutreachError):
    """A subject or body that cannot be used; the message says which field or line to fix."""


class TemplateProblem(TemplateError):
    """The template does not compile; `line` is Jinja's line inside the template (1-based)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"{message} (template line {line})")
        self.message = message
        self.line = line


class RenderError(TemplateError):
    """Rendering failed for this context; `field` names the missing variable when that was the cause."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _ensure_size(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise RenderError(f"{what} would produce {size:,} characters; the limit is {MAX_OUTPUT_CHARS:,}")


def _ensure_width(width: int, what: str) -> None:
    if width > MAX_FORMAT_WIDTH:
        raise RenderError(f"{what} uses a width of {width:,}; the limit is {MAX_FORMAT_WIDTH:,}")


def _check_percent_format(fmt: str) -> None:
    """'%0999999999d' % 1 would allocate a gigabyte before any output limit could see it."""
    for match in _PERCENT_SPEC.finditer(fmt):
        for part in (match["width"], match["precision"]):
            if part == "*":
                raise RenderError("'*' widths in % formatting are not allowed in templates")
            if part:
                _ensure_width(int(part), "% formatting")


def _check_brace_format(fmt: str) -> None:
    """Same guard for str.format: widths are digits in the format spec; nested fields could hide them."""
    for _literal, _field, spec, _conversion in string.Formatter().parse(fmt):
        if not spec:
            continue
        if "{" in spec:
            raise RenderError("nested fields in a format spec are not allowed in templates")
        for digits in re.findall(r"\d+", spec):
            _ensure_width(int(digits), "str.format")


def _check_repeat(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int) and not isinstance(times, bool):
            _ensure_size(len(seq) * times, "repetition with *")


def _check_power(base: Any, exponent: Any) -> None:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (base, exponent)):
        return
    if exponent > 0 and abs(base) > 1 and exponent * abs(base).bit_length() > MAX_POWER_BITS:
        raise RenderError(f"{base} ** {exponent} is too large to compute in a template")


def _check_product(left: Any, right: Any) -> None:
    """Squaring a big number over and over grows it as fast as ** does."""
    numbers = all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right))
    if numbers and left.bit_length() + right.bit_length() > MAX_POWER_BITS:
        raise RenderError("a product of numbers that large cannot be computed in a template")


def _check_sum(left: Any, right: Any) -> None:
    """`s + s` doubles text like `s * 2`; lists likewise."""
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        _ensure_size(len(left) + len(right), "+")


def _replaced_size(text: str, old: str, new: str, count: int | None) -> int:
    occurrences = len(text) + 1 if old == "" else text.count(old)
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * len(new)


def _capped_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise RenderError(f"range() of {len(rng):,} items; the limit is {MAX_RANGE:,}")
    return rng


def _guard_str_method(method: Any, args: tuple[Any, ...]) -> None:
    """Amplifying str methods reached through the sandbox's call(): check the result size first."""
    text = getattr(method, "__self__", None)
    if not isinstance(text, str) or not args:
        return
    name = getattr(method, "__name__", "")
    if name in {"center", "ljust", "rjust", "zfill"} and isinstance(args[0], int):
        _ensure_size(args[0], f"str.{name}")
    elif name == "expandtabs" and isinstance(args[0], int):
        _ensure_size(len(text) + text.count("\t") * args[0], "str.expandtabs")
    elif name == "replace" and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
        count = args[2] if len(args) > 2 and isinstance(args[2], int) else None
        _ensure_size(_replaced_size(text, args[0], args[1], count), "str.replace")
    elif name == "join" and isinstance(args[0], list | tuple):
        _ensure_size(len(text) * len(args[0]), "str.join")


# --- time, objects and containers ----------------------------------------------------------------

_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar("template_deadline", default=None)


def _check_deadline() -> None:
    """Raise once the render in progress has used up its time (no render in progress: no limit)."""
    limit = _DEADLINE.get()
    if limit is not None and time.perf_counter() > limit[0]:
        raise RenderError(f"the template took longer than {limit[1]:g} s to render; simplify its loops")


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """Every `{% for %}` iterates through this: nested loops over long values fail on time, not hang."""
    for count, item in enumerate(iterable):
        if count % _CHECK_EVERY == 0:
            _check_deadline()
        yield item


_SCALARS = (str, int, float, Decimal, date, datetime, clock_time)
_SCALARS_OR_UNDEFINED = (*_SCALARS, Undefined)


def _is_object(value: Any) -> bool:
    """Functions, classes, modules and template internals: things a message has no business printing."""
    if value is None or isinstance(value, _SCALARS_OR_UNDEFINED):
        return False
    return callable(value) or isinstance(value, ModuleType | TemplateReference | Context)


def _refuse_object(value: Any, where: str) -> None:
    if _is_object(value):
        raise RenderError(f"{where} got {type(value).__name__}, which is not data; use a field or a value")


def _container_items(value: Any, budget: int = MAX_CONTAINER_ITEMS) -> int:
    """Items in nested lists/tuples/dicts, stopping once over `budget` (shared parts are counted each time)."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        else:
            continue
        seen += len(stack) + 1
        if seen > budget:
            break
    return seen


def _container_guard(value: Any) -> Any:
    """Lists and dicts a template builds stay small: `[l, l]` doubling cannot blow up when printed."""
    if isinstance(value, dict | list | tuple) and _container_items(value) > MAX_CONTAINER_ITEMS:
        raise RenderError(f"a list or dict with more than {MAX_CONTAINER_ITEMS:,} items cannot be built in a template")
    return value


def _text_part(value: Any) -> Any:
    """An operand of `~`: data only, and no longer than an email may be."""
    _refuse_object(value, "'~'")
    if isinstance(value, str):
        _ensure_size(len(value), "joining text with ~")
    else:
        _container_guard(value)
    return value


def _is_plain(value: Any) -> bool:
    """Data that may be printed: scalars, and lists/dicts of them (small)."""
    if value is None or isinstance(value, _SCALARS_OR_UNDEFINED):
        return True
    if isinstance(value, dict):
        return _container_items(value) <= MAX_CONTAINER_ITEMS and all(map(_is_plain, value.values()))
    if isinstance(value, list | tuple | set | frozenset):
        return _container_items(value) <= MAX_CONTAINER_ITEMS and all(map(_is_plain, value))
    return False


def _finalize(value: Any) -> Any:
    """Every `{{ … }}` passes here before it becomes text: a function or a generator is a mistake, not copy."""
    if isinstance(value, str) or value is None:
        return value
    if not _is_plain(value):
        hint = "; add | list or | join(', ')" if isinstance(value, Iterator) else ""
        raise RenderError(f"cannot print {type(value).__name__} in a message{hint}")
    return value


def _string(value: Any) -> str:
    if not _is_plain(value):
        raise RenderError(f"| string got {type(value).__name__}, which is not data; use a field or a value")
    return filters.soft_str(value)


def _pprint(value: Any) -> str:
    if not _is_plain(value):
        raise RenderError(f"| pprint got {type(value).__name__}, which is not data; use a field or a value")
    return filters.do_pprint(value)


@pass_context
def _ago(context: Context, value: Any) -> str:
    now = context.get("now")
    if not isinstance(now, datetime):
        raise RenderError("'ago' needs the time the message is rendered at (the `now` value)")
    try:
        return ago(value, now)
    except ValueError as exc:
        raise RenderError(str(exc)) from None


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so its input is data (not a function or template internals) and the clock is checked."""
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)  # keeps jinja_pass_arg, so Jinja still passes the context/environment first
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if len(args) > offset:
            _refuse_object(args[offset], f"| {name}")
        _check_deadline()
        return func(*args, **kwargs)

    return guarded


def _format_operands(right: Any) -> Iterable[Any]:
    """The values `'…' % right` formats: a tuple's items, a mapping's values, or the one value."""
    if isinstance(right, dict):
        return right.values()
    return right if isinstance(right, tuple) else [right]


def _check_format_args(args: Iterable[Any]) -> None:
    for value in args:
        _refuse_object(value, "formatting")
        _container_guard(value)


# Filters whose arguments can multiply the size of their input get a guarded replacement.
def _center(value: Any, width: int = 80) -> str:
    _ensure_size(width, "center")
    return filters.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    size = len(width) if isinstance(width, str) else width
    text = str(s)
    _ensure_size(len(text) + (text.count("\n") + 1) * size, "indent")
    return filters.do_indent(s, width, first, blank)


@pass_environment
def _wordwrap(environment: Any, s: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
    if width < 1:
        raise RenderError("wordwrap needs a width of at least 1")
    wrapstring = kwargs.get("wrapstring") or (args[1] if len(args) > 1 and args[1] else environment.newline_sequence)
    _ensure_size(len(s) + (len(s) // width + 1) * len(wrapstring), "wordwrap")
    return filters.do_wordwrap(environment, s, width, *args, **kwargs)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_percent_format(str(value))
    _check_format_args([*args, *kwargs.values()])
    return filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None) -> str:
    _ensure_size(_replaced_size(str(s), str(old), str(new), count), "replace")
    return filters.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    _ensure_size(len(items) * len(d), "join")
    return filters.sync_do_join(eval_ctx, items, d, attribute)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if linecount > MAX_RANGE:
        raise RenderError(f"batch({linecount:,}); the limit is {MAX_RANGE:,}")
    return filters.do_batch(value, linecount, fill_with)


def _slice(value: Iterable[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if slices > MAX_RANGE:
        raise RenderError(f"slice({slices:,}); the limit is {MAX_RANGE:,}")
    return filters.sync_do_slice(value, slices, fill_with)


_GUARDED_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "format": _format,
    "replace": _replace,
    "join": _join,
    "batch": _batch,
    "slice": _slice,
    "string": _string,
    "pprint": _pprint,
}
_OUR_FILTERS: dict[str, Callable[..., Any]] = {
    "first_word": first_word,
    "title_case": title_case,
    "possessive": possessive,
    "ago": _ago,
}
# Applied by the compiler (see _Guards), never needed by hand.
_INTERNAL_FILTERS: dict[str, Callable[..., Any]] = {
    "_loop_guard": _loop_guard,
    "_text_part": _text_part,
    "_container_guard": _container_guard,
}
_UNGUARDED = frozenset({"default", "d"})  # they exist to receive an undefined value
_DROPPED_GLOBALS = ("lipsum", "cycler", "joiner")  # lipsum(n) makes unbounded text; the others print as classes


class _Guards(NodeTransformer):
    """Rewrites the parsed template: loops are timed, `~` operands and built lists/dicts are checked."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _wrap(node.iter, "_loop_guard")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_wrap(part, "_text_part") for part in node.nodes]
        return node

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(node, "_container_guard")

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(node, "_container_guard")

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return _wrap(node, "_container_guard") if node.ctx == "load" else node


def _wrap(node: nodes.Expr, filter_name: str) -> nodes.Filter:
    return nodes.Filter(node, filter_name, [], [], None, None, lineno=node.lineno)


class GuardedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment plus size, time and data-only guards on everything that can run away."""

    # Intercepted operators are also never constant-folded, so `'a' * 10**8` cannot blow up at compile time.
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *, html: bool) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=html, finalize=_finalize)
        self.globals["range"] = _capped_range
        for name in _DROPPED_GLOBALS:
            self.globals.pop(name, None)
        self.filters.update(_GUARDED_FILTERS)
        self.filters.update(_OUR_FILTERS)
        self.filters = {
            name: func if name in _UNGUARDED else _guard_filter(name, func) for name, func in self.filters.items()
        }
        self.filters.update(_INTERNAL_FILTERS)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
            _check_format_args(_format_operands(right))
        elif operator == "+":
            _check_sum(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        _guard_str_method(__obj, args)
        return _container_guard(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_brace_format(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            mapping = args[0] if value.__name__ == "format_map" and args and isinstance(args[0], dict) else {}
            _check_format_args([*args, *kwargs.values(), *mapping.values()])
            return wrapped(*args, **kwargs)

        return checked

    def from_string(self, source: str | nodes.Template, globals: Any = None, template_class: Any = None) -> Template:
        """Parse, add the guards to the tree, then compile (Jinja compiles a tree as it compiles text)."""
        tree = self.parse(source) if isinstance(source, str) else source
        tree = _Guards().visit(tree)
        tree.set_environment(self)
        return super().from_string(tree, globals, template_class)


_TEXT_ENV = GuardedSandbox(html=False)
_HTML_ENV = GuardedSandbox(html=True)


def _env(html: bool) -> GuardedSandbox:
    return _HTML_ENV if html else _TEXT_ENV


@lru_cache(maxsize=2048)
def compile_template(source: str, *, html: bool = False) -> Template:
    """Compile once per (source, html); raise TemplateProblem with Jinja's message and line."""
    try:
        return _env(html).from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.message or str(exc), exc.lineno) from exc


@lru_cache(maxsize=2048)
def _parse(source: str) -> nodes.Template:
    try:
        return _TEXT_ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.message or str(exc), exc.lineno) from exc


def _render_error(exc: Exception) -> RenderError:
    if isinstance(exc, RenderError):
        return exc
    if isinstance(exc, UndefinedError):
        match = _UNDEFINED_NAME.match(str(exc.message or ""))
        if match:
            name = match["name"]
            return RenderError(
                f"missing field '{name}': give the prospect a value or write {{{{ {name} | default('…') }}}}",
                field=name,
            )
        return RenderError(f"missing value: {exc.message}")
    if isinstance(exc, SecurityError):
        return RenderError(f"blocked by the template sandbox: {exc}")
    return RenderError(f"the template failed: {type(exc).__name__}: {exc}")


class Values(dict[str, Any]):
    """A render context already without missing values (None or blank): render() takes it as it is.

    The generator renders subject, text and HTML from one context; cleaning it once saves a pass each.
    """


def values_of(context: Mapping[str, Any]) -> Values:
    """The context without None or blank values, which count as missing (so `default()` applies)."""
    if isinstance(context, Values):
        return context
    return Values((k, v) for k, v in context.items() if v is not None and (not isinstance(v, str) or v.strip()))


def render(
    source: str,
    context: Mapping[str, Any],
    *,
    html: bool = False,
    max_chars: int = MAX_OUTPUT_CHARS,
    spin_seed: str = "",
    time_limit: float = RENDER_SECONDS,
) -> str:
    """Render `source` with `context`; any failure becomes one RenderError so one message fails alone.

    A value that is None or blank counts as missing: `default()` applies to it, and a bare use fails
    instead of mailing "Hi None," or "Quick idea for ," to a prospect. Spintax is resolved with
    `spin_seed` first (the generator passes prospect, step and variant), so the same seed gives the same
    words. The render stops after `time_limit` seconds or `max_chars` characters.
    """
    template = compile_template(resolve_spintax(source, spin_seed), html=html)
    values = values_of(context)
    parts: list[str] = []
    size = 0
    token = _DEADLINE.set((time.perf_counter() + time_limit, time_limit))
    try:
        for chunk in template.generate(values):
            size += len(chunk)
            if size > max_chars:
                raise RenderError(f"the rendered text is longer than {max_chars:,} characters")
            parts.append(chunk)
    except Exception as exc:
        raise _render_error(exc) from exc
    finally:
        _DEADLINE.reset(token)
    return "".join(parts)


def undeclared_fields(source: str) -> set[str]:
    """Every variable the template reads from its context (with or without a default)."""
    return set(meta.find_undeclared_variables(_parse(source)))


def _names_with_parents(node: nodes.Node, parent: nodes.Node | None = None) -> Iterator[tuple[nodes.Name, Any]]:
    if isinstance(node, nodes.Name) and node.ctx == "load":
        yield node, parent
    for child in node.iter_child_nodes():
        yield from _names_with_parents(child, node)


def _is_guarded(name: nodes.Name, parent: Any) -> bool:
    """`x | default(...)` and `x is defined` handle a missing x; anything else needs the value."""
    if isinstance(parent, nodes.Filter) and parent.node is name and parent.name in DEFAULT_FILTERS:
        return True
    return isinstance(parent, nodes.Test) and parent.node is name and parent.name in DEFINED_TESTS


def fields_without_default(source: str) -> set[str]:
    """Variables the template needs: read somewhere other than directly inside `default` or `is defined`.

    A field tested with `is defined` anywhere counts as optional: the author handles its absence.
    """
    tree = _parse(source)
    undeclared = set(meta.find_undeclared_variables(tree))
    needed: set[str] = set()
    optional: set[str] = set()
    for name, parent in _names_with_parents(tree):
        if name.name not in undeclared:
            continue
        if _is_guarded(name, parent):
            if isinstance(parent, nodes.Test):
                optional.add(name.name)
            continue
        needed.add(name.name)
    return needed - optional
