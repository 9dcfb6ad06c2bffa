"""Organisations and departments on /admin/organisations: an admin creates, renames, deactivates and
reactivates them; bad names come back with the typed form and the field's reason; other roles get 404."""
from __future__ import annotations

import re

import pytest

from helpdesk.portal.i18n import translate
from helpdesk.portal.models import Account, Organisation

from .conftest import PASSWORD, login, post

pytestmark = pytest.mark.integration

PAGE = "/admin/organisations"


def _units(portal_db) -> dict:
    with portal_db() as s:
        return {o.id: (o.name, o.kind, o.active) for o in s.query(Organisation)}


def _saved(client, **form) -> None:
    response = post(client, PAGE, form)
    assert response.status_code == 302, response.get_data(as_text=True)


def _row(page: str, org_id: str) -> str:
    match = re.search(rf'<tr id="org-{re.escape(org_id)}">(.*?)</tr>', page, re.S)
    assert match, page
    return match.group(1)


def test_admin_creates_renames_deactivates_and_reactivates_an_organisation_and_a_department(
        client_for, people, portal_db):
    admin = client_for("admin")
    _saved(admin, action="create", name="  Stavby Brno s.r.o. ", id="stavby", kind="organisation")
    _saved(admin, action="create", name="Účtárna", id="uctarna", kind="department")
    assert _units(portal_db)["stavby"] == ("Stavby Brno s.r.o.", "organisation", True)
    assert _units(portal_db)["uctarna"] == ("Účtárna", "department", True)

    _saved(admin, action="rename", org_id="stavby", name="Stavby Morava a.s.")
    _saved(admin, action="rename", org_id="uctarna", name="Ekonomické oddělení")
    _saved(admin, action="deactivate", org_id="stavby")
    _saved(admin, action="deactivate", org_id="uctarna")
    units = _units(portal_db)
    assert units["stavby"] == ("Stavby Morava a.s.", "organisation", False)
    assert units["uctarna"] == ("Ekonomické oddělení", "department", False)
    row = _row(admin.get(PAGE).get_data(as_text=True), "stavby")
    assert "neaktivní" in row and 'value="activate"' in row

    _saved(admin, action="activate", org_id="stavby")
    assert _units(portal_db)["stavby"] == ("Stavby Morava a.s.", "organisation", True)
    row = _row(admin.get(PAGE).get_data(as_text=True), "stavby")
    assert "aktivní" in row and "neaktivní" not in row and 'value="deactivate"' in row


def test_a_deactivated_organisation_is_not_offered_for_invitations_but_its_requesters_still_sign_in(
        app, client_for, people, portal_db):
    admin = client_for("admin")
    _saved(admin, action="deactivate", org_id="org-1")

    invite_form = admin.get("/admin/users").get_data(as_text=True)
    assert 'value="org-2"' in invite_form and 'value="org-1"' not in invite_form
    refused = post(admin, "/admin/users", {"email": "nova@example.cz", "name": "Nová", "roles": "requester",
                                           "organisation_id": "org-1", "language": "cs"})
    assert refused.status_code == 400
    with portal_db() as s:
        assert s.query(Account).filter_by(email="nova@example.cz").count() == 0

    requester = app.test_client()
    assert login(requester, people["requester"]["email"], PASSWORD).status_code == 302
    assert requester.get("/tickets").status_code == 200


def test_renaming_a_department_renames_it_on_its_people_too(client_for, people, portal_db):
    admin = client_for("admin")
    _saved(admin, action="create", name="Sklad", id="sklad", kind="department")
    invited = post(admin, "/admin/users", {"email": "skladnik@example.cz", "name": "Skladník", "roles": "requester",
                                           "organisation_id": "sklad", "language": "cs"})
    assert invited.status_code == 302
    _saved(admin, action="rename", org_id="sklad", name="Logistika")
    with portal_db() as s:
        assert s.query(Account).filter_by(email="skladnik@example.cz").one().department == "Logistika"


@pytest.mark.parametrize("name, reason", [
    ("   ", ("Enter the name.", {})),
    ("x" * 121, ("The name is longer than {max} characters.", {"max": 120})),
    ("firma ORG-2", ("An organisation or department named {name} exists already.", {"name": "firma ORG-2"})),
])
def test_bad_names_are_refused_naming_the_field_with_the_typed_form_back(client_for, people, portal_db, name, reason):
    reason = translate(reason[0], "cs", **reason[1])  # the admin reads Czech
    admin = client_for("admin")
    before = _units(portal_db)

    created = post(admin, PAGE, {"action": "create", "name": name, "id": "nova", "kind": "department"})
    page = created.get_data(as_text=True)
    assert created.status_code == 400
    assert f'<span class="error" id="err-name">{reason}</span>' in page
    assert f'name="name" value="{name}"' in page and 'name="id" value="nova"' in page
    assert '<option value="department" selected>' in page

    renamed = post(admin, PAGE, {"action": "rename", "org_id": "org-1", "name": name})
    page = renamed.get_data(as_text=True)
    assert renamed.status_code == 400
    row = _row(page, "org-1")
    assert f'value="{name}"' in row and reason in row
    assert reason not in _row(page, "org-2")
    assert _units(portal_db) == before


def test_renaming_to_its_own_name_in_another_case_is_allowed(client_for, people, portal_db):
    admin = client_for("admin")
    _saved(admin, action="rename", org_id="org-1", name="FIRMA org-1")
    assert _units(portal_db)["org-1"][0] == "FIRMA org-1"


def test_an_organisation_kept_from_helios_is_changed_there_not_here(client_for, people, portal_db):
    from helpdesk.common.events import utcnow

    with portal_db() as s:
        s.add(Organisation(id="4711", name="Strojírny Kolín", kind="organisation", active=True, created_at=utcnow()))
    admin = client_for("admin")
    row = _row(admin.get(PAGE).get_data(as_text=True), "4711")
    assert "Strojírny Kolín" in row and "<form" not in row
    before = _units(portal_db)
    for form in ({"action": "rename", "org_id": "4711", "name": "Jiné jméno"},
                 {"action": "deactivate", "org_id": "4711"}):
        refused = post(admin, PAGE, form)
        assert refused.status_code == 400
        assert translate("{name} is kept from HELIOS: change it there.", "cs", name="Strojírny Kolín") in \
            refused.get_data(as_text=True)
    assert _units(portal_db) == before


def test_an_unknown_unit_is_404_and_an_unknown_action_400(client_for, people, portal_db):
    admin = client_for("admin")
    before = _units(portal_db)
    assert post(admin, PAGE, {"action": "rename", "org_id": "nope", "name": "X"}).status_code == 404
    assert post(admin, PAGE, {"action": "deactivate", "org_id": "nope"}).status_code == 404
    assert post(admin, PAGE, {"action": "delete", "org_id": "org-1"}).status_code == 400
    assert _units(portal_db) == before


def test_a_form_without_the_csrf_token_changes_nothing(client_for, people, portal_db):
    admin = client_for("admin")
    before = _units(portal_db)
    response = admin.post(PAGE, data={"action": "deactivate", "org_id": "org-1"})
    assert response.status_code == 400
    assert _units(portal_db) == before


@pytest.mark.parametrize("role", ["manager", "dispatcher", "solver", "org_manager", "requester"])
def test_other_roles_get_404_and_change_nothing(client_for, people, portal_db, role):
    client = client_for(role)
    before = _units(portal_db)
    assert client.get(PAGE).status_code == 404
    for form in ({"action": "create", "name": "Cizí", "id": "cizi", "kind": "organisation"},
                 {"action": "rename", "org_id": "org-1", "name": "Přejmenováno"},
                 {"action": "deactivate", "org_id": "org-1"}):
        assert post(client, PAGE, form).status_code == 404
    assert _units(portal_db) == before


def test_anonymous_visitor_is_sent_to_login(app, people):
    response = app.test_client().get(PAGE)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_person_of_a_deactivated_organisation_can_still_be_edited_but_nobody_moves_into_it(
        client_for, people, portal_db):
    admin = client_for("admin")
    _saved(admin, action="deactivate", org_id="org-1")
    requester, other = people["requester"], people["outsider"]
    kept = post(admin, f"/admin/users/{requester['id']}", {"name": "Karel Nový", "roles": "requester",
                                                          "organisation_id": "org-1", "language": "cs"})
    assert kept.status_code == 302, kept.get_data(as_text=True)
    moved = post(admin, f"/admin/users/{other['id']}", {"name": other["name"], "roles": "requester",
                                                       "organisation_id": "org-1", "language": "cs"})
    assert moved.status_code == 400
    with portal_db() as s:
        assert (s.get(Account, requester["id"]).name, s.get(Account, requester["id"]).organisation_id) == (
            "Karel Nový", "org-1")
        assert s.get(Account, other["id"]).organisation_id == "org-2"


def test_an_id_of_digits_alone_is_refused_it_names_a_helios_organisation(client_for, people, portal_db):
    admin = client_for("admin")
    refused = post(admin, PAGE, {"action": "create", "name": "Dvanáctka", "id": "12", "kind": "organisation"})
    assert refused.status_code == 400
    assert "ne samé číslice" in refused.get_data(as_text=True)
    assert "12" not in _units(portal_db)
