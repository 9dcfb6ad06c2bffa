"""Process configuration, read once from environment variables with documented defaults.

Every setting is listed in SETTINGS with its variable, default and meaning;
`helpdesk config` prints the list, and a test checks that README's table names each.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SERVICES = ("tickets", "assignment", "sla", "erp_bridge", "portal")


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("HELPDESK_AMQP_URI", "pyamqp://guest:guest@127.0.0.1:5672/", "RabbitMQ the services talk over"),
    Setting("HELPDESK_DATA_DIR", "var", "folder for SQLite files, attachments and mail written to files"),
    Setting("HELPDESK_<SERVICE>_DATABASE_URL", "sqlite:///<DATA_DIR>/<service>.db",
            "one database per service, e.g. HELPDESK_TICKETS_DATABASE_URL=postgresql://127.0.0.1/test"),
    Setting("HELPDESK_SMTP_HOST", "", "SMTP server; empty writes each mail as an .eml file under <DATA_DIR>/mail"),
    Setting("HELPDESK_SMTP_PORT", "25", "SMTP port"),
    Setting("HELPDESK_SMTP_USER", "", "SMTP user (empty: no login)"),
    Setting("HELPDESK_SMTP_PASSWORD", "", "SMTP password"),
    Setting("HELPDESK_SMTP_STARTTLS", "false", "upgrade the SMTP connection with STARTTLS"),
    Setting("HELPDESK_MAIL_FROM", "helpdesk@localhost", "sender address of notifications"),
    Setting("HELPDESK_MAIL_REPLY_TO", "",
            "Reply-To of notifications: the support mailbox the intake reads (empty: none, replies go to From)"),
    Setting("HELPDESK_IMAP_MAILBOXES", "",
            "mailboxes the e-mail intake reads, space-separated URLs "
            "imaps|imap+starttls://user:password@host:port/INBOX?processed=Processed&unknown=quarantine|reply"),
    Setting("HELPDESK_IMAP_POLL_SECONDS", "30", "how often the e-mail intake looks for new mail"),
    Setting("HELPDESK_IMAP_MAX_BYTES", "26214400", "larger mails go to quarantine unread"),
    Setting("HELPDESK_IMAP_AUTO_REPLY_HOURS", "24", "at most one auto-reply to the same unknown sender in this time"),
    Setting("HELPDESK_TIMEZONE", "Europe/Prague", "IANA time zone for people-facing times"),
    Setting("HELPDESK_LANGUAGE", "cs", "default language of texts for people (cs or en)"),
    Setting("HELPDESK_METRICS_PORT", "9100", "port of the process's Prometheus /metrics (0: off)"),
    Setting("HELPDESK_LOG_LEVEL", "INFO", "log level"),
    Setting("HELPDESK_LOG_FORMAT", "json", "json (one object a line) or text"),
    Setting("HELPDESK_MAX_WORKERS", "20", "concurrent workers per service container"),
    Setting("HELPDESK_OUTBOX_POLL_SECONDS", "0.5", "how often an idle outbox relay looks for rows other processes wrote"),
    Setting("HELPDESK_OUTBOX_RELAY", "auto", "where a service's outbox relay runs: process (a child process of its "
            "own, PostgreSQL only), inline (a green thread of the service process), or auto (process on PostgreSQL, "
            "inline on SQLite)"),
    Setting("HELPDESK_OUTBOX_KEEP_HOURS", "168", "how long published events stay in a service's outbox table "
            "before its relay deletes them (0: keep them all)"),
    Setting("HELPDESK_OUTBOX_LEASE_SECONDS", "10", "how long a relay holds the publishing lease without renewing it"),
    Setting("HELPDESK_EVENT_MAX_ATTEMPTS", "3", "tries of an event handler before the message is dead-lettered"),
    Setting("HELPDESK_TICKET_NUMBER_PREFIX", "HD", "prefix of ticket numbers (HD-2026-000123)"),
    Setting("HELPDESK_AUTO_CLOSE_DAYS", "7", "days after which a resolved ticket closes by itself"),
    Setting("HELPDESK_RATING_CHANGE_DAYS", "14", "days during which a requester may change a rating"),
    Setting("HELPDESK_SLA_SCHEDULER_SECONDS", "1", "how often the SLA scheduler looks for due warnings and breaches"),
    Setting("HELPDESK_SLA_WARNING_SHARE", "0.8", "share of an SLA target at which a new policy warns"),
    Setting("HELPDESK_ATTACHMENT_MAX_BYTES", "10485760", "largest accepted attachment"),
    Setting("HELPDESK_ATTACHMENT_TYPES",
            "application/pdf,image/png,image/jpeg,image/gif,text/plain,text/csv,application/zip,"
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document,"
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,"
            "application/msword,application/vnd.ms-excel,message/rfc822",
            "allowed attachment content types, comma-separated"),
    Setting("HELPDESK_PORTAL_PORT", "8000", "HTTP port of the portal (web pages, REST API, /healthz, /metrics)"),
    Setting("HELPDESK_PORTAL_BASE_URL", "http://localhost:8000",
            "the portal's public address, for links in e-mails; https:// makes session cookies Secure"),
    Setting("HELPDESK_PORTAL_SECRET_KEY", "",
            "signs session cookies and CSRF tokens; empty: generated once into <DATA_DIR>/portal-secret-key"),
    Setting("HELPDESK_PORTAL_INVITE_HOURS", "72", "how long an invitation link is valid (a reset link: 2 hours)"),
    Setting("HELPDESK_PORTAL_TOKEN_CACHE_SECONDS", "1",
            "how long a portal process keeps an API token's account before it looks again (a token revoked or an "
            "account deactivated in another process is refused within this time; 0: look on every request)"),
    Setting("HELPDESK_PORTAL_LOGIN_ATTEMPTS", "5",
            "failed logins per account and per address within 15 minutes before login is refused"),
    Setting("HELPDESK_ASSIGNMENT_OFFER_SECONDS", "1800",
            "how long a broadcast offer stands before the rule's chain goes on (a rule may set its own)"),
    Setting("HELPDESK_ASSIGNMENT_REROUTE", "true",
            "re-route a solver's open tickets when they are deactivated or their absence begins"),
    Setting("HELPDESK_ASSIGNMENT_REROUTE_ON_UPDATE", "true",
            "route a ticket waiting in the dispatchers' queue, offered or left unassigned again when its category, "
            "priority, organisation or contract changes"),
    Setting("HELPDESK_ASSIGNMENT_NOTIFY_DISPATCHERS", "true", "e-mail the dispatchers when a ticket enters their queue"),
    Setting("HELPDESK_ASSIGNMENT_MAIL_ATTEMPTS", "5", "tries of a notification e-mail before it is counted as failed"),
    Setting("HELPDESK_ASSIGNMENT_MAIL_RETRY_SECONDS", "30",
            "pause before the first retry of a failed e-mail (doubling each time)"),
    Setting("HELPDESK_ERP_HELIOS_URL", "",
            "the HELIOS Orange company database, e.g. mssql+pymssql://user:pass@host/Helios001; empty: the bridge idles"),
    Setting("HELPDESK_ERP_HELIOS_TIMEZONE", "Europe/Prague", "time zone of HELIOS's datetime columns (server local time)"),
    Setting("HELPDESK_ERP_POLL_SECONDS", "10", "how often the bridge polls HELIOS for changes and writes tickets into it"),
    Setting("HELPDESK_ERP_OVERLAP_SECONDS", "300", "each poll re-reads this far behind its cursor (writers' clocks differ)"),
    Setting("HELPDESK_ERP_BATCH_SIZE", "1000", "rows read from HELIOS and stored per batch"),
    Setting("HELPDESK_ERP_RECONCILE_SECONDS", "3600", "how often deletions in HELIOS are found by comparing IDs"),
    Setting("HELPDESK_ERP_RETRY_SECONDS", "5", "pause after a failed HELIOS call, doubling up to 5 minutes"),
    Setting("HELPDESK_ERP_ACTIVITY_CATEGORY", "HD", "TabKontaktJednani.Kategorie of the activities tickets become"),
    Setting("HELPDESK_ERP_ACTIVITY_TYPE", "", "TabKontaktJednani.Typ written on new activities"),
    Setting("HELPDESK_ERP_ACTIVITY_STATES", "received=N,in_progress=R,waiting_on_customer=C,resolved=V,closed=U",
            "TabKontaktJednani.Stav code of each ticket state"),
    Setting("HELPDESK_ERP_GUARANTOR_COLUMN", "Zodpovida",
            "contract guarantor: a TabZakazka column, or _EXT.<column> of TabZakazka_EXT (employee Cislo)"),
    Setting("HELPDESK_ERP_EMPLOYEE_ACTIVE_COLUMN", "",
            "employee active flag: a TabCisZam column or _EXT.<column>; empty: every employee is active"),
    Setting("HELPDESK_ERP_NOTES", "text",
            "comments into HELIOS: text (appended to the activity's Popis), task (each a finished TabUkoly task; "
            "task:subject=<column>,text=<column>,employee=<Cislo> for unconfirmed columns and a default employee) "
            "or none"),
    Setting("HELPDESK_ERP_LOGIN", "helpdesk", "name written into Autor/Zmenil of rows the bridge writes"),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}


def _get(name: str, env: dict) -> str:
    return env.get(name, _DEFAULTS[name])


def _choice(name: str, env: dict, allowed: tuple[str, ...]) -> str:
    value = _get(name, env)
    if value not in allowed:
        raise ValueError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {value!r}")
    return value


def _non_negative(name: str, env: dict) -> float:
    text = _get(name, env)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a number of 0 or more, not {text!r}")
    return value


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Config:
    amqp_uri: str
    data_dir: Path
    database_urls: dict
    smtp_host: str
    smtp_port: int
    smtp_user: str
    smtp_password: str
    smtp_starttls: bool
    mail_from: str
    timezone: str
    language: str
    metrics_port: int
    log_level: str
    log_format: str
    max_workers: int
    outbox_poll_seconds: float
    outbox_lease_seconds: float
    event_max_attempts: int
    ticket_number_prefix: str
    auto_close_days: int
    rating_change_days: int
    sla_scheduler_seconds: float
    sla_warning_share: float
    attachment_max_bytes: int
    attachment_types: frozenset
    outbox_relay: str = "auto"
    outbox_keep_hours: float = 168.0
    portal_port: int = 8000
    portal_base_url: str = "http://localhost:8000"
    portal_secret_key: str = ""
    portal_invite_hours: int = 72
    portal_login_attempts: int = 5
    portal_token_cache_seconds: float = 1.0
    assignment_offer_seconds: int = 1800
    assignment_reroute: bool = True
    assignment_reroute_on_update: bool = True
    assignment_notify_dispatchers: bool = True
    assignment_mail_attempts: int = 5
    assignment_mail_retry_seconds: float = 30.0
    erp_helios_url: str = ""
    erp_helios_timezone: str = "Europe/Prague"
    erp_poll_seconds: float = 10.0
    erp_overlap_seconds: float = 300.0
    erp_batch_size: int = 1000
    erp_reconcile_seconds: float = 3600.0
    erp_retry_seconds: float = 5.0
    erp_activity_category: str = "HD"
    erp_activity_type: str = ""
    erp_activity_states: str = "received=N,in_progress=R,waiting_on_customer=C,resolved=V,closed=U"
    erp_guarantor_column: str = "Zodpovida"
    erp_employee_active_column: str = ""
    erp_notes: str = "text"
    erp_login: str = "helpdesk"
    mail_reply_to: str = ""
    imap_mailboxes: str = ""
    imap_poll_seconds: float = 30.0
    imap_max_bytes: int = 26214400
    imap_auto_reply_hours: float = 24.0

    def database_url(self, service: str) -> str:
        return self.database_urls[service]

    def nameko(self) -> dict:
        """The config dict nameko containers expect."""
        return {
            "AMQP_URI": self.amqp_uri,
            "max_workers": self.max_workers,
            "parent_calls_tracked": 10,
            "serializer": "json",
            "HELPDESK": self,
        }


def load(env: dict | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    data_dir = Path(_get("HELPDESK_DATA_DIR", env)).resolve()
    urls = {}
    for service in SERVICES:
        var = f"HELPDESK_{service.upper()}_DATABASE_URL"
        urls[service] = env.get(var) or f"sqlite:///{data_dir / (service + '.db')}"
    fmt = _choice("HELPDESK_LOG_FORMAT", env, ("json", "text"))
    language = _choice("HELPDESK_LANGUAGE", env, ("cs", "en"))
    return Config(
        amqp_uri=_get("HELPDESK_AMQP_URI", env),
        data_dir=data_dir,
        database_urls=urls,
        smtp_host=_get("HELPDESK_SMTP_HOST", env),
        smtp_port=int(_get("HELPDESK_SMTP_PORT", env)),
        smtp_user=_get("HELPDESK_SMTP_USER", env),
        smtp_password=_get("HELPDESK_SMTP_PASSWORD", env),
        smtp_starttls=_bool(_get("HELPDESK_SMTP_STARTTLS", env)),
        mail_from=_get("HELPDESK_MAIL_FROM", env),
        timezone=_get("HELPDESK_TIMEZONE", env),
        language=language,
        metrics_port=int(_get("HELPDESK_METRICS_PORT", env)),
        log_level=_get("HELPDESK_LOG_LEVEL", env).upper(),
        log_format=fmt,
        max_workers=int(_get("HELPDESK_MAX_WORKERS", env)),
        outbox_poll_seconds=float(_get("HELPDESK_OUTBOX_POLL_SECONDS", env)),
        outbox_lease_seconds=float(_get("HELPDESK_OUTBOX_LEASE_SECONDS", env)),
        outbox_relay=_choice("HELPDESK_OUTBOX_RELAY", env, ("auto", "process", "inline")),
        outbox_keep_hours=_non_negative("HELPDESK_OUTBOX_KEEP_HOURS", env),
        event_max_attempts=int(_get("HELPDESK_EVENT_MAX_ATTEMPTS", env)),
        ticket_number_prefix=_get("HELPDESK_TICKET_NUMBER_PREFIX", env),
        auto_close_days=int(_get("HELPDESK_AUTO_CLOSE_DAYS", env)),
        rating_change_days=int(_get("HELPDESK_RATING_CHANGE_DAYS", env)),
        sla_scheduler_seconds=float(_get("HELPDESK_SLA_SCHEDULER_SECONDS", env)),
        sla_warning_share=float(_get("HELPDESK_SLA_WARNING_SHARE", env)),
        attachment_max_bytes=int(_get("HELPDESK_ATTACHMENT_MAX_BYTES", env)),
        attachment_types=frozenset(
            t.strip() for t in _get("HELPDESK_ATTACHMENT_TYPES", env).split(",") if t.strip()),
        portal_port=int(_get("HELPDESK_PORTAL_PORT", env)),
        portal_base_url=_get("HELPDESK_PORTAL_BASE_URL", env).rstrip("/"),
        portal_secret_key=_get("HELPDESK_PORTAL_SECRET_KEY", env),
        portal_invite_hours=int(_get("HELPDESK_PORTAL_INVITE_HOURS", env)),
        portal_login_attempts=int(_get("HELPDESK_PORTAL_LOGIN_ATTEMPTS", env)),
        portal_token_cache_seconds=float(_get("HELPDESK_PORTAL_TOKEN_CACHE_SECONDS", env)),
        assignment_offer_seconds=int(_get("HELPDESK_ASSIGNMENT_OFFER_SECONDS", env)),
        assignment_reroute=_bool(_get("HELPDESK_ASSIGNMENT_REROUTE", env)),
        assignment_reroute_on_update=_bool(_get("HELPDESK_ASSIGNMENT_REROUTE_ON_UPDATE", env)),
        assignment_notify_dispatchers=_bool(_get("HELPDESK_ASSIGNMENT_NOTIFY_DISPATCHERS", env)),
        assignment_mail_attempts=int(_get("HELPDESK_ASSIGNMENT_MAIL_ATTEMPTS", env)),
        assignment_mail_retry_seconds=float(_get("HELPDESK_ASSIGNMENT_MAIL_RETRY_SECONDS", env)),
        erp_helios_url=_get("HELPDESK_ERP_HELIOS_URL", env),
        erp_helios_timezone=_get("HELPDESK_ERP_HELIOS_TIMEZONE", env),
        erp_poll_seconds=float(_get("HELPDESK_ERP_POLL_SECONDS", env)),
        erp_overlap_seconds=float(_get("HELPDESK_ERP_OVERLAP_SECONDS", env)),
        erp_batch_size=int(_get("HELPDESK_ERP_BATCH_SIZE", env)),
        erp_reconcile_seconds=float(_get("HELPDESK_ERP_RECONCILE_SECONDS", env)),
        erp_retry_seconds=float(_get("HELPDESK_ERP_RETRY_SECONDS", env)),
        erp_activity_category=_get("HELPDESK_ERP_ACTIVITY_CATEGORY", env),
        erp_activity_type=_get("HELPDESK_ERP_ACTIVITY_TYPE", env),
        erp_activity_states=_get("HELPDESK_ERP_ACTIVITY_STATES", env),
        erp_guarantor_column=_get("HELPDESK_ERP_GUARANTOR_COLUMN", env),
        erp_employee_active_column=_get("HELPDESK_ERP_EMPLOYEE_ACTIVE_COLUMN", env),
        erp_notes=_get("HELPDESK_ERP_NOTES", env),
        erp_login=_get("HELPDESK_ERP_LOGIN", env),
        mail_reply_to=_get("HELPDESK_MAIL_REPLY_TO", env),
        imap_mailboxes=_get("HELPDESK_IMAP_MAILBOXES", env),
        imap_poll_seconds=float(_get("HELPDESK_IMAP_POLL_SECONDS", env)),
        imap_max_bytes=int(_get("HELPDESK_IMAP_MAX_BYTES", env)),
        imap_auto_reply_hours=float(_get("HELPDESK_IMAP_AUTO_REPLY_HOURS", env)),
    )


def from_container(container) -> Config:
    """The Config a nameko container was started with (falls back to the environment)."""
    cfg = container.config.get("HELPDESK")
    return cfg if isinstance(cfg, Config) else load()
