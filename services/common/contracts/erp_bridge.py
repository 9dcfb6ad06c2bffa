"""Events emitted by the ERP bridge as HELIOS master data appears, changes or disappears.

Each *_synced event carries the whole record as the bridge reads it now, so a consumer can
simply upsert it; `changed_at` lets it ignore a late redelivery of an older state. HELIOS
deletes are hard deletes that the bridge finds by reconciling IDs, hence *_deleted events.
Every `*_id` that points at HELIOS is the `ID` column of the table named in its description.
"""
from marshmallow import Schema, fields

from helpdesk.common.events import contract


def _helios(column: str, text: str | None = None) -> dict:
    """Field metadata naming the HELIOS column a value comes from."""
    return {"description": f"{text} (HELIOS {column})" if text else f"HELIOS {column}"}


_CHANGED_AT = "newest DatZmeny/DatPorizeni of the row and its child rows, as a time-zone-aware time"


class Address(Schema):
    street = fields.String(required=True, metadata=_helios("TabCisOrg.Ulice"))
    city = fields.String(required=True, metadata=_helios("TabCisOrg.Misto"))
    postal_code = fields.String(required=True, metadata=_helios("TabCisOrg.PSC"))
    country = fields.String(required=True, allow_none=True, metadata=_helios("TabCisOrg.IdZeme", "country code"))


@contract("erp_bridge", "organization_synced", 1, "A HELIOS organisation (customer, partner) was created or changed.")
class OrganizationSynced(Schema):
    helios_id = fields.Integer(required=True, metadata=_helios("TabCisOrg.ID"))
    number = fields.Integer(required=True, metadata=_helios("TabCisOrg.CisloOrg", "organisation number"))
    name = fields.String(required=True, metadata=_helios("TabCisOrg.Nazev"))
    second_name = fields.String(allow_none=True, load_default=None, metadata=_helios("TabCisOrg.DruhyNazev"))
    ico = fields.String(allow_none=True, load_default=None,
                        metadata=_helios("TabCisOrg.ICO", "company registration number, IČO"))
    dic = fields.String(allow_none=True, load_default=None, metadata=_helios("TabCisOrg.DIC", "VAT number, DIČ"))
    address = fields.Nested(Address, required=True)
    parent_id = fields.Integer(allow_none=True, load_default=None,
                               metadata=_helios("TabCisOrg.NadrizenaOrg",
                                                "TabCisOrg.ID of the parent organisation, resolved from its CisloOrg"))
    active = fields.Boolean(required=True, metadata=_helios(
        "TabCisOrg.Stav = 0", "false for blocked, disabled and potential organisations"))
    changed_at = fields.AwareDateTime(required=True, metadata={"description": _CHANGED_AT})


@contract("erp_bridge", "contact_synced", 1, "A HELIOS contact person was created or changed.")
class ContactSynced(Schema):
    helios_id = fields.Integer(required=True, metadata=_helios("TabCisKOs.ID"))
    number = fields.Integer(required=True, metadata=_helios("TabCisKOs.Cislo"))
    first_name = fields.String(required=True, metadata=_helios("TabCisKOs.Jmeno"))
    last_name = fields.String(required=True, metadata=_helios("TabCisKOs.Prijmeni"))
    title_before = fields.String(allow_none=True, load_default=None, metadata=_helios("TabCisKOs.TitulPred"))
    title_after = fields.String(allow_none=True, load_default=None, metadata=_helios("TabCisKOs.TitulZa"))
    # HELIOS links a person to any number of organisations; the helpdesk mostly needs one.
    organisation_id = fields.Integer(required=True, allow_none=True, metadata=_helios(
        "TabVztahOrgKOs.IDOrg", "TabCisOrg.ID of the preferred link (Prednastaveno), else the first"))
    organisation_ids = fields.List(fields.Integer(), required=True, metadata=_helios(
        "TabVztahOrgKOs.IDOrg", "TabCisOrg.ID of every organisation the person is linked to"))
    emails = fields.List(fields.String(), required=True, metadata=_helios(
        "TabKontakty.Spojeni where Druh = 6", "e-mail addresses, the preferred one first"))
    phones = fields.List(fields.String(), required=True, metadata=_helios(
        "TabKontakty.Spojeni where Druh in (1, 2)", "phone and mobile numbers, the preferred one first"))
    changed_at = fields.AwareDateTime(required=True, metadata={"description": _CHANGED_AT})


@contract("erp_bridge", "employee_synced", 1, "A HELIOS employee (a possible solver) was created or changed.")
class EmployeeSynced(Schema):
    helios_id = fields.Integer(required=True, metadata=_helios("TabCisZam.ID"))
    number = fields.Integer(required=True, metadata=_helios("TabCisZam.Cislo", "personal number"))
    first_name = fields.String(required=True, metadata=_helios("TabCisZam.Jmeno"))
    last_name = fields.String(required=True, metadata=_helios("TabCisZam.Prijmeni"))
    email = fields.String(allow_none=True, load_default=None, metadata=_helios(
        "TabKontakty.Spojeni where IDCisZam and Druh = 6", "the preferred e-mail"))
    login = fields.String(allow_none=True, load_default=None,
                          metadata=_helios("TabCisZam.LoginId", "SQL login = TabUziv.LoginName"))
    department = fields.String(allow_none=True, load_default=None,
                               metadata=_helios("TabCisZam.Stredisko", "cost centre"))
    active = fields.Boolean(required=True, metadata={
        "description": "HELIOS has no confirmed active flag for employees: the bridge's configuration names the column"})
    changed_at = fields.AwareDateTime(required=True, metadata={"description": _CHANGED_AT})


@contract("erp_bridge", "contract_synced", 1, "A HELIOS contract (zakázka) was created or changed.")
class ContractSynced(Schema):
    helios_id = fields.Integer(required=True, metadata=_helios("TabZakazka.ID"))
    number = fields.String(required=True, metadata=_helios("TabZakazka.CisloZakazky", "contract number"))
    name = fields.String(required=True, metadata=_helios("TabZakazka.Nazev"))
    customer_organisation_id = fields.Integer(required=True, allow_none=True, metadata=_helios(
        "TabZakazka.Prijemce / Zadavatel", "TabCisOrg.ID of the customer, resolved from its CisloOrg"))
    guarantor_employee_id = fields.Integer(required=True, allow_none=True, metadata=_helios(
        "TabZakazka.Zodpovida or the configured guarantor column",
        "TabCisZam.ID of the guarantor, resolved from the employee's Cislo; null if none"))
    valid_from = fields.Date(allow_none=True, load_default=None, metadata=_helios("TabZakazka.DatumStartPlan"))
    valid_to = fields.Date(allow_none=True, load_default=None, metadata=_helios("TabZakazka.DatumKonecPlan"))
    closed = fields.Boolean(required=True, metadata=_helios("TabZakazka.Ukonceno"))
    changed_at = fields.AwareDateTime(required=True, metadata={"description": _CHANGED_AT})


@contract("erp_bridge", "organization_deleted", 1, "A HELIOS organisation no longer exists.")
class OrganizationDeleted(Schema):
    helios_id = fields.Integer(required=True, metadata=_helios("TabCisOrg.ID"))
    number = fields.Integer(required=True, metadata=_helios("TabCisOrg.CisloOrg"))


@contract("erp_bridge", "contact_deleted", 1, "A HELIOS contact person no longer exists.")
class ContactDeleted(Schema):
    helios_id = fields.Integer(required=True, metadata=_helios("TabCisKOs.ID"))
    number = fields.Integer(required=True, metadata=_helios("TabCisKOs.Cislo"))


@contract("erp_bridge", "employee_deleted", 1, "A HELIOS employee no longer exists.")
class EmployeeDeleted(Schema):
    helios_id = fields.Integer(required=True, metadata=_helios("TabCisZam.ID"))
    number = fields.Integer(required=True, metadata=_helios("TabCisZam.Cislo"))


@contract("erp_bridge", "contract_deleted", 1, "A HELIOS contract (zakázka) no longer exists.")
class ContractDeleted(Schema):
    helios_id = fields.Integer(required=True, metadata=_helios("TabZakazka.ID"))
    number = fields.String(required=True, metadata=_helios("TabZakazka.CisloZakazky"))
