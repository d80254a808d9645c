"""The prospect commands: import, export, suppress, unsuppress, forget, preset. A face: no logic here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from outreach.cli import JsonFlag, emit, fail, user_errors

preset_app = typer.Typer(help="Saved column mappings for imports.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach the prospect commands to the `outreach` app."""
    app.command("import")(import_command)
    app.command("export")(export_command)
    app.command("suppress")(suppress_command)
    app.command("unsuppress")(unsuppress_command)
    app.command("forget")(forget_command)
    app.add_typer(preset_app, name="preset")


@user_errors
def import_command(
    path: Annotated[Path, typer.Argument(help="CSV, TSV or XLSX file of prospects.")],
    list_name: Annotated[
        str | None, typer.Option("--list", help="Add every prospect in the file to this list.")
    ] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="HEADER=field (or custom:NAME, ignore); repeatable.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag every prospect in the file; repeatable.")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Apply a saved mapping preset first.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would happen; write nothing.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import prospects; every row is counted as imported, updated, duplicate, rejected or suppressed."""
    from db.engine import transaction
    from outreach.config import load_settings
    from outreach.prospect_mapping import parse_map_options
    from outreach.prospects import ImportOptions, import_prospects
    from outreach.prospects import dry_run as run_dry
    from outreach.runtime import open_checked_engine

    settings = load_settings()
    options = ImportOptions(
        list_name=list_name,
        tags=tuple(tag or ()),
        mapping=parse_map_options(map_ or []),
        preset=preset,
        rejects_dir=settings.data_dir / "rejects",
    )
    engine = open_checked_engine(settings)
    secret = settings.secret_key()
    with transaction(engine) as session:
        if dry_run:
            report = run_dry(session, path, options, secret_key=secret)
        else:
            report = import_prospects(session, path, options, secret_key=secret)
    summary = report.summary()
    verb = "would import" if dry_run else "imported"
    human = (
        f"{report.file_name}: {summary['rows']} rows — {verb} {summary['imported']}, updated {summary['updated']}, "
        f"duplicates {summary['duplicates']}, rejected {summary['rejected']}, suppressed {summary['suppressed']}"
        + (f"\nrejects: {summary['rejects_path']}" if summary["rejects_path"] else "")
    )
    emit(summary, as_json, human)


@user_errors
def export_command(
    what: Annotated[str, typer.Argument(help="prospects, leads or activity.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="File to write; standard output when omitted.")] = None,
) -> None:
    """Export prospects, leads or activity; CSV cells that a spreadsheet would run as formulas are neutralized."""
    from db.engine import transaction
    from outreach.export import EXPORT_KINDS, FORMATS, write_export
    from outreach.runtime import open_checked_engine

    if what not in EXPORT_KINDS:
        raise fail(f"export: unknown '{what}'; choose one of {', '.join(EXPORT_KINDS)}")
    if fmt not in FORMATS:
        raise fail(f"--format: unknown '{fmt}'; choose csv or json")
    engine = open_checked_engine()
    with transaction(engine, readonly=True) as session:
        if out is None:
            write_export(session, what, fmt, sys.stdout)
            return
        temporary = out.with_name(out.name + ".part")
        try:
            with temporary.open("w", encoding="utf-8", newline="") as fh:
                count = write_export(session, what, fmt, fh)
            temporary.replace(out)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise fail(f"--out {out}: {exc.strerror}") from None
    typer.echo(f"exported {count} {what} rows to {out}", err=True)


@user_errors
def suppress_command(
    entries: Annotated[list[str] | None, typer.Argument(help="Email addresses or domains.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="A file with one address or domain per line.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Never contact these addresses or domains (a domain covers its subdomains)."""
    from db.engine import transaction
    from outreach.runtime import open_checked_engine
    from outreach.suppression import suppress

    values = list(entries or [])
    source = "command line"
    if file is not None:
        values += _read_entries(file)
        source = f"file {file.name}"
    if not values:
        raise fail("suppress: give email addresses or domains, or --file PATH")
    with transaction(open_checked_engine()) as session:
        result = suppress(session, values, source=source)
    emit(
        {"added": result.added, "already": result.already},
        as_json,
        f"suppressed {result.added} new entries ({result.already} were already suppressed)",
    )


def _read_entries(file: Path) -> list[str]:
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise fail(f"--file {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise fail(f"--file {file}: not a UTF-8 text file with one address or domain per line") from None
    values = []
    for line in text.splitlines():
        value = line.split(",")[0].strip().strip('"')
        if value and not value.startswith("#") and value.lower() not in ("email", "domain", "email address"):
            values.append(value)
    return values


@user_errors
def unsuppress_command(
    entry: Annotated[str, typer.Argument(help="An email address or domain to take off the list.")],
    as_json: JsonFlag = False,
) -> None:
    """Remove an address or domain from the suppression list (forgotten people stay suppressed)."""
    from db.engine import transaction
    from outreach.runtime import open_checked_engine
    from outreach.suppression import unsuppress

    with transaction(open_checked_engine()) as session:
        removed = unsuppress(session, entry)
    emit({"removed": removed}, as_json, "removed" if removed else "it was not on the list")


@user_errors
def forget_command(
    email: Annotated[str, typer.Argument(help="The person's email address.")],
    as_json: JsonFlag = False,
) -> None:
    """Erase a person's data everywhere and keep only a keyed hash so they are never contacted again."""
    from db.engine import transaction
    from outreach.config import load_settings
    from outreach.erasure import forget
    from outreach.runtime import open_checked_engine

    settings = load_settings()
    engine = open_checked_engine(settings)
    with transaction(engine) as session:
        result = forget(session, email, secret_key=settings.secret_key())
    data = {"forgotten": True, "prospect_found": result.prospect_found, "deleted": result.deleted}
    human = "forgotten" + ("" if result.prospect_found else " (no prospect had that address; it is now suppressed)")
    emit(data, as_json, human)


# --- presets -------------------------------------------------------------------------------------


@preset_app.command("save")
@user_errors
def preset_save(
    name: Annotated[str, typer.Argument(help="Preset name.")],
    map_: Annotated[list[str], typer.Option("--map", help="HEADER=field; repeatable.")],
    as_json: JsonFlag = False,
) -> None:
    """Save a named mapping (HEADER=field pairs) for later imports with --preset."""
    from db.engine import transaction
    from outreach.prospect_mapping import parse_map_options, save_preset
    from outreach.runtime import open_checked_engine

    with transaction(open_checked_engine()) as session:
        info = save_preset(session, name, parse_map_options(map_))
    emit({"name": info.name, "mapping": info.mapping}, as_json, f"saved preset {info.name}")


@preset_app.command("list")
@user_errors
def preset_list(as_json: JsonFlag = False) -> None:
    """List saved mapping presets."""
    from db.engine import transaction
    from outreach.prospect_mapping import list_presets
    from outreach.runtime import open_checked_engine

    with transaction(open_checked_engine(), readonly=True) as session:
        presets = list_presets(session)
    rows = [{"name": p.name, "mapping": p.mapping} for p in presets]
    human = "\n".join(f"{p.name}\t{len(p.mapping)} columns" for p in presets) or "no presets yet"
    emit({"presets": rows}, as_json, human)


@preset_app.command("delete")
@user_errors
def preset_delete(name: Annotated[str, typer.Argument(help="Preset name.")], as_json: JsonFlag = False) -> None:
    """Delete a saved mapping preset."""
    from db.engine import transaction
    from outreach.prospect_mapping import delete_preset
    from outreach.runtime import open_checked_engine

    with transaction(open_checked_engine()) as session:
        deleted = delete_preset(session, name)
    emit({"deleted": deleted}, as_json, "deleted" if deleted else f"no preset named {name}")
