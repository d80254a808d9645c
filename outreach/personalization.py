"""The operator's personalization and demo libraries, and the stored opener drafts: validation and storage.

Snippets (openers, value propositions, case studies) and demos are kept as rows and read by the message
generator as plain data (`LibraryItem`), so matching stays a pure function. A library travels as YAML:
`import_library` validates every entry first (each problem named by key path and line) and writes
nothing unless all of it is usable; entries are matched by kind + name (snippets) or title (demos), so
importing the same file twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import exists, select
from sqlalchemy.orm import Session
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from db.models import DemoAsset, OpenerDraft, PersonalizationSnippet
from outreach.errors import OutreachError
from outreach.matching import Candidate, TagError, parse_size
from outreach.templating import TemplateProblem, compile_template

SNIPPET_KINDS = ("opener", "value_prop", "case_study")
SECTIONS = {"openers": "opener", "value_props": "value_prop", "case_studies": "case_study"}
MAX_TAGS = 50
MAX_SNIPPET_CHARS = 5_000
MAX_DRAFT_CHARS = 600


class LibraryError(OutreachError):
    """The library (or one entry) cannot be saved; `problems` lists each one with where it is."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _tag_list(value: Any) -> list[str]:
    """Tags as a list or as 'a, b, c' text; blank entries dropped, duplicates (any case) once."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("use a list of words, e.g. [fintech, banking]")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise ValueError(f"{item!r} is not a tag; use words")
        tag = " ".join(str(item).split())
        if tag and tag.casefold() not in {t.casefold() for t in out}:
            if len(tag) > 100:
                raise ValueError(f"the tag '{tag[:30]}…' is longer than 100 characters")
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise ValueError(f"{len(out)} tags; keep it to {MAX_TAGS}")
    return out


Tags = Annotated[list[str], BeforeValidator(_tag_list)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SnippetSpec(_Entry):
    """One library snippet as the operator writes it."""

    kind: str = "opener"
    name: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=MAX_SNIPPET_CHARS)
    industries: Tags = []
    titles: Tags = []
    company_sizes: Tags = []
    technologies: Tags = []
    pains: Tags = []
    active: bool = True

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in SNIPPET_KINDS:
            raise ValueError(f"'{value}' is not a snippet kind; use {', '.join(SNIPPET_KINDS)}")
        return value

    @field_validator("text")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compile_template(value)
        except TemplateProblem as exc:
            raise ValueError(f"the text does not compile as a template: {exc}") from None
        return value

    @field_validator("company_sizes")
    @classmethod
    def _sizes(cls, value: list[str]) -> list[str]:
        for tag in value:
            try:
                parse_size(tag)
            except TagError as exc:
                raise ValueError(str(exc)) from None
        return value


def check_url(value: str) -> str:
    """An http(s) URL with a host and nothing that could break out of an href."""
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in url for c in ' \t\r\n"<>\\`'):
        raise ValueError(f"'{url[:80]}' is not an http(s) link")
    if len(url) > 2048:
        raise ValueError("the link is longer than 2,048 characters")
    return url


class DemoSpec(_Entry):
    """One demo: what it is, who it is for, and the link that goes into `{{ demo_link }}`."""

    title: str = Field(min_length=1, max_length=300)
    url: str
    description: str | None = Field(default=None, max_length=5_000)
    tags: Tags = []
    industries: Tags = []

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)


class LibraryFile(BaseModel):
    """A whole library file: snippets by kind, and demos."""

    model_config = ConfigDict(extra="forbid")

    openers: list[dict[str, Any]] = []
    value_props: list[dict[str, Any]] = []
    case_studies: list[dict[str, Any]] = []
    demos: list[dict[str, Any]] = []


# --- what the generator reads ----------------------------------------------------------------------


@dataclass(frozen=True)
class LibraryItem:
    """A snippet or demo as plain data: its matcher view and what it fills in."""

    id: int
    kind: str  # opener, value_prop, case_study, or demo
    name: str
    text: str  # the snippet's template, or the demo's URL
    description: str | None
    candidate: Candidate


def snippet_item(item_id: int, spec: SnippetSpec) -> LibraryItem:
    candidate = Candidate(
        id=item_id, name=spec.name, industries=tuple(spec.industries), titles=tuple(spec.titles),
        sizes=tuple(spec.company_sizes), technologies=tuple(spec.technologies), pains=tuple(spec.pains),
    )  # fmt: skip
    return LibraryItem(item_id, spec.kind, spec.name, spec.text, None, candidate)


def demo_item(item_id: int, spec: DemoSpec) -> LibraryItem:
    candidate = Candidate(id=item_id, name=spec.title, industries=tuple(spec.industries), keywords=tuple(spec.tags))
    return LibraryItem(item_id, "demo", spec.title, spec.url, spec.description, candidate)


def items_from_specs(snippets: Sequence[SnippetSpec], demos: Sequence[DemoSpec]) -> list[LibraryItem]:
    """Library items straight from parsed entries (numbered in order): matching without a database."""
    items = [snippet_item(i, spec) for i, spec in enumerate(snippets, start=1)]
    return items + [demo_item(len(snippets) + i, spec) for i, spec in enumerate(demos, start=1)]


def _snippet_row_item(row: PersonalizationSnippet) -> LibraryItem:
    spec = SnippetSpec.model_construct(
        kind=row.kind, name=row.name, text=row.text, industries=list(row.industries or ()),
        titles=list(row.titles or ()), company_sizes=list(row.company_sizes or ()),
        technologies=list(row.technologies or ()), pains=list(row.pains or ()), active=row.is_active,
    )  # fmt: skip
    return snippet_item(row.id, spec)


def _demo_row_item(row: DemoAsset) -> LibraryItem:
    spec = DemoSpec.model_construct(
        title=row.title, url=row.url or "", description=row.description, tags=list(row.tags or ()),
        industries=list(row.industries or ()),
    )  # fmt: skip
    return demo_item(row.id, spec)


def library_items(session: Session) -> list[LibraryItem]:
    """Active snippets and demos with a link, in a stable order."""
    snippets = session.scalars(
        select(PersonalizationSnippet)
        .where(PersonalizationSnippet.is_active.is_(True))
        .order_by(PersonalizationSnippet.kind, PersonalizationSnippet.name)
    )
    demos = session.scalars(select(DemoAsset).where(DemoAsset.url.is_not(None)).order_by(DemoAsset.title))
    return [*map(_snippet_row_item, snippets), *map(_demo_row_item, demos)]


# --- snippets and demos, one at a time --------------------------------------------------------------


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        out.append(f"{prefix}{path}: {message}" if path else f"{prefix}{message}")
    return out


def snippet_spec(data: Mapping[str, Any]) -> SnippetSpec:
    try:
        return SnippetSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise LibraryError(_problems(exc)) from None


def demo_spec(data: Mapping[str, Any]) -> DemoSpec:
    try:
        return DemoSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise LibraryError(_problems(exc)) from None


def _apply_snippet(row: PersonalizationSnippet, spec: SnippetSpec) -> None:
    row.kind, row.name, row.text, row.is_active = spec.kind, spec.name, spec.text, spec.active
    row.industries, row.titles, row.company_sizes = spec.industries, spec.titles, spec.company_sizes
    row.technologies, row.pains = spec.technologies, spec.pains


def save_snippet(session: Session, spec: SnippetSpec, snippet_id: int | None = None) -> int:
    """Create, or update the snippet with that id (or that kind and name). Returns its id."""
    same_name = session.scalar(
        select(PersonalizationSnippet).where(
            PersonalizationSnippet.kind == spec.kind, PersonalizationSnippet.name == spec.name
        )
    )
    row = session.get(PersonalizationSnippet, snippet_id) if snippet_id else same_name
    if same_name is not None and row is not None and same_name.id != row.id:
        raise LibraryError([f"name: another {spec.kind} is already called '{spec.name}'"])
    if row is None:
        row = PersonalizationSnippet()
        session.add(row)
    _apply_snippet(row, spec)
    session.flush()
    return row.id


def delete_snippet(session: Session, snippet_id: int) -> None:
    row = session.get(PersonalizationSnippet, snippet_id)
    if row is not None:
        session.delete(row)
        session.flush()


def save_demo(session: Session, spec: DemoSpec, demo_id: int | None = None) -> int:
    """Create, or update the demo with that id (or that title). Returns its id."""
    row = session.get(DemoAsset, demo_id) if demo_id else None
    if row is None:
        row = session.scalar(select(DemoAsset).where(DemoAsset.title == spec.title))
    if row is None:
        row = DemoAsset(title=spec.title)
        session.add(row)
    row.title, row.url, row.description = spec.title, spec.url, spec.description
    row.tags, row.industries = spec.tags, spec.industries
    session.flush()
    return row.id


def delete_demo(session: Session, demo_id: int) -> None:
    row = session.get(DemoAsset, demo_id)
    if row is not None:
        session.delete(row)
        session.flush()


def snippet_rows(session: Session) -> list[dict[str, Any]]:
    """Every snippet as plain data for the library table (inactive ones too)."""
    rows = session.scalars(
        select(PersonalizationSnippet).order_by(PersonalizationSnippet.kind, PersonalizationSnippet.name)
    )
    return [
        {"id": r.id, "kind": r.kind, "name": r.name, "text": r.text, "industries": list(r.industries or []),
         "titles": list(r.titles or []), "company_sizes": list(r.company_sizes or []),
         "technologies": list(r.technologies or []), "pains": list(r.pains or []), "active": r.is_active}
        for r in rows
    ]  # fmt: skip


def demo_rows(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(DemoAsset).order_by(DemoAsset.title))
    return [
        {"id": r.id, "title": r.title, "url": r.url, "description": r.description, "tags": list(r.tags or []),
         "industries": list(r.industries or [])}
        for r in rows
    ]  # fmt: skip


# --- YAML import / export ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def _line(root: Node | None, loc: Sequence[str | int]) -> int | None:
    """The YAML line of the deepest key along `loc` that exists."""
    node, line = root, None
    for part in loc:
        found = None
        if isinstance(node, MappingNode):
            found = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == part), None)
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            found = (None, node.value[part])
        if found is None:
            break
        key, node = found
        line = (key or node).start_mark.line + 1
    return line


def _at(root: Node | None, loc: Sequence[str | int], message: str) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
    line = _line(root, loc)
    return f"{path or '(top level)'}{f' (line {line})' if line else ''}: {message}"


def _load(text: str) -> tuple[Node | None, Any]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise LibraryError([f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}"]) from None
    finally:
        loader.dispose()


def _entry_problems(root: Node | None, prefix: tuple[str | int, ...], exc: ValidationError) -> list[str]:
    return [
        _at(root, (*prefix, *error["loc"]), str(error["msg"]).removeprefix("Value error, "))
        for error in exc.errors(include_url=False)
    ]


def _duplicate_keys(node: Node | None) -> list[str]:
    """YAML keeps the last of two equal keys silently; an operator means both, so say so."""
    found: list[str] = []
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                if key.value in seen:
                    found.append(f"{key.value} (line {key.start_mark.line + 1}): appears twice here; keep one")
                seen.add(key.value)
            found += _duplicate_keys(value)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            found += _duplicate_keys(item)
    return found


def parse_library(text: str) -> tuple[list[SnippetSpec], list[DemoSpec]]:
    """YAML text → validated entries, or a LibraryError listing every problem with its path and line."""
    root, data = _load(text)
    if not isinstance(data, dict):
        raise LibraryError(["(top level): expected openers:, value_props:, case_studies: and/or demos: lists"])
    twice = _duplicate_keys(root)
    if twice:
        raise LibraryError(twice)
    try:
        file = LibraryFile.model_validate(data)
    except ValidationError as exc:
        raise LibraryError(_entry_problems(root, (), exc)) from None
    problems: list[str] = []
    snippets: list[SnippetSpec] = []
    for section, kind in SECTIONS.items():
        for index, entry in enumerate(getattr(file, section)):
            try:
                snippets.append(SnippetSpec.model_validate({**entry, "kind": kind}))
            except ValidationError as exc:
                problems += _entry_problems(root, (section, index), exc)
    demos: list[DemoSpec] = []
    for index, entry in enumerate(file.demos):
        try:
            demos.append(DemoSpec.model_validate(entry))
        except ValidationError as exc:
            problems += _entry_problems(root, ("demos", index), exc)
    seen: set[tuple[str, str]] = set()
    for spec in snippets:
        if (spec.kind, spec.name) in seen:
            problems.append(f"{spec.kind} '{spec.name}' appears twice in the file; names are unique per kind")
        seen.add((spec.kind, spec.name))
    if problems:
        raise LibraryError(problems)
    return snippets, demos


def import_library(session: Session, text: str) -> ImportResult:
    """Validate the whole file, then create or update each entry (nothing is written if any entry is bad)."""
    snippets, demos = parse_library(text)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for spec in snippets:
        row = session.scalar(
            select(PersonalizationSnippet).where(
                PersonalizationSnippet.kind == spec.kind, PersonalizationSnippet.name == spec.name
            )
        )
        before = _snippet_state(row)
        snippet_id = save_snippet(session, spec, row.id if row is not None else None)
        counts[_change(before, _snippet_state(session.get(PersonalizationSnippet, snippet_id)))] += 1
    for demo in demos:
        existing = session.scalar(select(DemoAsset).where(DemoAsset.title == demo.title))
        before = _demo_state(existing)
        demo_id = save_demo(session, demo, existing.id if existing is not None else None)
        counts[_change(before, _demo_state(session.get(DemoAsset, demo_id)))] += 1
    return ImportResult(**counts)


def _change(before: Any, after: Any) -> str:
    if before is None:
        return "created"
    return "unchanged" if before == after else "updated"


def _snippet_state(row: PersonalizationSnippet | None) -> tuple[Any, ...] | None:
    if row is None:
        return None
    return (row.text, row.industries, row.titles, row.company_sizes, row.technologies, row.pains, row.is_active)


def _demo_state(row: DemoAsset | None) -> tuple[Any, ...] | None:
    return None if row is None else (row.url, row.description, row.tags, row.industries)


def export_library(session: Session) -> str:
    """The whole library as YAML that import_library reads back unchanged."""
    data: dict[str, list[dict[str, Any]]] = {section: [] for section in SECTIONS}
    data["demos"] = []
    section_of = {kind: section for section, kind in SECTIONS.items()}
    for row in snippet_rows(session):
        entry = {"name": row["name"], "text": row["text"]}
        entry |= {k: row[k] for k in ("industries", "titles", "company_sizes", "technologies", "pains") if row[k]}
        if not row["active"]:
            entry["active"] = False
        data[section_of[row["kind"]]].append(entry)
    for row in demo_rows(session):
        entry = {"title": row["title"], "url": row["url"]}
        entry |= {k: row[k] for k in ("description", "tags", "industries") if row[k]}
        data["demos"].append(entry)
    return yaml.safe_dump({k: v for k, v in data.items() if v}, sort_keys=False, allow_unicode=True, width=4096)


# --- opener drafts -------------------------------------------------------------------------------


def clean_draft(text: str) -> str:
    """One short paragraph of plain text: control characters out, whitespace collapsed, length capped."""
    printable = "".join(c if c.isprintable() or c in "\n" else " " for c in text)
    collapsed = " ".join(printable.split())
    return collapsed[:MAX_DRAFT_CHARS].strip()


def save_draft(
    session: Session, campaign_id: int, prospect_id: int, text: str, now: datetime, *, model: str | None = None
) -> None:
    """Store a draft (from the model) or the operator's edit of it; an empty edit removes the draft."""
    row = session.scalar(
        select(OpenerDraft).where(OpenerDraft.campaign_id == campaign_id, OpenerDraft.prospect_id == prospect_id)
    )
    cleaned = clean_draft(text)
    if not cleaned:
        if row is not None:
            session.delete(row)
            session.flush()
        return
    if row is None:
        row = OpenerDraft(campaign_id=campaign_id, prospect_id=prospect_id, created_at=now, model=model)
        session.add(row)
    elif model is None:
        row.edited = row.edited or row.text != cleaned
    else:
        row.model, row.edited = model, False
    row.text, row.updated_at = cleaned, now
    session.flush()


def draft_of(session: Session, campaign_id: int, prospect_id: int) -> OpenerDraft | None:
    return session.scalar(
        select(OpenerDraft).where(OpenerDraft.campaign_id == campaign_id, OpenerDraft.prospect_id == prospect_id)
    )


def campaign_has_drafts(session: Session, campaign_id: int) -> bool:
    return bool(session.scalar(select(exists().where(OpenerDraft.campaign_id == campaign_id))))


def drafted_prospects(session: Session, campaign_id: int) -> set[int]:
    return set(session.scalars(select(OpenerDraft.prospect_id).where(OpenerDraft.campaign_id == campaign_id)))
