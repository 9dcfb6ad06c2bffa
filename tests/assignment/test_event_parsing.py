"""The events the assignment service consumes are checked by their contracts' compiled loads (common/events.py,
`compile_load`): the same payload marshmallow's load gives, and whatever marshmallow would refuse or convert is
left to marshmallow, so it is refused (or converted) with the same words."""
from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from marshmallow import ValidationError

import helpdesk.common.contracts  # noqa: F401  (registers every contract)
from helpdesk.common import dumps, events
from helpdesk.common.errors import ValidationFailed

from .assignment_support import account, contract, employee

NOW = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)
ACTOR = {"id": "a-7", "name": "Jana Nováková", "roles": ["solver"]}


def _ticket(**changes) -> dict:
    return {"id": 123, "number": "HD-2026-000123", "subject": "Tiskárna netiskne", "description": "Chyba 0x42.",
            "requester": {"id": "a-1", "name": "Petr Svoboda", "email": "petr@example.cz"},
            "organisation_id": "org-1", "contract": None, "category_id": 4, "category_path": [1, 4],
            "priority": "high", "channel": "portal", "state": "in_progress",
            "solver": {"id": "a-7", "name": "Jana Nováková", "email": None}, "close_reason": None,
            "created_at": NOW, "updated_at": NOW, "first_response_at": None, "resolved_at": None, "closed_at": None,
            "version": 3, **changes}


CONSUMED = {  # (source, type) -> a payload as its producer hands it to events.build
    ("tickets", "ticket_created"): {"ticket": _ticket(solver=None, state="received"), "actor": ACTOR},
    ("tickets", "ticket_assigned"): {"ticket": _ticket(), "actor": ACTOR, "previous_solver": None, "how": "assign",
                                     "note": "assigned by rule 'Default'"},
    ("tickets", "ticket_state_changed"): {"ticket": _ticket(state="closed", closed_at=NOW), "actor": ACTOR,
                                          "from_state": "in_progress", "to_state": "closed", "reason": None},
    ("tickets", "ticket_updated"): {"ticket": _ticket(category_path=[1, 5]), "actor": ACTOR,
                                    "changes": {"category_id": {"old": 4, "new": 5}, "subject": {"old": "a"}}},
    ("portal", "account_changed"): account("a-7"),
    ("erp_bridge", "employee_synced"): employee(7, "Jana", "Nováková", login="jana", changed_at=NOW),
    ("erp_bridge", "employee_deleted"): {"helios_id": 7, "number": 1007},
    ("erp_bridge", "contract_synced"): {**contract("Z-1", 7), "changed_at": NOW, "valid_to": dt.date(2027, 1, 1)},
    ("erp_bridge", "contract_deleted"): {"helios_id": 1, "number": "Z-1"},
}


def _on_the_wire(source: str, type_: str, payload: dict) -> dict:
    return json.loads(json.dumps(events.build(source, type_, payload, "corr-1")))


def _marshmallow(body: dict) -> dict:
    schema = events._instance(events._contract(body["source"], body["type"]), reader=True)
    return schema.load(copy.deepcopy(body["payload"]))


@pytest.mark.parametrize("source, type_", CONSUMED, ids=[f"{s}.{t}" for s, t in CONSUMED])
def test_a_consumed_event_parses_by_its_compiled_load_to_what_marshmallow_loads(source, type_):
    body = _on_the_wire(source, type_, CONSUMED[(source, type_)])
    assert dumps.compile_load(events._instance(events._contract(source, type_), reader=True)) is not None

    event = events.parse(body)

    assert repr(event.payload) == repr(_marshmallow(body))  # the same values, types and order
    assert (event.event_id, event.type, event.version, event.source, event.correlation_id) == (
        body["event_id"], type_, 1, source, "corr-1")
    assert event.occurred_at == dt.datetime.fromisoformat(body["occurred_at"])
    assert events._compiled_loads[(source, type_)] is not None  # (a difference would have turned it off)


@pytest.mark.parametrize("change, field", [
    ({"priority": "whenever"}, "payload.ticket"),
    ({"version": True}, "payload.ticket"),
    ({"created_at": "2026-11-27T09:00:00"}, "payload.ticket"),  # no offset
    ({"requester": {"id": "a-1", "name": "P", "phone": "123"}}, "payload.ticket"),
    ({"category_path": [1, None]}, "payload.ticket"),
])
def test_a_payload_marshmallow_refuses_is_refused_with_its_words(change, field):
    body = _on_the_wire("tickets", "ticket_created", CONSUMED[("tickets", "ticket_created")])
    body["payload"]["ticket"].update(change)
    with pytest.raises(ValidationError) as marshmallow_says:
        _marshmallow(body)

    with pytest.raises(ValidationFailed) as refused:
        events.parse(body)

    assert refused.value.details == {f"payload.{k}": v for k, v in marshmallow_says.value.messages.items()}
    assert field in refused.value.details


def test_values_marshmallow_converts_are_converted_as_it_converts_them():
    body = _on_the_wire("tickets", "ticket_created", {"ticket": _ticket(solver=None), "actor": ACTOR})
    body["payload"]["ticket"].update(version="4", category_path=[1, "4"])
    body["payload"]["ticket"].pop("close_reason")  # a field with a default the producer left out
    body["version"] = "1"

    event = events.parse(body)

    assert event.payload["ticket"]["version"] == 4 and event.payload["ticket"]["category_path"] == [1, 4]
    assert event.payload["ticket"]["close_reason"] is None and event.version == 1
    assert repr(event.payload) == repr(_marshmallow(body))


def test_an_envelope_with_fields_it_does_not_know_is_read_tolerantly():
    body = {**_on_the_wire("tickets", "ticket_created", CONSUMED[("tickets", "ticket_created")]), "trace": "x"}
    body["payload"]["added_later"] = {"by": "a newer producer"}

    assert events.parse(body).payload == _marshmallow(body)
