"""Alembic environment of the SLA service."""
from helpdesk.common.db import run_alembic_env
from helpdesk.sla.models import Base

run_alembic_env(Base.metadata)
