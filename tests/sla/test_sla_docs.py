"""docs/sla.md describes every RPC method of the SLA service."""
from pathlib import Path

from nameko.rpc import Rpc

from helpdesk.sla.service import SlaService

ROOT = Path(__file__).resolve().parents[2]


def test_every_sla_rpc_method_is_in_docs():
    doc = (ROOT / "docs" / "sla.md").read_text()
    methods = {name for name, member in vars(SlaService).items()
               if any(isinstance(e, Rpc) for e in getattr(member, "nameko_entrypoints", ()))}
    assert "get_clocks" in methods
    missing = sorted(m for m in methods if f"`{m}(" not in doc and f"`{m}`" not in doc)
    assert not missing, f"docs/sla.md does not describe: {', '.join(missing)}"
