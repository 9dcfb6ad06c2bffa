"""Compiled contract dumps (`common.dumps`): what `events.build` gives must not change, only its cost.

For every payload, the compiled dump gives exactly marshmallow's dump where marshmallow's
validation would pass, and steps aside (`Unsure`) everywhere else, so `events.build` refuses
what it always refused.
"""
import datetime as dt
import logging

import pytest
from marshmallow import Schema, fields, validate

import helpdesk.common.contracts  # noqa: F401  (registers every contract)
from helpdesk.common import dumps, events
from helpdesk.common.errors import ValidationFailed

from test_events import NOW, SOLVER_ACTOR, a_state_change, a_ticket


def marshmallow_dump(source: str, type_: str, payload: dict) -> dict:
    c = events.CONTRACTS[(source, type_)]
    schema = c.schema()
    data = schema.dump(payload)
    assert schema.validate(data) == {}
    return data


PAYLOADS = {
    ("tickets", "ticket_created"): {"ticket": a_ticket(state="received", solver=None), "actor": SOLVER_ACTOR},
    ("tickets", "ticket_state_changed"): a_state_change(),
    ("tickets", "ticket_assigned"): {"ticket": a_ticket(), "actor": SOLVER_ACTOR, "how": "claim",
                                     "previous_solver": None, "note": None},
    ("tickets", "comment_added"): {"ticket": a_ticket(), "actor": SOLVER_ACTOR, "comment": {
        "id": 9, "public": False, "body": "Interní poznámka", "author": SOLVER_ACTOR, "created_at": NOW}},
    ("tickets", "ticket_rated"): {"ticket": a_ticket(state="resolved"), "actor": SOLVER_ACTOR, "changed": True,
                                  "rating": {"score": 5, "comment": "Díky", "rated_at": NOW}},
}


@pytest.mark.parametrize("key", list(PAYLOADS), ids=[f"{s}.{t}" for s, t in PAYLOADS])
def test_compiled_dump_equals_marshmallows_dump(key):
    compiled = events.compiled_dump(*key)

    assert compiled is not None, f"{key} is no longer compiled: events.build got slower"
    assert compiled(PAYLOADS[key]) == marshmallow_dump(*key, PAYLOADS[key])
    assert list(compiled(PAYLOADS[key])["ticket"]) == list(marshmallow_dump(*key, PAYLOADS[key])["ticket"])


@pytest.mark.parametrize("bad, field", [
    ({"ticket": a_ticket(priority="whenever")}, "payload.ticket"),          # OneOf
    ({"actor": {**SOLVER_ACTOR, "roles": ["wizard"]}}, "payload.actor"),     # OneOf inside a list
    ({"ticket": a_ticket(created_at=dt.datetime(2026, 3, 2, 9, 30))}, "payload.ticket"),  # naive time
    ({"ticket": {k: v for k, v in a_ticket().items() if k != "subject"}}, "payload.ticket"),  # required missing
])
def test_build_refuses_what_marshmallow_refuses(bad, field):
    payload = {**PAYLOADS[("tickets", "ticket_state_changed")], **bad}

    with pytest.raises(dumps.Unsure):
        events.compiled_dump("tickets", "ticket_state_changed")(payload)
    with pytest.raises(ValidationFailed) as caught:
        events.build("tickets", "ticket_state_changed", payload, correlation_id=None)
    assert field in caught.value.details


def test_range_and_length_validators_are_mirrored():
    class Scored(Schema):
        score = fields.Integer(required=True, validate=validate.Range(min=1, max=5))
        code = fields.String(required=True, validate=validate.Length(min=2, max=3))

    dump = dumps.compile_dump(Scored())
    assert dump({"score": 5, "code": "ab"}) == {"score": 5, "code": "ab"}
    for bad in ({"score": 0, "code": "ab"}, {"score": 6, "code": "ab"}, {"score": 3, "code": "abcd"},
                {"score": 3, "code": "a"}):
        assert Scored().validate(bad), bad  # marshmallow refuses it too
        with pytest.raises(dumps.Unsure):
            dump(bad)


@pytest.mark.parametrize("odd", [True, "3", 3.0])
def test_a_value_marshmallow_would_convert_takes_marshmallows_path(odd):
    payload = a_state_change()
    payload["ticket"] = a_ticket(version=odd)  # no int to the compiled dump; marshmallow dumps it as one

    with pytest.raises(dumps.Unsure):
        events.compiled_dump("tickets", "ticket_state_changed")(payload)
    body = events.build("tickets", "ticket_state_changed", payload, correlation_id=None)
    assert body["payload"] == marshmallow_dump("tickets", "ticket_state_changed", payload)
    assert body["payload"]["ticket"]["version"] == int(odd)


def test_a_compiled_dump_that_differs_from_marshmallow_is_dropped(monkeypatch, caplog):
    key = ("tickets", "ticket_state_changed")
    monkeypatch.setitem(events._compiled, key, lambda payload: {"wrong": True})
    monkeypatch.setattr(events, "_vouched", set())

    with caplog.at_level(logging.WARNING, logger="helpdesk.common.events"):
        body = events.build(*key, a_state_change(), correlation_id=None)

    assert body["payload"] == marshmallow_dump(*key, a_state_change())
    assert events._compiled[key] is None
    assert "differs from marshmallow" in caplog.text


def test_a_compiled_dump_that_takes_what_marshmallow_refuses_is_dropped(monkeypatch):
    key = ("tickets", "ticket_state_changed")
    payload = a_state_change()
    payload["ticket"] = a_ticket(priority="whenever")
    monkeypatch.setitem(events._compiled, key, lambda p: {"anything": 1})  # a compiled dump gone wrong
    monkeypatch.setattr(events, "_vouched", set())

    with pytest.raises(ValidationFailed):
        events.build(*key, payload, correlation_id=None)
    assert events._compiled[key] is None and key not in events._vouched


def test_the_first_payload_must_match_in_types_too(monkeypatch):
    key = ("tickets", "ticket_state_changed")
    right = marshmallow_dump(*key, a_state_change())
    wrong = {**right, "ticket": {**right["ticket"], "version": float(right["ticket"]["version"])}}  # 3.0 == 3
    monkeypatch.setitem(events._compiled, key, lambda p: wrong)
    monkeypatch.setattr(events, "_vouched", set())

    assert events.build(*key, a_state_change(), correlation_id=None)["payload"] == right
    assert type(events.build(*key, a_state_change(), correlation_id=None)["payload"]["ticket"]["version"]) is int
    assert events._compiled[key] is None


def test_a_dumper_with_excluded_fields_dumps_as_marshmallow_and_steps_aside_when_unsure():
    from helpdesk.common.contracts.tickets import TicketSnapshot

    schema = TicketSnapshot(exclude=("description", "category_path"))  # the tickets service's list rows
    assert dumps.compile_dump(schema) is not None, "list rows are no longer compiled: list_tickets got slower"
    row = {k: v for k, v in a_ticket().items() if k not in ("description", "category_path")}
    dump = dumps.dumper(schema)
    assert dump(row) == schema.dump(row)
    assert list(dump(row)) == list(schema.dump(row))
    assert "description" not in dump(a_ticket())

    odd = {**row, "version": "3", "created_at": dt.datetime(2026, 3, 2, 9, 30)}  # marshmallow's to convert
    assert dump(odd) == schema.dump(odd)
    assert dump(odd)["version"] == 3
