"""Choosing the Sent folder and reading the grace period: pure parts of outreach.in_doubt."""

from __future__ import annotations

from datetime import timedelta

from outreach.in_doubt import DEFAULT_GRACE, GRACE_ENV, choose_sent_folder, grace_from_env


def test_the_folder_flagged_sent_wins_over_any_name() -> None:
    folders = [("INBOX", ()), ("Sent", ()), ("Gesendet", ("\\HasNoChildren", "\\Sent"))]
    assert choose_sent_folder(folders) == "Gesendet"


def test_without_the_flag_the_known_names_are_tried_in_order_ignoring_case() -> None:
    assert choose_sent_folder([("INBOX", ()), ("[Gmail]/Sent Mail", ()), ("sent items", ())]) == "sent items"
    assert choose_sent_folder([("INBOX", ()), ("[Gmail]/Sent Mail", ("\\HasNoChildren",))]) == "[Gmail]/Sent Mail"
    assert choose_sent_folder([("INBOX", ()), ("SENT", ()), ("Sent Items", ())]) == "SENT"


def test_no_sent_folder_is_none() -> None:
    assert choose_sent_folder([("INBOX", ()), ("Archive", ("\\Archive",))]) is None


def test_the_grace_period_comes_from_the_environment_with_a_default() -> None:
    assert grace_from_env({}) == DEFAULT_GRACE
    assert grace_from_env({GRACE_ENV: "90"}) == timedelta(seconds=90)
    assert grace_from_env({GRACE_ENV: "soon"}) == DEFAULT_GRACE
