"""Correlation ids across RPC and events, JSON logs, and /metrics of a running service."""
from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from helpdesk.common import config as config_module
from helpdesk.common.errors import Conflict
from helpdesk.common.observability import (add_readiness_check, configure_logging, remove_readiness_check,
                                            set_correlation_id)
from helpdesk.tickets.service import TicketsService
from support import free_port, new_ticket


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


def test_json_log_line_carries_the_correlation_id_of_the_worker(capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        set_correlation_id("abc123")
        logging.getLogger("helpdesk.x").info("ticket %s created", "HD-1")
        set_correlation_id(None)
        logging.getLogger("helpdesk.x").info("no worker")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    first, second = [json.loads(line) for line in capsys.readouterr().err.splitlines()[-2:]]
    assert first["message"] == "ticket HD-1 created" and first["correlation_id"] == "abc123"
    assert first["level"] == "INFO" and first["logger"] == "helpdesk.x"
    assert second["correlation_id"] is None


def _with_metrics_port(config, port: int):
    return config_module.load({
        "HELPDESK_AMQP_URI": config.amqp_uri, "HELPDESK_DATA_DIR": str(config.data_dir),
        "HELPDESK_TICKETS_DATABASE_URL": config.database_url("tickets"), "HELPDESK_METRICS_PORT": str(port)})


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_service_process_answers_health_and_readiness_probes(run_services, config):
    port = free_port()
    run_services(TicketsService, cfg=_with_metrics_port(config, port))
    assert _get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
    status, body = _get(f"http://127.0.0.1:{port}/readyz")
    assert status == 200, body
    assert json.loads(body) == {"ready": True, "checks": {"broker": "ok", "database:tickets": "ok"}}


def test_readiness_fails_naming_the_check_that_failed(run_services, config):
    port = free_port()
    run_services(TicketsService, cfg=_with_metrics_port(config, port))

    def broken():
        raise ConnectionRefusedError("no route to helios")

    add_readiness_check("helios", broken)
    try:
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
    finally:
        remove_readiness_check("helios")
    assert status == 503
    assert json.loads(body)["checks"]["helios"] == "ConnectionRefusedError: no route to helios"
    assert _get(f"http://127.0.0.1:{port}/readyz")[0] == 200


def test_service_process_serves_metrics(run_services, config, rpc, event_log):
    port = free_port()
    run_services(TicketsService, cfg=_with_metrics_port(config, port))
    log = event_log("tickets")
    new_ticket(rpc)
    assert len(log.wait_for(1)) == 1  # published: the relay has counted it
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'helpdesk_entrypoint_seconds_count{entrypoint="create_ticket",kind="Rpc",service="tickets"}' in text
    assert 'helpdesk_tickets_created_total{channel="portal",priority="normal"}' in text
    assert re.search(r'^helpdesk_outbox_published_total\{event_type="ticket_created",service="tickets"\} [1-9]',
                     text, re.M)


def test_first_response_and_resolution_times_are_observed_once_committed(tickets, rpc):
    from prometheus_client import REGISTRY

    from support import DISPATCHER

    def count(span):
        return REGISTRY.get_sample_value(f"helpdesk_ticket_{span}_seconds_count") or 0.0

    before = count("first_response"), count("resolution")
    t = new_ticket(rpc)
    rpc.tickets.add_comment(actor=DISPATCHER, ticket_id=t["id"], body="Díváme se na to.", public=True)
    rpc.tickets.add_comment(actor=DISPATCHER, ticket_id=t["id"], body="Druhá odpověď.", public=True)
    t = rpc.tickets.get_ticket(actor=DISPATCHER, ticket_id=t["id"])
    t = rpc.tickets.change_state(actor=DISPATCHER, ticket_id=t["id"], version=t["version"], to_state="in_progress")
    with pytest.raises(Conflict):  # a stale version commits nothing, so nothing is observed
        rpc.tickets.change_state(actor=DISPATCHER, ticket_id=t["id"], version=t["version"] - 1, to_state="resolved")
    rpc.tickets.change_state(actor=DISPATCHER, ticket_id=t["id"], version=t["version"], to_state="resolved")
    assert (count("first_response"), count("resolution")) == (before[0] + 1, before[1] + 1)
