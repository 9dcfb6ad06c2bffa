"""Demo sign-ins: portal accounts for the people of the demo data, so `make demo` can be tried in a browser.

The accounts take the same ids as the demo tickets' actors, so each person sees their
own requests. Every demo account has the password DEMO_PASSWORD; never load this into
a real installation.
"""
from __future__ import annotations

import logging
import uuid

from sqlalchemy import select

from helpdesk.common import db
from helpdesk.common.events import utcnow
from helpdesk.common.outbox import OutboxWriter
from helpdesk.common.vocabulary import SYSTEM_ACTOR
from helpdesk.portal import accounts
from helpdesk.portal.models import Account, Organisation, outbox

log = logging.getLogger(__name__)

DEMO_PASSWORD = "helpdesk-demo"
ORGANISATIONS = {"org-strojirny": "Strojírny Brno a.s.", "org-pekarna": "Pekárna U Mlýna s.r.o."}


def load_accounts(cfg, people: list[dict]) -> int:
    """Create the demo organisations and one account per person (skipping those that exist)."""
    made = 0
    writer = OutboxWriter(outbox, "portal")
    hashed = accounts.hash_password(DEMO_PASSWORD)
    with db.transaction(db.session_factory(cfg.database_url("portal"))) as s:
        for org_id, name in ORGANISATIONS.items():
            if s.get(Organisation, org_id) is None:
                s.add(Organisation(id=org_id, name=name, kind="organisation", active=True, created_at=utcnow()))
        for person in people:
            if s.execute(select(Account.id).where(Account.email == person["email"])).first():
                continue
            now = utcnow()
            account = Account(id=person.get("id") or str(uuid.uuid4()), email=person["email"], name=person["name"],
                              password_hash=hashed, roles=",".join(person["roles"]),
                              organisation_id=person.get("organisation_id"), department=None, language=cfg.language,
                              active=True, created_at=now, updated_at=now)
            s.add(account)
            s.flush()
            accounts.emit_changed(s, writer, account, SYSTEM_ACTOR)
            made += 1
    if made:
        log.info("demo sign-ins: %d accounts with the password %r (e.g. %s)", made, DEMO_PASSWORD,
                 people[0]["email"])
    return made
