"""The event envelope, the contract registry and the AsyncAPI catalogue generated from it."""
import datetime as dt
import uuid

import pytest

import helpdesk.common.contracts  # noqa: F401  (registers every contract)
from helpdesk.common import asyncapi, events
from helpdesk.common.errors import ValidationFailed

# DESIGN.md, "Bus contracts": the events other systems may rely on.
MINIMUM_EVENT_SET = [
    ("tickets", "ticket_created"),
    ("tickets", "ticket_updated"),
    ("tickets", "ticket_assigned"),
    ("tickets", "ticket_state_changed"),
    ("tickets", "comment_added"),
    ("tickets", "ticket_rated"),
    ("assignment", "ticket_offered"),
    ("sla", "sla_warning"),
    ("sla", "sla_breached"),
    ("erp_bridge", "organization_synced"),
    ("erp_bridge", "contact_synced"),
    ("erp_bridge", "employee_synced"),
    ("erp_bridge", "contract_synced"),
    ("portal", "account_changed"),
]

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)
SOLVER_ACTOR = {"id": "a-7", "name": "Jana Nováková", "roles": ["solver"]}


def a_ticket(**changes) -> dict:
    ticket = {
        "id": 123,
        "number": "HD-2026-000123",
        "subject": "Tiskárna netiskne",
        "description": "Od rána hlásí chybu 0x42.",
        "requester": {"id": "a-1", "name": "Petr Svoboda", "email": "petr@example.cz"},
        "organisation_id": "org-1",
        "contract": None,
        "category_id": 4,
        "category_path": [1, 4],
        "priority": "high",
        "channel": "portal",
        "state": "in_progress",
        "solver": {"id": "a-7", "name": "Jana Nováková", "email": None},
        "close_reason": None,
        "created_at": NOW,
        "updated_at": NOW,
        "first_response_at": None,
        "resolved_at": None,
        "closed_at": None,
        "version": 3,
    }
    return {**ticket, **changes}


def a_state_change() -> dict:
    return {"ticket": a_ticket(), "actor": SOLVER_ACTOR, "from_state": "received", "to_state": "in_progress",
            "reason": None}


def test_asyncapi_document_in_docs_is_up_to_date():
    committed = asyncapi.DEFAULT_OUTPUT.read_text(encoding="utf-8")

    assert asyncapi.generate() == committed, (
        "docs/events.asyncapi.yaml is stale: run `helpdesk asyncapi` "
        "(or `python -m helpdesk.common.asyncapi`) and commit the result")


def test_generated_document_is_the_same_every_time():
    assert asyncapi.generate() == asyncapi.generate()


@pytest.mark.parametrize("source, type_", MINIMUM_EVENT_SET, ids=[f"{s}.{t}" for s, t in MINIMUM_EVENT_SET])
def test_every_event_of_the_minimum_set_has_a_contract_and_a_channel(source, type_):
    assert (source, type_) in events.CONTRACTS
    assert f"{source}.{type_}" in asyncapi.document()["channels"]


def test_ticket_event_survives_build_then_parse():
    body = events.build("tickets", "ticket_state_changed", a_state_change(), correlation_id="req-42")

    event = events.parse(body)

    assert event.type == "ticket_state_changed"
    assert event.source == "tickets"
    assert event.version == events.CONTRACTS[("tickets", "ticket_state_changed")].version
    assert event.correlation_id == "req-42"
    assert str(uuid.UUID(event.event_id)) == body["event_id"]
    assert event.payload["ticket"]["number"] == "HD-2026-000123"
    assert event.payload["ticket"]["created_at"] == NOW
    assert event.payload["to_state"] == "in_progress"
    assert event.payload["actor"]["roles"] == ["solver"]


def test_parse_names_a_missing_envelope_field():
    body = events.build("tickets", "ticket_state_changed", a_state_change(), correlation_id=None)
    del body["event_id"]

    with pytest.raises(ValidationFailed) as caught:
        events.parse(body)

    assert "event_id" in caught.value.details


def test_parse_names_a_bad_payload_field():
    body = events.build("tickets", "ticket_state_changed", a_state_change(), correlation_id=None)
    body["payload"]["to_state"] = "lost"

    with pytest.raises(ValidationFailed) as caught:
        events.parse(body)

    assert "payload.to_state" in caught.value.details


def test_parse_rejects_an_unknown_event_type():
    body = events.build("tickets", "ticket_state_changed", a_state_change(), correlation_id=None)
    body["type"] = "ticket_teleported"

    with pytest.raises(ValidationFailed) as caught:
        events.parse(body)

    assert "type" in caught.value.details


def test_build_rejects_a_payload_that_breaks_its_contract():
    payload = a_state_change()
    payload["ticket"] = a_ticket(priority="whenever")

    with pytest.raises(ValidationFailed) as caught:
        events.build("tickets", "ticket_state_changed", payload, correlation_id=None)

    assert "payload.ticket" in caught.value.details


def test_nested_schemas_become_references_and_are_defined_once():
    doc = asyncapi.document()
    schemas = doc["components"]["schemas"]
    created = schemas["TicketCreated"]["properties"]

    assert created["ticket"] == {"$ref": "#/components/schemas/TicketSnapshot"}
    assert {"Envelope", "TicketSnapshot", "Person", "Actor"} <= set(schemas)
    assert schemas["TicketSnapshot"]["properties"]["solver"]["oneOf"] == [
        {"$ref": "#/components/schemas/Person"}, {"type": "null"}]


def test_field_rules_are_carried_into_json_schema():
    schemas = asyncapi.document()["components"]["schemas"]
    snapshot = schemas["TicketSnapshot"]
    rating = schemas["Rating"]["properties"]["score"]

    assert snapshot["properties"]["priority"]["enum"] == ["low", "normal", "high", "urgent"]
    assert snapshot["properties"]["created_at"]["format"] == "date-time"
    assert snapshot["properties"]["closed_at"]["type"] == ["string", "null"]
    assert "subject" in snapshot["required"] and "closed_at" not in snapshot["required"]
    assert (rating["minimum"], rating["maximum"]) == (1, 5)
    assert schemas["Envelope"]["properties"]["event_id"]["format"] == "uuid"
    assert schemas["ContractSynced"]["properties"]["valid_from"]["type"] == ["string", "null"]
    assert schemas["ContractSynced"]["properties"]["valid_from"]["format"] == "date"


def test_the_relay_reads_the_correlation_id_from_an_envelopes_text_as_the_parser_would():
    import json

    from helpdesk.common.outbox import correlation_id_of

    change = a_state_change()
    change["ticket"]["subject"] = '"correlation_id": "not this one"'  # (escaped in the text, so never matched)
    envelope = events.build("tickets", "ticket_state_changed", change, "c-123")
    assert correlation_id_of(json.dumps(envelope, ensure_ascii=False)) == "c-123"
    hidden = json.dumps({**envelope, "correlation_id": None, "payload": {"correlation_id": "a payload's own"}})
    assert correlation_id_of(hidden) == ""  # the envelope's, null: not a key of the same name in the payload
    for odd in (None, 'quote " and \\ backslash', "ščř"):
        text = json.dumps({**envelope, "correlation_id": odd}, ensure_ascii=False)
        assert correlation_id_of(text) == (odd or "")
