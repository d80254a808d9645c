"""Persistence: models, engine and sessions, migrations. Imports nothing from outreach/ or pages/."""
