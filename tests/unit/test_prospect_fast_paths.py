"""The import's fast paths give exactly what the straightforward code gives.

Each shortcut the importer takes for speed (Python's str.strip for pandas' Arrow strip, phones and
domains worked out without the slow library call, custom fields' JSON built column-wise, memos that
empty themselves, islice chunking) is held here against the plain computation it replaces.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach import prospect_normalize
from outreach.prospect_files import Chunk, ProspectFileError, open_prospect_file
from outreach.prospect_mapping import auto_map, header_score
from outreach.prospect_normalize import (
    CustomColumns,
    NormalizeCache,
    _hosts,
    fast_nanp_phone,
    normalize_chunk,
    normalize_columns,
    normalize_phone,
)
from outreach.suppression import SuppressionIndex, keyed_hash, plain_hash


def test_str_strip_trims_exactly_what_arrow_trims():
    """normalize_columns trims with str.strip where pandas' str.strip (Arrow's utf8_trim_whitespace) was
    used: both must treat the same characters as white space, at either end."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    leading = pc.utf8_trim_whitespace(pa.array([c + "x" for c in chars])).to_pylist()
    trailing = pc.utf8_trim_whitespace(pa.array(["x" + c for c in chars])).to_pylist()
    for char, lead, trail in zip(chars, leading, trailing, strict=True):
        assert lead == (char + "x").strip(), hex(ord(char))
        assert trail == ("x" + char).strip(), hex(ord(char))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(" \t\r\n\x1c\x85\xa0\u2003\u3000ab'é"), max_size=12))
def test_str_strip_matches_arrow_on_runs_of_white_space(text: str):
    assert pc.utf8_trim_whitespace(pa.array([text])).to_pylist() == [text.strip()]


SEPARATOR = st.sampled_from(["", " ", "-", "."])
DIGIT = st.sampled_from("0123456789")


@st.composite
def nanp_like(draw: st.DrawFn) -> str:
    area = draw(st.text(DIGIT, min_size=3, max_size=3))
    area = f"({area})" if draw(st.booleans()) else area
    parts = [area, draw(st.text(DIGIT, min_size=3, max_size=3)), draw(st.text(DIGIT, min_size=4, max_size=4))]
    number = draw(SEPARATOR).join(parts[:2]) + draw(SEPARATOR) + parts[2]
    return draw(st.sampled_from(["+1", "+1 ", "+1-", "", "1 ", "+"])) + number


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(nanp_like(), st.text(alphabet="+1234567890 -.()x", max_size=16)),
       region=st.sampled_from([None, "US", "CA", "GB", "DE", "AG"]))  # fmt: skip
def test_fast_nanp_phone_agrees_with_phonenumbers(value: str, region: str | None):
    fast = fast_nanp_phone(value, region)
    if fast is not None:
        assert fast == normalize_phone(value, region)


def test_fast_nanp_phone_covers_every_area_code_as_phonenumbers_does():
    for area in range(200, 1000):
        for value, region in ((f"+1 {area}-555-0147", None), (f"({area}) 201-9999", "US"), (f"{area}.000.0000", "CA")):
            assert fast_nanp_phone(value, region) == normalize_phone(value, region), value
    assert fast_nanp_phone("+1 115-555-0147", None) is None  # no area code starts with 1: left to phonenumbers
    assert fast_nanp_phone("415-555-0147", "GB") is None


def slow_domain(domain: str) -> tuple[str | None, str | None]:
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain.lower(), None
    except EmailNotValidError as exc:
        return None, str(exc)


EDGE_DOMAINS = [
    "acme.com",
    "localhost",
    "a..b.com",
    "-bad.com",
    "ab--cd.com",
    "xn--bcher-kva.com",
    "XN--bcher-kva.com",
    "ex_ample.com",
    "mail.test",
    "x.onion",
    "home.arpa",
    "a.123",
    "a" * 63 + ".com",
    "a" * 64 + ".com",
    *(".".join(["b" * 60] * 4)[: n - 4] + ".com" for n in range(246, 257)),
]


@pytest.mark.parametrize("domain", EDGE_DOMAINS)
def test_domain_verdicts_match_email_validator_at_the_edges(domain: str):
    assert NormalizeCache().domain(domain) == slow_domain(domain)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="abcxyz019.-_", min_size=1, max_size=24))
def test_domain_verdicts_match_email_validator(domain: str):
    assert NormalizeCache().domain(domain) == slow_domain(domain)


CELL = st.one_of(
    st.sampled_from(["", "", "plain", "x" * 30, "%s", "%%", 'say "hi"', "back\\slash", "tab\there", "é", "🎉", "\x7f"]),
    st.text(max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(
        st.sampled_from(["a", "b_c", "pct%name", "é", 'q"n', "d", "e"]), min_size=1, max_size=5, unique=True
    ),
    rows=st.integers(min_value=1, max_value=8),
    data=st.data(),
)
def test_custom_fields_json_is_json_dumps_text(names: list[str], rows: int, data: st.DataObject):
    dense = data.draw(st.lists(st.booleans(), min_size=len(names), max_size=len(names)))
    values = [
        [data.draw(CELL.filter(bool) if full else CELL) for _ in range(rows)] for full in dense
    ]  # columns with a cell in every row, and columns with gaps, in any order
    custom = CustomColumns(names, values, rows)
    assert custom.json_texts() == [json.dumps(d) for d in custom.dicts()]


def test_custom_fields_json_when_two_columns_share_a_name():
    custom = CustomColumns(["x", "x"], [["a", ""], ["b", "c"]], 2)
    assert custom.json_texts() == ['{"x": "b"}', '{"x": "c"}']


def test_memos_that_reach_their_limit_empty_themselves_and_still_answer(monkeypatch):
    monkeypatch.setattr(prospect_normalize, "CACHE_LIMIT", 3)
    cache = NormalizeCache()
    numbers = [f"+1 415-555-01{i:02d}" for i in range(10)]
    assert [cache.phone(n, None) for n in numbers] == [normalize_phone(n, None) for n in numbers]
    assert len(cache.phones) <= 3
    sites = [f"https://www.site{i}.example.com/x" for i in range(10)] + ["https://www.site0.example.com/x"]
    assert _hosts(sites, cache) == [f"site{i}.example.com" for i in range(10)] + ["site0.example.com"]
    assert _hosts(sites[:2], cache) == ["site0.example.com", "site1.example.com"]


def test_normalize_columns_agrees_with_the_data_frame_view():
    header = ["Email", "First Name", "Phone", "Country", "Notes", "Score"]
    rows = [
        ["Ann@Acme.com", " Ann ", "'+1 415-555-0101", "US", "  hi ", "'12"],
        ["bad", "", "", "", "", ""],
        ["bo@beta.io", "Bo", "030 901820", "Germany", "", "3"],
    ]
    chunk = Chunk([2, 3, 4], rows)
    mapping = auto_map(header, rows)
    frame = normalize_chunk(chunk, mapping, header, NormalizeCache())
    columns = normalize_columns(chunk, mapping, header, NormalizeCache())
    assert frame["phone"].tolist() == columns.values["phone"] == ["+14155550101", None, "+4930901820"]
    assert (
        frame["custom_fields"].tolist()
        == columns.custom.dicts()
        == [{"notes": "hi", "score": "12"}, {}, {"score": "3"}]
    )
    assert columns.custom.json_texts() == ['{"notes": "hi", "score": "12"}', "{}", '{"score": "3"}']
    assert columns.present["first_name"] == 2 and columns.present["phone"] == 2
    assert frame["reject"].notna().tolist() == [r is not None for r in columns.reject] == [False, True, False]


# --- chunking ------------------------------------------------------------------------------------


def reference_chunks(records: list[list[str]], header_row: int, width: int, size: int) -> list[tuple]:
    """The former record-by-record chunker, kept as the definition of the chunks' contents."""
    out, numbers, rows, problems = [], [], [], {}
    for row_number, record in enumerate(records, start=1):
        if row_number <= header_row or not any(record):
            continue
        if len(record) != width:
            if len(record) > width and "".join(record[width:]).strip():
                problems[len(rows)] = f"row has {len(record)} cells but the header has {width}"
            record = record[:width] + [""] * (width - len(record))
        numbers.append(row_number)
        rows.append(record)
        if len(rows) >= size:
            out.append((numbers, rows, problems))
            numbers, rows, problems = [], [], {}
    if rows:
        out.append((numbers, rows, problems))
    return out


RECORD = st.one_of(
    st.just([]),
    st.lists(st.sampled_from(["", "", "x", "a@acme-corp.com", " "]), min_size=1, max_size=5),
)


@settings(max_examples=150, deadline=None)
@given(records=st.lists(RECORD, max_size=30), size=st.integers(min_value=1, max_value=7))
def test_chunks_hold_the_same_rows_numbers_and_problems_as_reading_record_by_record(
    tmp_path_factory, records: list[list[str]], size: int
):
    path = tmp_path_factory.mktemp("chunks") / "f.csv"
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["Email", "Name", "Title"])
    for record in records:
        if record:
            writer.writerow(record)
        else:
            buffer.write("\r\n")
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    pf = open_prospect_file(path, header_score)
    with path.open(encoding="utf-8", newline="") as fh:
        parsed = list(csv.reader(fh))
    expected = reference_chunks(parsed, pf.header_row, len(pf.header), size)
    got = [(c.row_numbers, c.rows, c.problems) for c in pf.chunks(size)]
    assert got == expected


def test_a_broken_record_fails_the_chunk_it_belongs_to_naming_its_row(tmp_path: Path):
    path = tmp_path / "big-cell.csv"
    path.write_text("Email,Notes\na@acme-corp.com,ok\nb@acme-corp.com," + "x" * 200_000 + "\n", encoding="utf-8")
    pf = open_prospect_file(path, header_score)
    first = next(pf.chunks(1))
    assert first.rows == [["a@acme-corp.com", "ok"]]  # the first chunk never reads the broken record
    with pytest.raises(ProspectFileError, match=r"big-cell.csv: row 3: field larger than field limit"):
        list(pf.chunks(10))


def test_suppression_mask_checks_addresses_forgotten_hashes_and_parent_domains():
    secret = "k" * 40
    index = SuppressionIndex(
        emails={"ann@acme-corp.com"},
        domains={plain_hash("blocked.io")},
        email_hashes={keyed_hash("gone@acme-corp.com", secret), plain_hash("old@acme-corp.com")},
        secret_key=secret,
    )
    keys = ["ann@acme-corp.com", None, "x@mail.blocked.io", "gone@acme-corp.com", "old@acme-corp.com", "ok@b.io"]
    assert index.mask(keys) == [True, False, True, True, True, False]
    assert SuppressionIndex(set(), set(), set(), secret).mask(keys) == [False] * 6
