"""Acting on every prospect a filter matches, set-based (SQLite and PostgreSQL): lists and tags."""

from __future__ import annotations

from sqlalchemy import Engine, select

from db.engine import transaction
from db.models import Prospect, ProspectList, ProspectListMember, ProspectTag
from outreach.prospect_lists import add_matching_to_list, add_to_list, tag_matching, tag_prospects
from outreach.prospect_search import ProspectFilter, matching_ids


def seed(engine: Engine) -> dict[str, int]:
    """Six prospects: three at Acme (two in 'Fair', one tagged 'vip'), three at Globex (one tagged 'vip')."""
    ids: dict[str, int] = {}
    with transaction(engine) as s:
        for i, company in enumerate(["Acme", "Acme", "Acme", "Globex", "Globex", "Globex"]):
            email = f"p{i}@{company.lower()}-corp.com"
            prospect = Prospect(email=email, email_normalized=email, company=company)
            s.add(prospect)
            s.flush()
            ids[email] = prospect.id
        add_to_list(s, "Fair", [ids["p0@acme-corp.com"], ids["p1@acme-corp.com"]])
        tag_prospects(s, [ids["p2@acme-corp.com"], ids["p3@globex-corp.com"]], ["vip"])
    return ids


def members(engine: Engine, name: str) -> list[str]:
    with transaction(engine, readonly=True) as s:
        return sorted(
            s.scalars(
                select(Prospect.email)
                .join(ProspectListMember, ProspectListMember.prospect_id == Prospect.id)
                .join(ProspectList, ProspectList.id == ProspectListMember.list_id)
                .where(ProspectList.name == name)
            )
        )


def tagged(engine: Engine, tag: str) -> list[str]:
    with transaction(engine, readonly=True) as s:
        query = select(Prospect.email).join(ProspectTag, ProspectTag.prospect_id == Prospect.id)
        return sorted(s.scalars(query.where(ProspectTag.tag == tag)))


def test_matching_prospects_join_a_new_list_once(engine: Engine) -> None:
    seed(engine)
    with transaction(engine) as s:
        added = add_matching_to_list(s, "  Acme   people ", ProspectFilter(company="acme"))
    with transaction(engine) as s:
        again = add_matching_to_list(s, "Acme people", ProspectFilter(company="ACME"))

    assert (added, again) == (3, 0)
    assert members(engine, "Acme people") == ["p0@acme-corp.com", "p1@acme-corp.com", "p2@acme-corp.com"]


def test_list_and_tag_filters_pick_the_prospects_to_add(engine: Engine) -> None:
    seed(engine)
    with transaction(engine) as s:
        from_fair = add_matching_to_list(s, "Follow up", ProspectFilter(list_name="Fair"))
        from_vip = add_matching_to_list(s, "Follow up", ProspectFilter(tag="vip"))
        none = add_matching_to_list(s, "Follow up", ProspectFilter(text="nobody"))

    assert (from_fair, from_vip, none) == (2, 2, 0)
    assert members(engine, "Follow up") == [
        "p0@acme-corp.com",
        "p1@acme-corp.com",
        "p2@acme-corp.com",
        "p3@globex-corp.com",
    ]
    assert members(engine, "Fair") == ["p0@acme-corp.com", "p1@acme-corp.com"], "the source list is unchanged"


def test_matching_prospects_get_each_tag_once(engine: Engine) -> None:
    seed(engine)
    with transaction(engine) as s:
        first = tag_matching(s, ProspectFilter(company="globex"), ["vip", " hot ", "hot", ""])
    with transaction(engine) as s:
        second = tag_matching(s, ProspectFilter(company="globex"), ["vip", "hot"])

    assert (first, second) == (5, 0)  # 3 x hot + 2 x vip (one Globex prospect had vip already)
    assert tagged(engine, "hot") == ["p3@globex-corp.com", "p4@globex-corp.com", "p5@globex-corp.com"]
    assert tagged(engine, "vip") == [
        "p2@acme-corp.com",
        "p3@globex-corp.com",
        "p4@globex-corp.com",
        "p5@globex-corp.com",
    ]


def test_no_filter_matches_everyone(engine: Engine) -> None:
    ids = seed(engine)
    with transaction(engine, readonly=True) as s:
        assert sorted(s.scalars(matching_ids())) == sorted(ids.values())
