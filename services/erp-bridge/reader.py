"""Reading HELIOS: which rows changed since a cursor, the rows themselves with their children, all IDs.

Statements are SQLAlchemy Core over the tables of helios.py, so the same code runs on
SQL Server (HELIOS) and on the shaped SQLite/PostgreSQL copies; tests compile every
statement built here for the mssql dialect. Functions take an open connection and
return plain values; the gateway decides where they run.

A parent's change time is the newest of its own and its children's (an e-mail edited
in TabKontakty lifts its contact person), as Asseco's own contacts view does.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, column, func, literal, or_, select, table, union_all

from helpdesk.erp_bridge import domain, helios as H

ENTITY_TABLES = {domain.ORGANISATION: H.TabCisOrg, domain.CONTACT: H.TabCisKOs, domain.EMPLOYEE: H.TabCisZam,
                 domain.CONTRACT: H.TabZakazka, domain.ACTIVITY: H.TabKontaktJednani}


@dataclass(frozen=True)
class Change:
    id: int
    changed: dt.datetime  # HELIOS local time


@dataclass(frozen=True)
class ReaderSettings:
    timezone: str = "Europe/Prague"
    guarantor_column: str = "Zodpovida"
    employee_active_column: str = ""
    activity_category: str = "HD"


def _ext_or_core(core_table, ext_name: str, spec: str):
    """A configured column: `Name` of the core table, or `_EXT.Name` of its _EXT table (joined on ID)."""
    if spec.startswith("_EXT."):
        name = spec[len("_EXT."):]
        ext = table(ext_name, column("ID"), column(name))
        return ext, ext.c[name]
    return None, core_table.c[spec]


# ---------------------------------------------------------------- what changed

def _child_sources(entity: str, since, category: str | None = None):
    """(parent id, change time) of the entity's own rows and of its children changed after `since`."""
    ch = H.changed
    if entity == domain.CONTACT:
        v, k = H.TabVztahOrgKOs, H.TabKontakty
        return [
            select(H.TabCisKOs.c.ID.label("pid"), ch(H.TabCisKOs).label("ch"))
            .where(H.changed_after(H.TabCisKOs, since)),
            select(v.c.IDCisKOs.label("pid"), ch(v).label("ch")).where(H.changed_after(v, since)),
            select(k.c.IDCisKOs.label("pid"), ch(k).label("ch"))
            .where(k.c.IDCisKOs.is_not(None)).where(H.changed_after(k, since)),
            select(v.c.IDCisKOs.label("pid"), ch(k).label("ch"))
            .select_from(k.join(v, v.c.ID == k.c.IDVztahKOsOrg)).where(H.changed_after(k, since)),
        ]
    if entity == domain.EMPLOYEE:
        k = H.TabKontakty
        return [
            select(H.TabCisZam.c.ID.label("pid"), ch(H.TabCisZam).label("ch"))
            .where(H.changed_after(H.TabCisZam, since)),
            select(k.c.IDCisZam.label("pid"), ch(k).label("ch"))
            .where(k.c.IDCisZam.is_not(None)).where(H.changed_after(k, since)),
        ]
    t = ENTITY_TABLES[entity]
    stmt = select(t.c.ID.label("pid"), ch(t).label("ch")).where(H.changed_after(t, since))
    if entity == domain.ACTIVITY:
        stmt = stmt.where(t.c.Kategorie == category)
    return [stmt]


def changes_statement(entity: str, since: dt.datetime, after: tuple[dt.datetime, int] | None, limit: int,
                      category: str | None = None):
    """The next `limit` parents changed after `since`, in (change time, ID) order after the key `after`."""
    sources = _child_sources(entity, since, category)
    if len(sources) == 1:
        src = sources[0].subquery("c")
        key_ch, key_id, grouped = src.c.ch, src.c.pid, False
    else:
        src = union_all(*sources).subquery("c")
        key_ch, key_id, grouped = func.max(src.c.ch), src.c.pid, True
    stmt = select(key_id.label("id"), key_ch.label("changed")).select_from(src)
    if after is not None:
        keyset = or_(key_ch > after[0], and_(key_ch == after[0], key_id > after[1]))
        stmt = stmt.group_by(src.c.pid).having(keyset) if grouped else stmt.where(keyset)
    elif grouped:
        stmt = stmt.group_by(src.c.pid)
    return stmt.order_by(key_ch, key_id).limit(limit)


def changes(conn, entity: str, since: dt.datetime, after, limit: int, category: str | None = None) -> list[Change]:
    rows = conn.execute(changes_statement(entity, since, after, limit, category)).all()
    return [Change(r.id, r.changed) for r in rows if r.id is not None]


def changed_rows(conn, entity: str, since: dt.datetime, after, limit: int, settings: "ReaderSettings"):
    """The next page of changes and their rows, in one HELIOS transaction (one round trip fewer per page)."""
    page = changes(conn, entity, since, after, limit)
    return page, load(conn, entity, [c.id for c in page], settings)


def row_version_statement(after_rv: int, since: dt.datetime, limit: int):
    """TabCisOrg rows whose SystemRowVersion moved although their DatZmeny did not (an update that did not set it)."""
    t = H.TabCisOrg
    return (select(t.c.ID, t.c.SystemRowVersion, H.changed(t).label("changed"))
            .where(t.c.SystemRowVersion > after_rv).where(~H.changed_after(t, since))
            .order_by(t.c.SystemRowVersion).limit(limit))


def max_row_version(conn) -> int:
    return conn.execute(select(func.max(H.TabCisOrg.c.SystemRowVersion))).scalar() or 0


def ids_statement(entity: str, after_id: int, limit: int, category: str | None = None):
    t = ENTITY_TABLES[entity]
    stmt = select(t.c.ID).where(t.c.ID > after_id)
    if entity == domain.ACTIVITY:
        stmt = stmt.where(t.c.Kategorie == category)
    return stmt.order_by(t.c.ID).limit(limit)


def ids(conn, entity: str, after_id: int, limit: int) -> list[int]:
    """A page of the IDs that exist now (full import, deletions)."""
    return list(conn.execute(ids_statement(entity, after_id, limit)).scalars())


def ids_and_rows(conn, entity: str, after_id: int, limit: int, settings: "ReaderSettings"):
    """The next page of IDs after `after_id` and their rows (the first import), in one HELIOS transaction.

    The page is every ID up to its last, so rows and children are selected by that range, not by a
    list of a thousand IDs (which SQLAlchemy renders anew for every statement)."""
    page = ids(conn, entity, after_id, limit)
    return page, load(conn, entity, page, settings, span=(after_id, page[-1]) if page else None)


def newest_change(conn, entity: str) -> dt.datetime | None:
    """The newest change time of the entity and its children (where a full import sets the cursor)."""
    newest = None
    for src in _child_sources(entity, dt.datetime(1900, 1, 1)):
        sub = src.subquery()
        value = conn.execute(select(func.max(sub.c.ch))).scalar()
        if value is not None and (newest is None or value > newest):
            newest = value
    return newest


# ---------------------------------------------------------------- loading rows as payloads

@dataclass(frozen=True)
class Loaded:
    """Payloads of the rows that could be read, and the change times of rows held open in the editor."""

    payloads: list[dict]
    held: list[dt.datetime]
    newest: dt.datetime | None  # newest change among the loaded rows (HELIOS local time)


def _open_in_editor(row) -> bool:
    return row.BlokovaniEditoru is not None or bool(row.JeNovaVetaEditor)


def _newest(*values):
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _changed_of(row):
    return row.DatZmeny or row.DatPorizeni


def _by(rows, key):
    out: dict = {}
    for r in rows:
        out.setdefault(getattr(r, key), []).append(r)
    return out


def _ids_of(conn, t, key_col, values) -> dict:
    """Business number -> ID (CisloOrg, TabCisZam.Cislo)."""
    values = sorted({v for v in values if v is not None})
    if not values:
        return {}
    return {k: i for k, i in conn.execute(select(key_col, t.c.ID).where(key_col.in_(values))).all()}


def load(conn, entity: str, wanted: list[int], settings: ReaderSettings,
         span: tuple[int, int] | None = None) -> Loaded:
    """The current rows of `wanted` IDs as event payloads; IDs that no longer exist are left out.

    `span` (after, last): `wanted` is every ID in after < ID <= last, and they are selected so."""
    if not wanted:
        return Loaded([], [], None)
    loader = {domain.ORGANISATION: _organisations, domain.CONTACT: _contacts, domain.EMPLOYEE: _employees,
              domain.CONTRACT: _contracts}[entity]
    if span is not None:
        def within(col):
            return and_(col > span[0], col <= span[1])
    else:
        def within(col):
            return col.in_(wanted)
    payloads, held, newest = [], [], None
    for row, payload_of, changed in loader(conn, within, settings):
        if _open_in_editor(row):
            held.append(changed)
            continue
        payloads.append(payload_of(domain.to_aware(changed, settings.timezone)))
        newest = _newest(newest, changed)
    return Loaded(payloads, held, newest)


def _organisations(conn, within, s):
    t = H.TabCisOrg
    rows = conn.execute(select(t).where(within(t.c.ID))).all()
    parents = _ids_of(conn, t, t.c.CisloOrg, [r.NadrizenaOrg for r in rows])
    for r in rows:
        yield r, (lambda at, r=r: domain.organisation_payload(r, parents.get(r.NadrizenaOrg), at)), _changed_of(r)


def _contacts(conn, within, s):
    p, v, k = H.TabCisKOs, H.TabVztahOrgKOs, H.TabKontakty
    rows = conn.execute(select(p).where(within(p.c.ID))).all()
    links = conn.execute(select(v).where(within(v.c.IDCisKOs))).all()
    link_owner = {link.ID: link.IDCisKOs for link in links}
    # the person's own e-mails and phones, and those of their links (two index seeks, not an OR of both)
    kontakty = {c.ID: c for c in conn.execute(select(k).where(within(k.c.IDCisKOs))).all()}
    if link_owner:
        kontakty.update((c.ID, c) for c in conn.execute(
            select(k).select_from(k.join(v, v.c.ID == k.c.IDVztahKOsOrg)).where(within(v.c.IDCisKOs))).all())
    by_person: dict = {}
    for c in kontakty.values():
        owner = c.IDCisKOs if c.IDCisKOs is not None else link_owner.get(c.IDVztahKOsOrg)
        by_person.setdefault(owner, []).append(c)
    links_of = _by(links, "IDCisKOs")
    for r in rows:
        mine, theirs = links_of.get(r.ID, []), by_person.get(r.ID, [])
        changed = _newest(_changed_of(r), *(_changed_of(x) for x in mine), *(_changed_of(x) for x in theirs))
        yield r, (lambda at, r=r, mine=mine, theirs=theirs: domain.contact_payload(r, mine, theirs, at)), changed


def _employees(conn, within, s):
    t, k = H.TabCisZam, H.TabKontakty
    cols = [t]
    ext = None
    if s.employee_active_column:
        ext, active_col = _ext_or_core(t, "TabCisZam_EXT", s.employee_active_column)
        cols.append(active_col.label("active_flag"))
    stmt = select(*cols).where(within(t.c.ID))
    if ext is not None:
        stmt = stmt.select_from(t.outerjoin(ext, ext.c.ID == t.c.ID))
    rows = conn.execute(stmt).all()
    mails = _by(conn.execute(select(k).where(within(k.c.IDCisZam))).all(), "IDCisZam")
    for r in rows:
        active = True if not s.employee_active_column else bool(r.active_flag)
        theirs = mails.get(r.ID, [])
        changed = _newest(_changed_of(r), *(_changed_of(x) for x in theirs))
        yield r, (lambda at, r=r, theirs=theirs, active=active: domain.employee_payload(r, theirs, active, at)), changed


def _contracts(conn, within, s):
    t = H.TabZakazka
    ext, guarantor = _ext_or_core(t, "TabZakazka_EXT", s.guarantor_column)
    stmt = select(t, guarantor.label("guarantor_number")).where(within(t.c.ID))
    if ext is not None:
        stmt = stmt.select_from(t.outerjoin(ext, ext.c.ID == t.c.ID))
    rows = conn.execute(stmt).all()
    orgs = _ids_of(conn, H.TabCisOrg, H.TabCisOrg.c.CisloOrg,
                   [r.Prijemce if r.Prijemce is not None else r.Zadavatel for r in rows])
    emps = _ids_of(conn, H.TabCisZam, H.TabCisZam.c.Cislo, [r.guarantor_number for r in rows])
    for r in rows:
        customer = orgs.get(r.Prijemce if r.Prijemce is not None else r.Zadavatel)
        yield r, (lambda at, r=r, c=customer: domain.contract_payload(r, c, emps.get(r.guarantor_number), at)), \
            _changed_of(r)


# ---------------------------------------------------------------- activities (tickets written into HELIOS)

@dataclass(frozen=True)
class ActivityRow:
    id: int
    state_code: str
    participants: list[int]  # TabKJUcastZam.IDZam, oldest first
    ended: bool
    text: str
    changed: dt.datetime
    changed_by: str
    held: bool


def activities(conn, wanted: list[int]) -> list[ActivityRow]:
    t, u = H.TabKontaktJednani, H.TabKJUcastZam
    if not wanted:
        return []
    rows = conn.execute(select(t).where(t.c.ID.in_(wanted))).all()
    parts = _by(conn.execute(select(u.c.IDKJ, u.c.IDZam, u.c.ID).where(u.c.IDKJ.in_(wanted))
                             .order_by(u.c.ID)).all(), "IDKJ")
    return [ActivityRow(r.ID, r.Stav or "", [p.IDZam for p in parts.get(r.ID, [])], r.Ukonceni is not None,
                        r.Popis or "", _changed_of(r), r.Zmenil or r.Autor or "", _open_in_editor(r))
            for r in rows]


def literal_probe():
    """A statement with a Unicode literal bound inline (the compile test checks N'' quoting)."""
    return select(H.TabCisOrg.c.ID).where(H.TabCisOrg.c.Nazev == literal("Pekárna Žďár", H.TabCisOrg.c.Nazev.type))
