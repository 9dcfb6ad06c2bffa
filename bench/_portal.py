"""Helpers of the portal benchmarks: a migrated portal database, accounts with a password or an API token,
and the portal served by gunicorn with eventlet workers (bench/portal_wsgi.py).

Imported as `_portal` beside `_common`; nothing here monkey-patches.
"""
from __future__ import annotations

import http.client
import os
import subprocess
import time
import uuid
from pathlib import Path

import _common as C

PASSWORD = "bench password 1234"


def create_portal_db(name: str) -> str:
    """A new PostgreSQL database at the portal's newest schema; returns its URL."""
    from helpdesk.cli import _migrations_path
    from helpdesk.common import db

    C.pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    C.pg_admin(f"CREATE DATABASE {name}")
    url = C.pg_url(name)
    db.migrate(url, _migrations_path("helpdesk.portal:migrations"))
    engine = db._engines.pop(db.normalise_url(url), None)
    if engine is not None:
        engine.dispose()
    return url


def add_account(url: str, email: str, roles: str, organisation_id: str | None = None,
                account_id: str | None = None, token: bool = False) -> tuple[str, str | None]:
    """An active account with the password PASSWORD (and, with token=True, a personal API token):
    returns (account id, token secret or None)."""
    from helpdesk.common import db
    from helpdesk.common.events import utcnow
    from helpdesk.portal import accounts
    from helpdesk.portal.models import Account, Organisation

    sessions = db.session_factory(url)
    with db.transaction(sessions) as s:
        if organisation_id and s.get(Organisation, organisation_id) is None:
            s.add(Organisation(id=organisation_id, name=f"Firma {organisation_id}", kind="organisation",
                               active=True, created_at=utcnow()))
        now = utcnow()
        account = Account(id=account_id or str(uuid.uuid4()), email=email, name=email.split("@")[0],
                          password_hash=accounts.hash_password(PASSWORD), roles=roles,
                          organisation_id=organisation_id, language="cs", active=True, created_at=now,
                          updated_at=now)
        s.add(account)
        s.flush()
        secret = accounts.create_api_token(s, account, "bench")[1] if token else None
        ident = account.id
    engine = db._engines.pop(db.normalise_url(url), None)
    if engine is not None:
        engine.dispose()
    return ident, secret


def start_gunicorn(env: dict, port: int, workers: int, log_dir: Path, connections: int = 1000,
                   timeout: float = 60.0) -> subprocess.Popen:
    """`gunicorn -k eventlet` serving bench/portal_wsgi.py; returns once /readyz answers 200."""
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(C.VENV_BIN / "gunicorn"), "-k", "eventlet", "-w", str(workers), "--worker-connections",
           str(connections), "-b", f"127.0.0.1:{port}", "--chdir", str(Path(__file__).parent),
           "--log-level", "warning", "portal_wsgi:app"]
    log = open(log_dir / "gunicorn.log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=str(C.ROOT), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}; see {log_dir}/gunicorn.log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            pass
        if time.time() > deadline:
            C.stop_processes([proc])
            raise SystemExit(f"the portal did not become ready within {timeout}s; see {log_dir}/gunicorn.log")
        time.sleep(0.3)


def worker_pids(master: int) -> list[int]:
    """gunicorn's master and its workers (for CPU accounting)."""
    out = [master]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
