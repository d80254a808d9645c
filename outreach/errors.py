"""Domain errors: a message a marketer can act on. Faces turn them into st.error, HTTP 4xx or exit 2."""


class OutreachError(Exception):
    """Base for errors the user can fix; the message says what is wrong and what to do."""


class ConfigError(OutreachError):
    """Bad or missing configuration (environment variable, data directory, URL)."""


class SchemaOutdatedError(OutreachError):
    """The database schema is older (or newer) than this code expects."""
