"""`helpdesk migrate` and `helpdesk run` of one service: each makes the databases it needs, and only those."""
from __future__ import annotations

import json
import signal
import subprocess
import time

from support import new_ticket
from test_cli import HELPDESK, _env

ALL_STORES = {"tickets.db", "sla.db", "assignment.db", "erp_bridge.db", "portal.db"}


def _databases(tmp_path) -> set[str]:
    return {p.name for p in (tmp_path / "data").glob("*.db")}


def test_migrate_makes_the_named_services_databases_then_every_one(tmp_path):
    env = _env(tmp_path)
    one = subprocess.run([HELPDESK, "migrate", "tickets"], capture_output=True, text=True, timeout=120, env=env)
    assert one.returncode == 0, one.stderr
    assert _databases(tmp_path) == {"tickets.db"}
    every = subprocess.run([HELPDESK, "migrate"], capture_output=True, text=True, timeout=120, env=env)
    assert every.returncode == 0, every.stderr
    assert _databases(tmp_path) == ALL_STORES


def test_one_service_run_alone_serves_and_creates_no_other_database(tmp_path, own_amqp_uri):
    env = _env(tmp_path, HELPDESK_AMQP_URI=own_amqp_uri, HELPDESK_LOG_FORMAT="json")
    proc = subprocess.Popen([HELPDESK, "run", "tickets"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline, lines = time.time() + 60, []
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "running tickets" in line or proc.poll() is not None:  # (logged once the service consumes)
                break
        assert any("running tickets" in line for line in lines), "".join(lines)
        from nameko.standalone.rpc import ClusterRpcProxy

        with ClusterRpcProxy({"AMQP_URI": own_amqp_uri}, timeout=30) as rpc:
            ticket = new_ticket(rpc)
        assert ticket["number"].startswith("HD-") and ticket["state"] == "received"
        assert _databases(tmp_path) == {"tickets.db"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, "".join(lines)
    assert not any(json.loads(line).get("level") == "ERROR" for line in lines if line.startswith("{"))
