"""Where the outbox relay runs: the setting, checked when the configuration is read and when a service sets up."""
from __future__ import annotations

import pytest

from helpdesk.common import config
from helpdesk.common.outbox import runs_in_process


@pytest.mark.parametrize("setting, dialect, expected", [
    ("auto", "postgresql", True), ("auto", "sqlite", False), ("process", "postgresql", True),
    ("inline", "postgresql", False), ("inline", "sqlite", False)])
def test_the_setting_chooses_where_the_relay_runs(setting, dialect, expected):
    assert runs_in_process(setting, dialect) is expected


def test_a_relay_process_on_sqlite_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="HELPDESK_OUTBOX_RELAY=process needs PostgreSQL"):
        runs_in_process("process", "sqlite")


def test_an_unknown_setting_names_the_variable_and_the_choices():
    assert config.load({"HELPDESK_OUTBOX_RELAY": "inline"}).outbox_relay == "inline"
    assert config.load({}).outbox_relay == "auto"
    with pytest.raises(ValueError, match=r"HELPDESK_OUTBOX_RELAY must be auto, process or inline, not 'thread'"):
        config.load({"HELPDESK_OUTBOX_RELAY": "thread"})


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "a week"])
def test_keep_hours_must_be_a_number_of_zero_or_more(value):
    with pytest.raises(ValueError, match=rf"HELPDESK_OUTBOX_KEEP_HOURS must be a number of 0 or more, not '{value}'"):
        config.load({"HELPDESK_OUTBOX_KEEP_HOURS": value})
    assert config.load({"HELPDESK_OUTBOX_KEEP_HOURS": "0"}).outbox_keep_hours == 0
    assert config.load({}).outbox_keep_hours == 168
