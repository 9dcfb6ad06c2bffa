"""Property-based fuzzing of the REST API: whatever a client sends, the answer is never a 5xx, and every
error is problem+json. (Beside test_api_schemathesis.py, which fuzzes
what the OpenAPI document describes: this one sends unknown fields and methods the document does not describe.)"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12)
ticket_fields = st.fixed_dictionaries({}, optional={
    "subject": json_values | st.text(max_size=250), "description": json_values | st.text(max_size=50),
    "priority": st.sampled_from(["low", "normal", "high", "urgent", "asap"]) | json_values,
    "category_id": json_values, "contract": json_values, "attachments": json_values,
    "to_state": st.sampled_from(["received", "in_progress", "resolved", "closed", "x"]) | json_values,
    "version": json_values, "score": json_values, "body": json_values, "public": json_values,
    "solver_id": json_values, "reason": json_values})
query = st.dictionaries(st.sampled_from(["state", "priority", "category_id", "solver_id", "text", "sort", "limit",
                                         "cursor", "created_from", "channel", "bogus"]),
                        st.text(max_size=20), max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=ticket_fields, extra=st.dictionaries(st.text(max_size=8), json_values, max_size=2),
       target=st.sampled_from(["/api/tickets", "/api/tickets/1", "/api/tickets/1/comments",
                               "/api/tickets/1/transitions", "/api/tickets/1/rating", "/api/tickets/1/assign",
                               "/api/tickets/999999/claim", "/api/tickets/-1"]),
       method=st.sampled_from(["post", "patch", "get"]), args=query)
def test_api_never_answers_5xx(fuzz_client, body, extra, target, method, args):
    client, headers = fuzz_client
    call = getattr(client, method)
    response = call(target, json={**body, **extra}, headers=headers, query_string=args) if method != "get" \
        else call(target, headers=headers, query_string=args)
    assert response.status_code < 500, (method, target, body, response.get_data(as_text=True))
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"


@pytest.fixture
def fuzz_client(app, portal_db, people):
    from helpdesk.portal import accounts
    from helpdesk.portal.models import Account

    with portal_db() as s:
        _row, secret = accounts.create_api_token(s, s.get(Account, people["dispatcher"]["id"]), "fuzz")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    client.post("/api/tickets", json={"subject": "s", "description": "d"}, headers=headers)
    return client, headers
