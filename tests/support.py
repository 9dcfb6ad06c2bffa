"""Helpers for tests: actors of each role, and an event log that listens on the real broker."""
from __future__ import annotations

import json
import re
import time
import uuid

from kombu import Connection, Exchange, Queue


def actor(role: str, ident: str | None = None, org: str | None = "org-1", **extra) -> dict:
    ident = ident or f"{role}-1"
    return {"id": ident, "name": ident.replace("-", " ").title(), "roles": [role], "organisation_id": org,
            "email": f"{ident}@example.cz", **extra}


REQUESTER = actor("requester")
OTHER_REQUESTER = actor("requester", "requester-2", org="org-2")
SOLVER = actor("solver")
SOLVER_2 = actor("solver", "solver-2")
DISPATCHER = actor("dispatcher")
ADMIN = actor("admin")


def new_ticket(rpc, who=REQUESTER, **data):
    payload = {"subject": "Tiskárna netiskne", "description": "Tiskárna ve 2. patře hlásí chybu E05.", **data}
    return rpc.tickets.create_ticket(actor=who, data=payload)


class EventLog:
    """A queue of its own bound to `<source>.events`, read with kombu."""

    def __init__(self, amqp_uri: str, source: str, routing_key: str = "#"):
        self.conn = Connection(amqp_uri)
        exchange = Exchange(f"{source}.events", type="topic", durable=True)
        self.queue = Queue(f"test-log-{uuid.uuid4().hex[:8]}", exchange=exchange, routing_key=routing_key,
                           auto_delete=False, durable=False)
        self.queue(self.conn.default_channel).declare()
        self.seen: list[dict] = []

    def drain(self) -> list[dict]:
        bound = self.queue(self.conn.default_channel)
        while True:
            message = bound.get(no_ack=True)
            if message is None:
                return self.seen
            self.seen.append(json.loads(message.body) if isinstance(message.body, (str, bytes)) else message.body)

    def wait_for(self, count: int, timeout: float = 10.0, type_: str | None = None) -> list[dict]:
        deadline = time.time() + timeout
        while True:
            found = [e for e in self.drain() if type_ is None or e["type"] == type_]
            if len(found) >= count or time.time() > deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        try:
            self.queue(self.conn.default_channel).delete()
        finally:
            self.conn.release()


def known_setting(name: str) -> bool:
    """`name` is a HELPDESK_* variable the code reads (per-service ones for every service)."""
    from helpdesk.common import config

    for setting in config.SETTINGS:
        if "<SERVICE>" in setting.name:
            options = "|".join(s.upper() for s in config.SERVICES)
            pattern = re.escape(setting.name).replace(re.escape("<SERVICE>"), f"(?:{options})")
            if re.fullmatch(pattern, name):
                return True
        elif setting.name == name:
            return True
    return False


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
