"""Turns one raw e-mail into what the intake acts on; pure, no I/O.

Charsets (utf-8, iso-8859-2, windows-1250 and whatever Python knows), RFC 2047 headers and
RFC 2231 file names are decoded by the standard library's `email.policy.default`; this
module adds what it does not do: safe text from HTML, quoted history and signature
stripping, mail-loop detection, and how a mail finds its ticket.
"""
from __future__ import annotations

import email
import html
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser

# where the quoted history of a reply starts, in the clients our requesters use (cs and en)
_QUOTE_HEADERS = [
    re.compile(r"^\s*On .{4,200}wrote:\s*$", re.I | re.S),                       # Gmail, Thunderbird, Apple Mail (en)
    re.compile(r"^\s*(Dne|V) .{4,200}(napsal|napsala|napsal\(a\)|odepsal)\s*.{0,80}:\s*$", re.I | re.S),  # cs
    re.compile(r"^\s*-{2,}\s*(Original Message|Původní zpráva|Původní e-mail)\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*_{10,}\s*$"),                                                # Outlook's separator line
    re.compile(r"^\s*(From|Od):\s.+$", re.I),                                     # Outlook header block
]
_SIGNATURE = re.compile(r"^(-- ?|--|S pozdravem,?|Best regards,?|Kind regards,?|Sent from my \w+.*|"
                        r"Odesláno z\w* .*)$", re.I)
_LOOP_SENDERS = re.compile(r"^(mailer-daemon|postmaster|no-?reply|noreply|bounces?)([+@.-]|$)", re.I)


class Malformed(ValueError):
    """The mail cannot be read; it goes to quarantine with this reason."""


@dataclass
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass
class ParsedMail:
    message_id: str
    sender: str
    sender_name: str
    to: list[str]
    subject: str
    text: str                          # the whole body as safe text
    reply_text: str                    # without quoted history and signature
    attachments: list[Attachment] = field(default_factory=list)
    references: list[str] = field(default_factory=list)   # In-Reply-To first, then References, newest first
    loop_reason: str | None = None     # why no ticket and no auto-reply may come of it


def parse(raw: bytes, fallback_id: str = "") -> ParsedMail:
    """Read one message; raises Malformed when it has no usable sender or body."""
    try:
        msg = email.message_from_bytes(raw, policy=policy.default)
        sender_name, sender = parseaddr(str(msg.get("From", "")))
        subject = _header(msg, "Subject")
        message_id = _header(msg, "Message-ID").strip() or fallback_id
    except Exception as exc:  # the parser is lenient; what still breaks is beyond reading
        raise Malformed(f"unreadable headers: {exc}") from exc
    if not sender or "@" not in sender:
        raise Malformed("no sender address")
    if msg.defects and not msg.get_payload():
        raise Malformed("broken MIME: " + ", ".join(type(d).__name__ for d in msg.defects))
    text = body_text(msg)
    attachments = list(_attachments(msg, _body_part(msg)))
    references = _ids(_header(msg, "In-Reply-To")) + list(reversed(_ids(_header(msg, "References"))))
    return ParsedMail(
        message_id=message_id, sender=sender.strip().lower(), sender_name=sender_name.strip(),
        to=[a.lower() for _n, a in getaddresses([_header(msg, "To"), _header(msg, "Cc")]) if a],
        subject=" ".join(subject.split()), text=text, reply_text=strip_reply(text),
        attachments=attachments, references=references, loop_reason=loop_reason(msg, sender))


def _header(msg: EmailMessage, name: str) -> str:
    try:
        return str(msg.get(name, "") or "")
    except Exception:  # an undecodable header: keep what can be read
        return str(msg.get_all(name, [""])[0])


def _ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value)


def loop_reason(msg: EmailMessage, sender: str) -> str | None:
    """Why the mail is automatic (so it must not make a ticket or get an auto-reply), or None."""
    auto = _header(msg, "Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = _header(msg, "Precedence").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond"):
        value = _header(msg, name).strip()
        if value and value.lower() not in ("no", "false"):
            return f"{name}: {value}"
    if msg.get("List-Id") or msg.get("List-Unsubscribe"):
        return "mailing list"
    if _LOOP_SENDERS.match(sender.strip()):
        return f"automatic sender {sender.strip().lower()}"
    if msg.get_content_type() == "multipart/report":
        return "delivery report"
    return None


def body_text(msg: EmailMessage) -> str:
    """The message's text: its text/plain part, else its HTML as safe text."""
    part = _body_part(msg)
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):  # unknown or lying charset: windows-1250 is the likeliest in Czechia
        content = part.get_payload(decode=True).decode("windows-1250", errors="replace")
    if part.get_content_subtype() == "html":
        content = html_to_text(content)
    return content.replace("\r\n", "\n").strip()


def _body_part(msg: EmailMessage):
    try:
        return msg.get_body(("plain", "html"))
    except Exception:
        return None


def _leaves(part):
    """Every part that is not a container; a forwarded message/rfc822 counts as one leaf."""
    if part.get_content_type() == "message/rfc822" or not part.is_multipart():
        yield part
        return
    for sub in part.iter_parts():
        yield from _leaves(sub)


def _attachments(msg: EmailMessage, body):
    for part in _leaves(msg) if msg.is_multipart() else ():
        if part is body:
            continue
        filename = part.get_filename()
        if part.get_content_type() == "message/rfc822":
            content = part.get_payload(0).as_bytes() if part.is_multipart() else part.get_payload(decode=True)
            filename = filename or "forwarded.eml"
        else:
            content = part.get_payload(decode=True)
        if content is None:
            continue
        if not filename:
            if part.get("Content-ID") and part.get_content_maintype() == "image":
                filename = "inline-" + re.sub(r"[^\w.-]", "", part["Content-ID"])[:40] + "." + part.get_content_subtype()
            else:
                continue  # the other alternative of the body, or an unnamed text part
        yield Attachment(filename=filename.replace("/", "_").replace("\\", "_")[:255],
                         content_type=part.get_content_type(), content=content)


class _TextFromHtml(HTMLParser):
    """Visible text of an HTML mail: scripts, styles and head dropped, blocks as lines, links kept as text."""

    _BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "blockquote", "hr"}
    _SKIP = {"script", "style", "head", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.quote = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self.skip += 1
        elif tag == "blockquote" or (tag == "div" and ("class", "gmail_quote") in attrs):
            self.quote += 1
            self.out.append("\n")
        elif tag in self._BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in self._SKIP and self.skip:
            self.skip -= 1
        elif tag == "blockquote" and self.quote:
            self.quote -= 1
            self.out.append("\n")
        elif tag in self._BLOCKS:
            self.out.append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        if self.quote:  # quoted history as "> " lines, so strip_reply treats it like plain-text quoting
            data = "\n".join("> " + line if line.strip() else line for line in data.split("\n"))
        self.out.append(data)


def html_to_text(markup: str) -> str:
    parser = _TextFromHtml()
    parser.feed(markup)
    parser.close()
    text = html.unescape("".join(parser.out)).replace("\xa0", " ")
    lines = [" ".join(line.split()) if not line.lstrip().startswith(">") else line.rstrip()
             for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def strip_reply(text: str) -> str:
    """The new part of a reply: up to the quoted history's header or the signature; empty-safe."""
    lines = text.split("\n")
    cut = len(lines)
    for i, line in enumerate(lines):
        joined = " ".join(l.strip() for l in lines[i:i + 3])  # "On ... wrote:" is often wrapped over lines
        if any(p.match(line) for p in _QUOTE_HEADERS) or (i and _QUOTE_HEADERS[0].match(joined)) \
                or _QUOTE_HEADERS[1].match(joined):
            cut = i
            break
        if line.startswith(">") and all(l.startswith(">") or not l.strip() for l in lines[i:]):
            cut = i
            break
        if _SIGNATURE.match(line.strip()):
            cut = i
            break
    kept = "\n".join(lines[:cut]).strip()
    return kept or text.strip()


def ticket_number_in(subject: str, prefix: str) -> str | None:
    """The ticket number in a subject's brackets, `[HD-2026-000123]` (also without brackets)."""
    match = re.search(r"\[?\b(" + re.escape(prefix) + r"-\d{4}-\d{3,})\b\]?", subject, re.I)
    return match.group(1).upper() if match else None


def ticket_id_in_references(references: list[str], domain: str) -> int | None:
    """The ticket id our own notifications put in their Message-ID (`<ticket-42.…@domain>`)."""
    pattern = re.compile(r"^<ticket-(\d+)(\.[^@>]*)?@" + re.escape(domain.lower()) + ">$")
    for ref in references:
        match = pattern.match(ref.lower())
        if match:
            return int(match.group(1))
    return None


def thread_ids(ticket_id: int, event_id: str, domain: str) -> tuple[str, str]:
    """(Message-ID of one notification, the thread root every notification of the ticket references)."""
    return f"<ticket-{ticket_id}.{event_id}@{domain}>", f"<ticket-{ticket_id}@{domain}>"


def clean_subject(subject: str) -> str:
    """The subject without Re:/Fwd:/Odp:/Fw: prefixes (for a new ticket's subject)."""
    return re.sub(r"^\s*((re|fw|fwd|odp|aw|wg|tr)\s*(\[\d+\])?:\s*)+", "", subject, flags=re.I).strip()
