"""The HELIOS synchronisation page: what the real ERP bridge reports, for admins and managers only."""
from __future__ import annotations

import dataclasses
import time

import pytest

from conftest import _new_database

pytestmark = pytest.mark.integration


@pytest.fixture
def bridge(run_services, portal_config, database_url, tmp_path):
    """The ERP bridge with a store of its own and no HELIOS configured (it idles), and a cursor row that
    says one table failed three times in a row."""
    from sqlalchemy import insert

    from helpdesk.cli import SERVICES, _migrations_path
    from helpdesk.common import db
    from helpdesk.common.events import utcnow
    from helpdesk.erp_bridge.models import cursors
    from helpdesk.erp_bridge.service import ErpBridgeService

    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with _new_database(kind, tmp_path) as url:
        db.migrate(url, _migrations_path(SERVICES["erp_bridge"][1]))
        with db.get_engine(url).begin() as conn:
            conn.execute(insert(cursors).values(entity="contracts", errors_in_row=3, rows_total=120,
                                                last_error="Login failed for user 'helpdesk'",
                                                last_error_at=utcnow()))
        cfg = dataclasses.replace(portal_config, database_urls={**portal_config.database_urls, "erp_bridge": url})
        runner = run_services(ErpBridgeService, cfg=cfg)
        yield
        runner.stop()  # before its database goes


def test_admin_sees_each_table_and_what_failed(app, bridge, client_for):
    page = client_for("admin").get("/admin/erp")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="erp-configured"' in html and "HELPDESK_ERP_HELIOS_URL" in html  # idle: nothing configured
    row = html.split('id="erp-tables"', 1)[1]
    assert "contracts" in row and "Login failed for user" in row and 'class="late"' in row
    assert client_for("manager").get("/admin/erp").status_code == 200


def test_other_roles_get_404(app, bridge, client_for):
    for who in ("requester", "solver", "dispatcher"):
        assert client_for(who).get("/admin/erp").status_code == 404, who


def test_a_bridge_that_is_not_running_is_said_at_once(app, client_for):
    started = time.perf_counter()
    page = client_for("admin").get("/admin/erp")
    assert page.status_code == 200 and 'id="erp-down"' in page.get_data(as_text=True)
    assert time.perf_counter() - started < 5
