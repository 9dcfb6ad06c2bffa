"""Correlation ids across RPC and events, JSON logs, and /metrics of a running service."""
from __future__ import annotations

import json
import logging
import socket
import urllib.request

from nameko.standalone.rpc import ClusterRpcProxy

from helpdesk.common import config as config_module
from helpdesk.common.observability import JsonFormatter, set_correlation_id
from helpdesk.tickets.service import TicketsService
from support import REQUESTER, new_ticket


def test_correlation_id_of_the_call_reaches_the_event(tickets, config, event_log):
    log = event_log("tickets")
    with ClusterRpcProxy(config.nameko(), context_data={"correlation_id": "portal-req-42"}) as rpc:
        new_ticket(rpc)
    (event,) = log.wait_for(1)
    assert event["correlation_id"] == "portal-req-42"


def test_call_without_correlation_id_gets_one(tickets, rpc, event_log):
    log = event_log("tickets")
    new_ticket(rpc)
    (event,) = log.wait_for(1)
    assert len(event["correlation_id"]) == 32


def test_json_log_line_carries_the_correlation_id():
    set_correlation_id("abc123")
    record = logging.LogRecord("helpdesk.x", logging.INFO, __file__, 1, "ticket %s created", ("HD-1",), None)
    record.correlation_id = "abc123"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "ticket HD-1 created" and line["correlation_id"] == "abc123"
    set_correlation_id(None)


def test_service_process_serves_metrics(run_services, config, rpc):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config_module.load({
        "HELPDESK_AMQP_URI": config.amqp_uri, "HELPDESK_DATA_DIR": str(config.data_dir),
        "HELPDESK_TICKETS_DATABASE_URL": config.database_url("tickets"), "HELPDESK_METRICS_PORT": str(port)})
    run_services(TicketsService, cfg=cfg)
    new_ticket(rpc)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'helpdesk_entrypoint_seconds_count{entrypoint="create_ticket",kind="Rpc",service="tickets"}' in text
    assert 'helpdesk_tickets_created_total{channel="portal",priority="normal"}' in text
    assert "helpdesk_outbox_published_total" in text
