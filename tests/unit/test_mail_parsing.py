"""The e-mail intake's parsing, on messages shaped as real clients write them; no I/O."""
from __future__ import annotations

import base64

import pytest

from helpdesk.portal.mail_intake import parsing
from helpdesk.portal.mail_intake.mailboxes import parse_mailboxes


def test_windows_1250_quoted_printable_body_and_encoded_subject_decode():
    raw = ("From: =?windows-1250?Q?Karel_Dvo=F8=E1k?= <Karel.Dvorak@Strojirny.cz>\r\n"
           "To: podpora@example.cz\r\nSubject: =?windows-1250?Q?Nejde_tisk_=9Aablon?=\r\n"
           "Message-ID: <a1@strojirny.cz>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=windows-1250\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           "P=F8i tisku faktury se zobraz=ED chyba =9Aablony.\r\n").encode("ascii")
    mail = parsing.parse(raw)
    assert mail.sender == "karel.dvorak@strojirny.cz" and mail.sender_name == "Karel Dvořák"
    assert mail.subject == "Nejde tisk šablon"
    assert mail.text == "Při tisku faktury se zobrazí chyba šablony."
    assert mail.message_id == "<a1@strojirny.cz>" and mail.loop_reason is None


def test_iso_8859_2_base64_body_and_rfc2231_attachment_name_decode():
    body = base64.b64encode("Účetní závěrka – přikládám výpis.".replace("–", "-").encode("iso-8859-2")).decode()
    subject = base64.b64encode("Žádanka".encode("iso-8859-2")).decode()
    raw = (f"From: jana@firma.cz\r\nSubject: =?iso-8859-2?B?{subject}?=\r\nMessage-ID: <b2@firma.cz>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
           "--XX\r\nContent-Type: text/plain; charset=iso-8859-2\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           f"{body}\r\n--XX\r\nContent-Type: application/pdf\r\n"
           "Content-Disposition: attachment; filename*=utf-8''v%C3%BDpis%20%C3%BA%C4%8Dtu.pdf\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n").encode("ascii")
    mail = parsing.parse(raw)
    assert mail.subject == "Žádanka"
    assert mail.text == "Účetní závěrka - přikládám výpis."
    assert [(a.filename, a.content_type, a.content) for a in mail.attachments] == [
        ("výpis účtu.pdf", "application/pdf", b"%PDF-1.4\n")]


def test_outlook_html_reply_becomes_text_without_scripts_and_quoted_history_is_stripped():
    html = ("<html><head><style>p{color:red}</style><script>alert(1)</script></head><body>"
            "<p>Děkuji, už to <b>funguje</b>.</p><p>S pozdravem,<br>Karel</p>"
            "<div><hr><p><b>From:</b> Helpdesk &lt;helpdesk@example.cz&gt;<br>"
            "<b>Sent:</b> Monday<br>Vyzkoušejte restart.</p></div></body></html>")
    raw = ("From: karel@strojirny.cz\r\nSubject: RE: Nová odpověď k vašemu požadavku HD-2026-000123\r\n"
           "Message-ID: <c3@strojirny.cz>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n" + html).encode("utf-8")
    mail = parsing.parse(raw)
    assert "alert" not in mail.text and "color" not in mail.text and "<b>" not in mail.text
    assert "From: Helpdesk <helpdesk@example.cz>" in mail.text  # entities become characters: it is text now
    assert mail.reply_text == "Děkuji, už to funguje."
    assert "Vyzkoušejte restart." in mail.text


@pytest.mark.parametrize("quoted", [
    "On Mon, 23 Nov 2026 at 10:02, Helpdesk <helpdesk@example.cz> wrote:\n> Zkuste restart.",     # Gmail
    "Dne 23.11.2026 v 10:02 Helpdesk napsal(a):\n> Zkuste restart.",                            # Thunderbird cs
    "po 23. 11. 2026 v 10:02 odesílatel Helpdesk <helpdesk@example.cz> napsal:\n\n> Zkuste restart.",  # Gmail cs
    "po 23. 11. 2026 v 10:02 odesílatel Helpdesk <\nhelpdesk@example.cz> napsal:\n> Zkuste restart.",  # wrapped
    "-----Original Message-----\nFrom: Helpdesk\nZkuste restart.",                              # Outlook
    "> Zkuste restart.\n> Helpdesk",                                                             # bare quoting
])
def test_quoted_history_of_common_clients_is_cut_from_a_reply(quoted):
    assert parsing.strip_reply(f"Pořád to nejde.\nTisknu z HELIOSu.\n\n{quoted}") == "Pořád to nejde.\nTisknu z HELIOSu."


def test_reply_written_below_the_quote_is_what_follows_the_quoted_lines():
    text = ("Dne 14.01.2026 v 16:05 Helpdesk\nnapsal(a):\n> Jaké jméno?\n>\n> Helpdesk\n\nBude lucie.nova.\n\n"
            "Jana\n-- \nJana Vzorová")
    assert parsing.strip_reply(text) == "Bude lucie.nova.\n\nJana"
    assert parsing.strip_reply("> Jen citace\n> bez odpovědi") == "> Jen citace\n> bez odpovědi"


def test_signature_is_cut_but_a_mail_that_is_only_a_signature_keeps_its_text():
    assert parsing.strip_reply("Funguje.\n-- \nKarel Dvořák\nStrojírny") == "Funguje."
    assert parsing.strip_reply("Sent from my iPhone") == "Sent from my iPhone"


@pytest.mark.parametrize("header, reason", [
    ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
    ("Precedence: bulk", "Precedence: bulk"),
    ("Precedence: junk", "Precedence: junk"),
    ("Precedence: list", "Precedence: list"),
    ("X-Autoreply: yes", "X-Autoreply: yes"),
    ("List-Id: <news.example.cz>", "mailing list"),
])
def test_automatic_mail_is_recognised_as_a_loop(header, reason):
    raw = f"From: karel@strojirny.cz\r\n{header}\r\nSubject: Mimo kancelář\r\n\r\nJsem na dovolené.\r\n".encode()
    assert parsing.parse(raw).loop_reason == reason


def test_auto_submitted_no_and_a_person_are_not_loops():
    raw = b"From: karel@strojirny.cz\r\nAuto-Submitted: no\r\nSubject: x\r\n\r\nahoj\r\n"
    assert parsing.parse(raw).loop_reason is None


def test_bounce_from_mailer_daemon_is_a_loop():
    raw = (b"From: Mail Delivery System <MAILER-DAEMON@mx.example.cz>\r\nSubject: Undelivered Mail\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--B--\r\n")
    assert parsing.parse(raw).loop_reason == "automatic sender mailer-daemon@mx.example.cz"
    raw = b"From: postmaster@example.cz\r\nSubject: x\r\n\r\nfailed\r\n"
    assert parsing.parse(raw).loop_reason.startswith("automatic sender")


def test_mail_without_a_sender_is_malformed():
    with pytest.raises(parsing.Malformed, match="no sender"):
        parsing.parse(b"Subject: x\r\n\r\nbody\r\n")
    with pytest.raises(parsing.Malformed):
        parsing.parse(b"\x00\x01garbage without headers")


def test_broken_mime_still_yields_what_can_be_read():
    raw = (b"From: karel@strojirny.cz\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=NEVER\r\n\r\njust text, no parts\r\n")
    mail = parsing.parse(raw)
    assert mail.sender == "karel@strojirny.cz"


@pytest.mark.parametrize("content_type", [
    "text/plain; charset=x-unknown",    # a charset nobody knows
    "text/plain; charset=utf-8",        # a label the bytes do not decode under
    "text/plain",                       # none: us-ascii, yet 8-bit bytes
    "text/plain; charset=iso-8859-2",   # decodes, but š ť ž Š Ť Ž of windows-1250 land on C1 controls
])
def test_lying_charset_falls_back_to_windows_1250(content_type):
    raw = (f"From: a@b.cz\r\nSubject: x\r\nContent-Type: {content_type}\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\nŽluťoučký kůň, šťastná Šárka\r\n").encode("windows-1250")
    assert parsing.parse(raw).text == "Žluťoučký kůň, šťastná Šárka"


def test_true_iso_8859_2_is_not_taken_for_windows_1250():
    raw = ("From: a@b.cz\r\nSubject: x\r\nContent-Type: text/plain; charset=iso-8859-2\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\nŽluťoučký kůň, šťastná Šárka\r\n").encode("iso-8859-2")
    assert parsing.parse(raw).text == "Žluťoučký kůň, šťastná Šárka"


@pytest.mark.parametrize("params, body, text", [
    ("format=flowed", "Prosím o \r\nzřízení přístupu.\r\n\r\nDěkuji", "Prosím o zřízení přístupu.\n\nDěkuji"),
    ("format=flowed; delsp=yes", "Přístu \r\np do HELIOSu", "Přístup do HELIOSu"),
    ("format=flowed", " >100 položek\r\n From Brna", ">100 položek\nFrom Brna"),          # space-stuffing undone
    ("format=flowed", "> Jaké \r\n> jméno?\r\n>\r\nOdpověď", "> Jaké jméno?\n>\nOdpověď"),  # per quote depth
    ("format=flowed", "Jana\r\n-- \r\nJana Vzorová", "Jana\n-- \nJana Vzorová"),          # "-- " is no soft break
    ("", "Prosím o \r\nzřízení", "Prosím o \nzřízení"),                                      # fixed: left as it is
], ids=["soft-breaks", "delsp", "space-stuffing", "quote-depth", "signature", "not-flowed"])
def test_format_flowed_text_is_joined_into_its_paragraphs(params, body, text):
    raw = (f"From: a@b.cz\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8; {params}\r\n"
           f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n").encode("utf-8")
    assert parsing.parse(raw).text == text


def test_html_white_space_reads_as_a_browser_shows_it_and_quotes_mark_whole_lines():
    markup = ("<p>Uživatelské jméno bude\n      <a href='mailto:x@example.cz'>x@example.cz</a>,\n nastupuje v 8:00.</p>"
              "<table><tr><td>Počítač</td><td>NB-0231</td></tr></table>"
              '<div class="gmail_quote gmail_quote_container"><div>On Mon wrote:</div>'
              "<blockquote>Odkaz: <a href='http://x'>http://x</a><br>druhý řádek</blockquote></div>"
              "<p>po citaci</p><pre>-- \nJana</pre>")
    assert parsing.html_to_text(markup) == (
        "Uživatelské jméno bude x@example.cz, nastupuje v 8:00.\n\nPočítač NB-0231\n\n> On Mon wrote:\n\n"
        ">> Odkaz: http://x\n>> druhý řádek\n\npo citaci\n\n--\nJana")


def test_ticket_number_is_found_in_the_subject_with_or_without_brackets():
    assert parsing.ticket_number_in("Re: [HD-2026-000123] Nejde tisk", "HD") == "HD-2026-000123"
    assert parsing.ticket_number_in("Odp: Nová odpověď k požadavku hd-2026-000007", "HD") == "HD-2026-000007"
    assert parsing.ticket_number_in("Nejde tisk 2026-000123", "HD") is None
    assert parsing.ticket_number_in("[XHD-2026-000123]", "HD") is None


def test_references_to_our_notifications_name_the_ticket_and_others_do_not():
    own, root = parsing.thread_ids(42, "ev-1", "example.cz")
    assert parsing.ticket_id_in_references(["<x@gmail.com>", own], "example.cz") == 42
    assert parsing.ticket_id_in_references([root], "Example.CZ") == 42
    assert parsing.ticket_id_in_references(["<ticket-42@evil.cz>"], "example.cz") is None


def test_in_reply_to_comes_before_references():
    raw = (b"From: a@b.cz\r\nSubject: x\r\nIn-Reply-To: <ticket-5.e@example.cz>\r\n"
           b"References: <ticket-5@example.cz> <ticket-5.e@example.cz>\r\n\r\nok\r\n")
    assert parsing.parse(raw).references[0] == "<ticket-5.e@example.cz>"


def test_forwarded_mail_is_kept_as_an_eml_attachment_and_inline_images_are_named():
    raw = (b"From: a@b.cz\r\nSubject: Fwd: chyba\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=O\r\n\r\n--O\r\n"
           b"Content-Type: multipart/related; boundary=R\r\n\r\n--R\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<p>viz obr\xc3\xa1zek <img src=\"cid:img1@x\"></p>\r\n--R\r\nContent-Type: image/png\r\n"
           b"Content-ID: <img1@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--R--\r\n"
           b"--O\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@d.cz\r\nSubject: puvodni\r\n\r\ntext\r\n--O--\r\n")
    mail = parsing.parse(raw)
    assert mail.text == "viz obrázek"
    names = sorted(a.filename for a in mail.attachments)
    assert names == ["forwarded.eml", "inline-img1x.png"], names
    assert parsing.clean_subject("Fwd: RE: Odp: chyba") == "chyba"


def test_mailbox_urls_carry_security_folders_and_the_unknown_sender_policy():
    boxes = parse_mailboxes("imaps://podpora%40firma.cz:p%40ss@imap.firma.cz/Helpdesk?processed=Hotovo&unknown=reply "
                            "imap+starttls://u:p@mx:1143")
    assert boxes[0].security == "ssl" and boxes[0].port == 993 and boxes[0].user == "podpora@firma.cz"
    assert boxes[0].password == "p@ss" and boxes[0].folder == "Helpdesk" and boxes[0].processed == "Hotovo"
    assert boxes[0].unknown == "reply"
    assert boxes[1].security == "starttls" and boxes[1].port == 1143 and boxes[1].folder == "INBOX"
    assert boxes[1].unknown == "quarantine"
    with pytest.raises(ValueError):
        parse_mailboxes("pop3://u:p@h")
