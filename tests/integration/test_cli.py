"""The `helpdesk` command as a newcomer uses it: start with demo data, list, and the broker check."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import argon2
import pytest

from support import free_port

HELPDESK = str(Path(sys.executable).with_name("helpdesk"))


def _env(tmp_path, **extra) -> dict:
    env = dict(os.environ)
    env.update({"HELPDESK_DATA_DIR": str(tmp_path / "data"), "HELPDESK_METRICS_PORT": "0",
                "HELPDESK_PORTAL_PORT": str(free_port()),
                "HELPDESK_LOG_FORMAT": "text"}, **extra)
    return env


def test_run_without_a_broker_says_how_to_get_one_and_fails(tmp_path):
    result = subprocess.run([HELPDESK, "run", "all"], capture_output=True, text=True, timeout=60,
                            env=_env(tmp_path, HELPDESK_AMQP_URI="pyamqp://guest:guest@127.0.0.1:5999/"))
    assert result.returncode == 2
    assert "No RabbitMQ answers at pyamqp://guest:guest@127.0.0.1:5999/" in result.stderr
    assert "rabbitmq-server" in result.stderr


def test_unknown_service_is_named(tmp_path):
    result = subprocess.run([HELPDESK, "migrate", "helpdesk-x"], capture_output=True, text=True, timeout=60,
                            env=_env(tmp_path))
    assert result.returncode != 0 and "unknown service helpdesk-x" in result.stderr


def test_run_all_with_demo_data_serves_tickets(tmp_path, own_amqp_uri):
    env = _env(tmp_path, HELPDESK_AMQP_URI=own_amqp_uri)
    proc = subprocess.Popen([HELPDESK, "run", "all", "--demo"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        lines = []
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "demo data loaded" in line:
                break
        assert any("demo data loaded: 20 tickets" in line for line in lines), "".join(lines)
        listing = subprocess.run([HELPDESK, "tickets", "--limit", "100"], capture_output=True, text=True,
                                 timeout=60, env=env)
        assert listing.returncode == 0, listing.stderr
        rows = [line for line in listing.stdout.splitlines() if line.startswith("HD-")]
        assert len(rows) == 20
        assert "Uzavřeno: 3" in listing.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_event_catalogue_is_current():
    result = subprocess.run([HELPDESK, "asyncapi", "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_create_admin_stores_a_hashed_password_and_an_account_changed_event(tmp_path):
    import json
    import sqlite3

    from helpdesk.portal.accounts import verify_password

    env = _env(tmp_path)
    made = subprocess.run([HELPDESK, "create-admin", "--email", "Alena@Firma.cz", "--name", "Alena Adminová",
                           "--password-stdin"], input="správné-heslo-2026\n", capture_output=True, text=True,
                          timeout=60, env=env)
    assert made.returncode == 0, made.stderr
    conn = sqlite3.connect(tmp_path / "data" / "portal.db")
    email, password_hash, roles = conn.execute("select email, password_hash, roles from accounts").fetchone()
    assert (email, roles) == ("alena@firma.cz", "admin")
    assert "správné" not in password_hash and verify_password(password_hash, "správné-heslo-2026")
    # argon2id, as argon2-cffi itself reads the hash, and a wrong password is refused
    assert argon2.extract_parameters(password_hash).type is argon2.Type.ID
    argon2.PasswordHasher().verify(password_hash, "správné-heslo-2026")
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        argon2.PasswordHasher().verify(password_hash, "správné-heslo-2027")
    assert not verify_password(password_hash, "správné-heslo-2027")
    (body,) = conn.execute("select body from outbox where event_type = 'account_changed'").fetchone()
    assert json.loads(body)["payload"]["email"] == "alena@firma.cz"

    again = subprocess.run([HELPDESK, "create-admin", "--email", "alena@firma.cz", "--name", "X"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 1 and "exists already" in again.stderr
    bad = subprocess.run([HELPDESK, "create-admin", "--email", "nope", "--name", "X", "--password-stdin"],
                         input="short\n", capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1 and "email" in bad.stderr and "password" in bad.stderr
    assert conn.execute("select count(*) from accounts").fetchone() == (1,)
