"""Header mapping for the exporters we see, overrides, and custom-field names."""

from __future__ import annotations

import pytest

from outreach.prospect_mapping import (
    CUSTOM_PREFIX,
    MappingError,
    auto_map,
    header_key,
    parse_map_options,
    require_email_column,
    resolve_mapping,
    snake_case,
)


def fields_of(header: list[str], samples: list[list[str]] | None = None) -> dict[str, str]:
    return {h: t for h, t in auto_map(header, samples or []).targets.items() if not t.startswith(CUSTOM_PREFIX)}


def test_keys_ignore_case_spacing_and_punctuation():
    assert header_key("Email Address") == header_key("email_address") == header_key("emailAddress") == "emailaddress"
    assert header_key("# Employees") == "employees"
    assert header_key("Country/Region") == "countryregion"


def test_hubspot_labels():
    header = [
        "Record ID",
        "First Name",
        "Last Name",
        "Email",
        "Phone Number",
        "Contact owner",
        "Company Name",
        "Associated Company",
        "Job Title",
        "Website URL",
        "Country/Region",
        "State/Region",
        "City",
        "Company size",
    ]
    mapped = fields_of(header)
    assert mapped["Email"] == "email"
    assert mapped["Company Name"] == "company"
    assert "Associated Company" not in mapped  # the better alias won; the other stays a custom field
    assert mapped["Country/Region"] == "country"
    assert mapped["State/Region"] == "state"
    assert mapped["Company size"] == "employee_count"
    assert mapped["Website URL"] == "website"


def test_apollo_legacy_and_new_layouts():
    legacy = [
        "First Name",
        "Last Name",
        "Title",
        "Company",
        "Company Name for Emails",
        "Email",
        "Email Status",
        "Seniority",
        "Work Direct Phone",
        "Home Phone",
        "Mobile Phone",
        "Corporate Phone",
        "# Employees",
        "Person Linkedin Url",
        "Website",
        "Company Linkedin Url",
        "City",
        "State",
        "Country",
        "Company City",
    ]
    mapped = fields_of(legacy)
    assert mapped["Company"] == "company"
    assert mapped["# Employees"] == "employee_count"
    assert mapped["Person Linkedin Url"] == "linkedin_url"
    assert {h for h, f in mapped.items() if f == "phone"} == {
        "Work Direct Phone",
        "Home Phone",
        "Mobile Phone",
        "Corporate Phone",
    }
    assert auto_map(legacy).columns_for("phone")[:2] == ["Work Direct Phone", "Mobile Phone"]
    assert "Company City" not in mapped and "Company Linkedin Url" not in mapped
    newer = ["First Name", "Last Name", "Title", "Company Name", "Email", "Do Not Call", "Lists", "Country"]
    assert fields_of(newer)["Company Name"] == "company"


def test_linkedin_url_column_is_the_profile_link():
    header = ["First Name", "Last Name", "URL", "Email Address", "Company", "Position", "Connected On"]
    mapped = fields_of(header, [["A", "B", "https://www.linkedin.com/in/a", "", "C", "CEO", "05 Oct 2020"]])
    assert mapped["URL"] == "linkedin_url"
    assert mapped["Email Address"] == "email"
    assert mapped["Position"] == "title"


def test_salesforce_labels_and_api_names():
    labels = fields_of(
        ["Full Name", "Title", "Account Name", "Email", "Mailing City", "Mailing State/Province", "Mailing Country"]
    )
    assert labels == {
        "Full Name": "full_name",
        "Title": "title",
        "Account Name": "company",
        "Email": "email",
        "Mailing City": "city",
        "Mailing State/Province": "state",
        "Mailing Country": "country",
    }
    api = fields_of(
        ["Id", "AccountId", "LastName", "FirstName", "Name", "MailingCity", "MailingState", "Email", "MobilePhone"]
    )
    assert api["FirstName"] == "first_name" and api["LastName"] == "last_name" and api["Name"] == "full_name"
    assert api["MailingState"] == "state" and api["MobilePhone"] == "phone"


def test_mailchimp_and_lemlist():
    mailchimp = fields_of(
        ["Email Address", "First Name", "Last Name", "MEMBER_RATING", "TIMEZONE", "CC", "REGION", "TAGS"]
    )
    assert mailchimp["TIMEZONE"] == "timezone" and mailchimp["CC"] == "country"
    assert mailchimp["REGION"] == "state" and mailchimp["TAGS"] == "tags"
    lemlist = fields_of(
        ["email", "firstName", "lastName", "companyName", "phone", "linkedinUrl", "timezone", "icebreaker"]
    )
    assert lemlist["companyName"] == "company" and lemlist["linkedinUrl"] == "linkedin_url"


def test_unmapped_columns_become_snake_case_custom_fields():
    mapping = auto_map(
        ["Email", "Company Name for Emails", "Subsidiary of (Organization ID)", "icebreaker", "firstName2", "1st touch"]
    )
    assert mapping.custom_columns == {
        "Company Name for Emails": "company_name_for_emails",
        "Subsidiary of (Organization ID)": "subsidiary_of_organization_id",
        "icebreaker": "icebreaker",
        "firstName2": "first_name2",
        "1st touch": "f_1st_touch",
    }


def test_custom_names_never_collide_with_fields_or_each_other():
    mapping = auto_map(["Email", "Email (2)", "Notes", "notes!"])
    assert mapping.custom_columns == {"Email (2)": "email_2", "Notes": "notes", "notes!": "notes_2"}
    assert snake_case("", 7) == "column_7"


def test_overrides_move_a_field_and_free_the_old_column():
    header = ["Email", "Work Email", "Name"]
    mapping = resolve_mapping(header, [], parse_map_options(["work email=email", "Name=custom:display_name"]))
    assert mapping.targets == {"Email": "custom:email_2", "Work Email": "email", "Name": "custom:display_name"}
    ignored = resolve_mapping(header, [], {"Name": "ignore"})
    assert ignored.targets["Name"] == "ignore"


def test_bad_overrides_are_explained():
    with pytest.raises(MappingError, match="no such column"):
        resolve_mapping(["Email"], [], {"Mail": "email"}, file_name="f.csv")
    with pytest.raises(MappingError, match="is not a field"):
        resolve_mapping(["Email", "X"], [], {"X": "titel"})
    with pytest.raises(MappingError, match="expected HEADER=field"):
        parse_map_options(["Email"])


def test_no_email_column_names_the_file_and_its_columns():
    with pytest.raises(MappingError, match=r"people\.csv: no email column found among Name, Company"):
        require_email_column(auto_map(["Name", "Company"]), "people.csv")
