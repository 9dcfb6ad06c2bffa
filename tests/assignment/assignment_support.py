"""Helpers of the assignment tests: staff accounts and HELIOS records as their events carry them, and waiting."""
from __future__ import annotations

import datetime as dt
import time

NOW = dt.datetime.now(dt.timezone.utc)


def wait_until(check, timeout: float = 15.0, what: str = "condition"):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def account(ident: str, name: str | None = None, roles=("solver",), active: bool = True, email: str | None = None,
            language: str = "cs"):
    """A portal.account_changed payload for a staff account."""
    return {"account_id": ident, "email": email or f"{ident}@example.cz", "name": name or ident.replace("-", " ").title(),
            "roles": list(roles), "active": active, "language": language,
            "actor": {"id": "admin-1", "name": "Admin", "roles": ["admin"]}}


def employee(helios_id: int, first: str, last: str, login: str | None = None, email: str | None = None,
             active: bool = True, changed_at: dt.datetime | None = None):
    return {"helios_id": helios_id, "number": 1000 + helios_id, "first_name": first, "last_name": last,
            "email": email, "login": login, "department": None, "active": active,
            "changed_at": changed_at or dt.datetime.now(dt.timezone.utc)}


def contract(number: str, guarantor: int | None, closed: bool = False, helios_id: int = 1):
    return {"helios_id": helios_id, "number": number, "name": f"Zakázka {number}", "customer_organisation_id": None,
            "guarantor_employee_id": guarantor, "closed": closed, "changed_at": dt.datetime.now(dt.timezone.utc)}
