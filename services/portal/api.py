"""The REST API under /api: personal-token authentication, JSON in and out, problem+json errors.

Each endpoint is declared once with `endpoint(...)`, which registers the Flask route
and its entry in the OpenAPI document (openapi.py builds the document from ROUTES and
the marshmallow schemas in api_schemas.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import wraps

from flask import Blueprint, g, jsonify, render_template, request
from marshmallow import ValidationError

from helpdesk.common.errors import Forbidden, ValidationFailed
from helpdesk.portal import accounts, erp_link
from helpdesk.portal import api_schemas as S
from helpdesk.portal.accounts import NotAuthenticated
from helpdesk.portal.app import portal

bp = Blueprint("api", __name__, url_prefix="/api")


@dataclass(frozen=True)
class Route:
    path: str
    method: str
    summary: str
    view: str
    body: type | None = None
    query: type | None = None
    response: object = None
    status: int = 200
    roles: tuple = ()


ROUTES: list[Route] = []


def _authenticate() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise NotAuthenticated("send a personal API token: Authorization: Bearer <token>")
    # one SELECT (and, every few minutes, one UPDATE of last_used_at) on a plain connection: no session, and
    # no BEGIN and COMMIT round trips
    account = accounts.cached_account_for_api_token(secret.strip())
    if account is None:
        with portal().statements() as conn:
            account = accounts.account_for_api_token(conn, secret.strip())
    g.account = account


_SCHEMAS: dict[type, object] = {}  # one instance per schema class: stateless once built, costly to build


def _schema(schema_cls):
    if schema_cls not in _SCHEMAS:
        _SCHEMAS[schema_cls] = schema_cls()
    return _SCHEMAS[schema_cls]


def _load(schema_cls, data):
    try:
        return _schema(schema_cls).load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise ValidationFailed.from_fields(messages) from None


def _query_args(schema_cls) -> dict:
    raw = {}
    schema = _schema(schema_cls)
    for key in request.args:
        field = schema.fields.get(key)
        values = request.args.getlist(key)
        raw[key] = values if field is not None and field.__class__.__name__ == "List" else values[-1]
    loaded = _load(schema_cls, raw)
    for key in ("created_from", "created_to"):
        if key in loaded:
            loaded[key] = loaded[key].isoformat()
    return loaded


def _json_body() -> dict:
    if not request.is_json:
        raise ValidationFailed.from_fields({"_body": ["send application/json"]})
    try:
        body = json.loads(request.get_data(cache=True) or b"null")
    except ValueError:
        raise ValidationFailed.from_fields({"_body": ["not valid JSON"]}) from None
    if not isinstance(body, dict):
        raise ValidationFailed.from_fields({"_body": ["a JSON object is expected"]})
    return body


def endpoint(path: str, method: str, summary: str, *, body=None, query=None, response=None, status: int = 200,
             roles: tuple = ()):
    def decorate(view):
        ROUTES.append(Route(path, method.lower(), summary, view.__name__, body, query, response, status, roles))

        @wraps(view)
        def wrapper(**kwargs):
            _authenticate()
            if roles and not set(accounts.roles_of(g.account)) & set(roles):
                raise Forbidden(f"needs one of the roles {', '.join(roles)}")
            if body is not None:
                kwargs["data"] = _load(body, _json_body())
            if query is not None:
                kwargs["args"] = _query_args(query)
            result = view(**kwargs)
            return jsonify(result), status

        flask_path = path.replace("{ticket_id}", "<int:ticket_id>")
        bp.add_url_rule(flask_path, view.__name__, wrapper, methods=[method.upper()])
        return wrapper
    return decorate


def actor() -> dict:
    return accounts.actor_of(g.account)


def rpc(method: str, **kwargs):
    return portal().rpc.tickets(method, **kwargs)


def _check_uploads(items: list[dict]) -> None:
    import base64
    import binascii

    cfg = portal().config
    errors = {}
    for i, item in enumerate(items):
        try:
            size = len(base64.b64decode(item["content_b64"], validate=True))
        except (binascii.Error, ValueError):
            errors[str(i)] = ["content_b64 is not base64"]
            continue
        if size > cfg.attachment_max_bytes:
            from werkzeug.exceptions import RequestEntityTooLarge

            raise RequestEntityTooLarge()
        if item["content_type"] not in cfg.attachment_types:
            errors[str(i)] = [f"files of type {item['content_type']} are not accepted"]
    if errors:
        raise ValidationFailed.from_fields({"attachments": errors})


@endpoint("/me", "get", "The account the token belongs to", response=S.MeOut)
def me():
    out = accounts.to_dict(g.account)
    return {k: out[k] for k in ("id", "email", "name", "roles", "organisation_id", "department", "language")}


@endpoint("/categories", "get", "The category tree (active categories; inactive ones for staff too)",
          response=S.CategoryOut(many=True))
def categories():
    return rpc("list_categories", include_inactive=accounts.is_staff(accounts.roles_of(g.account)))


@endpoint("/tickets", "get", "Tickets the account may see, newest first, with filters and a keyset cursor",
          query=S.ListArgs, response=S.TicketPage)
def list_tickets(args):
    return rpc("list_tickets", actor=actor(), query=args)


@endpoint("/tickets", "post", "Raise a request (with attachments as base64)", body=S.TicketCreateIn,
          response=S.TicketDetailOut, status=201)
def create_ticket(data):
    uploads = data.pop("attachments")
    _check_uploads(uploads)
    # as the page: while the ERP bridge answers, only a contract of the account's organisation
    data["contract"] = (data.get("contract") or "").strip() or None  # (as the form takes it)
    if data["contract"] and not erp_link.contract_allowed(
            erp_link.contracts_of(portal().rpc, g.account.organisation_id), data["contract"]):
        raise ValidationFailed.from_fields({"contract": ["not an open contract of your organisation"]})
    data["channel"] = "api"
    # one RPC to the tickets service (and one to the ERP bridge first, only for a contract of a HELIOS
    # organisation), one transaction: the ticket with every attachment, or nothing; it answers with the detail
    return rpc("create_ticket", actor=actor(),
               data={**{k: v for k, v in data.items() if v is not None}, "attachments": uploads})


@endpoint("/tickets/{ticket_id}", "get", "One ticket with its conversation and attachments (internal ones for staff)",
          response=S.TicketDetailOut)
def get_ticket(ticket_id):
    return rpc("get_ticket", actor=actor(), ticket_id=ticket_id)


@endpoint("/tickets/{ticket_id}", "patch", "Change subject, description (requesters) or category, priority, "
          "contract (staff); needs the version last read", body=S.TicketUpdateIn, response=S.TicketOut)
def update_ticket(ticket_id, data):
    version = data.pop("version")
    if not data:
        raise ValidationFailed.from_fields({"_body": ["name at least one field to change"]})
    return rpc("update_ticket", actor=actor(), ticket_id=ticket_id, version=version, changes=data)


@endpoint("/tickets/{ticket_id}/comments", "post", "Add a public reply (or, staff, an internal note)",
          body=S.CommentIn, response=S.Comment, status=201)
def add_comment(ticket_id, data):
    uploads = data.pop("attachments")
    _check_uploads(uploads)
    return rpc("add_comment", actor=actor(), ticket_id=ticket_id, body=data["body"], public=data["public"],
               attachments=uploads)  # the comment with every attachment, or nothing


@endpoint("/tickets/{ticket_id}/transitions", "post", "Move the ticket to another state (only the allowed moves)",
          body=S.TransitionIn, response=S.TicketOut)
def transition(ticket_id, data):
    return rpc("change_state", actor=actor(), ticket_id=ticket_id, **data)


@endpoint("/tickets/{ticket_id}/rating", "post", "Rate the solver's work 1–5 once the ticket is resolved",
          body=S.RatingIn, response=S.RatingOut)
def rate(ticket_id, data):
    return rpc("rate", actor=actor(), ticket_id=ticket_id, **data)


@endpoint("/tickets/{ticket_id}/assign", "post", "Set or clear the solver (dispatcher, admin)", body=S.AssignIn,
          response=S.TicketOut, roles=("dispatcher", "admin"))
def assign(ticket_id, data):
    solver = None
    if data["solver_id"]:
        with portal().transaction() as s:
            found = [a for a in accounts.list_accounts(s, role="solver")
                     if a["id"] == data["solver_id"] and a["active"]]
        if not found:
            raise ValidationFailed.from_fields({"solver_id": ["no active solver with this id"]})
        solver = {k: found[0][k] for k in ("id", "name", "email")}
    return rpc("assign", actor=actor(), ticket_id=ticket_id, solver=solver, version=data["version"],
               note=data["note"])


@endpoint("/tickets/{ticket_id}/claim", "post", "Take an unassigned ticket (solver)", response=S.TicketOut,
          roles=("solver",))
def claim(ticket_id):
    return rpc("claim", actor=actor(), ticket_id=ticket_id)


@bp.get("/openapi.json")
def openapi_json():
    from helpdesk.portal.openapi import build

    return jsonify(build())


@bp.get("/docs")
def docs():
    from helpdesk.portal.openapi import build

    return render_template("api_docs.html", spec=build())
