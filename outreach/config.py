"""Settings from the environment and the data directory (the contract's env vars)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from outreach.errors import ConfigError

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
CAPTURE_PORT_ENV = "OUTREACH_CAPTURE_SMTP_PORT"  # set by `outreach up --smtp-port` for its children
PREVIOUS_KEYS_ENV = "OUTREACH_SECRET_KEY_PREVIOUS"  # comma-separated keys that still verify old links


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    base_url: str
    secret_key_from_env: str | None
    previous_secret_keys: tuple[str, ...] = ()
    capture_smtp_port: int = 1025

    @property
    def capture_dir(self) -> Path:
        return self.data_dir / "capture"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def secret_key(self) -> str:
        """The signing key: from the environment, else generated once into the data dir (mode 0600)."""
        if self.secret_key_from_env:
            return self.secret_key_from_env
        return load_or_create_secret(self.data_dir / SECRET_KEY_FILE)

    def secret_keys(self) -> list[str]:
        """The key ring: the current key signs; older ones (OUTREACH_SECRET_KEY_PREVIOUS) still verify."""
        return [self.secret_key(), *self.previous_secret_keys]


def normalize_database_url(url: str) -> str:
    """Accept the URLs people paste (`postgres://`, `postgresql://`) and use psycopg 3 for them."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise ConfigError(
        f"OUTREACH_DATABASE_URL: unsupported database '{scheme}'; "
        "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
    )


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    data_dir = Path(env.get("OUTREACH_DATA_DIR") or "./data").expanduser().resolve()
    url = env.get("OUTREACH_DATABASE_URL") or f"sqlite:///{data_dir / 'outreach.db'}"
    base_url = (env.get("OUTREACH_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"OUTREACH_BASE_URL must start with http:// or https://, got '{base_url}'")
    return Settings(
        data_dir=data_dir,
        database_url=normalize_database_url(url),
        base_url=base_url,
        secret_key_from_env=env.get("OUTREACH_SECRET_KEY") or None,
        capture_smtp_port=_port(env.get(CAPTURE_PORT_ENV), CAPTURE_PORT_ENV, 1025),
        previous_secret_keys=tuple(k.strip() for k in env.get(PREVIOUS_KEYS_ENV, "").split(",") if k.strip()),
    )


def _port(value: str | None, name: str, default: int) -> int:
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(f"{name} must be a port number (1–65535), got '{value}'")
    return int(value)


def ensure_data_dir(settings: Settings) -> Path:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"OUTREACH_DATA_DIR {settings.data_dir}: cannot create it ({exc.strerror})") from exc
    return settings.data_dir


def load_or_create_secret(path: Path) -> str:
    """Create the key atomically with O_EXCL so two processes starting together agree on one key."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def _read_secret(path: Path) -> str:
    key = path.read_text().strip()
    if len(key) < 32:
        raise ConfigError(f"{path}: the secret key is shorter than 32 characters; delete the file to regenerate")
    return key


def redact_url(url: str) -> str:
    """A database URL safe to show: the password replaced by ***."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
