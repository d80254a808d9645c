"""The prospect commands end to end: contract JSON, exit codes, files written under the data dir."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from db.engine import dispose_engines
from outreach.cli import app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "prospects"
CONTRACT_KEYS = {"rows", "imported", "updated", "duplicates", "rejected", "suppressed", "rejects_path"}


@pytest.fixture
def cli(db_url: str, data_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("OUTREACH_DATABASE_URL", db_url)
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    yield runner
    dispose_engines()


def invoke_json(cli: CliRunner, *args: str) -> dict:
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_import_prints_exactly_the_contract_json_and_writes_rejects(cli: CliRunner, data_env: Path):
    first = invoke_json(cli, "import", str(FIXTURES / "apollo_a.csv"), "--list", "Apollo", "--tag", "q1")
    assert set(first) == CONTRACT_KEYS
    assert (first["rows"], first["imported"], first["rejected"]) == (4, 3, 1)
    rejects = Path(first["rejects_path"])
    assert rejects.parent == data_env / "rejects"
    with rejects.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1][0] == "5" and rows[1][1].startswith("invalid email 'not-an-email'")
    again = invoke_json(cli, "import", str(FIXTURES / "apollo_a.csv"))
    assert (again["imported"], again["updated"], again["duplicates"]) == (0, 0, 3)


def test_dry_run_and_map_options(cli: CliRunner, tmp_path: Path):
    path = tmp_path / "crm.csv"
    path.write_text("E-Mail Adresse,Vorname\nhans@acme-corp.de,Hans\n", encoding="utf-8")
    dry = invoke_json(
        cli, "import", str(path), "--map", "E-Mail Adresse=email", "--map", "Vorname=first_name", "--dry-run"
    )
    assert (dry["imported"], dry["rejects_path"]) == (1, None)
    real = invoke_json(cli, "import", str(path), "--map", "E-Mail Adresse=email")
    assert real["imported"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty.csv: the file is empty"), ("Name,Company\nAnn,Acme\n", "empty.csv: no email column found")],
)
def test_bad_files_exit_2_with_one_line_and_write_nothing(cli: CliRunner, tmp_path: Path, content: str, message: str):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    result = cli.invoke(app, ["import", str(path), "--json"])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    listed = cli.invoke(app, ["export", "prospects", "--format", "json"])
    assert json.loads(listed.stdout) == []


def test_export_to_a_file_neutralizes_formulas(cli: CliRunner, tmp_path: Path):
    invoke_json(cli, "import", str(FIXTURES / "semicolon.csv"))
    out = tmp_path / "prospects.csv"
    result = cli.invoke(app, ["export", "prospects", "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["notes"] for r in rows} == {"line one\nline two", "'=1+1"}
    bad = cli.invoke(app, ["export", "everything"])
    assert bad.exit_code == 2


def test_suppress_then_forget(cli: CliRunner, tmp_path: Path):
    invoke_json(cli, "import", str(FIXTURES / "hubspot.csv"))
    listing = tmp_path / "dnc.txt"
    listing.write_text("email\nada@analytical-engines.co.uk\n# a comment\nnavy-compilers.com\n")
    assert invoke_json(cli, "suppress", "--file", str(listing)) == {"added": 2, "already": 0}
    assert invoke_json(cli, "suppress", "ada@analytical-engines.co.uk") == {"added": 0, "already": 1}
    forgotten = invoke_json(cli, "forget", "ada@analytical-engines.co.uk")
    assert forgotten["prospect_found"] and forgotten["deleted"]["prospects"] == 1
    again = invoke_json(cli, "import", str(FIXTURES / "hubspot.csv"))
    assert (again["suppressed"], again["imported"]) == (3, 0)
    bad = cli.invoke(app, ["suppress", "not an address!"])
    assert bad.exit_code == 2 and "neither an email address nor a domain" in bad.stderr


def test_presets_from_the_command_line(cli: CliRunner, tmp_path: Path):
    saved = invoke_json(cli, "preset", "save", "German CRM", "--map", "E-Mail Adresse=email")
    assert saved["mapping"] == {"E-Mail Adresse": "email"}
    assert invoke_json(cli, "preset", "list")["presets"][0]["name"] == "German CRM"
    path = tmp_path / "crm.csv"
    path.write_text("E-Mail Adresse\nhans@acme-corp.de\n")
    assert invoke_json(cli, "import", str(path), "--preset", "German CRM")["imported"] == 1
    assert invoke_json(cli, "preset", "delete", "German CRM") == {"deleted": True}
