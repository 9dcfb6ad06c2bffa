"""The adapter's statements compiled for SQL Server (the mssql dialect of pymssql): T-SQL HELIOS would accept."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import insert, update
from sqlalchemy.dialects import mssql
import sqlalchemy.dialects.mssql.pymssql  # noqa: F401

from helpdesk.erp_bridge import domain, helios as H, reader, writer

DIALECT = mssql.pymssql.dialect()
# what connecting to SQL Server 2019 would set (HELIOS Orange needs 2016 or newer)
DIALECT.server_version_info = (15, 0, 2000)
DIALECT._supports_offset_fetch = True
SINCE = dt.datetime(2026, 3, 1, 10, 0)


def tsql(stmt, literal: bool = False) -> str:
    return str(stmt.compile(dialect=DIALECT, compile_kwargs={"literal_binds": literal}))


@pytest.mark.parametrize("entity", [domain.ORGANISATION, domain.CONTACT, domain.EMPLOYEE, domain.CONTRACT])
def test_change_pages_use_top_with_order_by_and_bracketed_names(entity):
    sql = tsql(reader.changes_statement(entity, SINCE, (SINCE, 10), 500))
    assert re.search(r"SELECT TOP __\[POSTCOMPILE_param_\d+\]|SELECT TOP \d+", sql), sql
    assert "ORDER BY" in sql and "LIMIT" not in sql
    assert f"[{reader.ENTITY_TABLES[entity].name}]" in sql
    assert "[DatZmeny]" in sql and "[DatPorizeni]" in sql
    literal = tsql(reader.changes_statement(entity, SINCE, (SINCE, 10), 500), literal=True)
    assert "SELECT TOP 500 " in literal
    assert "'2026-03-01 10:00:00'" in literal


def test_children_lift_their_parent_through_a_union():
    sql = tsql(reader.changes_statement(domain.CONTACT, SINCE, None, 100))
    assert sql.count("UNION ALL") == 3
    assert "[TabKontakty]" in sql and "[TabVztahOrgKOs]" in sql
    assert "GROUP BY" in sql and "max(" in sql.lower()


def test_change_filter_can_seek_the_indexes_instead_of_coalesce():
    where = tsql(reader.changes_statement(domain.EMPLOYEE, SINCE, None, 10)).split("WHERE", 1)[1]
    assert "[DatZmeny] >" in where and "[DatZmeny] IS NULL AND" in where


def test_offset_fetch_paging_compiles_for_sql_server_2012_and_later():
    sql = tsql(reader.ids_statement(domain.CONTRACT, 0, 100).offset(200), literal=True)
    assert "OFFSET 200 ROWS" in sql and "FETCH FIRST 100 ROWS ONLY" in sql


def test_unicode_literals_are_n_quoted():
    sql = tsql(reader.literal_probe(), literal=True)
    assert "N'Pekárna Žďár'" in sql


def test_ext_columns_are_bracketed():
    stmt = reader._ext_or_core(H.TabZakazka, "TabZakazka_EXT", "_EXT._Garant")
    from sqlalchemy import select

    sql = tsql(select(stmt[1]).select_from(H.TabZakazka.outerjoin(stmt[0], stmt[0].c.ID == H.TabZakazka.c.ID)))
    assert "[TabZakazka_EXT].[_Garant]" in sql


def test_number_allocation_locks_the_category_range():
    sql = tsql(writer.next_number_statement("HD"))
    assert "[TabKontaktJednani] WITH (UPDLOCK, HOLDLOCK)" in sql
    assert "max([TabKontaktJednani].[PoradoveCislo])" in sql


def test_activity_is_read_for_update_with_updlock():
    sql = tsql(writer.locked_activity_statement(5))
    assert "WITH (UPDLOCK, ROWLOCK)" in sql


def test_finding_an_activity_by_ticket_number_uses_top_1_and_like():
    sql = tsql(writer.find_statement("HD", "HD-2026-000001"), literal=True)
    assert "SELECT TOP 1 " in sql and "LIKE N'HD-2026-000001 %'" in sql


def test_insert_into_tables_with_triggers_uses_no_output_clause_and_update_sets_audit_columns():
    ins = tsql(insert(H.TabKontaktJednani).values(Kategorie="HD", PoradoveCislo=1, Predmet="x"))
    assert "OUTPUT" not in ins  # SQL Server refuses OUTPUT without INTO on a table with triggers
    assert H.TabKontaktJednani.implicit_returning is False  # so the new ID comes from SCOPE_IDENTITY()
    upd = tsql(update(H.TabKontaktJednani).where(H.TabKontaktJednani.c.ID == 1)
               .values(Stav="V", DatZmeny=SINCE, Zmenil="helpdesk"))
    assert "[DatZmeny]=" in upd.replace(" ", "") or "[DatZmeny] =" in upd


def test_rowversion_is_compared_as_eight_bytes():
    stmt = reader.row_version_statement(258, SINCE, 50)
    compiled = stmt.compile(dialect=DIALECT)
    assert "[SystemRowVersion] >" in str(compiled)
    value = next(v for k, v in compiled.params.items() if "SystemRowVersion" in k)
    processor = H.TabCisOrg.c.SystemRowVersion.type.bind_processor(DIALECT)
    processed = processor(value) if processor else H.RowVersion().process_bind_param(value, DIALECT)
    assert processed == (258).to_bytes(8, "big")
    assert H.RowVersion().process_result_value(b"\x00" * 6 + b"\x01\x02", DIALECT) == 258


def test_the_shaped_tables_compile_to_helios_types():
    from sqlalchemy.schema import CreateTable

    ddl = str(CreateTable(H.TabKontaktJednani).compile(dialect=DIALECT))
    assert "[Popis] NTEXT" in ddl and "[Predmet] NVARCHAR(255) NOT NULL" in ddl and "[DatZmeny] DATETIME" in ddl
    org = str(CreateTable(H.TabCisOrg).compile(dialect=DIALECT))
    assert "[SystemRowVersion] ROWVERSION" in org and "[Stav] TINYINT" in org
    task = str(CreateTable(H.TabUkoly).compile(dialect=DIALECT))
    for column in ("[IDKontaktJed] INTEGER", "[Resitel] INTEGER", "[Zadavatel] INTEGER", "[CisloOrg] INTEGER",
                   "[Stav] TINYINT NOT NULL", "[TerminSplneni] DATETIME", "[DatumDokonceni] DATETIME",
                   "[Predmet] NVARCHAR(255) NOT NULL", "[Popis] NTEXT", "[Autor] NVARCHAR(128) NOT NULL",
                   "[DatPorizeni] DATETIME NOT NULL", "[DatZmeny] DATETIME NULL"):
        assert column in task, column


def test_a_task_goes_into_the_columns_the_site_named_without_an_output_clause():
    notes = domain.parse_notes("task:subject=Nazev,text=Poznamka")
    tasks = writer.task_table(notes)
    sql = tsql(insert(tasks).values(IDKontaktJed=1, Stav=2, Nazev="[#c1] HD-1 odpověď", Poznamka="text"))
    assert "INSERT INTO [TabUkoly]" in sql and "[Nazev]" in sql and "[Poznamka]" in sql
    assert "[Predmet]" not in sql and "[Popis]" not in sql
    assert "OUTPUT" not in sql and tasks.implicit_returning is False and H.TabUkoly.implicit_returning is False
    find = tsql(writer.tasks_of_activity_statement(tasks, notes.marker_column, 5))
    assert "[TabUkoly].[Nazev]" in find and "[TabUkoly].[IDKontaktJed] =" in find


def test_the_shaped_schema_is_never_created_on_sql_server():
    from sqlalchemy import create_engine

    engine = create_engine("mssql+pymssql://u:p@127.0.0.1:1/x")
    with pytest.raises(RuntimeError):
        H.create_schema(engine)
