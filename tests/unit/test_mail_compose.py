"""MailSender.compose: a reader gets what the EmailMessage build it replaced gave them.

The reference here is that old build (`EmailMessage` under policy.default, `mail.rich_message`), kept as
the yardstick (bench/mail_compose.py times both): every case is parsed the way a mail
client does, with policy.default, and must read the same.
"""
from __future__ import annotations

import email
import io
from email import policy
from email.generator import BytesGenerator

import pytest

from helpdesk.common import config as config_module
from helpdesk.common import mail
from helpdesk.common.mail import MailSender

CZECH_SUBJECT = "Přiřazen požadavek HD-2026-000123 – Tiskárna netiskne"
CZECH_TEXT = ("Dobrý den,\n\nbyl vám přiřazen požadavek HD-2026-000123 „Tiskárna netiskne“.\n"
              "From the portal: http://portal.test/tickets/123\n\nS pozdravem\nHelpdesk\n")
ASCII_TEXT = "Hello,\n\nticket HD-2026-000123 was assigned to you.\nhttp://portal.test/tickets/123\n"
LONG_SUBJECT = ("Přiřazen požadavek HD-2026-000123, tiskárna ve 3. patře netiskne; "
                "ověřte toner, ovladač a frontu tisku – uživatelka Jana Nováková čeká ") * 2
LONG_ASCII_SUBJECT = ("Ticket HD-2026-000123 assigned: printer on the third floor does not print, "
                      "check toner, driver and print queue; user is waiting ") * 2
LONG_LINES = ("Žluťoučký kůň úpěl ďábelské ódy. " * 12 + "\n") * 5 + "konec\n"
LONG_ASCII_LINES = ("The quick brown fox jumps over the lazy dog. " * 10 + "\n") * 4 + "end\n"
MANY = ["jana.novakova@firma.cz", "Petr Dvořák <petr.dvorak@firma.cz>", '"Svoboda, Karel" <karel@firma.cz>']
THREAD = {"Message-ID": "<ticket-123.3f2a9c1e-0d4b-4a8e-9a51-7c3d2e1f0a9b@firma.cz>",
          "References": "<ticket-123@firma.cz> <ticket-123.1b2c3d4e-5f60-4a8e-9a51-7c3d2e1f0a9b@firma.cz>",
          "In-Reply-To": "<ticket-123@firma.cz>", "Reply-To": "Podpora Firmy <podpora@firma.cz>"}

CASES = {
    "ascii": ("jana@firma.cz", "Ticket HD-2026-000123 assigned", ASCII_TEXT, None, None),
    "czech": ("jana@firma.cz", CZECH_SUBJECT, CZECH_TEXT, None, None),
    "ascii with html": ("jana@firma.cz", "Password reset", ASCII_TEXT, "<p>Hello, <b>reset</b></p>", None),
    "czech with html": ("jana@firma.cz", CZECH_SUBJECT, CZECH_TEXT, "<p>Dobrý den, <b>přiřazen</b></p>", None),
    "thread headers": ("jana@firma.cz", "Re: " + CZECH_SUBJECT, CZECH_TEXT, None, THREAD),
    "non-ascii headers": ("jana@firma.cz", CZECH_SUBJECT, CZECH_TEXT, None,
                          {"Reply-To": "Podpora Žluťoučká <podpora@firma.cz>", "X-Helpdesk-Queue": "Účetnictví",
                           "Auto-Submitted": "auto-replied", "Precedence": "auto_reply"}),
    "several recipients": (["jana@firma.cz", "petr@firma.cz", "karel@firma.cz"], CZECH_SUBJECT, CZECH_TEXT, None,
                           None),
    "display names": (MANY, CZECH_SUBJECT, CZECH_TEXT, "<p>ahoj</p>", None),
    "long czech lines": ("jana@firma.cz", CZECH_SUBJECT, LONG_LINES * 6, None, None),
    "long ascii lines": ("jana@firma.cz", "Long", LONG_ASCII_LINES * 5, "<p>" + "x" * 2000 + "</p>", None),
    "long czech subject": ("jana@firma.cz", LONG_SUBJECT[:200], CZECH_TEXT, None, None),
    "long ascii subject": ("jana@firma.cz", LONG_ASCII_SUBJECT[:200], ASCII_TEXT, None, None),
    "empty and odd body": ("jana@firma.cz", " \tDvě  mezery\t ", "From me\r\nradek\rdalsi\n\n\n", None, None),
}
SENDERS = ["helpdesk@firma.cz", "Helpdesk Firmy Žďár <helpdesk@firma.cz>"]


compose_the_old_way = mail.rich_message  # the reference: MailSender.compose as it was, and its fallback


def sender(mail_from: str = SENDERS[0]) -> MailSender:
    return MailSender(config_module.load({"HELPDESK_MAIL_FROM": mail_from}))


def composed_both_ways(mail_from: str, to, subject: str, text: str, html=None, headers=None):
    """(new, old) messages for the same input; the old one gets the new one's Date and Message-ID."""
    new = sender(mail_from).compose(to, subject, text, html, headers)
    old = compose_the_old_way(mail_from, to, subject, text, html, headers,
                              date=new["Date"], message_id=new["Message-ID"])
    return new, old


def as_read(raw: bytes, extra: tuple = ()) -> dict:
    """What a mail client shows of a message: headers, both bodies, and how each part is encoded."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    seen = {}
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", *extra):
        values = msg.get_all(name, [])
        seen[name] = [str(v) for v in values]
        seen[name + " addresses"] = [getattr(v, "addresses", None) for v in values]
        seen[name + " defects"] = [list(map(repr, v.defects)) for v in values]
    parts = {}
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            parts[part.get_content_type()] = (part.get_content(), part.get_content_charset(),
                                              part["Content-Transfer-Encoding"])
    seen["parts"] = parts
    seen["multipart"] = msg.get_content_type()
    seen["plain body"] = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",))
    seen["html body"] = html.get_content() if html is not None else None
    return seen


@pytest.mark.parametrize("mail_from", SENDERS)
@pytest.mark.parametrize("case", CASES)
def test_reader_sees_what_the_emailmessage_build_gave(case, mail_from):
    to, subject, text, html, headers = CASES[case]
    new, old = composed_both_ways(mail_from, to, subject, text, html, headers)
    extra = tuple(headers or ())
    seen = as_read(bytes(new), extra)
    assert seen == as_read(bytes(old), extra)
    # and not only alike, but right: the reference could have lost something too
    assert seen["Subject"] == [subject.lstrip(" \t")]  # readers drop leading blanks
    assert seen["plain body"] == "\n".join(text.splitlines()) + "\n"
    assert seen["html body"] == (html + "\n" if html else None)


@pytest.mark.parametrize("case", CASES)
def test_lines_are_folded_to_78_characters(case):
    to, subject, text, html, headers = CASES[case]
    raw = bytes(sender().compose(to, subject, text, html, headers))
    assert max(len(line) for line in raw.split(b"\n")) <= 78


@pytest.mark.parametrize("case", ["czech", "ascii", "czech with html", "long czech lines", "long ascii lines"])
def test_body_keeps_the_transfer_encoding_emailmessage_picked(case):
    """7bit or 8bit while lines are short (readable in the .eml file), as set_content chose."""
    new, old = composed_both_ways(SENDERS[0], *CASES[case])
    encodings = [p["Content-Transfer-Encoding"] for p in new.walk() if not p.is_multipart()]
    assert encodings == [p["Content-Transfer-Encoding"] for p in old.walk() if not p.is_multipart()]


def test_czech_text_is_readable_in_the_raw_file():
    raw = bytes(sender().compose("jana@firma.cz", CZECH_SUBJECT, CZECH_TEXT, html="<p>Dobrý den</p>"))
    text = raw.decode("utf-8")
    assert CZECH_TEXT in text and "<p>Dobrý den</p>" in text
    assert "\nFrom the portal" in text  # not mangled to ">From"


def written_for_smtp(msg) -> bytes:
    """The bytes smtplib's send_message sends: its own BytesGenerator (which mangles "From " lines), CRLF."""
    out = io.BytesIO()
    BytesGenerator(out).flatten(msg, linesep="\r\n")
    return out.getvalue()


@pytest.mark.parametrize("case", ["czech with html", "display names", "non-ascii headers"])
def test_message_sent_over_smtp_reads_the_same(case):
    to, subject, text, html, headers = CASES[case]
    new, old = composed_both_ways(SENDERS[1], to, subject, text, html, headers)
    extra = tuple(headers or ())
    assert as_read(written_for_smtp(new), extra) == as_read(written_for_smtp(old), extra)


def test_a_header_passed_in_replaces_ours():
    msg = sender().compose("jana@firma.cz", "Předmět", "text", headers=THREAD)
    assert msg.get_all("Message-ID") == [THREAD["Message-ID"]]


@pytest.mark.parametrize("headers", [{}, {"X-Note": "ok\r\nBcc: someone@example.com"}])
def test_line_breaks_in_headers_are_refused_as_before(headers):
    subject = "Předmět\nBcc: someone@example.com" if not headers else "Předmět"
    with pytest.raises(ValueError):
        compose_the_old_way(SENDERS[0], "jana@firma.cz", subject, "text", headers=headers, date="", message_id="")
    with pytest.raises(ValueError):
        sender().compose("jana@firma.cz", subject, "text", headers=headers)


def test_the_comparison_notices_a_lost_diacritic():
    new, _ = composed_both_ways(SENDERS[0], "jana@firma.cz", CZECH_SUBJECT, CZECH_TEXT)
    stripped = compose_the_old_way(SENDERS[0], "jana@firma.cz", "Prirazen pozadavek HD-2026-000123 – Tiskarna netiskne",
                                   CZECH_TEXT, date=new["Date"], message_id=new["Message-ID"])
    assert as_read(bytes(new)) != as_read(bytes(stripped))


def test_an_address_with_non_ascii_characters_takes_the_old_build():
    msg = sender().compose(["jiří@firma.cz", "Jana Nováková <jana@firma.cz>"], "Přiřazen požadavek", "Dobrý den")
    read = email.message_from_bytes(bytes(msg), policy=policy.default)
    assert [a.addr_spec for a in read["To"].addresses] == ["jiří@firma.cz", "jana@firma.cz"]
    assert read["To"].addresses[1].display_name == "Jana Nováková"
    assert (read["Subject"], read.get_content().strip()) == ("Přiřazen požadavek", "Dobrý den")


def test_the_portals_thread_ids_take_the_domain_of_the_sender_address():
    from types import SimpleNamespace

    from helpdesk.portal.notifier import thread_headers

    cfg = SimpleNamespace(mail_from="Helpdesk Firma <helpdesk@firma.cz>", mail_reply_to=None)
    headers = thread_headers(cfg, SimpleNamespace(payload={"ticket": {"id": 7}}, event_id="e-1"))
    assert headers["Message-ID"].endswith("@firma.cz>") and headers["References"].endswith("@firma.cz>")
    assert sender("Helpdesk Firma <helpdesk@firma.cz>").compose("jana@firma.cz", "S", "T")["Message-ID"] \
        .endswith("@firma.cz>")


def test_the_policy_writes_every_header_as_compat32_does_or_as_a_reader_reads_it():
    """`mail.POLICY` skips compat32's `Header` round trip: a short ASCII value must come out as compat32 writes
    it, whatever it holds (spaces and tabs, encoded-word look-alikes, values at and past the line's length),
    and any other text must read the same in a mail client, on lines of at most 78 characters."""
    import random
    import string

    from email.policy import compat32

    reference = compat32.clone(mangle_from_=False)
    rnd = random.Random(7)
    alphabet = string.ascii_letters + string.digits + " \t=?<>@.,;:\"'()[]-_/+*&^%$#!~`|\\{}"
    czech = "žáčřěšůúňťďíéý–„“€😀"
    values = ["", " ", "  lead", "trail  ", "=?utf-8?b?xx?=", CZECH_SUBJECT, LONG_SUBJECT, LONG_ASCII_SUBJECT, MANY[2]]
    values += ["".join(rnd.choice(alphabet + czech * (i % 2)) for _ in range(rnd.randint(0, 200))) for i in range(3000)]
    for name in ("Subject", "To", "Message-ID", "X-Helpdesk-Ticket-Number-And-A-Header-Name-Longer-Than-Most"):
        for value in values:
            folded = mail.POLICY._fold(name, value, True)
            if value.isascii() or name.lower() in mail.ADDRESS_HEADERS:
                assert folded == reference._fold(name, value, True), (name, value)
            else:
                assert max(map(len, folded.splitlines())) <= 78, folded
                read = email.message_from_string(folded + "\n", policy=policy.default)[name]
                assert read.strip() == value.strip(), (name, value, folded)
