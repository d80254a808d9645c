"""The person and company fields every prospect has: the one list that import, templates, search,
export and the CRM record agree on (custom fields come on top)."""

from __future__ import annotations

STORED_FIELDS = (
    "first_name",
    "last_name",
    "title",
    "seniority",
    "company",
    "company_domain",
    "website",
    "industry",
    "employee_count",
    "city",
    "state",
    "country",
    "timezone",
    "linkedin_url",
    "phone",
)
PROSPECT_FIELDS = ("email", *STORED_FIELDS)  # what a template can use about the person and company
