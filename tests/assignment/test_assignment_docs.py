"""docs/assignment.md describes every RPC method of the assignment service."""
from pathlib import Path

from nameko.rpc import Rpc

from helpdesk.assignment.service import AssignmentService

ROOT = Path(__file__).resolve().parents[2]


def test_every_assignment_rpc_method_is_in_the_docs():
    doc = (ROOT / "docs" / "assignment.md").read_text()
    methods = {name for name, member in vars(AssignmentService).items()
               if any(isinstance(e, Rpc) for e in getattr(member, "nameko_entrypoints", ()))}
    assert "claim" in methods
    missing = sorted(m for m in methods if f"`{m}`" not in doc)
    assert not missing, f"docs/assignment.md does not describe: {', '.join(missing)}"
