"""Messages of the services and of marshmallow on pages: in Czech for a Czech reader, as they came in English."""
from __future__ import annotations

import re

from helpdesk.portal import messages

from .conftest import post


def test_known_messages_and_forms_are_czech_for_a_czech_reader_and_unknown_ones_stay():
    cs = messages.message
    assert cs("Missing data for required field.", "cs") == "Povinný údaj."
    assert cs("Length must be between 1 and 200.", "cs") == "Délka od 1 do 200 znaků."
    assert cs("Must be one of: low, normal, high, urgent.", "cs") == "Jedna z možností: low, normal, high, urgent."
    assert cs("at least 12 characters", "cs") == "nejméně 12 znaků"
    assert cs("'x@' is not an e-mail address", "cs") == "„x@“ není e-mailová adresa"
    assert cs("Length must be between 1 and 200.", "en") == "Length must be between 1 and 200."
    assert cs("ticket HD-2026-000001 was changed meanwhile: you have version 1, it is at version 2; reload and try "
              "again", "cs") == ("požadavek HD-2026-000001 mezitím někdo změnil (máte verzi 1, platí verze 2); načtěte "
                                 "stránku a zkuste to znovu")
    assert cs("something nobody translated", "cs") == "something nobody translated"
    assert messages.field("attachments.1", "cs") == "Přílohy"
    assert messages.field("subject", "en") == "Subject" and messages.field("x_unknown", "cs") == "x_unknown"


def _error_text(body: str, name: str) -> str:
    found = re.search(rf'id="err-{name}">(.*?)</span>', body, re.S)
    assert found, body
    return found.group(1).strip()


def test_a_field_error_from_the_tickets_service_is_shown_in_the_readers_language(client_for):
    client = client_for("requester")  # the account's language is Czech
    data = {"subject": "x" * 300, "description": "Popis"}
    czech = post(client, "/tickets/new", data, content_type="multipart/form-data").get_data(as_text=True)
    assert _error_text(czech, "subject") == "Délka od 1 do 200 znaků."
    assert "Předmět:" in czech  # the summary names the field by its label


def test_every_field_label_has_a_czech_translation():
    from helpdesk.portal.catalogue import CS

    assert sorted(label for label in messages.FIELD_LABELS.values() if label not in CS) == []
