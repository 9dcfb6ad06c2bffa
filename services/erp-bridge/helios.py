"""The HELIOS Orange tables the bridge reads and writes, as SQLAlchemy Core tables (shapes from ../shared/HELIOS.md).

The same Table objects serve three purposes: the adapter's statements are built from
them (and compile to T-SQL for `mssql+pymssql://`), tests and the demo create them on
SQLite/PostgreSQL (`create_schema`), and the benchmark fills them. On SQL Server the
bridge never creates or alters anything: the tables are HELIOS's own.

Types follow HELIOS: nvarchar -> Unicode, ntext -> NTEXT on mssql, datetime -> DATETIME
(naive, the HELIOS server's local time), bit -> Boolean, tinyint, rowversion. Only the
columns the bridge uses are declared; a real table has many more, which is harmless.
Where HELIOS's primary key is a business number (TabCisOrg: CisloOrg) the shaped copy
makes `ID` the primary key (SQLite's autoincrement needs it) and the number unique.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Index, Integer, MetaData, SmallInteger, Table,
                        TypeDecorator, Unicode, UnicodeText, and_, func, or_)
from sqlalchemy.dialects import mssql

metadata = MetaData()

NTEXT = UnicodeText().with_variant(mssql.NTEXT(), "mssql")
TINYINT = SmallInteger().with_variant(mssql.TINYINT(), "mssql")
DATETIME = DateTime().with_variant(mssql.DATETIME(), "mssql")

# TabKontakty.Druh
PHONE, MOBILE, FAX, EMAIL, WEB = 1, 2, 3, 6, 7


class RowVersion(TypeDecorator):
    """SQL Server's `rowversion` (8 bytes, bumped by every UPDATE) as a Python int.

    On SQL Server it is the real ROWVERSION; on the shaped copies a BIGINT that whoever
    plays HELIOS bumps. Cursors store the int either way.
    """

    impl = BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.ROWVERSION())
        return dialect.type_descriptor(BigInteger())

    def process_bind_param(self, value, dialect):
        if value is not None and dialect.name == "mssql":
            return int(value).to_bytes(8, "big")
        return value

    def process_result_value(self, value, dialect):
        if isinstance(value, (bytes, bytearray)):
            return int.from_bytes(value, "big")
        return value


def _audit() -> list[Column]:
    """HELIOS's audit columns; DatZmeny stays NULL until the first edit and is set by the writer."""
    return [
        Column("Autor", Unicode(128), nullable=False, default=""),
        Column("DatPorizeni", DATETIME, nullable=False),
        Column("Zmenil", Unicode(128), nullable=True),
        Column("DatZmeny", DATETIME, nullable=True),
    ]


def _editor() -> list[Column]:
    """Set while the row is open in the HELIOS editor (JeNovaVetaEditor: a row being created)."""
    return [
        Column("BlokovaniEditoru", SmallInteger, nullable=True),
        Column("JeNovaVetaEditor", Boolean, nullable=True),
    ]


def _changed_index(name: str, table: Table) -> None:
    Index(f"IX_{name}_DatZmeny", table.c.DatZmeny)
    Index(f"IX_{name}_DatPorizeni", table.c.DatPorizeni)


TabCisOrg = Table(
    "TabCisOrg", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=True),
    Column("CisloOrg", Integer, nullable=False, unique=True),
    Column("Nazev", Unicode(255), nullable=False, default=""),
    Column("DruhyNazev", Unicode(255), nullable=False, default=""),
    Column("Ulice", Unicode(255), nullable=False, default=""),
    Column("Misto", Unicode(255), nullable=False, default=""),
    Column("PSC", Unicode(10), nullable=False, default=""),
    Column("IdZeme", Unicode(3), nullable=True),
    Column("ICO", Unicode(20), nullable=False, default=""),
    Column("DIC", Unicode(15), nullable=False, default=""),
    Column("Stav", TINYINT, nullable=False, default=0),
    Column("NadrizenaOrg", Integer, nullable=True),
    Column("OdpOs", Integer, nullable=True),
    Column("SystemRowVersion", RowVersion, nullable=False, default=0),
    *_audit(), *_editor(),
)
_changed_index("TabCisOrg", TabCisOrg)
Index("IX_TabCisOrg_SystemRowVersion", TabCisOrg.c.SystemRowVersion)
Index("IX_TabCisOrg_ICO", TabCisOrg.c.ICO)

TabCisOrg_EXT = Table(
    "TabCisOrg_EXT", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=False),
)

TabCisKOs = Table(
    "TabCisKOs", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=True),
    Column("Cislo", Integer, nullable=False, unique=True),
    Column("Jmeno", Unicode(100), nullable=False, default=""),
    Column("Prijmeni", Unicode(100), nullable=False, default=""),
    Column("TitulPred", Unicode(30), nullable=False, default=""),
    Column("TitulZa", Unicode(30), nullable=False, default=""),
    *_audit(), *_editor(),
)
_changed_index("TabCisKOs", TabCisKOs)

TabVztahOrgKOs = Table(
    "TabVztahOrgKOs", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=True),
    Column("IDOrg", Integer, nullable=False, index=True),
    Column("IDCisKOs", Integer, nullable=False, index=True),
    Column("Funkce", Unicode(100), nullable=False, default=""),
    Column("Oddeleni", Unicode(100), nullable=False, default=""),
    Column("ZamestnanDo", DATETIME, nullable=True),
    Column("Prednastaveno", Boolean, nullable=False, default=False),
    *_audit(),
)
_changed_index("TabVztahOrgKOs", TabVztahOrgKOs)

TabKontakty = Table(
    "TabKontakty", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=True),
    Column("IDOrg", Integer, nullable=True, index=True),
    Column("IDCisKOs", Integer, nullable=True, index=True),
    Column("IDCisZam", Integer, nullable=True, index=True),
    Column("IDVztahKOsOrg", Integer, nullable=True, index=True),
    Column("Spojeni", Unicode(255), nullable=False, default=""),
    Column("Druh", SmallInteger, nullable=False),
    Column("Prednastaveno", Boolean, nullable=False, default=False),
    *_audit(),
)
_changed_index("TabKontakty", TabKontakty)
Index("IX_TabKontakty_Spojeni", TabKontakty.c.Spojeni)

TabCisZam = Table(
    "TabCisZam", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=True),
    Column("Cislo", Integer, nullable=False, unique=True),
    Column("Jmeno", Unicode(100), nullable=False, default=""),
    Column("Prijmeni", Unicode(100), nullable=False, default=""),
    Column("LoginId", Unicode(128), nullable=False, default=""),
    Column("Alias", Unicode(30), nullable=False, default=""),
    Column("Stredisko", Unicode(30), nullable=True),
    *_audit(), *_editor(),
)
_changed_index("TabCisZam", TabCisZam)

# sites keep custom fields here; the shaped copy carries the ones the bridge's settings can name
TabCisZam_EXT = Table(
    "TabCisZam_EXT", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=False),
    Column("_Aktivni", Boolean, nullable=True),
)

TabZakazka = Table(
    "TabZakazka", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=True),
    Column("CisloZakazky", Unicode(15), nullable=False, unique=True),
    Column("Nazev", Unicode(255), nullable=False, default=""),
    Column("Stav", Unicode(3), nullable=False, default=""),
    Column("Ukonceno", Boolean, nullable=False, default=False),
    Column("Prijemce", Integer, nullable=True),
    Column("Zadavatel", Integer, nullable=True),
    Column("Zodpovida", Integer, nullable=True),
    Column("KontaktOsoba", Integer, nullable=True),
    Column("JeServis", Boolean, nullable=False, default=False),
    Column("DatumStartPlan", DATETIME, nullable=True),
    Column("DatumKonecPlan", DATETIME, nullable=True),
    *_audit(), *_editor(),
)
_changed_index("TabZakazka", TabZakazka)
Index("IX_TabZakazka_Prijemce", TabZakazka.c.Prijemce)

TabZakazka_EXT = Table(
    "TabZakazka_EXT", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=False),
    Column("_Garant", Integer, nullable=True),
)

TabKontaktJednani = Table(
    "TabKontaktJednani", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=True),
    Column("Kategorie", Unicode(3), nullable=False),
    Column("PoradoveCislo", Integer, nullable=False),
    Column("Predmet", Unicode(255), nullable=False, default=""),
    Column("Popis", NTEXT, nullable=True),
    Column("DatumJednaniOd", DATETIME, nullable=True),
    Column("DatumJednaniDo", DATETIME, nullable=True),
    Column("Typ", Unicode(3), nullable=False, default=""),
    Column("Stav", Unicode(3), nullable=False, default=""),
    Column("CisloOrg", Integer, nullable=True),
    Column("CisloZakazky", Unicode(15), nullable=True),
    Column("Ukonceni", DATETIME, nullable=True),
    Column("SouvisejiciKJ", Integer, nullable=True),
    *_audit(), *_editor(),
    # HELIOS tables carry triggers, and SQL Server refuses OUTPUT without INTO on them: new IDs come
    # from SCOPE_IDENTITY() instead of RETURNING
    implicit_returning=False,
)
_changed_index("TabKontaktJednani", TabKontaktJednani)
Index("IX_TabKontaktJednani_Kategorie", TabKontaktJednani.c.Kategorie, TabKontaktJednani.c.PoradoveCislo,
      unique=True)

TabKJUcastZam = Table(
    "TabKJUcastZam", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=True),
    Column("IDKJ", Integer, nullable=False, index=True),
    Column("IDZam", Integer, nullable=False),
    *_audit(),
    implicit_returning=False,
)

TabUkoly = Table(
    "TabUkoly", metadata,
    Column("ID", Integer, primary_key=True, autoincrement=True),
    Column("IDKontaktJed", Integer, nullable=True, index=True),
    Column("Predmet", Unicode(255), nullable=False, default=""),
    Column("Popis", NTEXT, nullable=True),
    Column("Resitel", Integer, nullable=True),
    Column("Zadavatel", Integer, nullable=True),
    Column("CisloOrg", Integer, nullable=True),
    Column("Stav", TINYINT, nullable=False, default=0),
    Column("TerminSplneni", DATETIME, nullable=True),
    Column("DatumDokonceni", DATETIME, nullable=True),
    *_audit(),
    implicit_returning=False,  # triggers, as on TabKontaktJednani
)


def create_schema(engine) -> None:
    """Create the shaped tables on a test or demo database (never on a real HELIOS)."""
    if engine.dialect.name == "mssql":
        raise RuntimeError("refusing to create HELIOS tables on SQL Server: they are HELIOS's own")
    metadata.create_all(engine)


def changed(table: Table):
    """When a row last changed: HELIOS leaves DatZmeny NULL until the first edit."""
    return func.coalesce(table.c.DatZmeny, table.c.DatPorizeni)


def changed_after(table: Table, since):
    """`changed(table) > since`, written so SQL Server can seek the DatZmeny and DatPorizeni indexes."""
    return or_(table.c.DatZmeny > since, and_(table.c.DatZmeny.is_(None), table.c.DatPorizeni > since))

