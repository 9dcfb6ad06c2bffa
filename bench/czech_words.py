"""Czech word lists for generated tickets (bench/ticket_list.py): helpdesk vocabulary, so text search means something.

`VOCABULARY` is ordered from frequent to rare on purpose: the generator draws words with a
Zipf-like weight by position, so early words appear in many tickets, late ones in few.
"""

OBJECTS = [
    "tiskárna", "počítač", "notebook", "monitor", "klávesnice", "myš", "server", "síť", "wifi", "VPN",
    "e-mail", "Outlook", "Teams", "účet", "heslo", "faktura", "objednávka", "doklad", "sklad", "uzávěrka",
    "mzdy", "docházka", "licence", "certifikát", "databáze", "sestava", "modul", "číselník", "partner",
    "zákazník", "dodavatel", "telefon", "skener", "projektor", "dokovací stanice", "sdílený disk", "tiskový server",
    "HELIOS Orange", "účetnictví", "pokladna", "banka", "platební příkaz", "výdejka", "příjemka", "inventura",
    "ceník", "zakázka", "dodací list", "přihlášení", "aktualizace",
]

PROBLEMS = [
    "nefunguje", "nejde spustit", "hlásí chybu", "padá", "zamrzá", "je pomalý", "nelze otevřít", "nejde tisknout",
    "se nepřipojí", "chybí oprávnění", "neukládá změny", "ukazuje špatné údaje", "vyžaduje heslo",
    "nejde odeslat", "se neaktualizuje", "nereaguje", "má výpadek", "nenačte data",
]

# words of descriptions, frequent first
VOCABULARY = [
    "prosím", "dobrý", "den", "nefunguje", "chyba", "systém", "děkuji", "od", "rána", "nejde", "tiskárna",
    "uživatel", "počítač", "hlásí", "přihlášení", "heslo", "účet", "faktura", "zákazník", "sklad", "objednávka",
    "HELIOS", "Orange", "kolegové", "oddělení", "potřebujeme", "pomoc", "rychle", "urgentní", "zase", "včera",
    "dnes", "odpoledne", "restart", "pomohl", "nepomohl", "zkoušeli", "jsme", "znovu", "přihlásit", "notebook",
    "monitor", "síť", "připojení", "VPN", "e-mail", "Outlook", "Teams", "schůzka", "kalendář", "doklad",
    "uzávěrka", "měsíce", "účetní", "období", "mzdy", "docházka", "zaměstnanec", "nový", "nástup", "odchod",
    "oprávnění", "přístup", "modul", "logistika", "výroba", "nákup", "prodej", "ceník", "sleva", "zakázka",
    "dodací", "list", "příjemka", "výdejka", "inventura", "pokladna", "banka", "výpis", "platba", "příkaz",
    "import", "export", "soubor", "sestava", "report", "tisk", "PDF", "Excel", "šablona", "formulář",
    "pole", "hodnota", "číselník", "partner", "dodavatel", "adresa", "IČO", "DIČ", "DPH", "kontrolní",
    "hlášení", "finanční", "úřad", "datová", "schránka", "podpis", "certifikát", "platnost", "vypršela",
    "licence", "aktualizace", "verze", "instalace", "server", "databáze", "záloha", "obnova", "disk", "plný",
    "místo", "pomalý", "odezva", "zamrzá", "padá", "spadlo", "okno", "tlačítko", "menu", "nabídka", "filtr",
    "řazení", "hledání", "výsledek", "prázdný", "chybějící", "duplicitní", "záznam", "položka", "množství",
    "cena", "měna", "kurz", "euro", "koruna", "splatnost", "upomínka", "penále", "dobropis", "zálohová",
    "storno", "oprava", "změna", "požadavek", "termín", "pondělí", "úterý", "středa", "čtvrtek", "pátek",
    "skener", "čárový", "kód", "štítek", "tiskový", "fronta", "toner", "papír", "zaseknutý", "projektor",
    "zasedačka", "mikrofon", "kamera", "sluchátka", "telefon", "mobil", "aplikace", "synchronizace",
    "telefonní", "ústředna", "klapka", "wifi", "signál", "kabel", "zásuvka", "router", "switch", "firewall",
    "port", "blokováno", "antivir", "virus", "podezřelý", "phishing", "odkaz", "příloha", "karanténa",
    "spam", "blokace", "odesílatel", "doména", "DNS", "certifikátu", "prohlížeč", "Chrome", "Edge", "Firefox",
    "cache", "cookies", "stránka", "portál", "intranet", "SharePoint", "OneDrive", "sdílení", "složka",
    "práva", "čtení", "zápis", "skupina", "role", "administrátor", "správce", "vedoucí", "schválení",
    "workflow", "notifikace", "upozornění", "automaticky", "ručně", "dávka", "noční", "úloha", "plánovač",
    "log", "protokol", "výjimka", "neočekávaná", "timeout", "spojení", "přerušeno", "odmítnuto", "nedostupný",
    "výpadek", "elektřiny", "UPS", "baterie", "nabíječka", "dokovací", "stanice", "klávesnice", "myš",
    "reklamace", "záruka", "servis", "výměna", "objednat", "nákupu", "schválit", "rozpočet", "středisko",
    "projekt", "zakázky", "výkaz", "práce", "hodiny", "přesčas", "dovolená", "nemocenská", "mzdový",
    "lístek", "srážka", "exekuce", "pojištění", "sociální", "zdravotní", "přehled", "ČSSZ", "ELDP",
    "intrastat", "celní", "deklarace", "kurzový", "rozdíl", "zaokrouhlení", "haléřové", "vyrovnání",
    "konsolidace", "holding", "mezipodnikové", "saldo", "párování", "úhrada", "neuhrazená", "přeplatek",
    "majetek", "odpisy", "karta", "vyřazení", "leasing", "vozidlo", "kniha", "jízd", "cestovní", "náhrady",
    "stravenky", "benefit", "kafeterie", "certifikace", "audit", "ISO", "GDPR", "anonymizace", "výmaz",
]

CATEGORY_TREE = {
    "Hardware": {"Tiskárny": ["Laserové", "Multifunkční"], "Počítače": ["Notebooky", "Stolní PC"],
                 "Periferie": [], "Telefony": []},
    "Software": {"Kancelářské aplikace": ["Outlook", "Excel"], "Prohlížeče": [], "Antivir": []},
    "HELIOS Orange": {"Účetnictví": ["Uzávěrky", "DPH"], "Sklad": ["Inventura"], "Mzdy": [],
                      "Obchod": ["Faktury", "Objednávky"], "Výroba": []},
    "Síť a připojení": {"VPN": [], "Wi-Fi": [], "Internet": []},
    "Účty a přístupy": {"Hesla": [], "Oprávnění": [], "Nástup a odchod": []},
    "Ostatní": {},
}
