"""The portal's link to the ERP bridge: organisations kept from its events, contracts asked over its RPC.

A HELIOS organisation is the portal organisation whose id is its `TabCisOrg.ID` as text ("4711"), the
id tickets already carry as `organisation_id` and the bridge reads back (erp-bridge `organisation_number`);
organisations made in the portal have other ids ("org-…"), so digits alone mean HELIOS. `PortalErp`
(nameko service `portal-erp`, run by `helpdesk run portal`) upserts those rows from
`erp_bridge.organization_synced` and deactivates them on `organization_deleted`; `contracts_of` offers the
open contracts of such an organisation while a bridge answers, and nothing (free text) otherwise.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from helpdesk.common.db import DatabaseProvider, dialect_insert
from helpdesk.common.errors import HelpdeskError
from helpdesk.common.events import utcnow
from helpdesk.common.inbox import event_handler, idempotent
from helpdesk.common.observability import Observability
from helpdesk.portal.models import Base, Organisation

# a page waits at most this long for the bridge's contracts, then shows the free-text box
CONTRACTS_SECONDS = 2.0
NAME_MAX = Organisation.__table__.c.name.type.length


def helios_id(organisation_id: str | None) -> int | None:
    """The HELIOS `TabCisOrg.ID` a portal organisation stands for, or None for one made in the portal."""
    if organisation_id and organisation_id.isascii() and organisation_id.isdigit():
        return int(organisation_id)
    return None


def contracts_of(rpc, organisation_id: str | None) -> list[dict] | None:
    """The open contracts (`number`, `name`, …) of an organisation from the ERP bridge, by number; None when
    the organisation is not from HELIOS or no bridge answers within CONTRACTS_SECONDS (no list to offer)."""
    ident = helios_id(organisation_id)
    if ident is None or not rpc.serving("erp_bridge"):
        return None
    try:
        return rpc.call_within(CONTRACTS_SECONDS, "erp_bridge", "contracts_of_organisation", organisation_id=ident)
    except HelpdeskError:  # not answering in time, or failing: the form falls back to free text
        return None


def contract_allowed(contracts: list[dict] | None, number: str | None) -> bool:
    """Whether a ticket may name contract `number`: any (or none) without a list, else one of the list's."""
    return not number or contracts is None or any(c["number"] == number for c in contracts)


# --- organisations from the bridge's events ------------------------------------------------------------

def _locked_row(session, org_id: str, name: str, active: bool) -> Organisation:
    """The organisation's row, locked; made from the given values if the portal has none yet."""
    insert = dialect_insert(session.get_bind().dialect.name)
    session.execute(insert(Organisation).values(id=org_id, name=name, kind="organisation", active=active,
                                                created_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["id"]))
    return session.execute(select(Organisation).where(Organisation.id == org_id).with_for_update()).scalar_one()


def organisation_synced(session, payload: dict) -> Organisation:
    """Take HELIOS's state of an organisation (name, active), unless the row holds a newer one already."""
    name = payload["name"].strip()[:NAME_MAX] or str(payload["number"])
    row = _locked_row(session, str(payload["helios_id"]), name, payload["active"])
    if row.erp_changed_at is not None and payload["changed_at"] <= row.erp_changed_at:
        return row  # a late redelivery of an older state
    row.name, row.active, row.erp_changed_at = name, payload["active"], payload["changed_at"]
    return row


def organisation_deleted(session, payload: dict, at: dt.datetime) -> Organisation:
    """Deactivate an organisation HELIOS no longer has (its people and tickets stay). `at`, when the bridge
    noticed, counts as its newest change: a *_synced of it delivered later is older and changes nothing."""
    row = _locked_row(session, str(payload["helios_id"]), f"HELIOS {payload['number']}", False)
    row.active = False
    row.erp_changed_at = max(at, row.erp_changed_at or at)
    return row


class PortalErp:
    name = "portal-erp"

    observe = Observability()
    db = DatabaseProvider("portal", Base.metadata)

    @event_handler("erp_bridge", "organization_synced")
    @idempotent
    def on_organization_synced(self, session, event):
        organisation_synced(session, event.payload)

    @event_handler("erp_bridge", "organization_deleted")
    @idempotent
    def on_organization_deleted(self, session, event):
        organisation_deleted(session, event.payload, event.occurred_at)
