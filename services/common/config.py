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
    Setting("HELPDESK_TIMEZONE", "Europe/Prague", "IANA time zone for people-facing times"),
    Setting("HELPDESK_LANGUAGE", "cs", "default language of texts for people (cs or en)"),
    Setting("HELPDESK_METRICS_PORT", "9100", "port of the process's Prometheus /metrics (0: off)"),
    Setting("HELPDESK_LOG_LEVEL", "INFO", "log level"),
    Setting("HELPDESK_LOG_FORMAT", "json", "json (one object a line) or text"),
    Setting("HELPDESK_MAX_WORKERS", "20", "concurrent workers per service container"),
    Setting("HELPDESK_OUTBOX_POLL_SECONDS", "0.5", "how often an idle outbox relay looks for rows other processes wrote"),
    Setting("HELPDESK_OUTBOX_LEASE_SECONDS", "10", "how long a relay holds the publishing lease without renewing it"),
    Setting("HELPDESK_EVENT_MAX_ATTEMPTS", "3", "tries of an event handler before the message is dead-lettered"),
    Setting("HELPDESK_TICKET_NUMBER_PREFIX", "HD", "prefix of ticket numbers (HD-2026-000123)"),
    Setting("HELPDESK_AUTO_CLOSE_DAYS", "7", "days after which a resolved ticket closes by itself"),
    Setting("HELPDESK_RATING_CHANGE_DAYS", "14", "days during which a requester may change a rating"),
    Setting("HELPDESK_ATTACHMENT_MAX_BYTES", "10485760", "largest accepted attachment"),
    Setting("HELPDESK_ATTACHMENT_TYPES",
            "application/pdf,image/png,image/jpeg,image/gif,text/plain,text/csv,application/zip,"
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document,"
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,"
            "application/msword,application/vnd.ms-excel,message/rfc822",
            "allowed attachment content types, comma-separated"),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}


def _get(name: str, env: dict) -> str:
    return env.get(name, _DEFAULTS[name])


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
    attachment_max_bytes: int
    attachment_types: frozenset

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
    fmt = _get("HELPDESK_LOG_FORMAT", env)
    if fmt not in ("json", "text"):
        raise ValueError(f"HELPDESK_LOG_FORMAT must be json or text, not {fmt!r}")
    language = _get("HELPDESK_LANGUAGE", env)
    if language not in ("cs", "en"):
        raise ValueError(f"HELPDESK_LANGUAGE must be cs or en, not {language!r}")
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
        event_max_attempts=int(_get("HELPDESK_EVENT_MAX_ATTEMPTS", env)),
        ticket_number_prefix=_get("HELPDESK_TICKET_NUMBER_PREFIX", env),
        auto_close_days=int(_get("HELPDESK_AUTO_CLOSE_DAYS", env)),
        rating_change_days=int(_get("HELPDESK_RATING_CHANGE_DAYS", env)),
        attachment_max_bytes=int(_get("HELPDESK_ATTACHMENT_MAX_BYTES", env)),
        attachment_types=frozenset(
            t.strip() for t in _get("HELPDESK_ATTACHMENT_TYPES", env).split(",") if t.strip()),
    )


def from_container(container) -> Config:
    """The Config a nameko container was started with (falls back to the environment)."""
    cfg = container.config.get("HELPDESK")
    return cfg if isinstance(cfg, Config) else load()
