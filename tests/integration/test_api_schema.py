"""Schemathesis against /openapi.json, in-process: generated requests never get a 5xx, and every answer
matches the documented status codes, content types and response schemas (bounded examples, < 60 s).

The operations are driven directly (schema → operation strategies → hypothesis) rather than through
schemathesis' lazy pytest fixture, whose subtest hook does not run under this pytest version.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from db.engine import transaction
from outreach.api_keys import create_api_key
from outreach.tracking import create_app
from tests.tracking_helpers import settings_for

MAX_EXAMPLES = 12
# A schema-valid request may still be bad input the schema cannot express (a string that is not a valid
# campaign YAML, an address that does not exist); the API answers those 400 with the reason.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409"]}}}
)


def test_every_operation_answers_as_documented(engine, tmp_path, db_url) -> None:
    with transaction(engine) as s:
        key = create_api_key(s, "schemathesis", "write").key
    app = create_app(engine, settings_for(tmp_path / "data", db_url))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    checked = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"})

        conforms()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /api/v1/campaigns" in checked and "GET /api/v1/events" in checked
