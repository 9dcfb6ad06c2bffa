"""The words every service and the event catalogue share: states, priorities, channels, roles.

Plain constants, no imports: the tickets domain, the event contracts and (later) the
portal's labels all read them from here, so a state has one name everywhere.
"""

RECEIVED = "received"
IN_PROGRESS = "in_progress"
WAITING_ON_CUSTOMER = "waiting_on_customer"
RESOLVED = "resolved"
CLOSED = "closed"
STATES = (RECEIVED, IN_PROGRESS, WAITING_ON_CUSTOMER, RESOLVED, CLOSED)

PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("portal", "email", "phone", "api")
CLOSE_REASONS = ("resolved", "duplicate", "spam", "withdrawn")

REQUESTER = "requester"
ORG_MANAGER = "organisation_manager"
SOLVER = "solver"
DISPATCHER = "dispatcher"
MANAGER = "manager"
ADMIN = "admin"
SYSTEM = "system"
ROLES = (REQUESTER, ORG_MANAGER, SOLVER, DISPATCHER, MANAGER, ADMIN, SYSTEM)

SYSTEM_ACTOR = {"id": "system", "name": "System", "roles": [SYSTEM]}
