"""Demo data loaded through the running services' RPC, so every event flows as in real use.

Loading twice does nothing the second time: it stops when categories already exist.
"""
from __future__ import annotations

import logging
import random

from helpdesk.common.rpc import cluster_proxy

log = logging.getLogger(__name__)

ADMIN = {"id": "demo-admin", "name": "Alena Adminová", "roles": ["admin"], "email": "admin@example.cz"}
DISPATCHER = {"id": "demo-dispatcher", "name": "Dana Dispečerová", "roles": ["dispatcher"],
              "email": "dispecink@example.cz"}
SOLVERS = [
    {"id": "demo-solver-1", "name": "Jana Nováková", "roles": ["solver"], "email": "jana.novakova@example.cz"},
    {"id": "demo-solver-2", "name": "Petr Svoboda", "roles": ["solver"], "email": "petr.svoboda@example.cz"},
]
REQUESTERS = [
    {"id": "demo-req-1", "name": "Karel Dvořák", "roles": ["requester"], "organisation_id": "org-strojirny",
     "email": "karel.dvorak@strojirny.cz"},
    {"id": "demo-req-2", "name": "Eva Černá", "roles": ["requester"], "organisation_id": "org-strojirny",
     "email": "eva.cerna@strojirny.cz"},
    {"id": "demo-req-3", "name": "Tomáš Procházka", "roles": ["requester"], "organisation_id": "org-pekarna",
     "email": "tomas.prochazka@pekarna.cz"},
]

TREE = {
    "HELIOS Orange": {"Účetnictví": {}, "Sklad a logistika": {}, "Mzdy a personalistika": {}},
    "IT": {"Hardware": {}, "Síť a VPN": {}, "E-mail a Office": {}},
    "Provoz": {"Služební auta": {}, "Budova": {}},
}

REQUESTS = [
    ("Nelze zaúčtovat přijatou fakturu", "Při zaúčtování faktury FP-2026-0412 hlásí HELIOS chybu 547.", "Účetnictví"),
    ("Inventura skladu 02 nesedí", "Po uzávěrce inventury se liší stav u 14 položek.", "Sklad a logistika"),
    ("Výplatní pásky se netisknou", "Tisk výplatních pásek za říjen skončí prázdným PDF.", "Mzdy a personalistika"),
    ("Notebook se nezapne", "Po aktualizaci BIOSu notebook jen bliká.", "Hardware"),
    ("VPN se odpojuje", "Připojení VPN spadne každých 10 minut.", "Síť a VPN"),
    ("Sdílená schránka nepřijímá poštu", "Schránka objednavky@ hlásí plnou kvótu.", "E-mail a Office"),
    ("Rezervace auta na služební cestu", "Potřebuji Octavii na 3. 12. do Brna.", "Služební auta"),
    ("Nefunguje klimatizace v zasedačce", "Zasedačka 2.14 má 29 °C.", "Budova"),
    ("Chyba při párování plateb", "Bankovní výpis z KB se nenapáruje na saldo.", "Účetnictví"),
    ("Nový uživatel do HELIOSu", "Prosím o založení přístupu pro novou kolegyni ze skladu.", "Sklad a logistika"),
]


def _walk(rpc, tree: dict, parent_id=None, ids=None) -> dict:
    ids = {} if ids is None else ids
    for name, children in tree.items():
        category = rpc.tickets.create_category(actor=ADMIN, name=name, parent_id=parent_id)
        ids[name] = category["id"]
        _walk(rpc, children, category["id"], ids)
    return ids


def load(cfg, seed: int = 2026) -> int:
    """Create categories and a spread of requests in every state; returns how many tickets it made."""
    rnd = random.Random(seed)
    from helpdesk.portal import demo as portal_demo  # sign-ins for these people (docs/portal.md)

    portal_demo.load_accounts(cfg, [ADMIN, DISPATCHER, *SOLVERS, *REQUESTERS])
    with cluster_proxy(cfg.nameko(), timeout=30) as rpc:
        if rpc.tickets.list_categories(include_inactive=True):
            log.info("demo data already loaded")
            return 0
        ids = _walk(rpc, TREE)
        made = 0
        for i, (subject, description, category) in enumerate(REQUESTS * 2):
            requester = REQUESTERS[i % len(REQUESTERS)]
            ticket = rpc.tickets.create_ticket(actor=requester, data={
                "subject": subject, "description": description, "category_id": ids[category],
                "priority": rnd.choice(["low", "normal", "normal", "high", "urgent"]),
                "channel": rnd.choice(["portal", "portal", "email", "phone"]),
            })
            made += 1
            _advance(rpc, ticket, requester, SOLVERS[i % len(SOLVERS)], i % 6)
        log.info("demo data loaded: %d tickets", made)
        return made


def _advance(rpc, ticket: dict, requester: dict, solver: dict, stage: int) -> None:
    """Move a ticket along its life: 0 stays received, higher stages go further."""
    tid = ticket["id"]
    if stage == 0:
        return
    if stage == 1:
        rpc.tickets.assign(actor=DISPATCHER, ticket_id=tid, solver=_person(solver), note="demo: dispečer")
        return
    rpc.tickets.claim(actor=solver, ticket_id=tid)
    rpc.tickets.add_comment(actor=solver, ticket_id=tid, body="Dobrý den, na požadavku pracuji.", public=True)
    if stage == 2:
        return
    rpc.tickets.add_comment(actor=solver, ticket_id=tid, body="Interní: ověřit v testovací databázi.", public=False)
    t = rpc.tickets.change_state(actor=solver, ticket_id=tid, version=_version(rpc, solver, tid),
                                 to_state="waiting_on_customer", note="Potřebujeme číslo faktury.")
    if stage == 3:
        return
    rpc.tickets.add_comment(actor=requester, ticket_id=tid, body="Posílám doplňující informace.", public=True)
    t = rpc.tickets.change_state(actor=solver, ticket_id=tid, version=_version(rpc, solver, tid), to_state="resolved")
    if stage == 4:
        return
    rpc.tickets.change_state(actor=requester, ticket_id=tid, version=t["version"], to_state="closed")
    rpc.tickets.rate(actor=requester, ticket_id=tid, score=5, comment="Rychlé a ochotné, děkuji.")


def _version(rpc, actor: dict, ticket_id: int) -> int:
    return rpc.tickets.get_ticket(actor=actor, ticket_id=ticket_id)["version"]


def _person(actor: dict) -> dict:
    return {"id": actor["id"], "name": actor["name"], "email": actor.get("email")}
