"""The staff console against the real tickets service: each queue lists exactly its tickets and counts them right,
each filter narrows the list (a parent category takes its subtree) and filters combine; a requester reopens or
confirms a resolution from the ticket's page; an admin renames, moves and deactivates categories, and a deactivated
one leaves the new-request form but stays on the tickets that have it."""
from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlencode

import pytest

from helpdesk.portal import accounts
from helpdesk.portal.models import Account

from .conftest import actor, post
from .test_tickets_web import _version
from .test_timeline import _timeline

pytestmark = pytest.mark.integration

# The console's tickets, by key: who raised it, subject, description, category, priority, contract, solver
# ("solver" is people["solver"], "other" a second solver) and the state it is brought to.
TICKETS = {
    "toner": ("requester", "Tiskárna netiskne", "Došel toner.", "laser", "high", "Z-100", None, "received"),
    "vpn": ("requester", "VPN nejde", "Nepřipojí se z domova.", "software", "normal", "Z-100", None, "in_progress"),
    "monitor": ("colleague", "Bliká monitor", "Po zapnutí bliká.", "hardware", "low", None, "solver", "received"),
    "mail": ("requester", "Pošta nechodí", "Od rána žádné zprávy.", "software", "urgent", None, "solver",
             "in_progress"),
    "scanner": ("colleague", "Skener neskenuje", "Zasekává papír.", "printers", "normal", None, "other",
                "in_progress"),
    "password": ("requester", "Zapomenuté heslo", "Nemohu se přihlásit.", None, "high", None, "solver",
                 "waiting_on_customer"),
    "invoice": ("outsider", "Chybná faktura", "Na faktuře je účtována TISKÁRNA navíc.", None, "normal", None, None,
                "waiting_on_customer"),
    "keyboard": ("requester", "Klávesnice", "Nefunguje klávesa Q.", "hardware", "normal", None, "solver",
                 "resolved"),
    "old": ("requester", "Stará tiskárna", "Hlášeno dvakrát.", "printers", "normal", None, None, "closed"),
    "reception": ("outsider", "Tiskárna v recepci", "Tiskne prázdné stránky.", "laser", "high", "Z-200", None,
                  "received"),
}
# hardware > printers > laser, and software beside it
CATEGORIES = (("hardware", "Hardware", None), ("printers", "Tiskárny", "hardware"), ("laser", "Laserové", "printers"),
              ("software", "Software", None))


@dataclasses.dataclass
class Desk:
    tickets: dict[str, dict]  # key -> the ticket as created
    categories: dict[str, int]  # key -> id
    other_solver: dict

    def numbers(self, *keys: str) -> list[str]:
        return sorted(self.tickets[key]["number"] for key in keys)


def _person(account: dict) -> dict:
    return {k: account[k] for k in ("id", "name", "email")}


@pytest.fixture
def desk(app, rpc, people, portal_db) -> Desk:
    """The tickets of TICKETS in their states, through the tickets service's RPC; a second solver invited."""
    with portal_db() as s:
        other, _secret = accounts.invite(s, app.extensions["helpdesk"].outbox, s.get(Account, people["admin"]["id"]),
                                         "druhy.resitel@example.cz", "Druhý Řešitel", ["solver"])
    admin = actor(people["admin"])
    categories = {}
    for key, name, parent in CATEGORIES:
        categories[key] = rpc.tickets.create_category(actor=admin, name=name,
                                                      parent_id=categories.get(parent))["id"]
    solvers = {"solver": _person(people["solver"]), "other": _person(other)}
    made = {}
    for key, (who, subject, description, category, priority, contract, solver, state) in TICKETS.items():
        t = rpc.tickets.create_ticket(actor=actor(people[who]), data={
            "subject": subject, "description": description, "category_id": categories.get(category),
            "priority": priority, "contract": contract})
        if solver:
            t = rpc.tickets.assign(actor=admin, ticket_id=t["id"], version=t["version"], solver=solvers[solver])
        if state != "received":
            t = rpc.tickets.change_state(actor=admin, ticket_id=t["id"], version=t["version"], to_state=state,
                                         reason="duplicate" if state == "closed" else None)
        assert (t["state"], (t["solver"] or {}).get("id")) == (state, solver and solvers[solver]["id"]), key
        made[key] = t
    return Desk(made, categories, other)


def _console(client, **query) -> tuple[list[str], dict[str, int], str]:
    """The ticket numbers the console lists for `query` (sorted), its queues' counts and the page."""
    response = client.get("/console?" + urlencode(query, doseq=True))
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    numbers = re.findall(r'<tr class="state-\w+"><td><a href="/tickets/\d+">([^<]+)</a>', page)
    counts = {queue: int(n) for queue, n in re.findall(r'id="count-(\w+)">(\d+)<', page)}
    return sorted(numbers), counts, page


def _mismatches(client, desk: Desk, cases) -> list[str]:
    """Each (query, keys of the tickets it must list) the console lists otherwise, said in words."""
    wrong = []
    for query, keys in cases:
        listed, _counts, _page = _console(client, **query)
        if listed != desk.numbers(*keys):
            wrong.append(f"{query}: listed {listed}, expected {desk.numbers(*keys)} ({', '.join(keys)})")
    return wrong


QUEUES = {  # as people["solver"] sees them
    "unassigned": ("toner", "vpn", "invoice", "reception"),
    "mine": ("monitor", "mail", "password"),
    "waiting": ("password", "invoice"),
    "resolved": ("keyboard",),
    "all": tuple(TICKETS),
}


def test_each_queue_lists_exactly_its_tickets_and_counts_them(desk, client_for):
    solver = client_for("solver")
    wrong = _mismatches(solver, desk, [({"queue": queue}, keys) for queue, keys in QUEUES.items()])
    assert not wrong, "\n".join(wrong)
    listed, counts, _page = _console(solver)
    assert counts == {queue: len(keys) for queue, keys in QUEUES.items()}
    assert listed == desk.numbers(*QUEUES["unassigned"])  # the queue the console opens at
    # mine is the signed-in person's own: a dispatcher has none, the other queues are the same
    listed, counts, _page = _console(client_for("dispatcher"), queue="mine")
    assert listed == [] and counts == {"unassigned": 4, "mine": 0, "waiting": 2, "resolved": 1, "all": 10}


def test_each_filter_narrows_the_list(desk, client_for, people):
    solver, c = client_for("solver"), desk.categories
    cases = [
        ({"state": "in_progress"}, ("vpn", "mail", "scanner")),
        ({"state": "closed"}, ("old",)),
        ({"category_id": c["hardware"]}, ("toner", "monitor", "scanner", "keyboard", "old", "reception")),
        ({"category_id": c["printers"]}, ("toner", "scanner", "old", "reception")),
        ({"category_id": c["laser"]}, ("toner", "reception")),
        ({"category_id": c["software"]}, ("vpn", "mail")),
        ({"priority": "high"}, ("toner", "password", "reception")),
        ({"priority": "urgent"}, ("mail",)),
        ({"organisation_id": "org-2"}, ("invoice", "reception")),
        ({"organisation_id": "org-1"}, ("toner", "vpn", "monitor", "mail", "scanner", "password", "keyboard", "old")),
        ({"contract": "Z-100"}, ("toner", "vpn")),
        ({"contract": "Z-200"}, ("reception",)),
        ({"solver_id": people["solver"]["id"]}, ("monitor", "mail", "password", "keyboard")),
        ({"solver_id": desk.other_solver["id"]}, ("scanner",)),
        # subject or description, any case, Czech letters too
        ({"text": "tiskárna"}, ("toner", "invoice", "old", "reception")),
        ({"text": "TONER"}, ("toner",)),
        ({"text": "Prázdné"}, ("reception",)),
        ({"text": "nic takového"}, ()),
    ]
    wrong = _mismatches(solver, desk, [({"queue": "all", **query}, keys) for query, keys in cases])
    assert not wrong, "\n".join(wrong)
    # the solver filter offers every solver
    page = _console(solver)[2]
    for person in (people["solver"], desk.other_solver):
        assert f'<option value="{person["id"]}" >{person["name"]}</option>' in page


def test_filters_combine_with_each_other_and_with_the_queue(desk, client_for, people):
    solver, c = client_for("solver"), desk.categories
    cases = [
        ({"queue": "all", "category_id": c["hardware"], "priority": "high", "organisation_id": "org-1"}, ("toner",)),
        ({"queue": "all", "text": "tiskárna", "organisation_id": "org-2"}, ("invoice", "reception")),
        ({"queue": "all", "state": "in_progress", "category_id": c["software"]}, ("vpn", "mail")),
        ({"queue": "all", "state": "in_progress", "solver_id": people["solver"]["id"]}, ("mail",)),
        ({"queue": "all", "contract": "Z-100", "state": "received"}, ("toner",)),
        ({"queue": "unassigned", "category_id": c["printers"]}, ("toner", "reception")),
        ({"queue": "unassigned", "state": "waiting_on_customer"}, ("invoice",)),
        ({"queue": "mine", "priority": "high"}, ("password",)),
        ({"queue": "waiting", "organisation_id": "org-1"}, ("password",)),
        ({"queue": "resolved", "category_id": c["printers"]}, ()),
    ]
    wrong = _mismatches(solver, desk, cases)
    assert not wrong, "\n".join(wrong)
    # the counts follow the filters, and the form keeps what was chosen
    _listed, counts, page = _console(solver, queue="all", organisation_id="org-2", category_id=c["laser"])
    assert counts == {"unassigned": 1, "mine": 0, "waiting": 0, "resolved": 0, "all": 1}
    assert '<input type="hidden" name="queue" value="all">' in page
    assert f'<option value="{c["laser"]}" selected>' in page and '<option value="org-2" selected>' in page
    _listed, counts, _page = _console(solver, queue="all", category_id=c["hardware"])
    assert counts == {"unassigned": 2, "mine": 1, "waiting": 0, "resolved": 1, "all": 6}


# --- the requester's confirmation and reopening, on the ticket's page --------------------------------------------

def _resolved_ticket(rpc, people, subject: str) -> int:
    """A request of people["requester"] the solver worked on and resolved."""
    solver = actor(people["solver"])
    t = rpc.tickets.create_ticket(actor=actor(people["requester"]), data={"subject": subject, "description": "x"})
    t = rpc.tickets.claim(actor=solver, ticket_id=t["id"])
    t = rpc.tickets.change_state(actor=solver, ticket_id=t["id"], version=t["version"], to_state="resolved")
    return t["id"]


def _form(page: str, form_id: str) -> dict:
    """What the page's form `form_id` sends: its hidden fields."""
    found = re.search(rf'<form [^>]*id="{form_id}">(.*?)</form>', page, re.S)
    assert found, page
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', found.group(1)))


def _state_on_page(client, ticket_id: int) -> str:
    return re.search(r'id="state">([^<]+)<', client.get(f"/tickets/{ticket_id}").get_data(as_text=True)).group(1)


def test_requester_reopens_one_resolution_and_confirms_another_from_the_ticket_page(client_for, people, rpc):
    reopened = _resolved_ticket(rpc, people, "Tiskárna netiskne")
    confirmed = _resolved_ticket(rpc, people, "Monitor bliká")
    requester, solver = client_for("requester"), client_for("solver")

    # as the resolved mail's links open them: the page at the form, nothing recorded yet
    page = requester.get(f"/tickets/{reopened}?do=reopen").get_data(as_text=True)
    assert rpc.tickets.get_ticket(actor=actor(people["requester"]), ticket_id=reopened)["state"] == "resolved"
    reopen = _form(page, "reopen")
    assert reopen["to_state"] == "in_progress"
    response = post(requester, f"/tickets/{reopened}/state", {**reopen, "note": "Pořád netiskne."})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/tickets/{reopened}")
    assert rpc.tickets.get_ticket(actor=actor(people["requester"]), ticket_id=reopened)["state"] == "in_progress"
    assert _state_on_page(requester, reopened) == "V řešení – u dodavatele"
    assert _timeline(solver, reopened)[-1] == "Stav: Vyřešeno → V řešení – u dodavatele (Pořád netiskne.)"

    page = requester.get(f"/tickets/{confirmed}?do=confirm").get_data(as_text=True)
    response = post(requester, f"/tickets/{confirmed}/state", _form(page, "confirm"))
    assert response.status_code == 302
    closed = rpc.tickets.get_ticket(actor=actor(people["requester"]), ticket_id=confirmed)
    assert (closed["state"], closed["close_reason"]) == ("closed", "resolved")
    assert _state_on_page(requester, confirmed) == "Uzavřeno"
    assert _timeline(solver, confirmed)[-1] == "Stav: Vyřešeno → Uzavřeno (Důvod uzavření: Vyřešeno)"
    # the reopened one is back with its solver, the confirmed one gone from the staff's open queues
    assert _console(solver, queue="mine")[0] == [rpc.tickets.get_ticket(actor=actor(people["solver"]),
                                                                        ticket_id=reopened)["number"]]
    assert _console(solver, queue="resolved")[0] == []


# --- the category tree, administered on its page ----------------------------------------------------------------

def _offered(client) -> list[str]:
    """The categories the new-request form offers, as its select shows them (indented by depth)."""
    page = client.get("/tickets/new").get_data(as_text=True)
    select = re.search(r'<select name="category_id">(.*?)</select>', page, re.S).group(1)
    return re.findall(r'<option value="\d+" >([^<]*)</option>', select)


def _shape(tree: list) -> list:
    return [(node["name"], node["active"], _shape(node["children"])) for node in tree]


def _category_on_page(client, ticket_id: int) -> str:
    page = client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    return re.search(r"<dt>Kategorie</dt><dd>([^<]*)</dd>", page).group(1)


def test_admin_renames_moves_and_deactivates_a_category_which_old_tickets_keep(client_for, people, rpc):
    admin = actor(people["admin"])
    hardware = rpc.tickets.create_category(actor=admin, name="Hardware", parent_id=None)["id"]
    printers = rpc.tickets.create_category(actor=admin, name="Tiskárny", parent_id=None)["id"]
    rpc.tickets.create_category(actor=admin, name="Laserové", parent_id=printers)
    old = rpc.tickets.create_ticket(actor=actor(people["requester"]), data={
        "subject": "Tiskárna netiskne", "description": "x", "category_id": printers})["id"]
    page_user, requester, dispatcher = client_for("admin"), client_for("requester"), client_for("dispatcher")

    renamed = post(page_user, "/admin/categories", {"action": "rename", "category_id": printers,
                                                    "name": "Tiskárny a skenery"})
    moved = post(page_user, "/admin/categories", {"action": "move", "category_id": printers, "parent_id": hardware})
    assert (renamed.status_code, moved.status_code) == (302, 302)
    assert _shape(rpc.tickets.list_categories(include_inactive=True)) == [
        ("Hardware", True, [("Tiskárny a skenery", True, [("Laserové", True, [])])])]
    page = page_user.get("/admin/categories").get_data(as_text=True)
    assert re.search(rf'<li id="category-{hardware}" class="">Hardware.*?<ul><li id="category-{printers}" '
                     r'class="">Tiskárny a skenery', page, re.S)
    assert _offered(requester) == ["Hardware", "\u2003Tiskárny a skenery", "\u2003\u2003Laserové"]
    # the moved branch is now part of its new parent's subtree
    number = rpc.tickets.get_ticket(actor=admin, ticket_id=old)["number"]
    assert _console(dispatcher, queue="all", category_id=hardware)[0] == [number]

    assert post(page_user, "/admin/categories", {"action": "deactivate", "category_id": printers}).status_code == 302
    assert f'<li id="category-{printers}" class="inactive">' in page_user.get("/admin/categories").get_data(
        as_text=True)
    assert _offered(requester) == ["Hardware"]  # the whole branch left the offer
    refused = post(requester, "/tickets/new", {"subject": "Skener", "description": "x", "category_id": printers},
                   content_type="multipart/form-data")
    assert refused.status_code == 400 and 'id="err-category_id"' in refused.get_data(as_text=True)
    assert _category_on_page(requester, old) == "Tiskárny a skenery"
    assert _category_on_page(dispatcher, old) == "Tiskárny a skenery"
    assert _console(dispatcher, queue="all", category_id=hardware)[0] == [number]



@pytest.fixture
def old_ticket(app, rpc, people) -> int:
    """A request of people["requester"] in a category deactivated since (Tiskárny)."""
    admin = actor(people["admin"])
    printers = rpc.tickets.create_category(actor=admin, name="Tiskárny", parent_id=None)["id"]
    ticket = rpc.tickets.create_ticket(actor=actor(people["requester"]), data={
        "subject": "Netiskne", "description": "x", "category_id": printers})
    rpc.tickets.set_category_active(actor=admin, category_id=printers, active=False)
    return ticket["id"]


def _sent_by(form: str, name: str) -> str:
    """What a browser sends for the form's select `name`: the selected option, else the first one."""
    select = re.search(rf'<select name="{name}">(.*?)</select>', form, re.S).group(1)
    chosen = re.search(r'<option value="([^"]*)" selected>', select) or re.search(r'<option value="([^"]*)"', select)
    return chosen.group(1)


def test_staff_saving_the_priority_of_a_ticket_in_a_deactivated_category_keeps_its_category(old_ticket, client_for,
                                                                                            people, rpc):
    solver = client_for("solver")
    page = solver.get(f"/tickets/{old_ticket}").get_data(as_text=True)
    form = re.search(r'<form method="post" action="/tickets/\d+/edit">(.*?)</form>', page, re.S).group(1)
    saved = post(solver, f"/tickets/{old_ticket}/edit", {"version": _version(solver, old_ticket), "priority": "high",
                                                         "category_id": _sent_by(form, "category_id")})
    assert saved.status_code == 302
    assert _category_on_page(solver, old_ticket) == "Tiskárny"


def test_my_requests_names_the_deactivated_category_of_an_old_ticket(old_ticket, client_for):
    page = client_for("requester").get("/tickets").get_data(as_text=True)
    row = re.search(rf'<tr class="state-\w+"><td><a href="/tickets/{old_ticket}">.*?</tr>', page, re.S).group(0)
    assert "<td>Tiskárny</td>" in row
