"""Messages of the services and of marshmallow, and the fields they name, shown on pages in the reader's language.

The services answer in English: their messages also go to logs and API clients, which get them
as they are. A page shows a message in Czech when it is a known text (the catalogue) or one of
the known forms below with values in it; any other message as it came, so nothing is hidden.
"""
from __future__ import annotations

import re

from helpdesk.portal.catalogue import CS
from helpdesk.portal.i18n import translate

# marshmallow's own messages with values, and the services' (English regular expression, Czech text: {0}… are
# the groups)
_FORMS = [(re.compile(pattern), czech) for pattern, czech in (
    (r"Shorter than minimum length (\d+)\.", "Nejméně {0} znaků."),
    (r"Longer than maximum length (\d+)\.", "Nejvýše {0} znaků."),
    (r"Length must be between (\d+) and (\d+)\.", "Délka od {0} do {1} znaků."),
    (r"Must be greater than or equal to (-?\d+) and less than or equal to (-?\d+)\.", "Číslo od {0} do {1}."),
    (r"Must be greater than or equal to (-?\d+)\.", "Číslo nejméně {0}."),
    (r"Must be less than or equal to (-?\d+)\.", "Číslo nejvýše {0}."),
    (r"Must be one of: (.+)\.", "Jedna z možností: {0}."),
    (r"at least (\d+) characters", "nejméně {0} znaků"),
    (r"'(.*)' is not an e-mail address", "„{0}“ není e-mailová adresa"),
    (r"no category (\d+)", "kategorie {0} neexistuje"),
    (r"category '(.*)' is no longer offered", "kategorie „{0}“ se už nenabízí"),
    (r"(.+) is not allowed; allowed: (.+)", "typ {0} není povolen; povolené: {1}"),
    (r"the upload is larger than (\d+) bytes", "nahrávaná data jsou větší než {0} bajtů"),
    (r"file of (\d+) bytes exceeds the limit of (\d+) bytes", "soubor má {0} bajtů, nejvýše smí mít {1}"),
    (r"must be between (-?\d+) and (-?\d+)", "číslo od {0} do {1}"),
    (r"choose from (.+?)(?:; unknown: (.+))?", "vyberte z: {0}"),
    (r"ticket (\S+) was changed meanwhile: you have version (\d+), it is at version (\d+); reload and try again",
     "požadavek {0} mezitím někdo změnil (máte verzi {1}, platí verze {2}); načtěte stránku a zkuste to znovu"),
    (r"ticket (\S+) is already taken by (.+)", "požadavek {0} už převzal(a) {1}"),
    (r"ticket (\S+) is closed and cannot change", "požadavek {0} je uzavřený a nelze jej měnit"),
)]

# a field's English label (the catalogue gives the Czech one), for form fields, service fields and history
FIELD_LABELS = {
    "subject": "Subject", "description": "Description", "category_id": "Category", "priority": "Priority",
    "contract": "Contract", "attachments": "Attachments", "attachment": "Attachment", "body": "Text",
    "score": "Rating", "rating": "Rating", "comment": "Comment", "email": "E-mail", "name": "Name",
    "password": "Password", "roles": "Roles", "language": "Language", "organisation_id": "Organisation",
    "requester_id": "Requester", "solver_id": "Solver", "solver": "Solver", "kind": "Kind", "id": "Identifier",
    "token": "Link", "state": "State", "reason": "Reason", "close_reason": "Close reason", "note": "Note",
    "parent_id": "Parent category", "version": "Version", "channel": "Channel", "created": "Created",
}


def message(text, language: str) -> str:
    """`text` (a service's or marshmallow's message) in `language`; unknown texts as they are."""
    text = str(text)
    if language != "cs":
        return text
    if text in CS:
        return CS[text]
    for pattern, czech in _FORMS:
        found = pattern.fullmatch(text)
        if found:
            return czech.format(*found.groups())
    return text


def field(name, language: str) -> str:
    """A field's label (a form's or a service's field name); a nested one (`attachments.1`) by its first part."""
    name = str(name)
    label = FIELD_LABELS.get(name.split(".")[0])
    return translate(label, language) if label else name
