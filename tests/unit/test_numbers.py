"""Whole numbers at the boundaries: RPC arguments and form fields within 64 bits."""
from __future__ import annotations

import pytest

from helpdesk.common.errors import ValidationFailed
from helpdesk.common.schemas import MAX_BIGINT, digits_only, whole_number


@pytest.mark.parametrize("value", [0, 1, -5, MAX_BIGINT, -MAX_BIGINT])
def test_whole_numbers_within_64_bits_pass(value):
    assert whole_number(value, "rule_id") == value


@pytest.mark.parametrize("value, message", [
    (MAX_BIGINT + 1, "must be between"), (-MAX_BIGINT - 1, "must be between"), (2 ** 70, "must be between"),
    (True, "must be a whole number"), ("7", "must be a whole number"), (7.0, "must be a whole number")])
def test_other_values_are_refused_naming_the_field(value, message):
    with pytest.raises(ValidationFailed) as err:
        whole_number(value, "rule_id")
    assert list(err.value.details) == ["rule_id"] and message in err.value.details["rule_id"][0]


@pytest.mark.parametrize("text, expected", [
    ("0", True), ("42", True), ("9" * 18, True), ("9" * 19, False), ("", False), ("²", False), ("٣", False),
    ("-1", False), (" 1", False), ("1.0", False)])
def test_form_digits(text, expected):
    assert digits_only(text) is expected
    if expected:
        assert int(text) <= MAX_BIGINT
