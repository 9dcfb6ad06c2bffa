"""The ticket page's history timeline speaks the reader's language: field labels and the values of state,
priority, category, solver and close reason, not the tickets service's field names and codes."""
from __future__ import annotations

import html
import re

import pytest

from .conftest import actor, post

pytestmark = pytest.mark.integration


def _timeline(client, ticket_id: int) -> list[str]:
    page = client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    found = re.search(r'<ol class="history">(.*?)</ol>', page, re.S)
    assert found, page
    items = re.findall(r"<li[^>]*>(.*?)</li>", found.group(1), re.S)
    # "when · who · what": the what, tags and runs of white space dropped
    return [html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", item))).split(" · ", 2)[2].strip()
            for item in items]


@pytest.fixture
def worked_tickets(rpc, people):
    """A ticket taken through priority and category changes, assignment, replies, resolution, confirmation
    and rating, and one claimed and closed early as a duplicate with a note; their ids."""
    tickets = rpc.tickets
    admin, solver, requester = actor(people["admin"]), actor(people["solver"]), actor(people["requester"])
    category = tickets.create_category(actor=admin, name="Tiskárny", parent_id=None)
    t = tickets.create_ticket(actor=requester, data={"subject": "Tiskárna", "description": "Netiskne."})
    t = tickets.update_ticket(actor=admin, ticket_id=t["id"], version=t["version"], changes={"priority": "high"})
    t = tickets.update_ticket(actor=admin, ticket_id=t["id"], version=t["version"],
                              changes={"category_id": category["id"]})
    t = tickets.assign(actor=admin, ticket_id=t["id"], version=t["version"],
                       solver={k: solver[k] for k in ("id", "name", "email")})
    t = tickets.change_state(actor=solver, ticket_id=t["id"], version=t["version"], to_state="in_progress")
    tickets.add_comment(actor=solver, ticket_id=t["id"], body="Vyměněn toner.", public=True)
    tickets.add_comment(actor=solver, ticket_id=t["id"], body="Toner ze skladu B.", public=False)
    t = tickets.get_ticket(actor=solver, ticket_id=t["id"])
    t = tickets.change_state(actor=solver, ticket_id=t["id"], version=t["version"], to_state="resolved")
    t = tickets.change_state(actor=requester, ticket_id=t["id"], version=t["version"], to_state="closed",
                             reason="resolved")
    tickets.rate(actor=requester, ticket_id=t["id"], score=4, comment="Díky")
    other = tickets.create_ticket(actor=requester, data={"subject": "Znovu tiskárna", "description": "Totéž."})
    other = tickets.claim(actor=solver, ticket_id=other["id"])
    tickets.change_state(actor=admin, ticket_id=other["id"], version=other["version"], to_state="closed",
                         reason="duplicate", note=f"viz {t['number']}")
    return t["id"], other["id"]


# each line of the timelines as Czech and English readers see it ({number}: the worked ticket's number)
WORKED = [
    ("Vytvořeno: {number}", "Created: {number}"),
    ("Priorita: Běžná → Vysoká", "Priority: Normal → High"),
    ("Kategorie: – → Tiskárny", "Category: – → Tiskárny"),
    ("Řešitel: – → Solver", "Solver: – → Solver"),
    ("Stav: Přijato → V řešení – u dodavatele", "State: Received → In progress"),
    ("Veřejná odpověď", "Public reply"),
    ("Interní poznámka", "Internal note"),
    ("Stav: V řešení – u dodavatele → Vyřešeno", "State: In progress → Resolved"),
    ("Stav: Vyřešeno → Uzavřeno (Důvod uzavření: Vyřešeno)", "State: Resolved → Closed (Close reason: Resolved)"),
    ("Hodnocení: – → 4/5", "Rating: – → 4/5"),
]
DUPLICATE = [  # after its "created" line
    ("Řešitel: – → Solver (převzal(a) si)", "Solver: – → Solver (claimed)"),
    ("Stav: Přijato → V řešení – u dodavatele", "State: Received → In progress"),
    ("Stav: V řešení – u dodavatele → Uzavřeno (Důvod uzavření: Duplicita — viz {number})",
     "State: In progress → Closed (Close reason: Duplicate — viz {number})"),
]


@pytest.mark.parametrize("language", ["cs", "en"])
def test_the_timeline_shows_labels_and_values_in_the_readers_language(client_for, people, worked_tickets, language):
    worked, duplicate = worked_tickets
    admin = client_for("admin")  # the admin's account speaks Czech until switched
    if language == "en":
        assert post(admin, "/language", {"lang": "en"}).status_code == 302
    number = _number(admin, worked)
    column = ("cs", "en").index(language)
    assert _timeline(admin, worked) == [line[column].format(number=number) for line in WORKED]
    assert _timeline(admin, duplicate)[1:] == [line[column].format(number=number) for line in DUPLICATE]


def test_a_reply_in_the_timeline_links_to_the_reply(client_for, people, worked_tickets):
    worked, _ = worked_tickets
    page = client_for("solver").get(f"/tickets/{worked}").get_data(as_text=True)
    history = re.search(r'<ol class="history">(.*?)</ol>', page, re.S).group(1)
    for anchor in re.findall(r'href="#(comment-\d+)"', history):
        assert f'id="{anchor}"' in page
    assert len(re.findall(r'href="#comment-\d+"', history)) == 2


def _number(client, ticket_id: int) -> str:
    page = client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    return re.search(r'<span class="number">([^<]+)</span>', page).group(1)
