"""Importing prospects into SQLite and PostgreSQL: every row accounted for, all or nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from db.engine import transaction
from db.models import Prospect, ProspectList, ProspectListMember, ProspectTag
from outreach.errors import OutreachError
from outreach.prospect_lists import add_to_list, list_lists, tag_prospects
from outreach.prospect_mapping import list_presets, load_preset, save_preset
from outreach.prospect_search import filter_choices
from outreach.prospects import (
    ImportOptions,
    ImportReport,
    ProspectFilter,
    dry_run,
    import_prospects,
    preview_file,
    prospect_detail,
    search_prospects,
)
from outreach.suppression import suppress

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "prospects"
SECRET = "test-secret-key-0123456789abcdefghijklmnop"


def run(engine: Engine, path: Path, **options) -> ImportReport:
    with transaction(engine) as session:
        return import_prospects(session, path, ImportOptions(**options), secret_key=SECRET)


def prospect_count(engine: Engine) -> int:
    with transaction(engine, readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(Prospect)) or 0)


def adds_up(report: ImportReport) -> bool:
    parts = report.imported + report.updated + report.duplicates + report.rejected + report.suppressed
    return report.rows == parts


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.mark.parametrize(
    ("name", "imported", "rejected"),
    [
        ("hubspot.csv", 3, 0),
        ("apollo_a.csv", 3, 1),
        ("apollo_b.csv", 2, 0),
        ("linkedin_connections.csv", 2, 1),
        ("salesforce_labels.csv", 1, 0),
        ("salesforce_api.csv", 2, 0),
        ("mailchimp.csv", 2, 0),
        ("lemlist.csv", 1, 1),
        ("excel_cp1252.csv", 3, 0),
        ("excel_utf16.txt", 2, 0),
        ("semicolon.csv", 2, 0),
    ],
)
def test_every_exporter_layout_imports_and_reimport_adds_nothing(
    engine: Engine, tmp_path: Path, name, imported, rejected
):
    first = run(engine, FIXTURES / name, rejects_dir=tmp_path)
    assert adds_up(first)
    assert (first.imported, first.rejected) == (imported, rejected)
    assert (first.rejects_path is not None) == bool(rejected)
    again = run(engine, FIXTURES / name, rejects_dir=tmp_path)
    assert adds_up(again)
    assert again.imported == 0 and again.updated == 0
    assert again.duplicates == first.imported + first.updated + first.duplicates
    assert prospect_count(engine) == imported


def test_fields_are_normalized_on_the_way_in(engine: Engine):
    run(engine, FIXTURES / "apollo_a.csv")
    with transaction(engine, readonly=True) as session:
        linus = session.scalar(select(Prospect).where(Prospect.email_normalized == "linus@kernel-labs.io"))
        assert linus is not None
        assert (linus.phone, linus.employee_count, linus.timezone) == ("+15035550101", 120, "America/Los_Angeles")
        assert linus.company_domain == "kernel-labs.io"
        assert linus.custom_fields["departments"] == "Executive, Founder"
        ken = session.scalar(select(Prospect).where(Prospect.email_normalized == "ken@mailinator.com"))
        assert ken is not None and ken.is_disposable and ken.company_domain is None


def test_rejects_file_has_row_number_reason_and_original_cells(engine: Engine, tmp_path: Path):
    report = run(engine, FIXTURES / "linkedin_connections.csv", rejects_dir=tmp_path)
    assert report.rejects_path is not None
    with report.rejects_path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["row", "reason", "First Name"]
    assert rows[1][:4] == ["6", "missing email", "Tim", "Berners-Lee"]
    assert report.rejects[0].row == 6


def test_existing_prospects_update_only_with_non_empty_different_cells(engine: Engine, tmp_path: Path):
    write_csv(
        tmp_path / "a.csv",
        [["Email", "First Name", "Title", "Notes"], ["ann@acme-corp.com", "Ann", "CEO", "met at expo"]],
    )
    run(engine, tmp_path / "a.csv")
    write_csv(
        tmp_path / "b.csv",
        [
            ["Email", "First Name", "Title", "Notes"],
            ["ANN@acme-corp.com", "", "Founder", ""],
            ["ann@acme-corp.com", "Ann", "Founder", ""],
            ["bob@acme-corp.com", "Bob", "", ""],
        ],
    )
    report = run(engine, tmp_path / "b.csv")
    assert (report.rows, report.imported, report.updated, report.duplicates) == (3, 1, 1, 1)
    with transaction(engine, readonly=True) as session:
        ann = session.scalar(select(Prospect).where(Prospect.email_normalized == "ann@acme-corp.com"))
        assert ann is not None
        assert (ann.first_name, ann.title, ann.custom_fields) == ("Ann", "Founder", {"notes": "met at expo"})


def test_duplicates_within_one_file_merge_into_one_prospect(engine: Engine, tmp_path: Path):
    write_csv(
        tmp_path / "d.csv",
        [
            ["Email", "Title", "City"],
            ["cy@acme-corp.com", "CTO", ""],
            ["Cy@Acme-Corp.com", "", "Oslo"],
            ["cy@acme-corp.com", "CTO", "Oslo"],
        ],
    )
    report = run(engine, tmp_path / "d.csv")
    assert (report.imported, report.updated, report.duplicates) == (1, 1, 1)
    with transaction(engine, readonly=True) as session:
        cy = session.scalar(select(Prospect))
        assert cy is not None and (cy.title, cy.city) == ("CTO", "Oslo")


def test_suppressed_addresses_and_domains_are_never_imported(engine: Engine, tmp_path: Path):
    with transaction(engine) as session:
        suppress(session, ["ann@acme-corp.com", "blocked.io"])
    write_csv(tmp_path / "s.csv", [["Email"], ["ann@acme-corp.com"], ["x@mail.blocked.io"], ["ok@fine.io"]])
    report = run(engine, tmp_path / "s.csv")
    assert (report.suppressed, report.imported) == (2, 1)
    assert prospect_count(engine) == 1


def test_dry_run_reports_the_same_counts_and_writes_nothing(engine: Engine, tmp_path: Path):
    with transaction(engine) as session:
        report = dry_run(
            session, FIXTURES / "hubspot.csv", ImportOptions(list_name="Q1", tags=("expo",)), secret_key=SECRET
        )
    assert report.dry_run and report.imported == 3
    assert report.empty_fields["title"] == 1  # the info@ row has no job title
    assert report.mapping["Email"] == "email"
    with transaction(engine, readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Prospect)) == 0
        assert session.scalar(select(func.count()).select_from(ProspectList)) == 0
    real = run(engine, FIXTURES / "hubspot.csv", list_name="Q1", tags=("expo",))
    assert real.summary() | {"rejects_path": None} == report.summary() | {"rejects_path": None}


def test_a_failure_midway_leaves_nothing_written(engine: Engine, tmp_path: Path):
    rows = [["Email"]] + [[f"p{i}@acme-corp.com"] for i in range(50)]
    write_csv(tmp_path / "big.csv", rows)

    def explode(done: int, total: int) -> None:
        if done >= 20:
            raise RuntimeError("operator closed the page")

    with pytest.raises(RuntimeError), transaction(engine) as session:
        import_prospects(
            session, tmp_path / "big.csv", ImportOptions(chunk_size=10), secret_key=SECRET, progress=explode
        )
    assert prospect_count(engine) == 0


def test_progress_reaches_the_total(engine: Engine, tmp_path: Path):
    write_csv(tmp_path / "p.csv", [["Email"]] + [[f"p{i}@acme-corp.com"] for i in range(25)])
    seen: list[tuple[int, int]] = []
    with transaction(engine) as session:
        import_prospects(
            session,
            tmp_path / "p.csv",
            ImportOptions(chunk_size=10),
            secret_key=SECRET,
            progress=lambda d, t: seen.append((d, t)),
        )
    assert seen[-1] == (25, 25)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_lists_and_tags_from_options_and_from_the_file(engine: Engine):
    run(engine, FIXTURES / "mailchimp.csv", list_name="Newsletter", tags=("imported",))
    run(engine, FIXTURES / "lemlist.csv", list_name="Newsletter")
    with transaction(engine, readonly=True) as session:
        assert [(lst.name, lst.members) for lst in list_lists(session)] == [("Newsletter", 3)]
        tags = set(session.execute(select(ProspectTag.tag)).scalars())
        assert tags == {"vip", "denver", "VIP", "Blog", "imported"}
        assert session.scalar(select(func.count()).select_from(ProspectListMember)) == 3


def test_search_filters_and_detail(engine: Engine):
    run(engine, FIXTURES / "hubspot.csv", list_name="Q1")
    run(engine, FIXTURES / "apollo_a.csv", tags=("apollo",))
    with transaction(engine) as session:
        everyone = search_prospects(session, page_size=2)
        assert (everyone.total, len(everyone.rows), everyone.total_capped) == (6, 2, False)
        assert everyone.next_after_id is not None
        rest = search_prospects(session, page_size=10, after_id=everyone.next_after_id)
        assert len(rest.rows) == 4
        assert {r.email for r in search_prospects(session, ProspectFilter(list_name="Q1")).rows} == {
            "ada@analytical-engines.co.uk",
            "GRACE@Navy-Compilers.com",
            "info@navy-compilers.com",
        }
        assert search_prospects(session, ProspectFilter(tag="apollo")).total == 3
        assert search_prospects(session, ProspectFilter(text="LOVELACE")).rows[0].first_name == "Ada"
        assert search_prospects(session, ProspectFilter(company="navy", country="United States")).total == 2
        assert search_prospects(session, ProspectFilter(text="100%_")).total == 0
        assert search_prospects(session, count_cap=4).total_capped
        ada_id = search_prospects(session, ProspectFilter(text="ada@")).rows[0].id
        tag_prospects(session, [ada_id], ["vip"])
        add_to_list(session, "Founders", [ada_id])
        detail = prospect_detail(session, ada_id)
        assert detail.lists == ["Founders", "Q1"] and detail.tags == ["vip"]
        assert detail.fields["timezone"] == "Europe/London"
        assert detail.campaigns == [] and detail.timeline == []
        assert "United Kingdom" in filter_choices(session)["countries"]


def test_presets_save_load_and_apply(engine: Engine, tmp_path: Path):
    write_csv(tmp_path / "odd.csv", [["E-Mail Adresse", "Vorname"], ["hans@acme-corp.de", "Hans"]])
    assert not preview_file(tmp_path / "odd.csv").has_email
    assert preview_file(tmp_path / "odd.csv", mapping={"E-Mail Adresse": "email"}).has_email
    with pytest.raises(OutreachError, match="no email column"), transaction(engine) as session:
        dry_run(session, tmp_path / "odd.csv", ImportOptions(), secret_key=SECRET)
    with transaction(engine) as session:
        save_preset(session, "German CRM", {"E-Mail Adresse": "email", "Vorname": "first_name"})
        assert [p.name for p in list_presets(session)] == ["German CRM"]
        assert load_preset(session, "German CRM")["Vorname"] == "first_name"
    report = run(engine, tmp_path / "odd.csv", preset="German CRM")
    assert report.imported == 1
    with transaction(engine, readonly=True) as session:
        assert session.scalar(select(Prospect.first_name)) == "Hans"


CELLS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
EMAILS = st.one_of(CELLS, st.sampled_from(["a@acme-corp.com", "A@ACME-CORP.COM", "b@beta.io", "x@blocked.io", ""]))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(rows=st.lists(st.tuples(EMAILS, CELLS, CELLS), min_size=1, max_size=8))
def test_arbitrary_cells_never_crash_never_half_write_and_always_add_up(engine: Engine, tmp_path_factory, rows):
    with transaction(engine) as session:
        suppress(session, ["blocked.io"])
    path = write_csv(tmp_path_factory.mktemp("cells") / "fuzz.csv", [["Email", "Title", "Notes"], *map(list, rows)])
    before = prospect_count(engine)
    try:
        report = run(engine, path)
    except OutreachError:
        assert prospect_count(engine) == before
        return
    assert adds_up(report)
    assert prospect_count(engine) == before + report.imported


def test_mapping_another_column_to_email_replaces_the_automatic_choice(engine: Engine, tmp_path: Path):
    write_csv(tmp_path / "two.csv", [["Email", "Work Email"], ["home@gmail.com", "ann@acme-corp.com"]])
    report = run(engine, tmp_path / "two.csv", mapping={"Work Email": "email"})
    assert report.mapping == {"Email": "custom:email_2", "Work Email": "email"}
    with transaction(engine, readonly=True) as session:
        ann = session.scalar(select(Prospect))
        assert ann is not None and ann.email == "ann@acme-corp.com"
        assert ann.custom_fields == {"email_2": "home@gmail.com"}
