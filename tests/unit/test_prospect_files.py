"""Reading prospect files as exporters really write them; errors that name the file."""

from __future__ import annotations

import contextlib
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach.errors import OutreachError
from outreach.prospect_files import ProspectFileError, open_prospect_file, xlsx_cell_text
from outreach.prospect_mapping import header_score

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "prospects"


def read_all(path: Path) -> tuple[list[str], list[int], list[list[str]]]:
    pf = open_prospect_file(path, header_score)
    numbers: list[int] = []
    rows: list[list[str]] = []
    for chunk in pf.chunks(2):
        numbers += chunk.row_numbers
        rows += chunk.rows
    return pf.header, numbers, rows


def test_linkedin_notes_preamble_is_skipped_and_rows_keep_their_numbers():
    pf = open_prospect_file(FIXTURES / "linkedin_connections.csv", header_score)
    assert pf.header_row == 4
    assert pf.header[:4] == ["First Name", "Last Name", "URL", "Email Address"]
    _, numbers, rows = read_all(FIXTURES / "linkedin_connections.csv")
    assert numbers == [5, 6, 7]
    assert rows[0][3] == "radia@spanning-tree.org"


def test_cp1252_file_from_excel_keeps_accented_names():
    pf = open_prospect_file(FIXTURES / "excel_cp1252.csv", header_score)
    assert pf.encoding == "cp1252"
    _, _, rows = read_all(FIXTURES / "excel_cp1252.csv")
    assert [r[2] for r in rows] == ["Muñoz", "Müller", "Lefèvre"]
    assert rows[0][4] == "Director’s office"


def test_utf16_tab_separated_unicode_text():
    pf = open_prospect_file(FIXTURES / "excel_utf16.txt", header_score)
    assert (pf.encoding, pf.delimiter) == ("utf-16", "\t")
    _, _, rows = read_all(FIXTURES / "excel_utf16.txt")
    assert rows[1][1:3] == ["Ольга", "Петрова"]


def test_semicolons_and_a_quoted_newline_stay_in_one_cell():
    pf = open_prospect_file(FIXTURES / "semicolon.csv", header_score)
    assert pf.delimiter == ";"
    _, numbers, rows = read_all(FIXTURES / "semicolon.csv")
    assert rows[0][4] == "line one\nline two"
    assert numbers == [2, 3]


def test_utf8_bom_is_not_part_of_the_first_header(tmp_path: Path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffEmail,Name\nann@acme-corp.com,Ann\n".encode())
    header, _, rows = read_all(path)
    assert header == ["Email", "Name"]
    assert rows == [["ann@acme-corp.com", "Ann"]]


def test_xlsx_made_with_openpyxl(tmp_path: Path):
    path = tmp_path / "people.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Email", "First Name", "Employees", "Phone"])
    sheet.append(["ann@acme-corp.com", "Ann", 250, 14155550100])
    sheet.append([None, None, None, None])
    sheet.append(["bob@acme-corp.com", "Bob", 12.5, "+1 415 555 0101"])
    workbook.save(path)
    pf = open_prospect_file(path, header_score)
    assert pf.kind == "xlsx"
    header, numbers, rows = read_all(path)
    assert header == ["Email", "First Name", "Employees", "Phone"]
    assert rows == [
        ["ann@acme-corp.com", "Ann", "250", "14155550100"],
        ["bob@acme-corp.com", "Bob", "12.5", "+1 415 555 0101"],
    ]
    assert numbers == [2, 4]


def test_ragged_rows_are_flagged_and_short_rows_padded(tmp_path: Path):
    path = tmp_path / "ragged.csv"
    path.write_text("email,name\na@acme-corp.com,Ann,extra\nb@acme-corp.com\nc@acme-corp.com,Cy,\n")
    pf = open_prospect_file(path, header_score)
    chunk = next(pf.chunks())
    assert chunk.rows == [["a@acme-corp.com", "Ann"], ["b@acme-corp.com", ""], ["c@acme-corp.com", "Cy"]]
    assert chunk.problems == {0: "row has 3 cells but the header has 2"}


def test_duplicate_and_blank_header_names_are_made_unique(tmp_path: Path):
    path = tmp_path / "dups.csv"
    path.write_text("Email,Email,,Name\na@acme-corp.com,b@acme-corp.com,x,Ann\n")
    assert open_prospect_file(path, header_score).header == ["Email", "Email (2)", "Column 3", "Name"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\xef\xbb\xbf\r\n\r\n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" * 20, "binary"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "legacy Excel"),
        (b"PK\x03\x04not really a zip", "not a readable XLSX"),
        (b"ann@acme-corp.com,Ann\nbob@acme-corp.com,Bob\n", "holds data"),
    ],
)
def test_unreadable_files_get_one_clear_error_naming_the_file(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "upload.csv"
    path.write_bytes(content)
    with pytest.raises(ProspectFileError) as excinfo:
        read_all(path)
    assert "upload.csv" in str(excinfo.value)
    assert message in str(excinfo.value)


def test_missing_file_is_named(tmp_path: Path):
    with pytest.raises(ProspectFileError, match=r"nowhere\.csv: no such file"):
        open_prospect_file(tmp_path / "nowhere.csv", header_score)


def test_xlsx_cells_read_as_typed():
    assert xlsx_cell_text(None) == ""
    assert xlsx_cell_text(3.0) == "3"
    assert xlsx_cell_text(True) == "TRUE"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=600))
def test_arbitrary_bytes_never_crash_with_anything_but_our_error(tmp_path_factory, content: bytes):
    path = tmp_path_factory.mktemp("bytes") / "fuzz.csv"
    path.write_bytes(content)
    with contextlib.suppress(OutreachError):
        read_all(path)
