"""Each service's Alembic migrations build exactly the tables its models declare, on both databases."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from helpdesk.cli import STORES, SERVICES, _migrations_path
from helpdesk.assignment.models import Base as AssignmentBase
from helpdesk.common import db
from helpdesk.erp_bridge.models import metadata as ErpBridgeMetadata
from helpdesk.portal.models import Base as PortalBase
from helpdesk.sla.models import Base as SlaBase
from helpdesk.tickets.models import Base as TicketsBase

MODELS = {"tickets": TicketsBase.metadata, "portal": PortalBase.metadata}
MODELS["assignment"] = AssignmentBase.metadata
MODELS["sla"] = SlaBase.metadata
MODELS["erp_bridge"] = ErpBridgeMetadata
SPECS = {**{name: spec for name, (_cls, spec) in SERVICES.items() if spec}, **STORES}


@pytest.mark.parametrize("service", sorted(MODELS))
def test_migrations_match_models(service, empty_database):
    url = empty_database
    db.migrate(url, _migrations_path(SPECS[service]))
    with db.get_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), MODELS[service])
    # trigram indexes exist only in the migration (PostgreSQL-specific); everything else must match
    diff = [d for d in diff if not (d[0] == "remove_index" and d[1].name.endswith("_trgm"))]
    assert diff == [], f"{service}: migrations and models differ: {diff}"


def test_every_store_has_migrations():
    assert set(SPECS) == set(MODELS)


@pytest.mark.postgresql
def test_replicas_starting_together_migrate_one_at_a_time(tmp_path):
    """Every `helpdesk run` migrates at start: replicas starting at once must not race on PostgreSQL."""
    import eventlet
    from sqlalchemy import text

    from conftest import _new_database

    with _new_database("postgresql", tmp_path) as url:
        threads = [eventlet.spawn(db.migrate, url, _migrations_path(SPECS["tickets"])) for _ in range(4)]
        for thread in threads:
            thread.wait()  # re-raises a migration's failure
        with db.get_engine(url).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
            diff = compare_metadata(MigrationContext.configure(conn), MODELS["tickets"])
        assert [d for d in diff if not (d[0] == "remove_index" and d[1].name.endswith("_trgm"))] == []
