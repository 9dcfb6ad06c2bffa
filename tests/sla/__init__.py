"""SLA service tests (a package, so its conftest never shadows tests/conftest.py as module `conftest`)."""
