"""Alembic environment of the assignment service."""
from helpdesk.common.db import run_alembic_env
from helpdesk.assignment.models import Base

run_alembic_env(Base.metadata)
