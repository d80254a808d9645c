"""The Prospects page's plain data: the mapping editor round trip, report tables, small inputs, display text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from outreach.errors import OutreachError
from outreach.prospect_mapping import auto_map
from outreach.prospect_search import ProspectPage
from outreach.prospect_views import (
    CUSTOM_CHOICE,
    accounting_line,
    confirmation_matches,
    editor_rows,
    empty_field_rows,
    export_file_name,
    mapping_from_rows,
    reject_rows,
    rejects_csv,
    sample_rows,
    shown,
    split_entries,
    split_tags,
    total_text,
)
from outreach.prospects import ImportReport, RejectedRow

HUBSPOT = ["Record ID", "First Name", "Email", "Company Name", "Lifecycle Stage"]
SAMPLES = [["101", "Ada", "ada@analytical-engines.co.uk", "Analytical Engines", "Lead"]]


def report(**changes: Any) -> ImportReport:
    values: dict[str, Any] = {
        "file_name": "f.csv",
        "rows": 4,
        "imported": 2,
        "updated": 0,
        "duplicates": 1,
        "rejected": 1,
        "suppressed": 0,
        "rejects": [RejectedRow(3, "invalid email address", ["x", "=1+1", "oops"])],
        "rejects_path": None,
        "empty_fields": {"title": 2, "company": 0, "city": 3},
        "mapping": {},
        "header": ["Email", "row", "reason"],
        "kind": "csv",
        "encoding": "utf-8",
        "delimiter": ",",
        "list_name": None,
        "dry_run": True,
    }
    values.update(changes)
    return ImportReport(**values)


def by_column(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["column"]: row for row in rows}


def test_untouched_editor_rows_give_back_the_proposed_mapping() -> None:
    proposed = auto_map(HUBSPOT, SAMPLES)
    rows = editor_rows(proposed, SAMPLES)

    assert by_column(rows)["Email"] == {
        "column": "Email",
        "example": "ada@analytical-engines.co.uk",
        "maps_to": "email",
        "custom_name": "",
    }
    assert by_column(rows)["Lifecycle Stage"]["maps_to"] == CUSTOM_CHOICE
    assert by_column(rows)["Lifecycle Stage"]["custom_name"] == "lifecycle_stage"
    assert mapping_from_rows(rows) == proposed.targets


def test_edits_rename_ignore_and_default_to_custom_fields() -> None:
    rows = editor_rows(auto_map(HUBSPOT, SAMPLES), SAMPLES)
    edited = by_column(rows)
    edited["First Name"]["maps_to"] = "ignore"
    edited["Lifecycle Stage"]["custom_name"] = "Hubspot stage"
    edited["Company Name"].update(maps_to=CUSTOM_CHOICE, custom_name="")
    edited["Record ID"].update(maps_to=None, custom_name="")  # a cleared cell keeps the column

    mapping = mapping_from_rows(rows)

    assert mapping == {
        "Record ID": "custom:record_id",
        "First Name": "ignore",
        "Email": "email",
        "Company Name": "custom:company_name",
        "Lifecycle Stage": "custom:hubspot_stage",
    }


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [
                {"column": "Notes", "maps_to": CUSTOM_CHOICE, "custom_name": "x"},
                {"column": "Memo", "maps_to": CUSTOM_CHOICE, "custom_name": "X"},
            ],
            "columns 'Notes' and 'Memo' both feed the custom field 'x'",
        ),
        ([{"column": "Title", "maps_to": CUSTOM_CHOICE, "custom_name": ""}], "'title' is one of our fields"),
        ([{"column": "Mail", "maps_to": "e-mail", "custom_name": ""}], "column 'Mail': 'e-mail' is not a choice"),
    ],
)
def test_mappings_that_cannot_work_are_refused_naming_the_column(rows: list[dict[str, str]], message: str) -> None:
    with pytest.raises(OutreachError, match=message):
        mapping_from_rows(rows)


def test_sample_rows_are_keyed_by_header_and_padded() -> None:
    assert sample_rows(["a", "b"], [["1"], ["2", "3", "extra"]]) == [{"a": "1", "b": ""}, {"a": "2", "b": "3"}]
    assert len(sample_rows(["a"], [["x"]] * 30)) == 10


def test_rejects_keep_row_numbers_and_never_lose_a_column_to_the_tables_own() -> None:
    [row] = reject_rows(report())
    assert row == {
        "row": 3,
        "reason": "invalid email address",
        "Email": "x",
        "row (file)": "=1+1",
        "reason (file)": "oops",
    }


def test_rejects_csv_is_built_with_formulas_neutralized_when_no_file_was_written() -> None:
    text = rejects_csv(report()).decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text))) == [
        ["row", "reason", "Email", "row", "reason"],
        ["3", "invalid email address", "x", "'=1+1", "oops"],
    ]


def test_rejects_csv_is_the_written_file_when_there_is_one(tmp_path: Path) -> None:
    written = tmp_path / "r.csv"
    written.write_bytes(b"row,reason\r\n3,all of them\r\n")
    assert rejects_csv(report(rejects_path=written)) == written.read_bytes()


def test_counts_read_as_one_equation_and_empty_fields_most_often_first() -> None:
    assert accounting_line(report()) == "4 rows = 2 imported + 0 updated + 1 duplicates + 1 rejected + 0 suppressed"
    assert empty_field_rows(report()) == [
        {"template field": "city", "empty for prospects": 3},
        {"template field": "title", "empty for prospects": 2},
    ]


def test_small_inputs() -> None:
    assert split_tags(" vip, q3 ,, vip,  big   deal ") == ("vip", "q3", "big deal")
    assert split_tags(None) == ()
    assert split_entries("a@x.com\nexample.org, b@y.com;c.org  d.org\n\n") == [
        "a@x.com",
        "example.org",
        "b@y.com",
        "c.org",
        "d.org",
    ]
    assert confirmation_matches("Ann@Acme.com", " ann@acme.com ")
    assert not confirmation_matches("ann@acme.com", "ann@acme.co")
    assert not confirmation_matches(" ", " ")


def test_display_text() -> None:
    assert shown(None) == "" and shown(True) == "yes" and shown(72.5) == "72.5"
    assert shown(datetime(2025, 3, 1, 9, 30, tzinfo=UTC)) == "2025-03-01 09:30 UTC"
    assert shown(["a", "b"]) == "a, b"
    page = ProspectPage(rows=[], total=10_000, total_capped=True, page=1, page_size=50, next_after_id=None)
    assert total_text(page) == "10,000+"
    assert total_text(ProspectPage([], 1234, False, 1, 50, None)) == "1,234"
    assert export_file_name("leads", "json", date(2025, 3, 1)) == "outreach-leads-2025-03-01.json"
