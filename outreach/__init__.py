"""Outreach: self-hosted outreach automation (the domain package; no Streamlit here)."""

__version__ = "0.1.0"
