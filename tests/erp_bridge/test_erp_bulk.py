"""The first import's bulk path: envelopes built without marshmallow per record, COPY, reading ahead, crashes.

`Bridge.full` stores through `bulk.BulkOutbox` and `bulk.copy_rows` (COPY on PostgreSQL when
psycopg2 is not greened, else executemany) and reads HELIOS one batch ahead. These tests
check what that must not change: every event is what `events.build` would make and parses
against its contract, read-model rows and events of a batch commit together, a crash between
or inside batches loses and duplicates nothing, and the COPY path stores values unchanged.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import random
import subprocess
import sys
import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from helpdesk.common import dumps, events
from helpdesk.common.errors import ValidationFailed
from helpdesk.erp_bridge import bulk, domain, handlers, reader
from helpdesk.erp_bridge.models import RECORDS, contact_emails, contacts, outbox

UTC = dt.timezone.utc
SYNCED = {domain.ORGANISATION: "organization_synced", domain.CONTACT: "contact_synced",
          domain.EMPLOYEE: "employee_synced", domain.CONTRACT: "contract_synced"}


def _without_ids(envelope: dict) -> dict:
    return {k: v for k, v in envelope.items() if k not in ("event_id", "occurred_at")}


def _outbox_rows(bridge):
    with bridge.tx() as session:
        return session.execute(select(outbox).order_by(outbox.c.id)).all()


def _count(bridge, table) -> int:
    with bridge.tx() as session:
        return session.execute(select(func.count()).select_from(table)).scalar()


def _bridge(config_env, helios_url, **settings):
    from helpdesk.common import config as config_module
    from helpdesk.erp_bridge.sync import Bridge

    return Bridge(config_module.load({**config_env, "HELPDESK_ERP_HELIOS_URL": helios_url, **settings}))


# ---------------------------------------------------------------- envelopes

def test_every_payload_of_helios_builds_the_envelope_events_build_makes(bridge):
    for entity, type_ in SYNCED.items():
        every = bridge.gateway.run(reader.ids, entity, 0, 10_000)
        payloads = bridge.gateway.run(reader.load, entity, every, bridge.s.reader).payloads
        assert len(payloads) == len(every) > 0
        built = bulk.build_many("erp_bridge", type_, payloads, "corr-1")
        assert len(built) == len(payloads)
        for payload, envelope in zip(payloads, built):
            expected = events.build("erp_bridge", type_, payload, "corr-1")
            assert _without_ids(envelope) == _without_ids(expected)
            assert json.dumps(envelope["payload"]) == json.dumps(expected["payload"])  # same keys in the same order
            parsed = events.parse(json.loads(json.dumps(envelope, ensure_ascii=False)))
            assert parsed.payload["helios_id"] == payload["helios_id"]
        assert len({e["event_id"] for e in built}) == len(built)


def _contact(**changes) -> dict:
    payload = {"helios_id": 7, "number": 7, "first_name": "Jana", "last_name": "Nováková", "title_before": None,
               "title_after": None, "organisation_id": 3, "organisation_ids": [3], "emails": ["jana@pekarna.cz"],
               "phones": [], "changed_at": dt.datetime(2026, 3, 1, 9, 0, tzinfo=UTC)}
    payload.update(changes)
    return payload


@pytest.mark.parametrize("bad", [
    {"number": None},                                     # required, no None allowed
    {"number": "sedm"},                                   # not an integer: marshmallow's dump fails
    {"first_name": 5},                                    # marshmallow's dump makes "5" of it: valid
    {"changed_at": dt.datetime(2026, 3, 1, 9, 0)},        # naive: the contract wants an aware time
    {"emails": [None]},                                   # no None inside the list
    {"organisation_ids": [True]},                         # dumped as int(True): 1
])
def test_a_payload_in_the_middle_of_a_batch_fares_as_with_events_build(bad):
    payloads = [_contact(helios_id=1), _contact(helios_id=2, **bad), _contact(helios_id=3)]
    try:
        expected = events.build("erp_bridge", "contact_synced", payloads[1], None)
    except Exception as exc:  # refused: the batch is refused the same way
        with pytest.raises(type(exc)):
            bulk.build_many("erp_bridge", "contact_synced", payloads, None)
    else:  # valid after marshmallow's conversion: the bulk path hands it to marshmallow and gets the same
        built = bulk.build_many("erp_bridge", "contact_synced", payloads, None)
        assert _without_ids(built[1]) == _without_ids(expected)


def test_a_required_field_missing_is_refused_and_an_optional_one_left_out():
    missing_required = _contact(helios_id=2)
    del missing_required["last_name"]
    with pytest.raises(ValidationFailed):
        bulk.build_many("erp_bridge", "contact_synced", [_contact(helios_id=1), missing_required], None)
    optional = _contact(helios_id=2)
    del optional["title_after"]
    built = bulk.build_many("erp_bridge", "contact_synced", [_contact(helios_id=1), optional], None)
    assert "title_after" not in built[1]["payload"]
    assert built[1]["payload"] == events.build("erp_bridge", "contact_synced", optional, None)["payload"]


def test_values_only_marshmallow_converts_take_its_path():
    plus_one = dt.timezone(dt.timedelta(hours=1))
    odd = _contact(helios_id=2, number=decimal.Decimal(8), changed_at=dt.datetime(2026, 3, 1, 10, 0, tzinfo=plus_one))
    built = bulk.build_many("erp_bridge", "contact_synced", [_contact(helios_id=1), odd], None)
    assert built[1]["payload"] == events.build("erp_bridge", "contact_synced", odd, None)["payload"]
    assert built[1]["payload"]["number"] == 8 and built[1]["payload"]["changed_at"] == "2026-03-01T10:00:00+01:00"


def test_a_first_payload_the_compiled_dump_cannot_vouch_for_sends_the_batch_through_marshmallow():
    first = _contact(helios_id=1, number=decimal.Decimal(1))
    built = bulk.build_many("erp_bridge", "contact_synced", [first, _contact(helios_id=2)], None)
    assert [e["payload"]["number"] for e in built] == [1, 7]


def test_schemas_with_options_the_compiler_does_not_mirror_are_not_compiled():
    from marshmallow import Schema, fields, post_dump

    class Hooked(Schema):
        a = fields.Integer(required=True)

        @post_dump
        def twice(self, data, **kwargs):
            return {"a": data["a"] * 2}

    class Renamed(Schema):
        a = fields.Integer(required=True, data_key="b")

    class Validated(Schema):
        a = fields.Integer(required=True, validate=lambda v: v > 0)

    class Other(Schema):
        a = fields.Email(required=True)

    for schema in (Hooked(), Renamed(), Validated(), Other()):
        assert dumps.compile_dump(schema) is None, type(schema).__name__
    from helpdesk.common.contracts.erp_bridge import OrganizationSynced

    assert dumps.compile_dump(OrganizationSynced()) is not None


def test_event_ids_are_distinct_version_4_uuids():
    ids = bulk.uuid4s(2000)
    assert len(set(ids)) == 2000
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == value


# ---------------------------------------------------------------- outbox rows and COPY

@pytest.fixture
def unpatched_psycopg2():
    """psycopg2 without eventlet's wait callback, as in `helpdesk erp sync` (COPY works only so)."""
    import psycopg2.extensions

    callback = psycopg2.extensions.get_wait_callback()
    psycopg2.extensions.set_wait_callback(None)
    yield
    psycopg2.extensions.set_wait_callback(callback)


def test_bulk_outbox_rows_are_the_rows_the_outbox_writer_writes(bridge, unpatched_psycopg2):
    payload = _contact()
    with bridge.tx() as session:
        bridge.outbox.add_many(session, [("contact_synced", "contact:7", payload)])
        bulk.BulkOutbox(bridge.outbox).add_many(session, [("contact_synced", "contact:7", payload)])
    by_writer, by_bulk = _outbox_rows(bridge)
    for column in outbox.c.keys():
        if column in ("id", "event_id", "body", "created_at", "committed_ts"):
            assert (getattr(by_writer, column) is None) == (getattr(by_bulk, column) is None), column
        else:
            assert getattr(by_writer, column) == getattr(by_bulk, column), column
    assert by_bulk.created_at.tzinfo is not None and by_bulk.committed_ts > 0
    body_writer, body_bulk = json.loads(by_writer.body), json.loads(by_bulk.body)
    assert body_bulk["event_id"] == by_bulk.event_id
    assert _without_ids(body_bulk) == _without_ids(body_writer)


def test_copy_stores_every_value_unchanged(bridge, unpatched_psycopg2):
    tricky = "tab\there, new\nline, cr\r, back\\slash \\N, Žluťoučký kůň 🐎, \"quoted\""
    now = dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    rows = [{"helios_id": i, "number": i * 10, "name": f"{tricky} {i}", "data": json.dumps({"v": tricky}),
             "digest": "d" * 64, "changed_at": now, "synced_at": now} for i in range(1, 4)]
    with bridge.tx() as session:
        bulk.copy_rows(session, contacts, rows)
        bulk.copy_rows(session, contact_emails, [{"email": "a@b.cz", "contact_id": 1}])
        bulk.copy_rows(session, contact_emails, [])
    with bridge.tx() as session:
        stored = session.execute(select(contacts).order_by(contacts.c.helios_id)).all()
    assert [r.name for r in stored] == [r["name"] for r in rows]
    assert [json.loads(r.data)["v"] for r in stored] == [tricky] * 3
    assert all(r.changed_at == now and r.changed_at.utcoffset() == dt.timedelta(0) for r in stored)
    assert _count(bridge, contact_emails) == 1


def test_copy_refuses_a_naive_time_for_a_utc_column(bridge, unpatched_psycopg2):
    row = {"helios_id": 1, "number": 1, "name": "x", "data": "{}", "digest": "d", "changed_at": dt.datetime(2026, 1, 1),
           "synced_at": dt.datetime(2026, 1, 1, tzinfo=UTC)}
    with pytest.raises(Exception, match="naive"):
        with bridge.tx() as session:
            bulk.copy_rows(session, contacts, [row])
    assert _count(bridge, contacts) == 0


# ---------------------------------------------------------------- the first import, end to end

def test_every_event_of_a_first_import_parses_and_matches_its_read_model_row(bridge, unpatched_psycopg2):
    done = {entity: bridge.full(entity) for entity in domain.ENTITIES}
    rows = _outbox_rows(bridge)
    assert len(rows) == sum(done.values()) == 75
    assert len({r.event_id for r in rows}) == len(rows)
    for row in rows:
        event = events.parse(json.loads(row.body))
        assert str(event.event_id) == row.event_id and event.type == row.event_type
        entity, helios_id = row.aggregate_id.split(":")
        assert SYNCED[entity] == event.type and event.payload["helios_id"] == int(helios_id)
    with bridge.tx() as session:
        for entity, table in RECORDS.items():
            stored = {r.helios_id: json.loads(r.data) for r in session.execute(select(table)).all()}
            published = {json.loads(r.body)["payload"]["helios_id"]: json.loads(r.body)["payload"]
                         for r in rows if r.event_type == SYNCED[entity]}
            assert stored.keys() == published.keys() and len(stored) == done[entity]
            for helios_id, data in stored.items():  # the read model keeps what was published
                assert {k: v for k, v in data.items() if k != "changed_at"} == \
                    {k: v for k, v in published[helios_id].items() if k != "changed_at"}
        emails = session.execute(select(func.count()).select_from(contact_emails)).scalar()
    assert emails == 40  # one e-mail per demo contact person


def test_a_crash_between_batches_loses_nothing_and_duplicates_nothing(config_env, helios_url, monkeypatch):
    bridge = _bridge(config_env, helios_url, HELPDESK_ERP_BATCH_SIZE="7")
    real, calls = handlers.store, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed between batches")
        return real(*args, **kwargs)

    monkeypatch.setattr(handlers, "store", crash_on_third)
    with pytest.raises(RuntimeError):
        bridge.full(domain.CONTACT)
    assert _count(bridge, contacts) == 14  # two batches of 7, committed
    assert len(_outbox_rows(bridge)) == 14
    with bridge.tx() as session:
        assert handlers.get_cursor(session, domain.CONTACT).changed is None  # the cursor did not move
    monkeypatch.setattr(handlers, "store", real)
    assert bridge.full(domain.CONTACT) == 40
    rows = _outbox_rows(bridge)
    assert _count(bridge, contacts) == 40 and len(rows) == 40
    assert len({r.aggregate_id for r in rows}) == 40  # each contact published once
    with bridge.tx() as session:
        assert handlers.get_cursor(session, domain.CONTACT).changed is not None


def test_a_crash_inside_a_batch_keeps_neither_its_rows_nor_its_events(config_env, helios_url, monkeypatch):
    bridge = _bridge(config_env, helios_url, HELPDESK_ERP_BATCH_SIZE="7")
    real, calls = bulk.BulkOutbox.add_many, []

    def crash_on_second(self, session, items):
        calls.append(1)
        if len(calls) == 2:  # the batch's read-model rows are written already, in the same transaction
            raise RuntimeError("killed before the events")
        return real(self, session, items)

    monkeypatch.setattr(bulk.BulkOutbox, "add_many", crash_on_second)
    with pytest.raises(RuntimeError):
        bridge.full(domain.ORGANISATION)
    assert _count(bridge, RECORDS[domain.ORGANISATION]) == 7 and len(_outbox_rows(bridge)) == 7
    monkeypatch.setattr(bulk.BulkOutbox, "add_many", real)
    assert bridge.full(domain.ORGANISATION) == 20
    assert _count(bridge, RECORDS[domain.ORGANISATION]) == 20
    assert sorted(r.aggregate_id for r in _outbox_rows(bridge)) == sorted(f"organisation:{i}" for i in range(1, 21))


def test_helios_failing_mid_import_keeps_the_batches_read_before(config_env, helios_url, monkeypatch):
    bridge = _bridge(config_env, helios_url, HELPDESK_ERP_BATCH_SIZE="4")
    real, calls = reader.ids_and_rows, []

    def fail_third_page(*args):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("HELIOS went away")
        return real(*args)

    monkeypatch.setattr(reader, "ids_and_rows", fail_third_page)
    with pytest.raises(ConnectionError):
        bridge.full(domain.CONTACT)
    assert _count(bridge, contacts) == 8 and len(_outbox_rows(bridge)) == 8  # the two pages before it


def test_a_first_import_in_an_unpatched_process_copies_and_reads_ahead(config_env, helios_url):
    """As `helpdesk erp sync --full` runs it: no eventlet patching, so COPY (PostgreSQL) and a native read-ahead
    thread; the result is checked from here."""
    script = ("import json, sys\n"
              "from helpdesk.common import config\n"
              "from helpdesk.erp_bridge import bulk, domain\n"
              "from helpdesk.erp_bridge.sync import Bridge\n"
              "b = Bridge(config.load(json.loads(sys.argv[1])))\n"
              "engine = b.sessions.kw['bind']\n"
              "with engine.connect() as conn:\n"
              "    copies = bulk._can_copy(conn)\n"
              "done = {e: b.full(e) for e in domain.ENTITIES}\n"
              "print(json.dumps({'done': done, 'copies': copies}))\n")
    env = {**config_env, "HELPDESK_ERP_HELIOS_URL": helios_url, "HELPDESK_ERP_BATCH_SIZE": "6"}
    out = subprocess.run([sys.executable, "-c", script, json.dumps(env)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["done"] == {"organisation": 20, "contact": 40, "employee": 5, "contract": 10}
    assert result["copies"] == helios_url.startswith("postgresql")
    bridge = _bridge(config_env, helios_url)
    rows = _outbox_rows(bridge)
    assert len(rows) == 75 and len({r.aggregate_id for r in rows}) == 75
    for row in rows:
        events.parse(json.loads(row.body))
    assert _count(bridge, contacts) == 40 and _count(bridge, contact_emails) == 40


# ---------------------------------------------------------------- reading ahead, the garbage collector

def test_read_ahead_keeps_order_and_raises_in_turn():
    def items():
        yield from range(5)
        raise ValueError("page 6 failed")

    got = []
    with pytest.raises(ValueError, match="page 6"):
        for item in bulk.read_ahead(items()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_read_ahead_stops_reading_when_the_consumer_stops():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    for item in bulk.read_ahead(items(), depth=1):
        if item == 2:
            break
    assert len(produced) <= 5  # the item handed over, one waiting, one being read


def test_offloaded_gateway_runs_a_helper_threads_work_where_it_is(tmp_path):
    from eventlet import patcher

    from helpdesk.erp_bridge.gateway import HeliosGateway

    threading = patcher.original("threading")
    gateway = HeliosGateway(f"sqlite:///{tmp_path / 'h.db'}", offload=True)
    here = []

    def where(conn):
        return threading.get_ident()

    worker = threading.Thread(target=lambda: here.append((threading.get_ident(), gateway.run(where))))
    worker.start()
    worker.join(10)
    assert here and here[0][0] == here[0][1]  # not handed to eventlet's pool from a thread without the hub
    assert gateway.run(where) != threading.get_ident()  # from the hub's thread it still is


def test_gc_frozen_sets_aside_and_restores():
    import gc

    assert gc.get_freeze_count() == 0
    with bulk.gc_frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with bulk.gc_frozen():
            pass
        assert gc.get_freeze_count() == frozen  # someone else's freeze is left alone
    finally:
        gc.unfreeze()


# ---------------------------------------------------------------- payload rules kept

def _ordered_before(contacts_, kinds) -> list[str]:
    """domain._ordered as it was before it was made faster (the reference)."""
    chosen = sorted((c for c in contacts_ if c.Druh in kinds and (c.Spojeni or "").strip()),
                    key=lambda c: (not c.Prednastaveno, c.ID))
    seen, out = set(), []
    for c in chosen:
        value = c.Spojeni.strip()
        if value.casefold() not in seen:
            seen.add(value.casefold())
            out.append(value)
    return out


def test_ordered_contacts_are_what_they_were():
    rng = random.Random(5)
    values = ["a@b.cz", "A@B.cz", " a@b.cz ", "", "   ", None, "x@y.cz", "+420 1", "+420 2"]
    for _ in range(2000):
        rows = [SimpleNamespace(ID=rng.randint(1, 6), Druh=rng.choice([1, 2, 3, 6, 7]), Spojeni=rng.choice(values),
                                Prednastaveno=rng.choice([True, False, None])) for _ in range(rng.randint(0, 6))]
        for kinds in ({6}, {1, 2}):
            assert domain._ordered(rows, kinds) == _ordered_before(rows, kinds)


def test_a_changed_contacts_e_mails_replace_its_old_ones(bridge, helios):
    from helpdesk.erp_bridge import helios as H

    bridge.full(domain.CONTACT)
    mail = helios.rows(select(H.TabKontakty).where(H.TabKontakty.c.IDCisKOs == 4)
                       .where(H.TabKontakty.c.Druh == H.EMAIL))[0]
    helios.update(H.TabKontakty, mail.ID, Spojeni="Nova.Adresa@Pekarna.cz")
    assert bridge.poll(domain.CONTACT) == 1
    with bridge.tx() as session:
        assert [c["helios_id"] for c in handlers.find_contacts(session, "nova.adresa@pekarna.cz")] == [4]
        assert handlers.find_contacts(session, mail.Spojeni) == []
        assert session.execute(select(func.count()).select_from(contact_emails)
                               .where(contact_emails.c.contact_id == 4)).scalar() == 1
    assert _count(bridge, contact_emails) == 40
