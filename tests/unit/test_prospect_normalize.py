"""Normalization: the fast email path agrees with email-validator; flags, names, domains, phones, zones."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.prospect_files import Chunk
from outreach.prospect_mapping import auto_map
from outreach.prospect_normalize import (
    NormalizeCache,
    _email_keys,
    check_email,
    country_code,
    derive_timezone,
    normalize_chunk,
    normalize_phone,
    parse_employee_count,
    parse_tags,
    split_full_name,
)


def normalize(header: list[str], rows: list[list[str]]) -> pd.DataFrame:
    chunk = Chunk(list(range(2, len(rows) + 2)), rows)
    return normalize_chunk(chunk, auto_map(header, rows), header, NormalizeCache())


LOCAL = st.text(alphabet="abcXYZ019._+-'!#~\"() @é", min_size=0, max_size=12)
DOMAIN = st.sampled_from(
    [
        "acme-corp.com",
        "ACME.io",
        "x",
        "localhost",
        "a..b.com",
        "-bad.com",
        "sub.example.org",
        "xn--bcher-kva.com",
        "bücher.de",
        "test",
        "mail.test",
        "1.2.3.4",
        "a.b",
        "co.uk",
        "ex_ample.com",
    ]
)


@settings(max_examples=300, deadline=None)
@given(local=LOCAL, domain=DOMAIN, padding=st.sampled_from(["", " ", "\t"]))
def test_fast_path_gives_email_validators_verdict(local: str, domain: str, padding: str):
    address = f"{padding}{local}@{domain}{padding}"
    keys, errors = _email_keys(pd.Series([address], dtype="string[pyarrow]").str.strip(), NormalizeCache())
    slow = check_email(address.strip())
    key = keys.iloc[0]
    assert (None if pd.isna(key) else key) == slow.key
    assert (errors.iloc[0] is None) == (slow.error is None)


def test_role_and_disposable_addresses_are_flagged_not_dropped():
    frame = normalize(["Email"], [["Sales@Acme-Corp.com"], ["ken@mailinator.com"], ["ann+news@acme-corp.com"]])
    assert frame["reject"].isna().all()
    assert frame["is_role_address"].tolist() == [True, False, False]
    assert frame["is_disposable"].tolist() == [False, True, False]
    assert frame["email_normalized"].tolist() == ["sales@acme-corp.com", "ken@mailinator.com", "ann+news@acme-corp.com"]
    assert frame["email"].tolist()[0] == "Sales@Acme-Corp.com"


def test_company_domain_from_website_then_business_email_never_free_mail():
    frame = normalize(
        ["Email", "Website"],
        [["ann@gmail.com", "https://www.Acme-Corp.com/about?x=1"], ["bob@beta-labs.io", ""], ["cy@yahoo.com", ""]],
    )
    assert frame["company_domain"].tolist() == ["acme-corp.com", "beta-labs.io", None]


def test_full_name_is_split_only_when_first_and_last_are_missing():
    frame = normalize(
        ["Email", "Full Name", "First Name"],
        [["a@acme-corp.com", "Ada Lovelace", ""], ["b@acme-corp.com", "X Y", "Bea"]],
    )
    assert frame["first_name"].tolist() == ["Ada", "Bea"]
    assert frame["last_name"].tolist() == ["Lovelace", None]
    assert split_full_name("Lovelace, Ada") == ("Ada", "Lovelace")
    assert split_full_name("Cher") == ("Cher", None)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("51-200", 51),
        ("1,000", 1000),
        ("10,001+", 10001),
        ("120", 120),
        ("1.5k", 1500),
        ("5 to 10", 5),
        ("1.000", 1000),
        ("Self-employed", None),
        ("", None),
    ],
)
def test_employee_counts(text: str, count: int | None):
    assert parse_employee_count(text) == count


def test_apollo_apostrophe_phones_become_e164_with_the_country_as_region():
    frame = normalize(
        ["Email", "Corporate Phone", "Country"],
        [
            ["a@acme-corp.com", "'+1 415-555-0101", "United States"],
            ["b@acme-corp.com", "030 901820", "Germany"],
            ["c@acme-corp.com", "call me", ""],
        ],
    )
    assert frame["phone"].tolist() == ["+14155550101", "+4930901820", "call me"]
    assert normalize_phone("(415) 555-0132", "US") == "+14155550132"


def test_time_zone_from_country_or_state_by_library_data():
    assert derive_timezone("DE", "") == "Europe/Berlin"
    assert derive_timezone("US", "Texas") == "America/Chicago"
    assert derive_timezone("US", "CA") == "America/Los_Angeles"
    assert derive_timezone("CA", "Quebec") == "America/Toronto"
    assert derive_timezone("US", "") is None  # several zones, no state: unknown rather than wrong
    frame = normalize(
        ["Email", "Country", "Time Zone"],
        [["a@acme-corp.com", "Germany", ""], ["b@acme-corp.com", "US", "america/new_york"]],
    )
    assert frame["timezone"].tolist() == ["Europe/Berlin", "America/New_York"]
    assert frame["timezone_derived"].tolist() == [True, False]


def test_country_names_as_exporters_write_them():
    assert [country_code(c) for c in ("United States", "USA", "U.S.", "uk", "Germany", "DE", "Atlantis")] == [
        "US",
        "US",
        "US",
        "GB",
        "DE",
        "DE",
        None,
    ]


def test_custom_fields_keep_non_empty_cells_only_and_tags_split():
    frame = normalize(
        ["Email", "Icebreaker", "Company Phone", "Notes", "TAGS"],
        [["a@acme-corp.com", " Loved your talk ", "'+1 212 555 0100", "", '"vip, denver"']],
    )
    assert frame["custom_fields"].iloc[0] == {"icebreaker": "Loved your talk", "company_phone": "+1 212 555 0100"}
    assert frame["tags"].iloc[0] == ["vip", "denver"]
    assert parse_tags('""VIP"",""Blog""') == ["VIP", "Blog"]


def test_invalid_and_missing_emails_are_rejected_with_the_reason():
    frame = normalize(["Email"], [[""], ["not-an-email"], ["a@localhost"]])
    reasons = frame["reject"].tolist()
    assert reasons[0] == "missing email"
    assert reasons[1].startswith("invalid email 'not-an-email'")
    assert reasons[2].startswith("invalid email 'a@localhost'")


def test_over_long_cells_are_cut_to_the_column_and_long_urls_dropped():
    frame = normalize(
        ["Email", "Title", "Website"], [["a@acme-corp.com", "T" * 400, "https://acme-corp.com/" + "p" * 3000]]
    )
    assert len(frame["title"].iloc[0]) == 300
    assert frame["website"].iloc[0] is None
