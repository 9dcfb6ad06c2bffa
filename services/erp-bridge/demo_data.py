"""A HELIOS-shaped demo database: Czech organisations (valid IČO), contact persons, employees, contracts.

For tests, the demo (`helpdesk erp demo-db URL`) and the benchmark. Deterministic for a
given seed. Rows are written in bulk (executemany), so a benchmark-sized database of
hundreds of thousands of rows fills in seconds.
"""
from __future__ import annotations

import datetime as dt
import random
import unicodedata

from sqlalchemy import insert

from helpdesk.erp_bridge import domain, helios as H

FIRST_M = ["Jan", "Petr", "Josef", "Pavel", "Martin", "Tomáš", "Jaroslav", "Miroslav", "Zdeněk", "Václav", "Karel",
           "Jiří", "Lukáš", "Ondřej", "Radek", "Milan", "Vojtěch", "David", "Michal", "František"]
FIRST_F = ["Jana", "Marie", "Eva", "Hana", "Anna", "Lenka", "Kateřina", "Lucie", "Věra", "Alena", "Petra",
           "Veronika", "Martina", "Jitka", "Tereza", "Zuzana", "Ivana", "Markéta", "Monika", "Barbora"]
LAST_M = ["Novák", "Svoboda", "Novotný", "Dvořák", "Černý", "Procházka", "Kučera", "Veselý", "Horák", "Němec",
          "Pokorný", "Marek", "Pospíšil", "Hájek", "Jelínek", "Král", "Růžička", "Beneš", "Fiala", "Sedláček"]
LAST_F = ["Nováková", "Svobodová", "Novotná", "Dvořáková", "Černá", "Procházková", "Kučerová", "Veselá",
          "Horáková", "Němcová", "Pokorná", "Marková", "Pospíšilová", "Hájková", "Jelínková", "Králová",
          "Růžičková", "Benešová", "Fialová", "Sedláčková"]
TRADES = ["Strojírny", "Pekárna", "Stavební firma", "Autodoprava", "Elektro", "Dřevovýroba", "Tiskárna", "Mlékárna",
          "Pivovar", "Sklárny", "Slévárna", "Zámečnictví", "Zahradnictví", "Lékárna", "Účetní kancelář"]
TOWNS = [("Praha", "110 00"), ("Brno", "602 00"), ("Ostrava", "702 00"), ("Plzeň", "301 00"), ("Liberec", "460 01"),
         ("Olomouc", "779 00"), ("České Budějovice", "370 01"), ("Hradec Králové", "500 02"), ("Pardubice", "530 02"),
         ("Zlín", "760 01"), ("Jihlava", "586 01"), ("Žďár nad Sázavou", "591 01"), ("Třebíč", "674 01")]
STREETS = ["Nádražní", "Husova", "Masarykova", "Palackého", "Komenského", "Školní", "Polní", "Lipová", "Zahradní",
           "Jiráskova", "Tyršova", "Smetanova", "Dlouhá", "Krátká", "Průmyslová"]
FORMS = ["s.r.o.", "a.s.", "spol. s r.o.", "v.o.s."]
JOBS = ["Servis HELIOS", "Podpora IT", "Implementace modulu", "Správa sítě", "Roční údržba", "Školení uživatelů"]


def ico(n: int) -> str:
    """The n-th valid IČO: seven digits and their check digit."""
    first7 = f"{(1_000_000 + n * 7919) % 10_000_000:07d}"
    return first7 + str(domain.ico_check_digit(first7))


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace(" ", "")


def _person(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        return rng.choice(FIRST_M), rng.choice(LAST_M)
    return rng.choice(FIRST_F), rng.choice(LAST_F)


def rows(organisations: int = 50, contacts_per_org: int = 3, employees: int = 10, contracts: int | None = None,
         seed: int = 2026, base: dt.datetime = dt.datetime(2026, 1, 5, 8, 0)) -> dict[str, list[dict]]:
    """Rows for every shaped table, keyed by table name (IDs given explicitly, counting from 1)."""
    rng = random.Random(seed)
    contracts = organisations // 2 if contracts is None else contracts
    out: dict[str, list[dict]] = {name: [] for name in ("TabCisOrg", "TabCisKOs", "TabVztahOrgKOs", "TabKontakty",
                                                        "TabCisZam", "TabZakazka")}
    kontakt_id = 0

    def kontakt(**values):
        nonlocal kontakt_id
        kontakt_id += 1
        out["TabKontakty"].append({"ID": kontakt_id, "IDOrg": None, "IDCisKOs": None, "IDCisZam": None,
                                   "IDVztahKOsOrg": None, "Autor": "demo", "DatPorizeni": base,
                                   "Prednastaveno": True, **values})

    for i in range(1, employees + 1):
        first, last = _person(rng)
        login = _ascii(f"{first[0]}{last}") + str(i)
        out["TabCisZam"].append({"ID": i, "Cislo": 100 + i, "Jmeno": first, "Prijmeni": last, "LoginId": login,
                                 "Alias": login[:30], "Stredisko": rng.choice(["100", "200", "300"]),
                                 "Autor": "demo", "DatPorizeni": base})
        kontakt(IDCisZam=i, Spojeni=f"{login}@firma.example.cz", Druh=H.EMAIL)
    person_id = link_id = 0
    for i in range(1, organisations + 1):
        town, psc = rng.choice(TOWNS)
        name = f"{rng.choice(TRADES)} {rng.choice(LAST_M)} {rng.choice(FORMS)}"
        ico_ = ico(i)
        out["TabCisOrg"].append({
            "ID": i, "CisloOrg": 1000 + i, "Nazev": name, "DruhyNazev": "", "Ulice": f"{rng.choice(STREETS)} {i % 200 + 1}",
            "Misto": town, "PSC": psc, "IdZeme": "CZ", "ICO": ico_, "DIC": f"CZ{ico_}", "Stav": 0,
            "NadrizenaOrg": None, "OdpOs": rng.randint(1, employees) if employees else None, "SystemRowVersion": i,
            "Autor": "demo", "DatPorizeni": base + dt.timedelta(seconds=i)})
        domain_ = _ascii(name.split()[0] + name.split()[1])[:20] + ".cz"
        for _ in range(contacts_per_org):
            person_id += 1
            link_id += 1
            first, last = _person(rng)
            out["TabCisKOs"].append({"ID": person_id, "Cislo": person_id, "Jmeno": first, "Prijmeni": last,
                                     "TitulPred": rng.choice(["", "", "Ing.", "Mgr."]), "TitulZa": "",
                                     "Autor": "demo", "DatPorizeni": base + dt.timedelta(seconds=i)})
            out["TabVztahOrgKOs"].append({"ID": link_id, "IDOrg": i, "IDCisKOs": person_id,
                                          "Funkce": rng.choice(["jednatel", "účetní", "správce IT", "nákupčí"]),
                                          "Oddeleni": "", "Prednastaveno": True, "Autor": "demo",
                                          "DatPorizeni": base + dt.timedelta(seconds=i)})
            kontakt(IDCisKOs=person_id, Spojeni=f"{_ascii(first)}.{_ascii(last)}{person_id}@{domain_}", Druh=H.EMAIL,
                    DatPorizeni=base + dt.timedelta(seconds=i))
            kontakt(IDCisKOs=person_id, Spojeni=f"+420 6{rng.randint(0, 99_999_999):08d}", Druh=H.MOBILE,
                    DatPorizeni=base + dt.timedelta(seconds=i))
    for i in range(1, contracts + 1):
        org = rng.randint(1, organisations) if organisations else None
        start = dt.datetime(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 200))
        out["TabZakazka"].append({
            "ID": i, "CisloZakazky": f"Z{2026}{i:06d}", "Nazev": f"{rng.choice(JOBS)} {i}", "Stav": "",
            "Ukonceno": False, "Prijemce": 1000 + org if org else None, "Zadavatel": None,
            "Zodpovida": 100 + rng.randint(1, employees) if employees else None, "JeServis": True,
            "DatumStartPlan": start, "DatumKonecPlan": start + dt.timedelta(days=365),
            "Autor": "demo", "DatPorizeni": base + dt.timedelta(seconds=i)})
    return out


def fill(conn, data: dict[str, list[dict]], chunk: int = 5000) -> dict[str, int]:
    counts = {}
    for name, table_rows in data.items():
        table = H.metadata.tables[name]
        for start in range(0, len(table_rows), chunk):
            conn.execute(insert(table), table_rows[start:start + chunk])
        counts[name] = len(table_rows)
        if conn.dialect.name == "postgresql" and table_rows:  # explicit IDs: move the identity past them
            conn.exec_driver_sql(f"""SELECT setval(pg_get_serial_sequence('"{name}"', 'ID'), """
                                 f"""(SELECT MAX("ID") FROM "{name}"))""")
    return counts


def create(url: str, **sizes) -> dict[str, int]:
    """Create the shaped tables at `url` and fill them (a database that already has organisations is left alone)."""
    from sqlalchemy import func, select

    from helpdesk.common import db

    engine = db.get_engine(url)
    H.create_schema(engine)
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(H.TabCisOrg)).scalar():
            return {}
        return fill(conn, rows(**sizes))
