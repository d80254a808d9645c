"""Importing prospects: every row of a file ends in exactly one outcome, in one transaction.

rows == imported + updated + duplicates + rejected + suppressed, always. Rows are handled as if one
after another: the first row for an address creates the prospect (imported), or changes an existing one
only where its cell is non-empty and different (updated; otherwise duplicates). Later rows for the same
address in the same file only fill what the earlier ones left empty, so importing a file twice changes
nothing the second time. Invalid rows are rejected with a reason and written, with their original
cells, to a rejects CSV. Suppressed addresses and domains are never imported.

A dry run performs the same import inside a savepoint and rolls it back, so its counts are exactly what
the real import will report.
"""

from __future__ import annotations

import csv
import gc
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, compress, repeat
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db.models import Prospect, ProspectList, ProspectListMember, ProspectTag
from db.types import utcnow
from outreach.errors import OutreachError
from outreach.export import neutralize_cell
from outreach.prospect_files import Chunk, ProspectFile, open_prospect_file
from outreach.prospect_mapping import (
    ColumnMapping,
    header_score,
    load_preset,
    require_email_column,
    resolve_mapping,
)
from outreach.prospect_normalize import (
    DERIVED_FLAGS,
    STORED_FIELDS,
    NormalizeCache,
    NormalizedChunk,
    normalize_columns,
    template_empty_counts,
)
from outreach.prospect_search import (  # re-exported: the page's API lives here
    ProspectDetail,
    ProspectFilter,
    ProspectPage,
    ProspectRow,
    prospect_detail,
    search_prospects,
)
from outreach.suppression import SuppressionIndex

__all__ = [
    "FilePreview",
    "ImportOptions",
    "ImportReport",
    "ProspectDetail",
    "ProspectFilter",
    "ProspectPage",
    "ProspectRow",
    "RejectedRow",
    "dry_run",
    "import_prospects",
    "preview_file",
    "prospect_detail",
    "search_prospects",
]

Progress = Callable[[int, int], None]
MAX_REJECTS_IN_REPORT = 500
LOOKUP_BATCH = 500
SAMPLE_ROWS = 50
_TABLE: Table = Prospect.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ImportOptions:
    list_name: str | None = None
    tags: tuple[str, ...] = ()
    mapping: Mapping[str, str] | None = None  # header -> field overrides (--map, the page's editor)
    preset: str | None = None  # a saved mapping applied first; `mapping` wins over it
    rejects_dir: Path | None = None  # where the rejects CSV goes; None = not written
    chunk_size: int = 20_000
    source: str | None = None  # recorded on new prospects; the file name by default


@dataclass(frozen=True)
class RejectedRow:
    row: int  # the row number in the file (the header row and any preamble counted)
    reason: str
    cells: list[str]


@dataclass(frozen=True)
class ImportReport:
    file_name: str
    rows: int
    imported: int
    updated: int
    duplicates: int
    rejected: int
    suppressed: int
    rejects: list[RejectedRow]  # the first MAX_REJECTS_IN_REPORT; all of them are in rejects_path
    rejects_path: Path | None
    empty_fields: dict[str, int]  # template field -> prospects for whom it would render empty
    mapping: dict[str, str]  # header -> field / custom:<name> / ignore
    header: list[str]
    kind: str
    encoding: str | None
    delimiter: str | None
    list_name: str | None
    dry_run: bool

    def summary(self) -> dict[str, Any]:
        """The contract's JSON object."""
        return {
            "rows": self.rows,
            "imported": self.imported,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "suppressed": self.suppressed,
            "rejects_path": str(self.rejects_path) if self.rejects_path else None,
        }


@dataclass(frozen=True)
class FilePreview:
    """What the page shows before a dry run: how the file was read and the mapping it would get."""

    file_name: str
    kind: str
    encoding: str | None
    delimiter: str | None
    header_row: int
    estimated_rows: int
    header: list[str]
    samples: list[list[str]]
    mapping: ColumnMapping
    has_email: bool  # False: the page must have the user pick the email column before a dry run


class ImportAbortedError(OutreachError):
    """The import stopped; nothing was written."""


# --- public entry points -------------------------------------------------------------------------


def preview_file(
    path: Path | str,
    *,
    mapping: Mapping[str, str] | None = None,
    preset_mapping: Mapping[str, str] | None = None,
) -> FilePreview:
    """Sniff the file and propose a mapping, reading only its first rows."""
    pf, first, resolved = _open(Path(path), mapping, preset_mapping, require_email=False)
    return FilePreview(
        file_name=pf.path.name,
        kind=pf.kind,
        encoding=pf.encoding,
        delimiter=pf.delimiter,
        header_row=pf.header_row,
        estimated_rows=pf.estimated_rows,
        header=pf.header,
        samples=first.rows[:SAMPLE_ROWS] if first else [],
        mapping=resolved,
        has_email="email" in resolved.targets.values(),
    )


def dry_run(session: Session, path: Path | str, options: ImportOptions, *, secret_key: str) -> ImportReport:
    """Everything the import would do, reported, with nothing left written (a rolled-back savepoint)."""
    savepoint = session.begin_nested()
    try:
        return _Importer(session, Path(path), options, secret_key, None, dry_run=True).run()
    finally:
        savepoint.rollback()


def import_prospects(
    session: Session,
    path: Path | str,
    options: ImportOptions,
    *,
    secret_key: str,
    progress: Progress | None = None,
) -> ImportReport:
    """The real import, all or nothing inside the caller's transaction. `progress(done_rows, total_rows)`
    is called after each chunk; total_rows is an estimate (line count) until the last call. It must not
    use the session: on SQLite the chunk's insert may still be running on the importer's writer thread."""
    savepoint = session.begin_nested()
    try:
        report = _Importer(session, Path(path), options, secret_key, progress, dry_run=False).run()
    except BaseException:
        savepoint.rollback()
        raise
    savepoint.commit()
    return report


# --- the importer --------------------------------------------------------------------------------


def _open(
    path: Path,
    overrides: Mapping[str, str] | None,
    preset: Mapping[str, str] | None,
    *,
    require_email: bool = True,
) -> tuple[ProspectFile, Chunk | None, ColumnMapping]:
    extra = [h for h, t in chain((preset or {}).items(), (overrides or {}).items()) if t.strip().lower() == "email"]
    pf = open_prospect_file(path, lambda cells: header_score(cells, extra))
    chunks = pf.chunks(SAMPLE_ROWS)
    first = next(chunks, None)
    samples = first.rows if first else []
    if overrides:  # the user's own overrides must name real columns; a preset's may be for another file
        resolve_mapping(pf.header, samples, overrides, file_name=path.name)
    combined = {**(preset or {}), **(overrides or {})}
    merged = resolve_mapping(pf.header, samples, combined, strict=False, file_name=path.name)
    if require_email:
        require_email_column(merged, path.name)
    return pf, first, merged


@dataclass
class _Counts:
    rows: int = 0
    imported: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    suppressed: int = 0


@dataclass
class _Importer:
    session: Session
    path: Path
    options: ImportOptions
    secret_key: str
    progress: Progress | None
    dry_run: bool
    counts: _Counts = field(default_factory=_Counts)
    rejects: list[RejectedRow] = field(default_factory=list)
    empty: dict[str, int] = field(default_factory=dict)
    seen_keys: set[str] = field(default_factory=set)
    _writer: _BackgroundWriter = field(default_factory=lambda: _BackgroundWriter())
    _staged: bool = False  # the SQLite staging table exists
    _rejects_file: TextIO | None = None
    _rejects_writer: Any = None
    _rejects_path: Path | None = None

    def run(self) -> ImportReport:
        preset = load_preset(self.session, self.options.preset) if self.options.preset else None
        pf, _first, mapping = _open(self.path, self.options.mapping, preset)
        self.pf, self.mapping = pf, mapping
        self.template_fields = mapping.template_fields()
        self.suppressions = SuppressionIndex.load(self.session, self.secret_key)
        self.list_id = _ensure_list(self.session, self.options.list_name) if self.options.list_name else None
        self.extra_tags = _clean_tags(self.options.tags)
        self.db_was_empty = self.session.scalar(select(Prospect.id).limit(1)) is None
        self.now = utcnow()
        self.source = (self.options.source or self.path.name)[:300]
        cache = NormalizeCache()
        try:
            with _cyclic_gc_between_chunks() as collect:
                for chunk in pf.chunks(self.options.chunk_size):
                    self._chunk(chunk, normalize_columns(chunk, mapping, pf.header, cache))
                    del chunk
                    collect()
                    if self.progress:
                        self.progress(self.counts.rows, max(pf.estimated_rows, self.counts.rows))
            self._writer.wait()
            self._drop_staging()  # on an error the savepoint's rollback drops it
        finally:
            self._writer.join()  # never leave an insert running on the caller's connection
            if self._rejects_file:
                self._rejects_file.close()
        if self.progress:
            self.progress(self.counts.rows, self.counts.rows)
        c = self.counts
        assert c.rows == c.imported + c.updated + c.duplicates + c.rejected + c.suppressed
        return ImportReport(
            file_name=self.path.name,
            rows=c.rows,
            imported=c.imported,
            updated=c.updated,
            duplicates=c.duplicates,
            rejected=c.rejected,
            suppressed=c.suppressed,
            rejects=self.rejects,
            rejects_path=self._rejects_path,
            empty_fields={f: self.empty.get(f, 0) for f in self.template_fields},
            mapping=dict(mapping.targets),
            header=list(pf.header),
            kind=pf.kind,
            encoding=pf.encoding,
            delimiter=pf.delimiter,
            list_name=self.options.list_name,
            dry_run=self.dry_run,
        )

    # --- one chunk ---

    def _chunk(self, chunk: Chunk, norm: NormalizedChunk) -> None:
        """One chunk, as if row after row: column lists and row masks, no per-row dicts except for rows
        whose address was seen before (in this file or the database)."""
        self._writer.wait()  # the previous chunk's insert is done before this one reads the database
        self.counts.rows += norm.size
        all_keys = norm.values["email_normalized"]
        live = [reason is None for reason in norm.reject]
        if not all(live):
            for index, reason in enumerate(norm.reject):
                if reason is not None:
                    self._reject(norm.rows[index], reason, chunk.rows[index])
        valid_count = sum(live)
        suppressed = iter(self.suppressions.mask(list(compress(all_keys, live))))
        live = [ok and not next(suppressed) for ok in live]
        live_count = sum(live)
        self.counts.suppressed += valid_count - live_count
        if not live_count:
            return
        keys = list(compress(all_keys, live))
        existing = self._existing(list(dict.fromkeys(keys)))
        repeats = Counter(keys) if len(set(keys)) < len(keys) else None
        if repeats is None and not existing:
            fresh, seen = live, []
        else:  # rows whose address was seen before go one after another through _sequential
            fresh = [
                ok and key not in existing and (repeats is None or repeats[key] == 1)
                for ok, key in zip(live, all_keys, strict=True)
            ]
            seen = [i for i, (ok, new) in enumerate(zip(live, fresh, strict=True)) if ok and not new]
        fresh_count = live_count - len(seen)
        self.counts.imported += fresh_count
        # An address already counted in an earlier chunk is counted again below with its merged state:
        # take back what it contributed then (its stored state is what was counted).
        counted = [record for key, record in existing.items() if key in self.seen_keys]
        for name, count in template_empty_counts(counted, self.template_fields).items():
            self.empty[name] = self.empty.get(name, 0) - count
        states = self._sequential(_records(norm, seen), existing)
        self._update([s for s in states.values() if s.get("_dirty")])
        self._insert(norm, fresh, fresh_count, [s for s in states.values() if "id" not in s])
        ids = {s["email_normalized"]: s["id"] for s in states.values() if "id" in s}
        self._link(keys, list(compress(norm.values["tags"], live)), ids, states)
        self.seen_keys.update(keys)
        excluded = [] if fresh_count == norm.size else [i for i, new in enumerate(fresh) if not new]
        empty = _fresh_empty_counts(norm, excluded, fresh_count, self.template_fields)
        empty.update(template_empty_counts(list(states.values()), self.template_fields))
        for name, count in empty.items():
            self.empty[name] = self.empty.get(name, 0) + count

    def _sequential(self, records: list[dict[str, Any]], existing: dict[str, dict[str, Any]]) -> dict[str, dict]:
        """Rows whose address was seen before (in the file or the database), handled one after another."""
        states: dict[str, dict[str, Any]] = {}
        first_rows: set[str] = set()
        for record in records:
            key = record["email_normalized"]
            state = states.get(key) or existing.get(key)
            if state is None:
                states[key] = record
                first_rows.add(key)
                self.counts.imported += 1
                continue
            states[key] = state
            # The first row for an address in this file is authoritative; later ones only fill its gaps,
            # so a file with conflicting repeats gives the same result when imported twice.
            fill_only = key in self.seen_keys or key in first_rows
            first_rows.add(key)
            if _merge(state, record, fill_only=fill_only):
                state["_dirty"] = "id" in state
                self.counts.updated += 1
            else:
                self.counts.duplicates += 1
        return states

    def _existing(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if self.db_was_empty:
            keys = [k for k in keys if k in self.seen_keys]
        found: dict[str, dict[str, Any]] = {}
        columns = [
            _TABLE.c.id,
            _TABLE.c.email,
            _TABLE.c.email_normalized,
            *(_TABLE.c[f] for f in STORED_FIELDS),
            _TABLE.c.custom_fields,
        ]
        for start in range(0, len(keys), LOOKUP_BATCH):
            batch = keys[start : start + LOOKUP_BATCH]
            for row in self.session.execute(select(*columns).where(_TABLE.c.email_normalized.in_(batch))):
                record = dict(row._mapping)
                record["custom_fields"] = dict(record["custom_fields"] or {})
                record["tags"] = []
                found[record["email_normalized"]] = record
        if found and "tags" in self.mapping.targets.values():
            by_id = {r["id"]: r for r in found.values()}
            ids = list(by_id)
            for start in range(0, len(ids), LOOKUP_BATCH):
                query = select(ProspectTag.prospect_id, ProspectTag.tag).where(
                    ProspectTag.prospect_id.in_(ids[start : start + LOOKUP_BATCH])
                )
                for prospect_id, tag in self.session.execute(query):
                    by_id[prospect_id]["tags"].append(tag)
        return found

    def _insert(self, norm: NormalizedChunk, fresh: list[bool], count: int, merged: list[dict[str, Any]]) -> None:
        """New prospects, a chunk at a time: COPY on PostgreSQL; on SQLite a raw executemany into a staging
        table, then one INSERT ... SELECT on the writer thread.

        SQLAlchemy's per-row parameter handling cost more than the insert itself, so values go in as they
        are; timestamps go through the column's own (dialect) bind processor and the custom fields are
        json.dumps' exact text (built column-wise for new rows), so they are stored as an ORM insert would
        store them. Ids are looked up afterwards, only when lists or tags need them."""
        if not count and not merged:
            return
        conn = self.session.connection()
        dialect = conn.dialect
        stamp_processor = _TABLE.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
        stamp = stamp_processor(self.now) if stamp_processor else self.now
        values = norm.values
        payloads = norm.custom.json_texts() if count else []
        if count == norm.size:
            columns = [list(values[name]) for name in _ROW_COLUMNS]
        else:
            columns = [list(compress(values[name], fresh)) for name in _ROW_COLUMNS]
            payloads = list(compress(payloads, fresh))
        for record in merged:
            for column, name in zip(columns, _PLAIN_INSERT_COLUMNS, strict=False):
                column.append(record.get(name))
            columns[-2].append(bool(record.get("is_role_address")))
            columns[-1].append(bool(record.get("is_disposable")))
            payloads.append(json.dumps(record.get("custom_fields") or {}))
        rows = zip(*columns, payloads, repeat(self.source), repeat(stamp), repeat(stamp), strict=False)
        names = ", ".join(_INSERT_COLUMNS)
        if dialect.name == "postgresql":
            _copy_rows(conn, f"COPY {_TABLE.name} ({names}) FROM STDIN", rows)
            return
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        marks = ", ".join(mark for _ in _INSERT_COLUMNS)
        if dialect.name != "sqlite":
            conn.exec_driver_sql(f"INSERT INTO {_TABLE.name} ({names}) VALUES ({marks})", list(rows))  # noqa: S608
            return
        # SQLite: the rows go into an unindexed staging table here (cheap), and the insert into prospects,
        # with its unique and other indexes, is one statement that runs on the writer thread while this
        # thread normalizes the next chunk; sqlite3 holds no GIL during it. The rows keep their order
        # (ORDER BY the staging rowid), so ids are given out exactly as by a direct insert.
        if not self._staged:
            conn.exec_driver_sql("PRAGMA cache_size=-65536")  # 64 MB: index inserts stop thrashing pages
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_STAGING}")
            conn.exec_driver_sql(f"CREATE TEMP TABLE {_STAGING} ({names})")
            self._staged = True
        else:
            conn.exec_driver_sql(f"DELETE FROM temp.{_STAGING}")  # noqa: S608 (constant names)
        conn.exec_driver_sql(f"INSERT INTO temp.{_STAGING} ({names}) VALUES ({marks})", list(rows))  # noqa: S608
        move = f"INSERT INTO {_TABLE.name} ({names}) SELECT {names} FROM temp.{_STAGING} ORDER BY rowid"  # noqa: S608
        self._writer.submit(lambda: conn.exec_driver_sql(move))

    def _drop_staging(self) -> None:
        if self._staged:
            self.session.connection().exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_STAGING}")
            self._staged = False

    def _update(self, states: list[dict[str, Any]]) -> None:
        if not states:
            return
        names = [*STORED_FIELDS, "custom_fields"]
        stmt = (
            update(_TABLE)
            .where(_TABLE.c.id == bindparam("b_id"))
            .values({**{n: bindparam(f"b_{n}") for n in names}, "updated_at": bindparam("b_updated_at")})
        )
        params = [{"b_id": s["id"], "b_updated_at": self.now, **{f"b_{n}": s.get(n) for n in names}} for s in states]
        self.session.connection().execute(stmt, params)

    def _link(
        self, keys: list[str], tags: list[list[str]], ids: dict[str, int], states: dict[str, dict[str, Any]]
    ) -> None:
        """List membership and tags for every prospect the file names (new, updated or unchanged)."""
        if self.list_id is None and not self.extra_tags and not any(tags):
            return
        self._writer.wait()  # the ids of this chunk's new prospects are read back
        ids = dict(ids)
        missing = [k for k in set(keys) if k not in ids]
        for start in range(0, len(missing), LOOKUP_BATCH):
            batch = missing[start : start + LOOKUP_BATCH]
            query = select(_TABLE.c.email_normalized, _TABLE.c.id).where(_TABLE.c.email_normalized.in_(batch))
            ids.update({key: id_ for key, id_ in self.session.execute(query)})
        if self.list_id is not None:
            members = [{"list_id": self.list_id, "prospect_id": i, "added_at": self.now} for i in set(ids.values())]
            _insert_ignoring_duplicates(self.session, ProspectListMember.__table__, members)  # type: ignore[arg-type]
        pairs: set[tuple[int, str]] = set()
        for key, row_tags in zip(keys, tags, strict=True):
            prospect_id = ids.get(key)
            if prospect_id is None:
                continue
            pairs.update((prospect_id, t) for t in chain(row_tags, self.extra_tags))
        for state in states.values():
            if state.get("id") and state.get("tags"):
                pairs.update((state["id"], t) for t in state["tags"])
        rows = [{"prospect_id": p, "tag": t} for p, t in sorted(pairs)]
        _insert_ignoring_duplicates(self.session, ProspectTag.__table__, rows)  # type: ignore[arg-type]

    # --- rejects ---

    def _reject(self, row: int, reason: str, cells: list[str]) -> None:
        self.counts.rejected += 1
        if len(self.rejects) < MAX_REJECTS_IN_REPORT:
            self.rejects.append(RejectedRow(row, reason, list(cells)))
        if self.options.rejects_dir is None:
            return
        if self._rejects_writer is None:
            self._open_rejects()
        self._rejects_writer.writerow([row, reason, *(neutralize_cell(c) for c in cells)])

    def _open_rejects(self) -> None:
        directory = self.options.rejects_dir
        assert directory is not None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            self._rejects_path = directory / f"{self.path.stem[:80]}-{stamp}-rejects.csv"
            self._rejects_file = self._rejects_path.open("w", encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise ImportAbortedError(f"cannot write the rejects file in {directory}: {exc.strerror}") from None
        self._rejects_writer = csv.writer(self._rejects_file)
        self._rejects_writer.writerow(["row", "reason", *self.pf.header])


# --- helpers -------------------------------------------------------------------------------------

_STAGING = "outreach_import_staging"  # a TEMP table: this connection's own, gone with the transaction's rollback
_PLAIN_INSERT_COLUMNS = ("email", "email_normalized", *STORED_FIELDS)
_INSERT_COLUMNS = (
    *_PLAIN_INSERT_COLUMNS,
    "is_role_address",
    "is_disposable",
    "custom_fields",
    "source",
    "created_at",
    "updated_at",
)
_RECORD_COLUMNS = (
    "email",
    "email_normalized",
    *STORED_FIELDS,
    *DERIVED_FLAGS.values(),
    "is_role_address",
    "is_disposable",
    "custom_fields",
    "tags",
)


_ROW_COLUMNS = (*_PLAIN_INSERT_COLUMNS, "is_role_address", "is_disposable")


def _records(norm: NormalizedChunk, index_list: list[int]) -> list[dict[str, Any]]:
    """These rows as plain dicts (only rows whose address was seen before need them)."""
    if not index_list:
        return []
    columns = {name: norm.values[name] for name in _RECORD_COLUMNS if name != "custom_fields"}
    records = []
    for index in index_list:
        record = {name: columns[name][index] for name in _RECORD_COLUMNS[: _RECORD_COLUMNS.index("custom_fields")]}
        record["custom_fields"] = norm.custom.as_dict(index)
        record["tags"] = columns["tags"][index]
        records.append(record)
    return records


def _fresh_empty_counts(norm: NormalizedChunk, excluded: list[int], count: int, names: list[str]) -> Counter[str]:
    """template_empty_counts for the rows inserted straight from the chunk (all but `excluded`), from the
    chunk's own counts of non-empty cells."""
    counts: Counter[str] = Counter()
    if not count:
        return counts
    present: Counter[str] | None = None
    for name in names:
        if name in norm.present:
            column = norm.values[name]
            kept = norm.present[name] - sum(1 for index in excluded if column[index] is not None)
            missing = count - kept
        else:  # a custom field: every other template name is one of the prospect fields counted above
            if present is None:
                present = norm.custom.present(excluded)
            missing = count - present[name]
        if missing:
            counts[name] = missing
    return counts


class _BackgroundWriter:
    """Runs one statement at a time on a worker thread: SQLite's INSERT ... SELECT of a chunk from the
    staging table. sqlite3 holds no GIL while SQLite executes a statement, so the index work of one chunk
    overlaps the Python work on the next (the second core). (A per-row executemany on the thread would
    need the GIL back for every row and mostly wait for it.)

    The caller's connection is used by one thread at a time: the importer waits for the running statement
    before any other statement, before returning and before an error leaves it; ids come out in the same
    order, because the inserts still run one after another in file order."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, work: Callable[[], object]) -> None:
        self.wait()

        def run() -> None:
            try:
                work()
            except BaseException as exc:  # handed to the importer's thread by wait()
                self._error = exc

        self._thread = threading.Thread(target=run, name="prospect-import-insert", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the running insert is done; raise its error, if any, here."""
        self.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


@contextmanager
def _cyclic_gc_between_chunks(every: int = 8) -> Iterator[Callable[[], None]]:
    """The cyclic collector paused during the import; its young generations collected every few chunks.

    A chunk is ~a million short-lived containers (rows, cell lists, tuples); the collector kept firing
    on them and walking everything alive (~30% of the import's time). Reference counting frees all of
    it; the few cycles a chunk leaves (SQLAlchemy statement objects, ~10) are collected every `every`
    chunks, between chunks, when little is alive to walk."""
    enabled = gc.isenabled()
    done = 0

    def between_chunks() -> None:
        nonlocal done
        done += 1
        if enabled and done % every == 0:
            gc.collect(1)

    gc.disable()
    try:
        yield between_chunks
    finally:
        if enabled:
            gc.enable()


def _copy_rows(conn: Any, sql: str, rows: Iterator[tuple[Any, ...]]) -> None:
    """PostgreSQL COPY FROM STDIN through psycopg 3, inside the caller's transaction. A database error
    comes out as SQLAlchemy's exception for it (IntegrityError, ...), as from any other statement."""
    driver = conn.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error) from exc


def _merge(state: dict[str, Any], record: dict[str, Any], *, fill_only: bool = False) -> bool:
    """Apply the new row's non-empty, different cells to `state` (only its gaps when `fill_only`);
    derived values (domain from email, zone from country) always only fill gaps."""
    changed = False
    for name in STORED_FIELDS:
        value = record.get(name)
        if value is None or value == state.get(name):
            continue
        flag = DERIVED_FLAGS.get(name)
        if (fill_only or (flag and record.get(flag))) and state.get(name) is not None:
            continue
        state[name] = value
        changed = True
    custom = state.setdefault("custom_fields", {})
    for key, value in (record.get("custom_fields") or {}).items():
        if custom.get(key) != value and not (fill_only and key in custom):
            custom[key] = value
            changed = True
    tags = state.setdefault("tags", [])
    for tag in record.get("tags") or []:
        if tag not in tags:
            tags.append(tag)
            changed = True
    return changed


def _ensure_list(session: Session, name: str) -> int:
    clean = " ".join(name.split())
    if not clean:
        raise OutreachError("--list: the list name is empty")
    if len(clean) > 200:
        raise OutreachError(f"--list: '{clean[:40]}…' is longer than 200 characters")
    existing = session.scalar(select(ProspectList.id).where(ProspectList.name == clean))
    if existing is not None:
        return int(existing)
    created = ProspectList(name=clean)
    session.add(created)
    session.flush()
    return created.id


def _clean_tags(tags: Sequence[str]) -> list[str]:
    cleaned: list[str] = []
    for tag in tags:
        value = " ".join(tag.split())[:100]
        if value and value not in cleaned:
            cleaned.append(value)
    return cleaned


def _insert_ignoring_duplicates(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on both SQLite and PostgreSQL."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    session.execute(dialect_insert(table).on_conflict_do_nothing(), rows)


def iter_rejects(report: ImportReport) -> Iterator[dict[str, Any]]:
    """The report's rejects as table rows for the page (row, reason, then the original cells)."""
    for reject in report.rejects:
        yield {"row": reject.row, "reason": reject.reason, **dict(zip(report.header, reject.cells, strict=False))}
