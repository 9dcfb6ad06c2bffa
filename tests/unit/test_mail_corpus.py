"""The mail corpus (tests/portal/mail_corpus/) parsed alone, no servers: every client's mail decodes to the
sender, subject, text and attachments its manifest names, and names its ticket the way the intake finds it."""
from __future__ import annotations

import email
from email import policy

import pytest

from helpdesk.portal.mail_intake import parsing
from portal.mail_corpus import CASES, case_id, expected, mail

NUMBER, TICKET_ID = "HD-2026-000042", 42
WRITTEN = [c for c in CASES if c["outcome"] in ("ticket", "comment")]


def _text(case: dict, text: str) -> str:
    """What the ticket shows of a mail's text: all of it for a new ticket, the new part for a comment."""
    return text if case["outcome"] == "ticket" else parsing.strip_reply(text)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_corpus_mail_parses_to_its_manifest(case):
    raw = mail(case, NUMBER, TICKET_ID)
    if not case["sender"]:  # quarantined unread, yet with what its headers say, for the staff who look at it
        with pytest.raises(parsing.Malformed, match=case["reason"]) as malformed:
            parsing.parse(raw)
        assert malformed.value.headers.subject == expected(case["subject"], NUMBER)
        return

    parsed = parsing.parse(raw)

    assert (parsed.sender, parsed.subject) == (case["sender"], expected(case["subject"], NUMBER))
    assert parsed.loop_reason == (case["reason"] if case["outcome"] == "ignored" else None)
    if case["outcome"] in ("ticket", "comment"):
        text = parsed.text if case["outcome"] == "ticket" else parsed.reply_text
        for snippet in case.get("contains", []):
            assert snippet in text
        for snippet in case.get("absent", []):
            assert snippet not in text
        carried = [a for a in case["attachments"] if a != "original.eml"] + case.get("refused", [])
        assert sorted(a.filename for a in parsed.attachments) == sorted(carried)


@pytest.mark.parametrize("case", [c for c in CASES if c["outcome"] == "comment"], ids=case_id)
def test_corpus_reply_names_its_ticket_by_number_else_by_our_message_ids(case):
    parsed = parsing.parse(mail(case, NUMBER, TICKET_ID))
    if "{NUMBER}" in case["subject"]:
        assert parsing.ticket_number_in(parsed.subject, "HD") == NUMBER
    else:
        assert parsing.ticket_number_in(parsed.subject, "HD") is None
        assert parsing.ticket_id_in_references(parsed.references, "example.cz") == TICKET_ID


def _html_alternative(case: dict):
    msg = email.message_from_bytes(mail(case, NUMBER, TICKET_ID), policy=policy.default)
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    return html if plain is not None and html is not None else None


@pytest.mark.parametrize("case", [c for c in WRITTEN if _html_alternative(c) is not None], ids=case_id)
def test_html_alternative_of_corpus_mail_reads_like_its_plain_text(case):
    """The HTML a client sends beside the plain text gives the same message: the first `contains` (what the
    mail is about) is there, no `absent` text is (markup, quoted history, signature)."""
    text = _text(case, parsing.html_to_text(_html_alternative(case).get_content()))
    assert case["contains"][0] in text
    for snippet in case.get("absent", []):
        assert snippet not in text
