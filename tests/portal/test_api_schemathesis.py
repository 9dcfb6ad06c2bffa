"""schemathesis against the portal's own /api/openapi.json, with a personal API token, through the real
TicketsService over RabbitMQ: for valid and invalid input alike, no answer is a 5xx, and every answer's status,
content type and body are the ones the document declares."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 8  # per operation and generation mode: 11 operations x 2 modes x 8 = ~180 calls, a few seconds


@pytest.fixture
def token_of_dispatcher(portal_db, people):
    from helpdesk.portal import accounts
    from helpdesk.portal.models import Account

    with portal_db() as s:
        _row, secret = accounts.create_api_token(s, s.get(Account, people["dispatcher"]["id"]), "schemathesis")
    return secret


def test_every_api_operation_answers_as_documented_and_never_5xx(app, token_of_dispatcher, people):
    headers = {"Authorization": f"Bearer {token_of_dispatcher}"}
    client = app.test_client()
    for subject in ("Tiskárna netiskne", "Nejde VPN"):  # tickets 1 and 2 exist, so some ids are found
        assert client.post("/api/tickets", json={"subject": subject, "description": "d"},
                           headers=headers).status_code == 201
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11, [op.label for op in operations]
    calls: dict[str, int] = {}

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call_and_check(case):
                response = case.call(headers=headers)
                calls[operation.label] = calls.get(operation.label, 0) + 1
                case.validate_response(response, checks=CHECKS, headers=headers)

            call_and_check()

    assert set(calls) == {op.label for op in operations}
