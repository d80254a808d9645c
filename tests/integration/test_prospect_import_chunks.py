"""The import's results do not depend on how the file is cut into chunks, on SQLite and PostgreSQL.

The importer inserts new rows column-wise in one statement per chunk (COPY on PostgreSQL) and overlaps
a chunk's SQLite insert with the next chunk's normalization. Importing the same file in chunks of 3 rows
and in one chunk must give the same prospects in the same order, the same tags and lists, and the same
counts, rejects and empty template fields (each prospect counted once, however its rows are spread).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, exc, select

from db.engine import transaction
from db.models import Prospect, ProspectList, ProspectListMember, ProspectTag
from outreach.prospects import ImportOptions, ImportReport, _Importer, import_prospects
from outreach.suppression import suppress

SECRET = "test-secret-key-0123456789abcdefghijklmnop"
HEADER = ["Email", "First Name", "Last Name", "Full Name", "Title", "Mobile Phone", "Corporate Phone", "Country",
          "State", "Website", "# Employees", "Tags", "Notes", "Company Phone", "Row", "Reject", "Empty"]  # fmt: skip


def messy_rows() -> list[list[str]]:
    rows = []
    for i in range(40):
        email = [f"p{i}@acme-corp.com", f"P{i % 7}@Acme-Corp.com", "", "not-an-email", f"x{i}@blocked.io"][i % 5]
        rows.append(
            [
                email,
                ["Ann", "", " Bo "][i % 3],
                ["Lee", "", ""][i % 3],
                ["", "Cy Dee", "Ek, Fa"][i % 3],
                ["CEO", "", "T" * 400][i % 3],
                [f"'+1 415-555-01{i:02d}", "", "(212) 555-0100"][i % 3],
                ["", "'+44 20 7946 0958", ""][i % 3],
                ["United States", "Germany", "", "UK"][i % 4],
                ["California", "", "Texas"][i % 3],
                ["https://www.acme.com/x", "", "beta.io"][i % 3],
                ["51-200", "", "1,000"][i % 3],
                ['"vip, denver"', "", "solo"][i % 3],
                ['say "hi"', "", "ünï 🎉", "  padded  "][i % 4],
                ["'+1 212 555 0100", ""][i % 2],
                [str(i), ""][i % 2],
                ["", "r"][i % 2],
                "",
            ]
        )
    rows.insert(10, rows[3][:5])  # short row: padded
    rows.insert(20, [*rows[4], "extra"])  # long row: rejected
    return rows


def write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for index, row in enumerate(rows):
            writer.writerow(row)
            if index % 9 == 0:
                fh.write("\r\n")  # blank lines are not rows but count in row numbers
    return path


def import_file(engine: Engine, path: Path, **options: Any) -> ImportReport:
    with transaction(engine) as session:
        return import_prospects(session, path, ImportOptions(**options), secret_key=SECRET)


def snapshot(engine: Engine) -> dict[str, Any]:
    skip = {"id", "created_at", "updated_at"}
    with transaction(engine, readonly=True) as session:
        prospects = session.scalars(select(Prospect).order_by(Prospect.id)).all()
        emails = {p.id: p.email_normalized for p in prospects}
        rows = [
            {c.name: getattr(p, c.name) for c in Prospect.__table__.columns if c.name not in skip} for p in prospects
        ]
        tags = sorted((emails[t.prospect_id], t.tag) for t in session.scalars(select(ProspectTag)))
        members = sorted(
            (name, emails[m.prospect_id])
            for m, name in session.execute(
                select(ProspectListMember, ProspectList.name).join(
                    ProspectList, ProspectList.id == ProspectListMember.list_id
                )
            )
        )
    return {"rows": rows, "tags": tags, "members": members}


def report_view(report: ImportReport) -> dict[str, Any]:
    rejects = [(r.row, r.reason, r.cells) for r in report.rejects]
    return {**report.summary(), "rejects_path": None, "rejects": rejects, "empty": report.empty_fields}


def clear(engine: Engine) -> None:
    with transaction(engine) as session:
        session.execute(delete(ProspectTag))
        session.execute(delete(ProspectListMember))
        session.execute(delete(Prospect))


def test_results_do_not_depend_on_the_chunk_size(engine: Engine, tmp_path: Path):
    with transaction(engine) as session:
        suppress(session, ["blocked.io"])
    first = write(tmp_path / "first.csv", messy_rows()[:12])
    second = write(tmp_path / "second.csv", messy_rows())
    results = []
    for chunk_size in (3, 10_000):
        clear(engine)
        reports = [
            import_file(engine, first, chunk_size=chunk_size),
            import_file(engine, second, chunk_size=chunk_size, list_name="L", tags=("t",)),
            import_file(engine, second, chunk_size=chunk_size),
        ]
        results.append(([report_view(r) for r in reports], snapshot(engine)))
    (small_reports, small_db), (big_reports, big_db) = results
    assert small_reports == big_reports
    assert small_db == big_db
    imported, again = big_reports[1], big_reports[2]
    assert imported["rows"] == 42 and imported["suppressed"] == 8 and imported["rejected"] == 18
    assert again["imported"] == 0
    expected = {"company_phone": "+1 212 555 0100", "row": "0", "reject": "r", "notes": 'say "hi"'}
    assert big_db["rows"][0]["custom_fields"] == expected


def test_empty_template_fields_are_counted_once_per_prospect_in_a_chunk(engine: Engine, tmp_path: Path):
    path = tmp_path / "e.csv"
    path.write_text(
        "Email,Title,Notes\n"
        "a@acme-corp.com,CEO,\n"
        "b@acme-corp.com,,hi\n"
        "bad,,x\n"  # rejected: not counted
        "b@acme-corp.com,CTO,\n"  # the same prospect again
        "c@acme-corp.com,,\n",
        encoding="utf-8",
    )
    report = import_file(engine, path)
    assert (report.imported, report.updated, report.rejected) == (3, 1, 1)
    assert (report.empty_fields["title"], report.empty_fields["notes"], report.empty_fields["email"]) == (1, 2, 0)


def test_empty_template_fields_match_the_stored_prospects_whatever_the_chunks(engine: Engine, tmp_path: Path):
    """Counted against what was stored: custom fields named like internal columns ("Row", "Reject") are
    custom fields like any other, and a prospect whose rows fall in several chunks counts once."""
    path = write(tmp_path / "m.csv", messy_rows())
    for chunk_size in (3, 7, 10_000):
        clear(engine)
        report = import_file(engine, path, chunk_size=chunk_size)
        rows = snapshot(engine)["rows"]
        assert len(rows) == report.imported
        for name, count in report.empty_fields.items():
            values = [r[name] if name in r else r["custom_fields"].get(name) for r in rows]
            assert count == sum(1 for v in values if v in (None, "")), (chunk_size, name)
        assert report.empty_fields["row"] > 0 and report.empty_fields["reject"] < len(rows)


def test_a_failed_insert_fails_the_import_and_leaves_nothing_written(engine: Engine, tmp_path: Path, monkeypatch):
    """An insert that fails (here: a row the dedupe was made to miss) raises SQLAlchemy's IntegrityError
    from the import call itself, even when it ran on the insert thread, and nothing is written."""
    import_file(engine, write(tmp_path / "one.csv", [["p1@acme-corp.com"] + [""] * 16]))
    monkeypatch.setattr(_Importer, "_existing", lambda self, keys: {})
    path = tmp_path / "many.csv"
    path.write_text("Email\n" + "".join(f"n{i}@acme-corp.com\n" for i in range(10)) + "p1@acme-corp.com\n")
    with pytest.raises(exc.IntegrityError), transaction(engine) as session:
        import_prospects(session, path, ImportOptions(chunk_size=4), secret_key=SECRET)
    with transaction(engine, readonly=True) as session:
        assert session.scalars(select(Prospect.email_normalized)).all() == ["p1@acme-corp.com"]
