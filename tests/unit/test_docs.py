"""Docs that must say what the code does: every RPC method is documented, every setting and its default is in the README."""
from pathlib import Path

from nameko.rpc import Rpc

from helpdesk.common.config import SETTINGS
from helpdesk.tickets.service import TicketsService

ROOT = Path(__file__).resolve().parents[2]


def _rpc_methods(cls) -> set[str]:
    return {name for name, member in vars(cls).items()
            if any(isinstance(e, Rpc) for e in getattr(member, "nameko_entrypoints", ()))}


def test_every_tickets_rpc_method_is_in_the_api_reference():
    doc = (ROOT / "docs" / "tickets-rpc.md").read_text()
    methods = _rpc_methods(TicketsService)
    assert "create_ticket" in methods
    missing = sorted(m for m in methods if f"`{m}`" not in doc)
    assert not missing, f"docs/tickets-rpc.md does not describe: {', '.join(missing)}"


def test_every_setting_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    assert not missing, f"README.md's configuration table lacks: {', '.join(missing)}"


# settings whose README default is described in words, not given as the value: the first word of that description
_DESCRIBED = {"HELPDESK_ATTACHMENT_TYPES": "PDF"}


def _readme_defaults(readme: str) -> dict:
    """Setting -> default as README's configuration table gives it: a row may name several settings, their
    defaults then separated by ", " or " / "; `empty` (and what follows it) is the empty string; N MiB is bytes."""
    import re

    found = {}
    for line in readme.splitlines():
        if not line.startswith("| `HELPDESK_"):
            continue
        names_cell, default_cell = (c.strip() for c in line.strip("|").split(" | ")[:2])
        names = re.findall(r"`(HELPDESK_[A-Z0-9_<>]+)`", names_cell)
        defaults = [default_cell] if len(names) == 1 else re.split(r", | / ", default_cell)
        for name, default in zip(names, defaults):
            default = default.strip().strip("`")
            mib = re.fullmatch(r"(\d+) MiB( .*)?", default)
            if default.startswith("empty"):
                default = ""
            elif mib:
                default = str(int(mib.group(1)) * 1024 * 1024)
            found[name] = default
    return found


def test_every_settings_default_in_the_readme_is_the_codes():
    documented = _readme_defaults((ROOT / "README.md").read_text())
    wrong = [(s.name, documented.get(s.name), s.default) for s in SETTINGS
             if documented.get(s.name) != _DESCRIBED.get(s.name, s.default)]
    assert not wrong, f"README.md's defaults differ from the code's (setting, README, code): {wrong}"
