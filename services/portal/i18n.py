"""Texts for people in Czech (the default) and English, and times shown in the portal's time zone.

Message ids are the English texts; CS holds their Czech translations (catalogue.py). A
dictionary instead of gettext .mo files: one small catalogue, no compile step, and a
test fails when a text used in a template or view has no Czech translation.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from helpdesk.portal.catalogue import CS

LANGUAGES = ("cs", "en")

STATE_LABELS = {
    "received": {"cs": "Přijato", "en": "Received"},
    "in_progress": {"cs": "V řešení – u dodavatele", "en": "In progress"},
    "waiting_on_customer": {"cs": "V řešení – u zákazníka", "en": "Waiting on customer"},
    "resolved": {"cs": "Vyřešeno", "en": "Resolved"},
    "closed": {"cs": "Uzavřeno", "en": "Closed"},
}
PRIORITY_LABELS = {
    "low": {"cs": "Nízká", "en": "Low"}, "normal": {"cs": "Běžná", "en": "Normal"},
    "high": {"cs": "Vysoká", "en": "High"}, "urgent": {"cs": "Naléhavá", "en": "Urgent"},
}
ROLE_LABELS = {
    "requester": {"cs": "Zadavatel", "en": "Requester"},
    "organisation_manager": {"cs": "Správce organizace", "en": "Organisation manager"},
    "solver": {"cs": "Řešitel", "en": "Solver"},
    "dispatcher": {"cs": "Dispečer", "en": "Dispatcher"},
    "manager": {"cs": "Manažer", "en": "Manager"},
    "admin": {"cs": "Administrátor", "en": "Administrator"},
}
CHANNEL_LABELS = {
    "portal": {"cs": "Portál", "en": "Portal"}, "email": {"cs": "E-mail", "en": "E-mail"},
    "phone": {"cs": "Telefon", "en": "Phone"}, "api": {"cs": "API", "en": "API"},
}
MODE_LABELS = {  # the assignment service's work modes (helpdesk.common.contracts.assignment.WORK_MODES)
    "dispatcher": {"cs": "Dispečer", "en": "Dispatcher"},
    "broadcast": {"cs": "Nabídka všem (kdo dřív přijme)", "en": "Broadcast & claim"},
    "contract_guarantor": {"cs": "Garant zakázky", "en": "Contract guarantor"},
    "round_robin": {"cs": "Po řadě (round robin)", "en": "Round robin"},
    "least_loaded": {"cs": "Nejméně vytížený", "en": "Least loaded"},
}
REASON_LABELS = {
    "resolved": {"cs": "Vyřešeno", "en": "Resolved"}, "duplicate": {"cs": "Duplicita", "en": "Duplicate"},
    "spam": {"cs": "Spam", "en": "Spam"}, "withdrawn": {"cs": "Staženo zadavatelem", "en": "Withdrawn"},
}


def translate(text: str, language: str, **values) -> str:
    out = CS.get(text, text) if language == "cs" else text
    return out.format(**values) if values else out


def label(table: dict, key, language: str) -> str:
    return (table.get(key) or {}).get(language, key or "")


def parse_time(value) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def format_time(value, zone: str, language: str) -> str:
    """A UTC time as people read it: in the portal's zone, Czech or English style."""
    when = parse_time(value)
    if when is None:
        return ""
    local = when.astimezone(ZoneInfo(zone))
    if language == "cs":
        return f"{local.day}. {local.month}. {local.year} {local:%H:%M}"
    return local.strftime("%Y-%m-%d %H:%M")


def format_minutes(value) -> str:
    """A span of (business) minutes for people: '45 min', '3 h 05 min'; negative spans lose their sign."""
    if value is None:
        return ""
    minutes = abs(int(value))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
