"""Alembic migrations of the SLA service."""
