"""deploy/grafana: the generated dashboards are current, well formed, and name only real metrics."""
from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
sys.path.insert(0, str(GRAFANA))
import dashboards  # noqa: E402

# every module that defines Prometheus metrics; importing them registers the names
METRIC_MODULES = [
    "helpdesk.common.observability",
    "helpdesk.tickets.metrics",
    "helpdesk.assignment.metrics",
    "helpdesk.sla.metrics",
    "helpdesk.erp_bridge.metrics",
    "helpdesk.portal.app",
]
# series other programs export (RabbitMQ's prometheus plugin, Prometheus itself)
FOREIGN = re.compile(r"^rabbitmq_")


def test_dashboards_are_current():
    result = subprocess.run([sys.executable, str(GRAFANA / "dashboards.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_dashboards_use_the_provisioned_datasource_and_unique_panels():
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in provisioned["datasources"]}
    files = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert {f.stem for f in files} == {"operations", "tickets", "sla", "solvers"}
    seen_uids = set()
    for f in files:
        board = json.loads(f.read_text())
        assert board["uid"] not in seen_uids
        seen_uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f.name
        cells = set()
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids, (f.name, panel["title"])
            assert panel["targets"], (f.name, panel["title"])
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (f.name, panel["title"])
            cell = (pos["x"], pos["y"])
            assert cell not in cells, f"{f.name}: panels overlap at {cell}"
            cells.add(cell)


def _exported_names() -> set[str]:
    from prometheus_client import REGISTRY

    for module in METRIC_MODULES:
        importlib.import_module(module)
    return set(REGISTRY._names_to_collectors)  # every sample name: _total, _bucket, _count, _sum too


def test_every_metric_a_dashboard_or_alert_names_is_exported():
    exported = _exported_names()
    alerts = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    exprs = dashboards.queries() + [r["expr"] for g in yaml.safe_load(alerts)["groups"] for r in g["rules"]]
    named = {m for expr in exprs for m in re.findall(r"\b((?:helpdesk|rabbitmq)_\w+)", expr)}
    unknown = sorted(n for n in named if not FOREIGN.match(n) and n not in exported)
    assert not unknown, f"named in dashboards or alerts but exported by no service: {unknown}"
    assert len(named) > 15


@pytest.mark.parametrize("uid", sorted(dashboards.DASHBOARDS))
def test_every_panel_has_a_query_and_legend(uid):
    board = dashboards.build(uid)
    for panel in board["panels"]:
        for target in panel["targets"]:
            assert target["expr"].strip() and target["legendFormat"], (uid, panel["title"])
