"""Accounts: creating the first administrator (invitations and sign-in come with the portal issue)."""
from __future__ import annotations

import re
import uuid

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.common.errors import Conflict, ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.common.vocabulary import SYSTEM_ACTOR
from helpdesk.portal.models import Account

MIN_PASSWORD = 12
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except Exception:
        return False


def create_admin(session: Session, outbox, email: str, name: str, password: str, language: str = "cs") -> dict:
    email = email.strip().lower()
    errors = {}
    if not _EMAIL.match(email):
        errors["email"] = [f"{email!r} is not an e-mail address"]
    if not name.strip():
        errors["name"] = ["a name is needed"]
    if len(password) < MIN_PASSWORD:
        errors["password"] = [f"at least {MIN_PASSWORD} characters"]
    if errors:
        raise ValidationFailed.from_fields(errors)
    if session.execute(select(Account.id).where(Account.email == email)).first():
        raise Conflict(f"an account with {email} exists already", {"email": email})
    now = utcnow()
    account = Account(id=str(uuid.uuid4()), email=email, name=name.strip(), password_hash=hash_password(password),
                      roles="admin", language=language, active=True, created_at=now, updated_at=now)
    session.add(account)
    session.flush()
    # other services keep their staff rosters from this event; it waits in the portal's outbox until
    # the portal service (its own issue) runs its relay
    outbox.add(session, "account_changed", account.id, {
        "account_id": account.id, "email": email, "name": account.name, "roles": ["admin"], "active": True,
        "organisation_id": None, "department": None, "language": language, "actor": SYSTEM_ACTOR})
    return {"id": account.id, "email": email, "name": account.name, "roles": ["admin"]}
