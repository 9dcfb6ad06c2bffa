"""deploy/prometheus checked by Prometheus itself: promtool, then a real server scraping real services.

The live test starts `helpdesk run all --demo` as a process (every service) (SQLite, the test's own
RabbitMQ vhost), and a real Prometheus (Debian package `prometheus`; `make test` installs
it) with deploy/prometheus/prometheus.yml, its DNS discovery swapped for the test's
addresses: the process itself and one address where nothing listens. It asserts that the
expected series are scraped and that the alert rules evaluate: the dead address makes
HelpdeskServiceDown pending.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from support import free_port
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
HELPDESK = str(Path(sys.executable).with_name("helpdesk"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make test` installs it (Debian package prometheus)")
    return path


def _get_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def _wait_for(what: str, probe, timeout: float = 60.0, every: float = 0.5):
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        try:
            last = probe()
            if last:
                return last
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


@pytest.mark.parametrize("args", [
    ["check", "config", str(DEPLOY / "prometheus.yml")],
    ["check", "rules", str(DEPLOY / "alerts.yml")],
    ["test", "rules", str(DEPLOY / "alerts.test.yml")],
], ids=["check-config", "check-rules", "test-rules"])
def test_promtool_accepts_the_configuration(args):
    result = subprocess.run([_tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _test_config(metrics_port: int, dead_port: int) -> dict:
    """The deployed configuration with the DNS discovery replaced by this test's targets."""
    cfg = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(DEPLOY / f) for f in cfg["rule_files"]]
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    helpdesk = jobs["helpdesk"]
    helpdesk.pop("dns_sd_configs")
    helpdesk.pop("relabel_configs")
    helpdesk["static_configs"] = [
        {"targets": [f"127.0.0.1:{metrics_port}"], "labels": {"service": "tickets"}},
        {"targets": [f"127.0.0.1:{dead_port}"], "labels": {"service": "sla"}},
    ]
    cfg["scrape_configs"] = [helpdesk]
    return cfg


@pytest.fixture
def services_process(tmp_path, own_amqp_uri):
    port = free_port()
    env = dict(os.environ, HELPDESK_AMQP_URI=own_amqp_uri, HELPDESK_DATA_DIR=str(tmp_path / "data"),
               HELPDESK_METRICS_PORT=str(port), HELPDESK_PORTAL_PORT=str(free_port()), HELPDESK_LOG_FORMAT="text")
    proc = subprocess.Popen([HELPDESK, "run", "all", "--demo"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for("the services' /readyz", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.fixture
def prometheus(tmp_path, services_process):
    web = free_port()
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(_test_config(services_process, free_port())))
    proc = subprocess.Popen([_tool("prometheus"), f"--config.file={config_file}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{web}"
        _wait_for("prometheus to be ready", lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200)
        yield url
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
        if proc.returncode not in (0, -signal.SIGTERM):
            print(stderr)


def _query(url: str, promql: str) -> list[dict]:
    data = _get_json(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert data["status"] == "success", data
    return data["data"]["result"]


EXPECTED_SERIES = [
    'up{job="helpdesk", service="tickets"} == 1',
    'helpdesk_tickets_created_total',
    'helpdesk_tickets{state="received"}',
    'helpdesk_entrypoint_seconds_count{service="tickets", entrypoint="create_ticket", kind="Rpc"}',
    'helpdesk_outbox_published_total{service="tickets", event_type="ticket_created"}',
    'helpdesk_outbox_backlog{service="tickets"}',
    'helpdesk_outbox_lag_seconds_count{service="tickets"}',
    'helpdesk_ticket_first_response_seconds_count',
    'helpdesk_ticket_resolution_seconds_count',
    # every service of `run all` handles the demo tickets' events
    'helpdesk_events_handled_total{service="sla", outcome="ok"}',
    'helpdesk_events_handled_total{service="assignment", outcome="ok"}',
    'helpdesk_events_handled_total{service="erp_bridge", outcome="ok"}',
    'helpdesk_events_handled_total{service="portal-reports", outcome="ok"}',
    'helpdesk_sla_scheduler_lag_seconds_count',
]


@pytest.mark.timeout(300)  # six services start, load the demo, and get scraped
def test_prometheus_scrapes_the_services_and_evaluates_the_alerts(prometheus):
    started = time.time()
    for promql in EXPECTED_SERIES:
        _wait_for(f"series {promql}", lambda q=promql: _query(prometheus, q), timeout=90)
        print(f"{time.time() - started:6.1f} s  {promql}")

    def service_down_pending():
        alerts = _get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "HelpdeskServiceDown"]

    (alert,) = _wait_for("HelpdeskServiceDown for the dead target", service_down_pending, timeout=60)
    assert alert["labels"]["service"] == "sla" and alert["state"] in ("pending", "firing")

    # every dashboard query is one Prometheus accepts (Grafana's $service variable set to all)
    sys.path.insert(0, str(ROOT / "deploy" / "grafana"))
    import dashboards

    for expr in dashboards.queries():
        _query(prometheus, expr.replace("$service", ".*"))

    groups = _get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 12
    broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not broken, broken
