"""Alembic environment of the portal."""
from helpdesk.common.db import run_alembic_env
from helpdesk.portal.models import Base

run_alembic_env(Base.metadata)
