from __future__ import annotations

import stat
from pathlib import Path

import pytest

from outreach.config import load_or_create_secret, load_settings, normalize_database_url, redact_url
from outreach.errors import ConfigError


def test_defaults_put_everything_in_the_data_dir(tmp_path: Path) -> None:
    s = load_settings({"OUTREACH_DATA_DIR": str(tmp_path / "d")})
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'outreach.db'}"
    assert s.capture_dir == tmp_path / "d" / "capture"
    assert s.base_url == "http://127.0.0.1:8000"


def test_default_data_dir_is_dot_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).data_dir == tmp_path / "data"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_urls_use_psycopg3(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_unsupported_database_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        normalize_database_url("mysql://root@localhost/x")


def test_bad_base_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OUTREACH_BASE_URL"):
        load_settings({"OUTREACH_DATA_DIR": str(tmp_path), "OUTREACH_BASE_URL": "ftp://x"})


def test_secret_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_secret_key_from_environment_wins_and_writes_nothing(tmp_path: Path) -> None:
    s = load_settings({"OUTREACH_DATA_DIR": str(tmp_path), "OUTREACH_SECRET_KEY": "k" * 40})
    assert s.secret_key() == "k" * 40
    assert not (tmp_path / "secret_key").exists()


def test_a_truncated_secret_file_is_an_error_not_a_weak_key(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("short\n")
    with pytest.raises(ConfigError, match="shorter than 32"):
        load_or_create_secret(tmp_path / "secret_key")


def test_redacted_url_hides_the_password() -> None:
    shown = redact_url("postgresql+psycopg://bob:hunter2@db:5432/outreach")
    assert "hunter2" not in shown and "bob" in shown
