"""The bridge's pure rules: IČO, cursors, state codes, and who wins when both sides edit."""
from __future__ import annotations

import datetime as dt

import pytest

from helpdesk.erp_bridge import demo_data, domain

UTC = dt.timezone.utc


def test_ico_check_digit_matches_known_registrations():
    assert domain.ico_valid("25596641")  # Asseco Solutions, a.s.
    assert domain.ico_valid("00006947")  # Ministerstvo financí
    assert not domain.ico_valid("25596642")
    assert not domain.ico_valid("2559664")
    assert not domain.ico_valid(None)


def test_generated_icos_are_valid_and_distinct():
    icos = [demo_data.ico(n) for n in range(1, 5000)]
    assert all(domain.ico_valid(i) for i in icos)
    assert len(set(icos)) == len(icos)


def test_polling_starts_an_overlap_before_the_cursor():
    at = dt.datetime(2026, 3, 1, 10, 0)
    assert domain.poll_from(domain.Cursor(at), dt.timedelta(minutes=5)) == dt.datetime(2026, 3, 1, 9, 55)
    assert domain.poll_from(domain.Cursor(), dt.timedelta(minutes=5)) == dt.datetime(1900, 1, 1)


def test_cursor_never_passes_a_row_open_in_the_editor():
    start = domain.Cursor(dt.datetime(2026, 3, 1, 10, 0))
    held = dt.datetime(2026, 3, 1, 10, 5)
    moved = domain.advance(start, dt.datetime(2026, 3, 1, 10, 9), held)
    assert moved.changed < held
    assert moved.changed > start.changed
    assert domain.advance(start, dt.datetime(2026, 3, 1, 10, 9), None).changed == dt.datetime(2026, 3, 1, 10, 9)


def test_cursor_does_not_go_back():
    start = domain.Cursor(dt.datetime(2026, 3, 1, 10, 0), 50)
    assert domain.advance(start, dt.datetime(2026, 3, 1, 9, 0), None, 40) == start


def test_digest_ignores_when_a_record_changed():
    a = {"helios_id": 1, "name": "A", "changed_at": dt.datetime(2026, 1, 1, tzinfo=UTC)}
    assert domain.digest(a) == domain.digest({**a, "changed_at": dt.datetime(2026, 2, 1, tzinfo=UTC)})
    assert domain.digest(a) != domain.digest({**a, "name": "B"})


def test_state_codes_are_configurable_and_must_differ():
    codes = domain.parse_state_codes("resolved=VYR,closed=UZ")
    assert codes["resolved"] == "VYR" and codes["closed"] == "UZ" and codes["received"] == "N"
    with pytest.raises(ValueError):
        domain.parse_state_codes("resolved=N")
    with pytest.raises(ValueError):
        domain.parse_state_codes("nonsense=X")
    with pytest.raises(ValueError):
        domain.parse_state_codes("closed=TOOLONG")


CODES = domain.DEFAULT_STATE_CODES
T0 = dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
SEEN = domain.HeliosSide("R", 3, False, "popis")


def _now(**kw):
    values = {"state_code": "R", "solver_employee_id": 3, "ended": False, "text": "popis", "changed_at": T0,
              "changed_by": "jnovak", **kw}
    return domain.ActivityNow(**values)


def test_state_changed_in_helios_is_applied_when_it_is_the_newer_edit():
    got = domain.read_back(SEEN, _now(state_code="V"), CODES, "in_progress", T0 - dt.timedelta(minutes=1), True)
    assert got.to_state == "resolved" and got.refused_state is None


def test_helpdesk_change_after_the_helios_edit_wins():
    got = domain.read_back(SEEN, _now(state_code="V"), CODES, "waiting_on_customer",
                           T0 + dt.timedelta(minutes=1), True)
    assert got.to_state is None and got.refused_state == "resolved"


def test_helios_edit_wins_when_the_helpdesk_change_is_already_in_helios():
    got = domain.read_back(SEEN, _now(state_code="V"), CODES, "in_progress", T0 + dt.timedelta(minutes=1), False)
    assert got.to_state == "resolved"


def test_unchanged_activity_means_nothing():
    got = domain.read_back(SEEN, _now(), CODES, "in_progress", T0, False)
    assert got == domain.ReadBack(solver_employee_id=3)


def test_text_added_in_helios_becomes_a_note_and_solver_change_is_seen():
    got = domain.read_back(SEEN, _now(text="popis\nVolal jsem zákazníkovi.", solver_employee_id=4), CODES,
                           "in_progress", T0, False)
    assert got.new_note == "Volal jsem zákazníkovi."
    assert got.solver_changed and got.solver_employee_id == 4


def test_closing_date_set_in_helios_resolves():
    got = domain.read_back(SEEN, _now(ended=True), CODES, "in_progress", T0, False)
    assert got.to_state == "resolved"


def test_closing_an_open_ticket_goes_through_resolved():
    assert domain.moves_to("in_progress", "closed") == ["resolved", "closed"]
    assert domain.moves_to("resolved", "closed") == ["closed"]
    assert domain.moves_to("closed", "closed") == []


def test_activity_values_never_hold_null_text_and_start_with_the_number():
    ticket = {"number": "HD-2026-000007", "subject": "Tiskárna" * 60, "state": "resolved", "contract": None,
              "created_at": "2026-03-01T09:00:00+00:00", "resolved_at": "2026-03-02T09:00:00+00:00", "closed_at": None}
    values = domain.activity_values(ticket, CODES, "Europe/Prague")
    assert values["Predmet"].startswith("HD-2026-000007 ") and len(values["Predmet"]) == 255
    assert values["Stav"] == "V"
    assert values["Ukonceni"] == dt.datetime(2026, 3, 2, 10, 0)  # Prague local time
    assert values["DatumJednaniOd"] == dt.datetime(2026, 3, 1, 10, 0)


COMMENT = {"id": 7, "public": True, "body": "Toner objednán.", "created_at": "2026-03-01T09:30:00.123456+00:00",
           "author": {"id": "jnovak1", "name": "Jana Nováková", "roles": ["solver"]}}


def test_notes_setting_names_the_unconfirmed_task_columns():
    assert domain.parse_notes("text") == domain.NotesSetting("text", "Predmet", "Popis", None)
    assert domain.parse_notes(" none ").mode == "none"
    custom = domain.parse_notes("task:subject=Nazev, text=, employee=105")
    assert custom == domain.NotesSetting("task", "Nazev", "", 105)
    assert custom.marker_column == "Nazev"
    assert domain.parse_notes("task:subject=").marker_column == "Popis"
    assert domain.parse_notes("task:subject=,text=").marker_column is None


def test_a_comment_becomes_a_finished_task_of_its_author():
    values = domain.note_task("HD-2026-000001", COMMENT, 102, domain.parse_notes("task"), "Europe/Prague")
    assert values == {"Resitel": 102, "Zadavatel": 102, "Stav": 2,
                      "TerminSplneni": dt.datetime(2026, 3, 1, 10, 30, 0, 123000),
                      "DatumDokonceni": dt.datetime(2026, 3, 1, 10, 30, 0, 123000),
                      "Predmet": "[#c7] HD-2026-000001 odpověď – Jana Nováková", "Popis": "Toner objednán."}


def test_a_task_of_an_author_who_is_no_employee_gets_the_default_or_none():
    note = {**COMMENT, "public": False}
    default = domain.note_task("HD-2026-000001", note, None, domain.parse_notes("task:employee=105"), "UTC")
    assert default["Resitel"] == default["Zadavatel"] == 105
    assert default["Predmet"].startswith("[#c7] HD-2026-000001 interní poznámka")
    nobody = domain.note_task("HD-2026-000001", note, None, domain.parse_notes("task"), "UTC")
    assert nobody["Resitel"] is None and nobody["Zadavatel"] is None


def test_without_a_subject_column_the_task_text_carries_the_marker():
    values = domain.note_task("HD-2026-000001", COMMENT, None, domain.parse_notes("task:subject=,text=Poznamka"),
                              "UTC")
    assert "Predmet" not in values and "Popis" not in values
    assert values["Poznamka"] == "[#c7] HD-2026-000001 odpověď – Jana Nováková\nToner objednán."
    long = domain.note_task("HD-1", {**COMMENT, "author": {"name": "x" * 300}}, None, domain.parse_notes("task"), "UTC")
    assert len(long["Predmet"]) == 255
