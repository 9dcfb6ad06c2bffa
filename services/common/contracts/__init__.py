"""Payload schemas of every event on the bus, one module per emitting service.

Importing this package registers them all in helpdesk.common.events.CONTRACTS.
"""
from helpdesk.common.contracts import tickets  # noqa: F401
from helpdesk.common.contracts import assignment  # noqa: F401
from helpdesk.common.contracts import sla  # noqa: F401
from helpdesk.common.contracts import erp_bridge  # noqa: F401
from helpdesk.common.contracts import portal  # noqa: F401
