"""Alembic environment of the ERP bridge."""
from helpdesk.common.db import run_alembic_env
from helpdesk.erp_bridge.models import metadata

run_alembic_env(metadata)
