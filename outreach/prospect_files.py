"""Reading prospect files: CSV/TSV with any common delimiter and encoding, preambles, and XLSX.

Exporters disagree on almost everything (HubSpot quotes every cell, LinkedIn puts a "Notes:" preamble
before the header, Excel on Windows writes cp1252 or UTF-16, Apollo prefixes phones with an
apostrophe), so this module only turns a file into a header plus rows of strings, streamed in chunks,
with each row's original number. What the columns mean is decided by `prospect_mapping`.
"""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, time
from itertools import islice
from pathlib import Path
from typing import Any

import charset_normalizer

from outreach.errors import OutreachError

HEAD_BYTES = 64 * 1024  # enough for the preamble, header and a few dozen rows
HEADER_SEARCH_RECORDS = 25  # a header further down than this is not a header
CANDIDATE_DELIMITERS = (",", ";", "\t", "|", ":")  # what exporters (and Apollo's importer) use
DETECT_SAMPLE_BYTES = 4 * 1024 * 1024
BINARY_CONTROL_RATIO = 0.01

HeaderScore = Callable[[Sequence[str]], int]


class ProspectFileError(OutreachError):
    """The file cannot be read as a table of prospects; the message names the file and the problem."""


@dataclass(frozen=True)
class Chunk:
    """A slice of data rows, each padded to the header's width, with its row number in the file."""

    row_numbers: list[int]
    rows: list[list[str]]
    problems: dict[int, str] = field(default_factory=dict)  # position in this chunk -> why the row is unusable


@dataclass(frozen=True)
class ProspectFile:
    """An opened, sniffed prospect file. `chunks()` reads it again from the start each time it is called."""

    path: Path
    kind: str  # "csv" or "xlsx"
    header: list[str]  # unique, non-empty column names in file order
    header_row: int  # 1-based row number of the header (after any preamble)
    estimated_rows: int  # data rows, estimated from line count; exact for XLSX
    encoding: str | None = None
    delimiter: str | None = None

    def chunks(self, size: int = 20_000) -> Iterator[Chunk]:
        if self.kind == "xlsx":
            yield from _chunked(self, _xlsx_records(self.path), size)
        else:
            yield from _csv_chunks(self, size)


def open_prospect_file(path: Path | str, header_score: HeaderScore) -> ProspectFile:
    """Sniff kind, encoding, delimiter and header row. `header_score` rates a row as a header (0 = not one)."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise ProspectFileError(f"{name}: no such file")
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    if not head.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        raise ProspectFileError(f"{name}: the file is empty; expected a header row with an email column")
    if head.startswith(b"PK\x03\x04"):
        return _open_xlsx(path, header_score)
    _refuse_known_binaries(name, head)
    encoding = detect_encoding(path, head)
    return _open_csv(path, encoding, header_score)


# --- encodings -----------------------------------------------------------------------------------


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def detect_encoding(path: Path, head: bytes) -> str:
    """BOM first; then strict UTF-8 over the whole file; otherwise charset-normalizer decides."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\x00" not in head and _is_utf8(path):
        return "utf-8"
    with path.open("rb") as fh:
        sample = fh.read(DETECT_SAMPLE_BYTES)
    results = charset_normalizer.from_bytes(sample)
    best = results.best()
    if best is None or (b"\x00" in head and not best.encoding.startswith("utf_16")):
        raise ProspectFileError(f"{path.name}: this looks like a binary file, not a CSV/TSV text or XLSX file")
    # Short Western files often tie between Windows code pages; Excel on Western Windows writes cp1252.
    tied = [m for m in results if m.chaos <= best.chaos and m.coherence >= best.coherence - 0.05]
    if any("cp1252" in m.could_be_from_charset for m in tied):
        return "cp1252"
    return best.encoding


def _is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    try:
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _refuse_known_binaries(name: str, head: bytes) -> None:
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ProspectFileError(f"{name}: this is a legacy Excel .xls file; save it as .xlsx or CSV and import that")
    if head.startswith(b"%PDF"):
        raise ProspectFileError(f"{name}: this is a PDF, not a CSV/TSV or XLSX file")
    if head.startswith((b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")):
        raise ProspectFileError(f"{name}: this is a compressed archive; extract the CSV inside and import that")


def _looks_binary(text: str) -> bool:
    if not text:
        return False
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\r\n")
    return controls / len(text) > BINARY_CONTROL_RATIO


# --- CSV -----------------------------------------------------------------------------------------


def _open_csv(path: Path, encoding: str, header_score: HeaderScore) -> ProspectFile:
    text = _decoded_head(path, encoding)
    if _looks_binary(text):
        raise ProspectFileError(f"{path.name}: this looks like a binary file, not a CSV/TSV text or XLSX file")
    delimiter, header_index, records = _sniff(text, header_score)
    if header_index is None:
        raise ProspectFileError(f"{path.name}: the file is empty; expected a header row with an email column")
    header = unique_header(records[header_index])
    _refuse_data_as_header(path.name, records[header_index])
    return ProspectFile(
        path=path,
        kind="csv",
        header=header,
        header_row=header_index + 1,
        estimated_rows=max(_count_newlines(path) - header_index - 1, 0),
        encoding=encoding,
        delimiter=delimiter,
    )


def _decoded_head(path: Path, encoding: str) -> str:
    with path.open("rb") as fh:
        raw = fh.read(HEAD_BYTES)
        cut = bool(fh.read(1))
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(raw)
    if cut and "\n" in text:
        text = text[: text.rindex("\n") + 1]  # the last line of a cut sample is incomplete
    return text


def _sample_records(text: str, delimiter: str) -> list[list[str]]:
    # newline="" splits lines exactly as the file reader will, so row numbers agree.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    records: list[list[str]] = []
    try:
        for record in reader:
            records.append(record)
            if len(records) >= HEADER_SEARCH_RECORDS + 40:
                break
    except csv.Error:
        pass  # an odd sample only lowers this delimiter's score
    return records


def _sniff(text: str, header_score: HeaderScore) -> tuple[str, int | None, list[list[str]]]:
    """Pick the delimiter whose best header row scores highest and whose rows agree with it in width."""
    best: tuple[tuple[int, int, int], str, int | None, list[list[str]]] | None = None
    for delimiter in CANDIDATE_DELIMITERS:
        records = _sample_records(text, delimiter)
        index = _header_index(records, header_score)
        if index is None:
            score = (0, 0, 0)
        else:
            width = len(records[index])
            after = [r for r in records[index + 1 :] if any(c.strip() for c in r)]
            agreeing = sum(1 for r in after if len(r) == width)
            score = (header_score(records[index]), agreeing, width)
        if best is None or score > best[0]:
            best = (score, delimiter, index, records)
    assert best is not None
    return best[1], best[2], best[3]


def _header_index(records: list[list[str]], header_score: HeaderScore) -> int | None:
    """The highest-scoring row among the first few; else the first row that is not blank or a lone note."""
    candidates = [(i, r) for i, r in enumerate(records[:HEADER_SEARCH_RECORDS]) if any(c.strip() for c in r)]
    if not candidates:
        return None
    scored = [(header_score(r), -i, i) for i, r in candidates]
    top = max(scored)
    if top[0] > 0:
        return top[2]
    wide = [i for i, r in candidates if len(r) > 1]
    return wide[0] if wide else candidates[0][0]


def _refuse_data_as_header(name: str, cells: Sequence[str]) -> None:
    for position, cell in enumerate(cells, start=1):
        value = cell.strip()
        if "@" in value and "." in value.rsplit("@", 1)[-1] and " " not in value:
            raise ProspectFileError(
                f"{name}: the first row holds data ('{value[:60]}' in column {position}), not column names; "
                "add a header row such as 'email,first_name,last_name'"
            )


def unique_header(cells: Sequence[Any]) -> list[str]:
    """Column names as shown to the user: trimmed, blanks named by position, repeats numbered."""
    seen: Counter[str] = Counter()
    header: list[str] = []
    for position, cell in enumerate(cells, start=1):
        name = " ".join(str(cell if cell is not None else "").split()) or f"Column {position}"
        seen[name] += 1
        header.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return header


def _count_newlines(path: Path) -> int:
    count = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            count += block.count(b"\n")
    return count + 1


def _csv_chunks(pf: ProspectFile, size: int) -> Iterator[Chunk]:
    try:
        with pf.path.open("r", encoding=pf.encoding, newline="", errors="strict") as fh:
            reader = csv.reader(fh, delimiter=pf.delimiter or ",", strict=False)
            yield from _chunked(pf, reader, size, _CsvErrors(pf.path.name, reader))
    except UnicodeDecodeError as exc:
        raise ProspectFileError(
            f"{pf.path.name}: bytes at offset {exc.start} are not valid {pf.encoding}; "
            "re-save the file as UTF-8 and import it again"
        ) from None


@dataclass(frozen=True)
class _CsvErrors:
    """Turns the csv module's errors into one that names the file and the row."""

    name: str
    reader: Any

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        if isinstance(exc, csv.Error):
            raise ProspectFileError(
                f"{self.name}: row {self.reader.line_num}: {exc} (often a quote that is never closed)"
            ) from None


# --- XLSX ----------------------------------------------------------------------------------------


def _open_xlsx(path: Path, header_score: HeaderScore) -> ProspectFile:
    records = []
    for record in _xlsx_records(path):
        records.append(record)
        if len(records) >= HEADER_SEARCH_RECORDS:
            break
    index = _header_index(records, header_score)
    if index is None:
        raise ProspectFileError(f"{path.name}: the first sheet is empty; expected a header row with an email column")
    _refuse_data_as_header(path.name, records[index])
    return ProspectFile(
        path=path,
        kind="xlsx",
        header=unique_header(records[index]),
        header_row=index + 1,
        estimated_rows=max(_xlsx_row_count(path) - index - 1, 0),
    )


@contextmanager
def _workbook(path: Path) -> Iterator[Any]:
    """The workbook, opened from a file handle so the file's name (an upload's temp name) does not matter."""
    import openpyxl  # imported here: only XLSX imports pay for it

    with path.open("rb") as fh:
        try:
            workbook = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a damaged archive; all mean the same
            raise ProspectFileError(
                f"{path.name}: a ZIP file that is not a readable XLSX workbook ({exc.__class__.__name__}); "
                "if it is an exporter's archive (Mailchimp sends a ZIP), extract the CSV inside and import that"
            ) from None
        try:
            yield workbook
        finally:
            workbook.close()


def _xlsx_row_count(path: Path) -> int:
    with _workbook(path) as workbook:
        return int(workbook.worksheets[0].max_row or 0) if workbook.worksheets else 0


def _xlsx_records(path: Path) -> Iterator[list[str]]:
    with _workbook(path) as workbook:
        if not workbook.worksheets:
            return
        for values in workbook.worksheets[0].iter_rows(values_only=True):
            yield [xlsx_cell_text(v) for v in values]


def xlsx_cell_text(value: Any) -> str:
    """A cell as the text a user typed: whole numbers without '.0', dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ") if value.time() != time(0) else value.date().isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


# --- chunks --------------------------------------------------------------------------------------


def _chunked(
    pf: ProspectFile, records: Iterator[list[str]], size: int, errors: AbstractContextManager[None] | None = None
) -> Iterator[Chunk]:
    """Data rows in chunks of `size` (the last one shorter), read with islice: no per-record generator.

    Exactly the records a chunk needs are read before it is yielded (so a preview of the first rows
    never reads further, and a broken record fails the chunk it belongs to)."""
    guard = errors or nullcontext()
    size = max(size, 1)
    width = len(pf.header)
    with guard:
        skipped = len(list(islice(records, pf.header_row)))  # the preamble and the header row
    next_number = skipped + 1
    numbers: list[int] = []
    rows: list[list[str]] = []
    problems: dict[int, str] = {}
    while True:
        with guard:
            batch = list(islice(records, size - len(rows)))
        if not batch:
            break
        if all(map(width.__eq__, map(len, batch))) and all(map(any, batch)):  # the usual case: nothing to fix
            numbers.extend(range(next_number, next_number + len(batch)))
            rows.extend(batch)
        else:
            for row_number, record in enumerate(batch, start=next_number):
                if not any(record):
                    continue  # blank lines (and rows of empty cells) are not rows
                if len(record) != width:
                    if len(record) > width and "".join(record[width:]).strip():
                        problems[len(rows)] = f"row has {len(record)} cells but the header has {width}"
                    record = record[:width] + [""] * (width - len(record))
                numbers.append(row_number)
                rows.append(record)
        next_number += len(batch)
        del batch
        if len(rows) >= size:
            ready = [Chunk(numbers, rows, problems)]
            numbers, rows, problems = [], [], {}
            yield ready.pop()  # no local keeps the chunk alive while the consumer works on it
    if rows:
        yield Chunk(numbers, rows, problems)
