"""Named lists and free tags on prospects: a prospect can be in many lists and carry many tags."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, delete, exists, func, insert, literal, select
from sqlalchemy.orm import Session

from db.models import ProspectList, ProspectListMember, ProspectTag
from db.types import utcnow
from outreach.errors import OutreachError
from outreach.prospect_search import ProspectFilter, matching_ids

_MEMBERS: Table = ProspectListMember.__table__  # type: ignore[assignment]
_TAGS: Table = ProspectTag.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ListInfo:
    id: int
    name: str
    description: str | None
    members: int
    created_at: datetime


def _clean_name(name: str, what: str) -> str:
    clean = " ".join(name.split())
    if not clean:
        raise OutreachError(f"a {what} needs a name")
    limit = 200 if what == "list" else 100
    if len(clean) > limit:
        raise OutreachError(f"{what} name '{clean[:40]}…' is longer than {limit} characters")
    return clean


def list_lists(session: Session) -> list[ListInfo]:
    counts = (
        select(ProspectListMember.list_id, func.count().label("members"))
        .group_by(ProspectListMember.list_id)
        .subquery()
    )
    query = (
        select(ProspectList, func.coalesce(counts.c.members, 0))
        .outerjoin(counts, counts.c.list_id == ProspectList.id)
        .order_by(ProspectList.name)
    )
    return [ListInfo(pl.id, pl.name, pl.description, int(n), pl.created_at) for pl, n in session.execute(query)]


def create_list(session: Session, name: str, description: str | None = None) -> ListInfo:
    clean = _clean_name(name, "list")
    if session.scalar(select(ProspectList.id).where(ProspectList.name == clean)) is not None:
        raise OutreachError(f"a list named '{clean}' already exists")
    created = ProspectList(name=clean, description=description)
    session.add(created)
    session.flush()
    return ListInfo(created.id, created.name, created.description, 0, created.created_at)


def delete_list(session: Session, name: str) -> bool:
    """Delete the list (not its prospects)."""
    result = session.execute(delete(ProspectList).where(ProspectList.name == " ".join(name.split())))
    return bool(getattr(result, "rowcount", 0))


def add_to_list(session: Session, name: str, prospect_ids: Iterable[int]) -> int:
    """Add prospects to a list (created when missing); returns how many were not in it yet."""
    clean = _clean_name(name, "list")
    list_id = session.scalar(select(ProspectList.id).where(ProspectList.name == clean))
    if list_id is None:
        list_id = create_list(session, clean).id
    wanted = set(prospect_ids)
    present = set(
        session.scalars(
            select(ProspectListMember.prospect_id).where(
                ProspectListMember.list_id == list_id, ProspectListMember.prospect_id.in_(wanted)
            )
        )
    )
    now = utcnow()
    new = sorted(wanted - present)
    session.add_all(ProspectListMember(list_id=list_id, prospect_id=p, added_at=now) for p in new)
    session.flush()
    return len(new)


def remove_from_list(session: Session, name: str, prospect_ids: Iterable[int]) -> int:
    list_id = session.scalar(select(ProspectList.id).where(ProspectList.name == " ".join(name.split())))
    if list_id is None:
        return 0
    result = session.execute(
        delete(ProspectListMember).where(
            ProspectListMember.list_id == list_id, ProspectListMember.prospect_id.in_(list(prospect_ids))
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def tag_prospects(session: Session, prospect_ids: Iterable[int], tags: Iterable[str]) -> int:
    """Add tags; returns how many (prospect, tag) pairs were new."""
    clean = {_clean_name(t, "tag") for t in tags if t.strip()}
    ids = set(prospect_ids)
    if not clean or not ids:
        return 0
    query = select(ProspectTag.prospect_id, ProspectTag.tag).where(
        ProspectTag.prospect_id.in_(ids), ProspectTag.tag.in_(clean)
    )
    present = {(prospect_id, tag) for prospect_id, tag in session.execute(query)}
    new = sorted({(p, t) for p in ids for t in clean} - present)
    session.add_all(ProspectTag(prospect_id=p, tag=t) for p, t in new)
    session.flush()
    return len(new)


def untag_prospects(session: Session, prospect_ids: Iterable[int], tags: Iterable[str]) -> int:
    result = session.execute(
        delete(ProspectTag).where(ProspectTag.prospect_id.in_(list(prospect_ids)), ProspectTag.tag.in_(list(tags)))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def add_matching_to_list(session: Session, name: str, flt: ProspectFilter) -> int:
    """Add every prospect matching the filter to a list (created when missing) with one INSERT ... SELECT,
    so a million matches never pass through Python; returns how many were not in it yet."""
    clean = _clean_name(name, "list")
    list_id = session.scalar(select(ProspectList.id).where(ProspectList.name == clean))
    if list_id is None:
        list_id = create_list(session, clean).id
    ids = matching_ids(flt).distinct().subquery()
    present = select(ProspectListMember.prospect_id).where(
        ProspectListMember.list_id == list_id, ProspectListMember.prospect_id == ids.c.id
    )
    added_at = literal(utcnow(), _MEMBERS.c.added_at.type)
    rows = select(literal(list_id), ids.c.id, added_at).where(~exists(present))
    stmt = insert(_MEMBERS).from_select(["list_id", "prospect_id", "added_at"], rows)
    result = session.execute(stmt.execution_options(preserve_rowcount=True))  # INSERT counts are not kept by default
    return int(getattr(result, "rowcount", 0) or 0)


def tag_matching(session: Session, flt: ProspectFilter, tags: Iterable[str]) -> int:
    """Tag every prospect matching the filter (one INSERT ... SELECT per tag); returns the new pairs."""
    clean = sorted({_clean_name(t, "tag") for t in tags if t.strip()})
    added = 0
    for tag in clean:
        ids = matching_ids(flt).distinct().subquery()
        present = select(ProspectTag.prospect_id).where(ProspectTag.prospect_id == ids.c.id, ProspectTag.tag == tag)
        rows = select(ids.c.id, literal(tag, _TAGS.c.tag.type)).where(~exists(present))
        stmt = insert(_TAGS).from_select(["prospect_id", "tag"], rows)
        result = session.execute(stmt.execution_options(preserve_rowcount=True))
        added += int(getattr(result, "rowcount", 0) or 0)
    return added
