"""Alembic environment of the tickets service."""
from helpdesk.common.db import run_alembic_env
from helpdesk.tickets.models import Base

run_alembic_env(Base.metadata)
