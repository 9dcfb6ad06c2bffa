"""The portal's Flask application factory: settings, the pooled RPC client, sessions, CSRF, errors.

One mapping of error to HTTP status (STATUS: the common one plus the portal's own
401/429/503) serves pages and API alike; pages show a friendly page in the user's
language, the API answers `application/problem+json` with per-field messages.
"""
from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from functools import wraps
from pathlib import Path

from flask import Flask, abort, g, jsonify, redirect, render_template, request, session, url_for
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from helpdesk.common import db
from helpdesk.common.config import Config
from helpdesk.common.errors import HTTP_STATUS, HelpdeskError, ValidationFailed
from helpdesk.common.mail import MailSender
from helpdesk.common.observability import new_correlation_id, set_correlation_id
from helpdesk.common.outbox import OutboxWriter
from helpdesk.portal import accounts, i18n, messages
from helpdesk.portal.accounts import NotAuthenticated, TooManyAttempts
from helpdesk.portal.models import Account, outbox
from helpdesk.portal.rpc import RpcPool, ServiceUnavailable

STATUS = {**HTTP_STATUS, NotAuthenticated: 401, TooManyAttempts: 429, ServiceUnavailable: 503}

REQUEST_SECONDS = Histogram("helpdesk_portal_request_seconds", "Portal HTTP requests by route and status",
                            ["route", "method", "status"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10))
LOGINS = Counter("helpdesk_portal_logins_total", "Sign-ins by outcome (ok, failed, limited)", ["outcome"])

SESSION_HOURS = 12


def status_of(error: HelpdeskError) -> int:
    return next(STATUS[cls] for cls in type(error).__mro__ if cls in STATUS)


@dataclass
class Portal:
    """What views need, made once per process."""

    config: Config
    sessions: object
    rpc: RpcPool
    mail: MailSender
    outbox: OutboxWriter

    def transaction(self):
        return db.transaction(self.sessions)

    def statements(self):
        return db.statements(self.sessions.kw["bind"])


def portal() -> Portal:
    from flask import current_app

    return current_app.extensions["helpdesk"]


def _secret_key(cfg: Config) -> str:
    if cfg.portal_secret_key:
        return cfg.portal_secret_key
    path = Path(cfg.data_dir) / "portal-secret-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        tmp.replace(path)
    return path.read_text().strip()


# --- who is asking ------------------------------------------------------------------------

def _session_stamp(account: Account) -> str:
    # a new password (or reset) ends every session opened with the old one
    return hmac.new(b"session", (account.password_hash or "").encode(), "sha256").hexdigest()[:16]


def sign_in(account: Account) -> None:
    session.clear()
    session.permanent = True
    session["aid"] = account.id
    session["stamp"] = _session_stamp(account)
    session["csrf"] = secrets.token_urlsafe(24)


def _load_account() -> Account | None:
    aid = session.get("aid")
    if not aid:
        return None
    with portal().transaction() as s:
        account = s.get(Account, aid)
    if account is None or not account.active or session.get("stamp") != _session_stamp(account):
        session.clear()
        return None
    return account


def language() -> str:
    account = getattr(g, "account", None)
    if account is not None:
        return account.language
    chosen = session.get("lang")
    if chosen in i18n.LANGUAGES:
        return chosen
    best = request.accept_languages.best_match(i18n.LANGUAGES) if request else None
    return best or portal().config.language


def _score_of(rating) -> str:
    """The score of a rating as the ticket's history keeps it (the JSON text of `{"score": …, "comment": …}`)."""
    try:
        return str(json.loads(rating)["score"])
    except (TypeError, ValueError, KeyError):
        return str(rating)


def _(text: str, **values) -> str:
    return i18n.translate(text, language(), **values)


def roles() -> set[str]:
    account = getattr(g, "account", None)
    return set(accounts.roles_of(account)) if account is not None else set()


def is_staff() -> bool:
    return accounts.is_staff(roles())


def actor() -> dict:
    return accounts.actor_of(g.account)


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if getattr(g, "account", None) is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapper


def roles_required(*needed):
    def decorate(view):
        @wraps(view)
        @login_required
        def wrapper(*args, **kwargs):
            if not roles() & set(needed):
                abort(404)  # a page a role has no business with does not exist for it
            return view(*args, **kwargs)
        return wrapper
    return decorate


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def _check_csrf() -> None:
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not hmac.compare_digest(sent, session.get("csrf", "")) or not sent:
        abort(400, description="csrf")


# --- the factory --------------------------------------------------------------------------

def create_app(cfg: Config, rpc: RpcPool | None = None, mail: MailSender | None = None) -> Flask:
    app = Flask(__name__, template_folder="templates", static_folder="static")
    base_https = cfg.portal_base_url.startswith("https://")
    app.config.update(
        SECRET_KEY=_secret_key(cfg),
        SESSION_COOKIE_NAME="helpdesk_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=base_https,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=SESSION_HOURS),
        # an upload's base64 form is 4/3 of it, plus the rest of the form
        MAX_CONTENT_LENGTH=cfg.attachment_max_bytes * 4 // 3 + 1_000_000,
    )
    app.extensions["helpdesk"] = Portal(
        config=cfg, sessions=db.session_factory(cfg.database_url("portal")),
        rpc=rpc or RpcPool(cfg.nameko()), mail=mail or MailSender(cfg),
        outbox=OutboxWriter(outbox, "portal"))

    accounts.TOKENS.seconds = cfg.portal_token_cache_seconds
    accounts.TOKENS.drop()

    from helpdesk.portal import admin_views, api, assignment_views, auth_views, erp_views, report_views, ticket_views

    app.register_blueprint(auth_views.bp)
    app.register_blueprint(ticket_views.bp)
    app.register_blueprint(admin_views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(report_views.bp)
    app.register_blueprint(assignment_views.bp)
    app.register_blueprint(erp_views.bp)
    from helpdesk.portal import quarantine_views  # the e-mail intake's quarantine (docs/mail.md)

    app.register_blueprint(quarantine_views.bp)

    @app.before_request
    def _before():
        g.started = time.perf_counter()
        g.cid = request.headers.get("X-Correlation-Id") or new_correlation_id()
        set_correlation_id(g.cid)
        g.account = None
        if request.blueprint == "api" or request.endpoint in (None, "static", "healthz", "readyz", "metrics"):
            return None  # the API authenticates by token, never by cookie: no CSRF there
        g.account = _load_account()
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            _check_csrf()
        return None

    @app.after_request
    def _after(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
        if getattr(g, "cid", None):
            response.headers["X-Correlation-Id"] = g.cid
        if request.url_rule is not None and hasattr(g, "started"):
            REQUEST_SECONDS.labels(request.url_rule.rule, request.method, response.status_code).observe(
                time.perf_counter() - g.started)
        return response

    @app.teardown_request
    def _teardown(_exc):
        set_correlation_id(None)

    @app.context_processor
    def _template_helpers():
        lang = language()
        return {
            "_": _, "lang": lang, "account": g.get("account"), "roles": roles(), "is_staff": is_staff(),
            "csrf_token": csrf_token, "has_any": lambda *wanted: bool(roles() & set(wanted)),
            "state_label": lambda s: i18n.label(i18n.STATE_LABELS, s, lang),
            "priority_label": lambda p: i18n.label(i18n.PRIORITY_LABELS, p, lang),
            "role_label": lambda r: i18n.label(i18n.ROLE_LABELS, r, lang),
            "channel_label": lambda c: i18n.label(i18n.CHANNEL_LABELS, c, lang),
            "reason_label": lambda r: i18n.label(i18n.REASON_LABELS, r, lang),
            "message": lambda m: messages.message(m, lang), "field_label": lambda f: messages.field(f, lang),
            "score_of": _score_of,
            "when": lambda v: i18n.format_time(v, cfg.timezone, lang),
            "minutes": i18n.format_minutes,
            "states": list(i18n.STATE_LABELS), "priorities": list(i18n.PRIORITY_LABELS),
        }

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        try:
            portal().rpc.tickets("list_categories")
            with portal().transaction() as s:
                s.execute(db_ping)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return jsonify(status="unavailable", error=type(exc).__name__), 503
        return jsonify(status="ready")

    @app.get("/metrics")
    def metrics():
        return generate_latest(), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    @app.post("/language")
    def set_language():
        lang = request.form.get("lang")
        if lang in i18n.LANGUAGES:
            session["lang"] = lang
            if g.account is not None:
                with portal().transaction() as s:
                    s.get(Account, g.account.id).language = lang
        target = request.form.get("next") or "/"
        return redirect(target if target.startswith("/") and not target.startswith("//") else "/")

    _register_errors(app)
    return app


from sqlalchemy import text as _sql_text  # noqa: E402

db_ping = _sql_text("SELECT 1")


def _register_errors(app: Flask) -> None:
    def wants_json() -> bool:
        return request.blueprint == "api" or request.path.startswith("/api/")

    def problem(status: int, code: str, title: str, detail: str, fields: dict | None = None):
        body = {"type": f"about:blank#{code}", "title": title, "status": status, "detail": detail, "code": code}
        if fields:
            body["errors"] = fields
        response = jsonify(body)
        response.status_code = status
        response.mimetype = "application/problem+json"
        return response

    @app.errorhandler(HelpdeskError)
    def _helpdesk_error(error: HelpdeskError):
        status = status_of(error)
        fields = error.details if isinstance(error, ValidationFailed) else None
        if wants_json():
            resp = problem(status, error.code, error.code.replace("_", " "), error.message, fields)
            if status == 503:
                resp.headers["Retry-After"] = "5"
            return resp
        if isinstance(error, NotAuthenticated):
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return render_template("error.html", status=status, error=error), status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        if isinstance(error, RequestEntityTooLarge):
            detail = f"the upload is larger than {portal().config.attachment_max_bytes} bytes"
        elif error.description == "csrf":
            detail = "the form expired or did not come from this site; reload it and send again"
        else:
            detail = error.description or error.name
        if wants_json():
            return problem(status, error.name.lower().replace(" ", "_"), error.name, detail)
        return render_template("error.html", status=status, error=None, detail=detail), status
