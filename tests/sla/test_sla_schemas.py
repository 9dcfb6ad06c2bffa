"""RPC input of the SLA service: working windows in HH:MM, night shifts, every priority's targets."""
import pytest

from helpdesk.common.errors import ValidationFailed
from helpdesk.common.schemas import load
from helpdesk.sla import schemas


def test_window_ending_before_its_start_crosses_midnight():
    assert schemas.window_minutes({"start": "22:00", "end": "06:00"}) == [1320, 1800]
    assert schemas.window_minutes({"start": "08:00", "end": "24:00"}) == [480, 1440]
    assert schemas.minutes_to_hhmm(1800) == "06:00" and schemas.minutes_to_hhmm(1440) == "24:00"


@pytest.mark.parametrize("window", [{"start": "8:00", "end": "16:00"}, {"start": "24:00", "end": "06:00"},
                                    {"start": "08:00", "end": "24:30"}, {"start": "08:60", "end": "09:00"}])
def test_bad_times_are_refused_naming_the_day(window):
    with pytest.raises(ValidationFailed) as err:
        load(schemas.CalendarIn(), {"name": "X", "week": {"mon": [window]}})
    assert "week" in err.value.details


def test_policy_needs_targets_for_every_priority():
    with pytest.raises(ValidationFailed) as err:
        load(schemas.PolicyIn(), {"name": "X", "calendar_id": 1,
                                  "targets": {"urgent": {"first_response": 30, "resolution": 240}}})
    assert "missing low, normal, high" in str(err.value.details)


def test_warning_share_must_lie_between_0_and_1():
    targets = {p: {"first_response": 1, "resolution": 2} for p in ("low", "normal", "high", "urgent")}
    with pytest.raises(ValidationFailed):
        load(schemas.PolicyIn(), {"name": "X", "calendar_id": 1, "targets": targets, "warning_share": 1.0})
    assert load(schemas.PolicyIn(), {"name": "X", "calendar_id": 1, "targets": targets})["warning_share"] is None
