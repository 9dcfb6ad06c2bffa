"""Docs that must say what the code does: every RPC method is documented, every setting is in the README."""
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
