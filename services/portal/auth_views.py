"""Sign-in, sign-out, invitations, password reset, and the person's own profile and API tokens."""
from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for

from helpdesk.common.errors import ValidationFailed
from helpdesk.portal import accounts, mails
from helpdesk.portal.accounts import NotAuthenticated, TooManyAttempts
from helpdesk.portal.app import LOGINS, _, login_required, portal, sign_in
from helpdesk.portal.models import Account

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else url_for("tickets.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", email="", error=None, next=request.args.get("next"))
    email, password = request.form.get("email", ""), request.form.get("password", "")
    error, status = None, 200
    try:
        with portal().transaction() as s:
            account = accounts.authenticate(s, email, password, request.remote_addr or "?",
                                            portal().config.portal_login_attempts)
    except TooManyAttempts:
        LOGINS.labels("limited").inc()
        error, status = _("Too many failed attempts. Try again in 15 minutes."), 429
    else:
        if account is None:
            LOGINS.labels("failed").inc()
            error, status = _("Wrong e-mail or password."), 401
    if error:
        return render_template("login.html", email=email, error=error, next=request.form.get("next")), status
    LOGINS.labels("ok").inc()
    sign_in(account)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login"))


def _password_form(purpose: str, secret: str):
    with portal().transaction() as s:
        account = accounts.peek_token(s, secret, purpose)
    if request.method == "GET" or account is None:
        if account is None:
            return render_template("link_invalid.html"), 404
        return render_template("set_password.html", person=account, purpose=purpose, errors={})
    password = request.form.get("password", "")
    errors = {}
    if password != request.form.get("password2", ""):
        errors["password2"] = [_("The passwords differ.")]
    else:
        try:
            with portal().transaction() as s:
                account = accounts.set_password(s, secret, purpose, password)
        except ValidationFailed as exc:
            errors = exc.details
    if errors:
        return render_template("set_password.html", person=account, purpose=purpose, errors=errors), 400
    sign_in(account)
    flash(_("Your password is set."))
    return redirect(url_for("tickets.index"))


@bp.route("/invite/<secret>", methods=["GET", "POST"])
def accept_invite(secret):
    return _password_form("invite", secret)


@bp.route("/password/reset/<secret>", methods=["GET", "POST"])
def reset_password(secret):
    return _password_form("reset", secret)


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password():
    if request.method == "GET":
        return render_template("forgot.html", sent=False)
    with portal().transaction() as s:
        found = accounts.request_reset(s, request.form.get("email", ""))
    if found:
        mails.send_reset(portal(), *found)
    # the same answer whether or not the address has an account
    return render_template("forgot.html", sent=True)


@bp.route("/me", methods=["GET", "POST"])
@login_required
def profile():
    new_secret = None
    errors = {}
    if request.method == "POST":
        action = request.form.get("action")
        try:
            with portal().transaction() as s:
                me = s.get(Account, g.account.id)
                if action == "create_token":
                    _token, new_secret = accounts.create_api_token(s, me, request.form.get("name", ""))
                elif action == "revoke_token":
                    accounts.revoke_api_token(s, me, request.form.get("token_id", ""))
                    flash(_("The token is revoked."))
        except ValidationFailed as exc:
            errors = exc.details
    with portal().transaction() as s:
        tokens = accounts.list_api_tokens(s, g.account)
    return render_template("profile.html", tokens=tokens, new_secret=new_secret, errors=errors), (400 if errors else 200)


__all__ = ["bp", "NotAuthenticated"]
