"""The HELIOS synchronisation status for admins and managers, from the ERP bridge (`sync_status` RPC)."""
from __future__ import annotations

from flask import Blueprint, render_template

from helpdesk.portal.app import portal, roles_required

bp = Blueprint("erp", __name__, url_prefix="/admin")

STALE_SECONDS = 900  # the same threshold as the HelpdeskErpSyncStalled alert (deploy/prometheus/alerts.yml)


@bp.get("/erp")
@roles_required("admin", "manager")
def status():
    running = portal().rpc.serving("erp_bridge")
    state = portal().rpc.call("erp_bridge", "sync_status") if running else None
    return render_template("admin_erp.html", running=running, state=state, stale=STALE_SECONDS)
