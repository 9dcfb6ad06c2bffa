"""The mail corpus: cases.toml read once, and each case's mail with the ticket it names filled in."""
from __future__ import annotations

import tomllib
from pathlib import Path

FOLDER = Path(__file__).parent
CASES: list[dict] = tomllib.loads((FOLDER / "cases.toml").read_text(encoding="utf-8"))["case"]


def case_id(case: dict) -> str:
    return case["file"].removesuffix(".eml")


def names_ticket(case: dict) -> bool:
    """Whether the mail stands for an answer to one of our tickets ({NUMBER} or {ID} in it)."""
    raw = (FOLDER / case["file"]).read_bytes()
    return b"{NUMBER}" in raw or b"{ID}" in raw


def mail(case: dict, number: str = "", ticket_id: int = 0) -> bytes:
    """The .eml as stored, with {NUMBER} and {ID} replaced by the ticket's number and id."""
    raw = (FOLDER / case["file"]).read_bytes()
    return raw.replace(b"{NUMBER}", number.encode("ascii")).replace(b"{ID}", str(ticket_id).encode("ascii"))


def expected(text: str, number: str) -> str:
    """A manifest text (e.g. a subject) with the ticket's number in it."""
    return text.replace("{NUMBER}", number)
