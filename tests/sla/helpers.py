"""Helpers of the SLA tests: ticket snapshots as the tickets service puts them in its events."""
from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def snapshot(ticket_id: int, created_at: dt.datetime, state: str = "received", version: int = 1,
             priority: str = "normal", solver: dict | None = None, updated_at: dt.datetime | None = None,
             **extra) -> dict:
    return {
        "id": ticket_id, "number": f"HD-2026-{ticket_id:06d}", "subject": "Tiskárna netiskne",
        "description": "E05", "requester": {"id": "requester-1", "name": "Requester 1", "email": "r@example.cz"},
        "organisation_id": "org-1", "contract": None, "category_id": None, "category_path": [],
        "priority": priority, "channel": "portal", "state": state, "solver": solver, "close_reason": None,
        "created_at": created_at, "updated_at": updated_at or created_at, "first_response_at": None,
        "resolved_at": None, "closed_at": None, "version": version, **extra,
    }


SYSTEM = {"id": "system", "name": "System", "roles": ["system"]}
