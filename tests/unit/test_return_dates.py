"""Out-of-office return dates in the shapes absence notices use, relative to the message date (pure)."""

from __future__ import annotations

from datetime import date

import pytest

from outreach.return_dates import return_date

SENT = date(2026, 3, 4)  # a Wednesday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am out of the office until March 9 with limited access to email.", date(2026, 3, 9)),
        ("Back on Monday, March 16th.", date(2026, 3, 16)),
        ("I will be back on Monday.", date(2026, 3, 9)),
        ("OOO until next Monday", date(2026, 3, 9)),
        ("Ich bin bis zum 9. März nicht im Büro.", date(2026, 3, 9)),
        ("Wieder erreichbar ab 16.03.", date(2026, 3, 16)),
        ("Je suis absent jusqu'au 9 mars.", date(2026, 3, 9)),
        ("Estoy fuera de la oficina hasta el 23 de marzo.", date(2026, 3, 23)),
        ("Sono fuori ufficio fino al 12 marzo", date(2026, 3, 12)),
        ("Ik ben terug op 12 maart", date(2026, 3, 12)),
        ("I am away from 2 March to 13 March 2026.", date(2026, 3, 13)),
        ("out from March 2, returning March 12", date(2026, 3, 12)),
        ("Out until 3/9", date(2026, 3, 9)),  # month first reads as the nearer date
        ("Out until 16/03/2026", date(2026, 3, 16)),  # a part over 12 settles the order
        ("Back 2026-03-20", date(2026, 3, 20)),
        ("I will return tomorrow.", date(2026, 3, 5)),
        ("Returning next week", date(2026, 3, 9)),
        ("back in two weeks", date(2026, 3, 18)),
        ("back on the 15th", date(2026, 3, 15)),
        ("Away next week, back the Monday after.", date(2026, 3, 16)),
        ("until Jan 5", date(2027, 1, 5)),  # a yearless date already past is next year's
        ("I am on leave until 10.03.2026", date(2026, 3, 10)),
    ],
)
def test_return_date_formats(text: str, expected: date) -> None:
    assert return_date(text, SENT) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I am out of the office with limited access to email.",
        "Out of office. Version 2.5 is great",  # a version number is not a date
        "Envoyé de mon iPhone",  # "mon" is not Monday
        "Call me on 415 555 0134",
    ],
)
def test_no_return_date_when_none_is_written(text: str) -> None:
    assert return_date(text, SENT) is None


def test_the_start_of_an_absence_is_not_its_end() -> None:
    assert return_date("I'm away from 2 March, back 9 March", SENT) == date(2026, 3, 9)
