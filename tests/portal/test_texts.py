"""Every text the portal shows has its Czech translation (no I/O)."""
from __future__ import annotations

import re
from pathlib import Path

PORTAL = Path(__file__).resolve().parents[2] / "services" / "portal"
_CALL = re.compile(r'''(?<![\w.])_\(\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')''')
_TRANSLATE = re.compile(r'''translate\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)''')


def _texts() -> set[str]:
    found = set()
    for path in [*PORTAL.glob("templates/*.html"), *PORTAL.glob("*.py")]:
        source = path.read_text(encoding="utf-8")
        found.update(eval(m.group(1)) for m in _CALL.finditer(source))  # noqa: S307 - literals we wrote
        found.update(eval("(" + m.group(1) + ")") for m in _TRANSLATE.finditer(source))  # noqa: S307
    return found


def test_every_text_has_a_czech_translation():
    from helpdesk.portal.catalogue import CS

    texts = _texts()
    assert len(texts) > 100
    missing = sorted(t for t in texts if t not in CS)
    assert not missing, missing


def test_translation_fills_values_in_either_language():
    from helpdesk.portal.i18n import translate

    assert translate("Request {number} was created.", "cs", number="HD-1") == "Požadavek HD-1 byl založen."
    assert translate("Request {number} was created.", "en", number="HD-1") == "Request HD-1 was created."
