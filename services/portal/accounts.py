"""Accounts and access: the use cases behind invitations, sign-in, password reset, roles, API tokens.

Each function works inside the caller's transaction (a SQLAlchemy session) and writes
`portal.account_changed` to the outbox whenever a staff account changes, so the
assignment and SLA services keep their rosters. No Flask here: the web views and the
command line call these.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid

from argon2 import PasswordHasher
from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from helpdesk.common import db
from helpdesk.common.cache import ExpiringLookups
from helpdesk.common.errors import Conflict, Forbidden, HelpdeskError, NotFound, ValidationFailed
from helpdesk.common.events import utcnow
from helpdesk.common.vocabulary import (ADMIN, DISPATCHER, MANAGER, ORG_MANAGER, REQUESTER, SOLVER,
                                        SYSTEM_ACTOR)
from helpdesk.portal import erp_link
from helpdesk.portal.models import Account, ApiToken, LoginFailure, OneTimeToken, Organisation

MIN_PASSWORD = 12
RESET_HOURS = 2
LOGIN_WINDOW = dt.timedelta(minutes=15)
CUSTOMER_ROLES = (REQUESTER, ORG_MANAGER)
STAFF_ROLES = (SOLVER, DISPATCHER, MANAGER, ADMIN)
ASSIGNABLE_ROLES = CUSTOMER_ROLES + STAFF_ROLES
INVITERS = frozenset({ADMIN, MANAGER})
ORG_KINDS = ("organisation", "department")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()


class NotAuthenticated(HelpdeskError):
    """Wrong e-mail or password, an unknown or revoked token, or no session at all."""

    code = "not_authenticated"


class TooManyAttempts(HelpdeskError):
    """Too many failed logins for this account or from this address; try again later."""

    code = "too_many_attempts"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except Exception:
        return False


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def roles_of(account: Account) -> list[str]:
    return [r for r in account.roles.split(",") if r]


def is_staff(roles) -> bool:
    return any(r in STAFF_ROLES for r in roles)


def actor_of(account: Account) -> dict:
    """The actor dict the tickets service trusts (docs/tickets-rpc.md)."""
    return {"id": account.id, "name": account.name, "email": account.email, "roles": roles_of(account),
            "organisation_id": account.organisation_id}


def to_dict(account: Account) -> dict:
    return {"id": account.id, "email": account.email, "name": account.name, "roles": roles_of(account),
            "organisation_id": account.organisation_id, "department": account.department,
            "language": account.language, "active": account.active,
            "invited": account.password_hash is None}


def emit_changed(session: Session, outbox, account: Account, actor: dict, old_roles=()) -> None:
    # only staff rosters matter to other services; a role taken away is news too
    if not (is_staff(roles_of(account)) or is_staff(old_roles)):
        return
    outbox.add(session, "account_changed", account.id, {
        "account_id": account.id, "email": account.email, "name": account.name, "roles": roles_of(account),
        "active": account.active, "organisation_id": account.organisation_id, "department": account.department,
        "language": account.language, "actor": actor})


def _check_password(password: str, errors: dict) -> None:
    if len(password or "") < MIN_PASSWORD:
        errors["password"] = [f"at least {MIN_PASSWORD} characters"]


def create_admin(session: Session, outbox, email: str, name: str, password: str, language: str = "cs") -> dict:
    email = (email or "").strip().lower()
    errors = {}
    if not _EMAIL.match(email):
        errors["email"] = [f"{email!r} is not an e-mail address"]
    if not name.strip():
        errors["name"] = ["a name is needed"]
    _check_password(password, errors)
    if errors:
        raise ValidationFailed.from_fields(errors)
    if session.execute(select(Account.id).where(Account.email == email)).first():
        raise Conflict(f"an account with {email} exists already", {"email": email})
    now = utcnow()
    account = Account(id=str(uuid.uuid4()), email=email, name=name.strip(), password_hash=hash_password(password),
                      roles=ADMIN, language=language, active=True, created_at=now, updated_at=now)
    session.add(account)
    session.flush()
    emit_changed(session, outbox, account, SYSTEM_ACTOR)
    return {"id": account.id, "email": email, "name": account.name, "roles": [ADMIN]}


# --- roles and organisations ---------------------------------------------------------

def _validate_profile(session: Session, by_roles, name, roles, organisation_id, language, errors: dict,
                      current_organisation: str | None = None) -> str | None:
    """Checks shared by invite and update; returns the department name when the unit is a department. A
    deactivated unit is refused, but for a person already in it (`current_organisation`): they stay."""
    if not (name or "").strip():
        errors["name"] = ["a name is needed"]
    bad = [r for r in roles if r not in ASSIGNABLE_ROLES]
    if not roles or bad:
        errors["roles"] = [f"choose from {', '.join(ASSIGNABLE_ROLES)}" + (f"; unknown: {', '.join(bad)}" if bad else "")]
    elif any(r in CUSTOMER_ROLES for r in roles) and is_staff(roles):
        errors["roles"] = ["a requester account holds no staff role (give the person a second account)"]
    elif ADMIN in roles and ADMIN not in by_roles:
        errors["roles"] = ["only an administrator grants the admin role"]
    if language not in ("cs", "en"):
        errors["language"] = ["cs or en"]
    department = None
    if organisation_id:
        org = session.get(Organisation, organisation_id)
        if org is None or not (org.active or organisation_id == current_organisation):
            errors["organisation_id"] = ["no such active organisation or department"]
        elif org.kind == "department":
            department = org.name
    elif any(r in CUSTOMER_ROLES for r in roles):
        errors["organisation_id"] = ["a requester belongs to an organisation or a department"]
    return department


def _require_inviter(by: Account) -> None:
    if not INVITERS & set(roles_of(by)):
        raise Forbidden("only an administrator or a manager manages accounts")


def _new_token(session: Session, account_id: str, purpose: str, hours: float) -> str:
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    # an older link of the same purpose dies when a new one is issued
    session.execute(delete(OneTimeToken).where(OneTimeToken.account_id == account_id,
                                               OneTimeToken.purpose == purpose, OneTimeToken.used_at.is_(None)))
    session.add(OneTimeToken(token_hash=_digest(secret), account_id=account_id, purpose=purpose, created_at=now,
                             expires_at=now + dt.timedelta(hours=hours)))
    return secret


def invite(session: Session, outbox, by: Account, email: str, name: str, roles: list[str],
           organisation_id: str | None = None, language: str = "cs", hours: float = 72) -> tuple[dict, str]:
    """Create an account without a password and a single-use link to set one; re-inviting an account
    that never accepted issues a fresh link. Returns the account and the link's secret."""
    _require_inviter(by)
    email = (email or "").strip().lower()
    roles = list(dict.fromkeys(r.strip() for r in roles if r and r.strip()))
    errors: dict = {}
    if not _EMAIL.match(email):
        errors["email"] = ["not an e-mail address"]
    department = _validate_profile(session, roles_of(by), name, roles, organisation_id or None, language, errors)
    if errors:
        raise ValidationFailed.from_fields(errors)
    account = session.execute(select(Account).where(Account.email == email).with_for_update()).scalar_one_or_none()
    now = utcnow()
    if account is not None:
        if account.password_hash is not None or not account.active:
            raise Conflict("an account with this e-mail exists already", {"email": ["exists already"]})
        old = roles_of(account)
        account.name, account.roles, account.updated_at = name.strip(), ",".join(roles), now
        account.organisation_id, account.department, account.language = organisation_id or None, department, language
    else:
        old = []
        account = Account(id=str(uuid.uuid4()), email=email, name=name.strip(), password_hash=None,
                          roles=",".join(roles), organisation_id=organisation_id or None, department=department,
                          language=language, active=True, created_at=now, updated_at=now)
        session.add(account)
    session.flush()
    emit_changed(session, outbox, account, actor_of(by), old)
    return to_dict(account), _new_token(session, account.id, "invite", hours)


def update_account(session: Session, outbox, by: Account, account_id: str, *, name: str, roles: list[str],
                   organisation_id: str | None, language: str) -> dict:
    _require_inviter(by)
    account = session.get(Account, account_id, with_for_update=True)
    if account is None:
        raise NotFound("no such account")
    if ADMIN in roles_of(account) and ADMIN not in roles_of(by):
        raise Forbidden("only an administrator changes an administrator")
    roles = list(dict.fromkeys(r for r in roles if r))
    errors: dict = {}
    department = _validate_profile(session, roles_of(by), name, roles, organisation_id or None, language, errors,
                                   account.organisation_id)
    if errors:
        raise ValidationFailed.from_fields(errors)
    old = roles_of(account)
    account.name, account.roles, account.language = name.strip(), ",".join(roles), language
    account.organisation_id, account.department, account.updated_at = organisation_id or None, department, utcnow()
    emit_changed(session, outbox, account, actor_of(by), old)
    return to_dict(account)


def set_active(session: Session, outbox, by: Account, account_id: str, active: bool) -> dict:
    """Deactivating keeps the account (tickets and history name it) but it can no longer sign in."""
    _require_inviter(by)
    account = session.get(Account, account_id, with_for_update=True)
    if account is None:
        raise NotFound("no such account")
    if account.id == by.id:
        raise Conflict("you cannot deactivate your own account")
    if ADMIN in roles_of(account) and ADMIN not in roles_of(by):
        raise Forbidden("only an administrator changes an administrator")
    if account.active != active:
        account.active, account.updated_at = active, utcnow()
        if not active:
            session.execute(ApiToken.__table__.update().where(ApiToken.account_id == account.id,
                                                              ApiToken.revoked_at.is_(None))
                            .values(revoked_at=utcnow()))
        emit_changed(session, outbox, account, actor_of(by))
    return to_dict(account)


def list_accounts(session: Session, role: str | None = None, text: str | None = None) -> list[dict]:
    rows = session.execute(select(Account).order_by(Account.name)).scalars()
    out = [to_dict(a) for a in rows]
    if role:
        out = [a for a in out if role in a["roles"]]
    if text:
        t = text.casefold()
        out = [a for a in out if t in a["name"].casefold() or t in a["email"]]
    return out


def create_organisation(session: Session, by: Account, name: str, kind: str = "organisation",
                        organisation_id: str | None = None) -> dict:
    _require_inviter(by)
    errors = {}
    if not (name or "").strip():
        errors["name"] = ["a name is needed"]
    if kind not in ORG_KINDS:
        errors["kind"] = [f"one of {', '.join(ORG_KINDS)}"]
    if organisation_id and (not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", organisation_id)
                            or erp_link.helios_id(organisation_id) is not None):  # (a HELIOS organisation's id)
        errors["id"] = ["letters, digits and _ . : - only, at most 64, not digits alone (those are HELIOS "
                        "organisations)"]
    if errors:
        raise ValidationFailed.from_fields(errors)
    ident = organisation_id or f"org-{uuid.uuid4().hex[:10]}"
    if session.get(Organisation, ident) is not None:
        raise Conflict("this identifier is taken", {"id": ["exists already"]})
    org = Organisation(id=ident, name=name.strip(), kind=kind, active=True, created_at=utcnow())
    session.add(org)
    return org_to_dict(org)


def org_to_dict(org: Organisation) -> dict:
    return {"id": org.id, "name": org.name, "kind": org.kind, "active": org.active}


def list_organisations(session: Session) -> list[dict]:
    return [org_to_dict(o) for o in session.execute(select(Organisation).order_by(Organisation.name)).scalars()]


# --- links sent by e-mail ------------------------------------------------------------

def _use_token(session: Session, secret: str, purpose: str) -> Account:
    row = session.get(OneTimeToken, _digest(secret or ""), with_for_update=True)
    now = utcnow()
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= now:
        raise ValidationFailed.from_fields({"token": ["the link is invalid, used or expired"]})
    account = session.get(Account, row.account_id, with_for_update=True)
    if account is None or not account.active:
        raise ValidationFailed.from_fields({"token": ["the link is invalid, used or expired"]})
    row.used_at = now
    return account


def peek_token(session: Session, secret: str, purpose: str) -> Account | None:
    """The account a still-valid link belongs to (for showing the form), without using it."""
    row = session.get(OneTimeToken, _digest(secret or ""))
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= utcnow():
        return None
    account = session.get(Account, row.account_id)
    return account if account is not None and account.active else None


def set_password(session: Session, secret: str, purpose: str, password: str) -> Account:
    """Accept an invitation or a reset link: the link is used up, the password set."""
    errors: dict = {}
    _check_password(password, errors)
    if errors:
        raise ValidationFailed.from_fields(errors)
    account = _use_token(session, secret, purpose)
    account.password_hash, account.updated_at = hash_password(password), utcnow()
    session.execute(delete(LoginFailure).where(LoginFailure.key == f"account:{account.email}"))
    return account


def request_reset(session: Session, email: str) -> tuple[Account, str] | None:
    """A reset link for an active account that has a password; None otherwise (the caller answers the
    same either way, so nobody learns which e-mails have accounts)."""
    account = session.execute(select(Account).where(Account.email == (email or "").strip().lower())).scalar_one_or_none()
    if account is None or not account.active or account.password_hash is None:
        return None
    return account, _new_token(session, account.id, "reset", RESET_HOURS)


# --- signing in ------------------------------------------------------------------------

def _failures(session: Session, key: str, since: dt.datetime) -> int:
    return session.execute(select(func.count()).select_from(LoginFailure)
                           .where(LoginFailure.key == key, LoginFailure.at > since)).scalar_one()


def authenticate(session: Session, email: str, password: str, address: str, limit: int = 5) -> Account | None:
    """The active account these credentials open; None (the failure recorded, so let the transaction
    commit before answering NotAuthenticated); TooManyAttempts past the limit.

    The limit is checked before the password, so guessing stops even at the right one.
    """
    email = (email or "").strip().lower()
    now = utcnow()
    since = now - LOGIN_WINDOW
    keys = (f"account:{email}", f"address:{address}")
    if any(_failures(session, key, since) >= limit for key in keys):
        raise TooManyAttempts("too many failed logins; try again in 15 minutes")
    account = session.execute(select(Account).where(Account.email == email)).scalar_one_or_none()
    if account is None or not account.active or not account.password_hash \
            or not verify_password(account.password_hash, password or ""):
        for key in keys:
            session.add(LoginFailure(key=key, at=now))
        # old rows are of no use to the limit
        session.execute(delete(LoginFailure).where(LoginFailure.at < now - 4 * LOGIN_WINDOW))
        return None
    session.execute(delete(LoginFailure).where(LoginFailure.key == keys[0]))
    return account


# --- personal API tokens ----------------------------------------------------------------

def create_api_token(session: Session, account: Account, name: str) -> tuple[dict, str]:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed.from_fields({"name": ["1 to 100 characters"]})
    secret = "hdp_" + secrets.token_urlsafe(32)
    row = ApiToken(id=str(uuid.uuid4()), account_id=account.id, name=name, token_hash=_digest(secret),
                   created_at=utcnow())
    session.add(row)
    return token_to_dict(row), secret


def token_to_dict(row: ApiToken) -> dict:
    return {"id": row.id, "name": row.name, "created_at": row.created_at, "last_used_at": row.last_used_at,
            "revoked_at": row.revoked_at}


def list_api_tokens(session: Session, account: Account) -> list[dict]:
    rows = session.execute(select(ApiToken).where(ApiToken.account_id == account.id)
                           .order_by(ApiToken.created_at.desc())).scalars()
    return [token_to_dict(r) for r in rows]


def revoke_api_token(session: Session, account: Account, token_id: str) -> None:
    row = session.get(ApiToken, token_id, with_for_update=True)
    if row is None or row.account_id != account.id:
        raise NotFound("no such token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()


_TOKEN_LOOKUP = db.Prepared("portal_token_lookup", select(
    ApiToken.id.label("token_id"), ApiToken.revoked_at.label("token_revoked_at"),
    ApiToken.last_used_at.label("token_last_used_at"), *Account.__table__.c)
    .outerjoin(Account, Account.id == ApiToken.account_id).where(ApiToken.token_hash == bindparam("token_hash")))
_TOKEN_USED = update(ApiToken).where(ApiToken.id == bindparam("token_id")).values(last_used_at=bindparam("at"))
_ACCOUNT_KEYS = tuple(c.key for c in Account.__table__.c)
assert all(getattr(Account, k).property.columns[0] is Account.__table__.c[k] for k in _ACCOUNT_KEYS), \
    "Account's attributes must be named as its columns for the token lookup"


# The accounts of API tokens in use, per process: a revoked token, or a deactivated account or changed roles, count
# at once in the process that made the change, and within HELPDESK_PORTAL_TOKEN_CACHE_SECONDS in the others
TOKENS = ExpiringLookups({ApiToken.__tablename__, Account.__tablename__})


def cached_account_for_api_token(secret: str) -> Account | None:
    """The account of an API token looked up within the last HELPDESK_PORTAL_TOKEN_CACHE_SECONDS, else None."""
    values = TOKENS.get(_digest(secret or ""))
    return None if values is None else Account(**values)


def account_for_api_token(conn: Connection, secret: str) -> Account:
    """The active account of a personal API token, on a plain connection (`db.statements`): one prepared
    SELECT (see `cached_account_for_api_token` first), and one UPDATE of `last_used_at` at most every few
    minutes. The answer is a transient Account: read it; open a session to change the account."""
    digest = _digest(secret or "")
    found = _TOKEN_LOOKUP.execute(conn, {"token_hash": digest}).first()
    if found is None or found.token_revoked_at is not None:
        raise NotAuthenticated("unknown or revoked API token")
    if found.id is None or not found.active:
        raise NotAuthenticated("the token's account is deactivated")
    now = utcnow()
    last_used = found.token_last_used_at
    if last_used is None or now - last_used > dt.timedelta(minutes=5):
        conn.execute(_TOKEN_USED, {"token_id": found.token_id, "at": now})  # reads stay reads between
    mapping = found._mapping
    values = {k: mapping[k] for k in _ACCOUNT_KEYS}
    TOKENS.put(digest, values)
    return Account(**values)
