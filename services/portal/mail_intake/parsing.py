"""Turns one raw e-mail into what the intake acts on; pure, no I/O.

Charsets (utf-8, iso-8859-2, windows-1250 and whatever Python knows), RFC 2047 headers and
RFC 2231 file names are decoded by the standard library's `email.policy.default`; this
module adds what it does not do: charset labels that lie, format=flowed text, multiparts
whose boundary went missing, safe text from HTML, quoted history and signature stripping,
mail-loop detection, and how a mail finds its ticket. tests/portal/mail_corpus/ holds mail
as the clients write it, with what each must become.
"""
from __future__ import annotations

import codecs
import email
import re
import unicodedata
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser

# where the quoted history of a reply starts, in the clients our requesters use (cs and en): the attribution
# line ("On … wrote:"), which clients wrap over two or three lines, and Outlook's separators and header block
_ATTRIBUTIONS = [
    re.compile(r"^\s*On .{4,200}wrote:\s*$", re.I | re.S),                       # Gmail, Thunderbird, Apple Mail (en)
    # cs: Thunderbird, Apple Mail "Dne … napsal(a):", Gmail "po 12. 1. 2026 v 10:02 odesílatel … napsal:"
    re.compile(r"^\s*((Dne|V) .{4,200}|(po|út|st|čt|pá|so|ne) [\d. ]{8,12},? (v )?\d{1,2}:\d{2},? odesílatel .{1,200})"
               r"(napsal|napsala|napsal\(a\)|odepsal)\s*.{0,80}:\s*$", re.I | re.S),
]
_SEPARATORS = [
    re.compile(r"^\s*-{2,}\s*(Original Message|Původní zpráva|Původní e-mail)\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*_{10,}\s*$"),                                                # Outlook's separator line
    re.compile(r"^\s*(From|Od):\s.+$", re.I),                                     # Outlook header block
]
_SIGNATURE = re.compile(r"^(-- ?|--|S pozdravem,?|Best regards,?|Kind regards,?|Sent from my \w+.*|"
                        r"Odesláno z\w* .*)$", re.I)
_LOOP_SENDERS = re.compile(r"^(mailer-daemon|postmaster|no-?reply|noreply|bounces?)([+@.-]|$)", re.I)


class Malformed(ValueError):
    """The mail cannot be read; it goes to quarantine with this reason, and with `headers` (a ParsedMail of
    what its headers say, no text) when those could be read, so staff see its subject and who sent it."""

    def __init__(self, reason: str, headers: ParsedMail | None = None):
        super().__init__(reason)
        self.headers = headers


@dataclass
class Attachment:
    filename: str
    content_type: str
    content: bytes
    content_id: str = ""               # how the HTML (and Outlook's plain text, `[cid:…]`) refers to it


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
        msg = _with_parts_found(email.message_from_bytes(raw, policy=policy.default), raw)
        sender_name, sender = parseaddr(str(msg.get("From", "")))
        subject = _header(msg, "Subject")
        message_id = _header(msg, "Message-ID").strip() or fallback_id
    except Exception as exc:  # the parser is lenient; what still breaks is beyond reading
        raise Malformed(f"unreadable headers: {exc}") from exc
    if not sender or "@" not in sender or (msg.defects and not msg.get_payload()):
        headers = ParsedMail(message_id=message_id, sender=sender.strip().lower() if "@" in sender else "",
                             sender_name=sender_name.strip() or _header(msg, "From").strip(), to=[],
                             subject=" ".join(subject.split()), text="", reply_text="")
        if not headers.sender:
            raise Malformed("no sender address", headers)
        raise Malformed("broken MIME: " + ", ".join(type(d).__name__ for d in msg.defects), headers)
    attachments = list(_attachments(msg, _body_part(msg)))
    text = _images_named(body_text(msg), attachments)
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


def _with_parts_found(msg: EmailMessage, raw: bytes) -> EmailMessage:
    """A multipart whose declared boundary never occurs (a gateway rewrote or lost it) is read again with
    the boundary its body does use, so its text and attachments are not lost."""
    if msg.get_content_maintype() != "multipart" or msg.is_multipart():
        return msg
    body = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[-1]
    found = re.search(rb"^--([^\s\"]{1,70}?)\r?$", body, re.M)
    if found is None:
        return msg
    inner = email.message_from_bytes(b"Content-Type: " + msg.get_content_type().encode("ascii") + b"; boundary=\""
                                     + found.group(1) + b"\"\r\n\r\n" + body, policy=policy.default)
    if inner.is_multipart():
        msg.set_payload(inner.get_payload())
    return msg


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
    content = _decoded(part).replace("\r\n", "\n")
    if part.get_content_subtype() == "html":
        content = html_to_text(content)
    elif (part.get_param("format") or "").lower() == "flowed":
        content = unflow(content, delsp=(part.get_param("delsp") or "").lower() == "yes")
    return content.strip()


_C1_CONTROLS = re.compile("[\x80-\x9f]")


def _decoded(part) -> str:
    """A text part's content. The declared charset is believed when it decodes the bytes cleanly; else
    (unknown, lying, or missing: us-ascii by default) they are windows-1250, the likeliest in Czechia.
    ISO-8859 text with C1 control characters is windows-1250 labelled wrongly: its š ť ž Š Ť Ž live there."""
    payload = part.get_payload(decode=True) or b""
    try:
        charset = codecs.lookup(part.get_content_charset() or "us-ascii").name
        text = payload.decode(charset)
    except (LookupError, UnicodeError):
        return payload.decode("windows-1250", errors="replace")
    if charset.startswith("iso8859") and _C1_CONTROLS.search(text):
        return payload.decode("windows-1250", errors="replace")
    return text


def unflow(text: str, delsp: bool = False) -> str:
    """RFC 3676 format=flowed text (Thunderbird's plain text) as its paragraphs: a line ending in a space
    goes on in the next line of the same quote depth; space-stuffing is undone; "-- " stays a signature."""
    out: list[str] = []
    joining = None  # quote depth of the paragraph the previous line left open
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        body = body[1:] if body.startswith(" ") else body
        flowed = body.endswith(" ") and body != "-- "
        if flowed and delsp:
            body = body[:-1]
        if joining == depth:
            out[-1] += body
        else:
            out.append(">" * depth + " " + body if depth else body)
        joining = depth if flowed else None
    return "\n".join(line if line == "-- " else line.rstrip() for line in out)


def _images_named(text: str, attachments: list[Attachment]) -> str:
    """Outlook's plain text marks an inline image `[cid:image001.png@01DC…]`: name it by its file instead."""
    names = {a.content_id: a.filename for a in attachments if a.content_id}
    return re.sub(r"\[cid:([^\]\s]+)\]", lambda m: f"[{names[m.group(1)]}]" if m.group(1) in names else m.group(0),
                  text)


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
        filename = unicodedata.normalize("NFC", filename)  # macOS writes names decomposed (i + U+0301)
        yield Attachment(filename=filename.replace("/", "_").replace("\\", "_")[:255],
                         content_type=part.get_content_type(), content=content,
                         content_id=str(part.get("Content-ID") or "").strip().strip("<>"))


class _TextFromHtml(HTMLParser):
    """Visible text of an HTML mail: scripts, styles and head dropped, blocks and <br> as line breaks, white
    space as in a browser (source line breaks are spaces, except in <pre>), links kept as text, and quoted
    history (<blockquote>, Gmail's gmail_quote) as "> " lines, so strip_reply treats it like plain text."""

    _BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "blockquote", "hr", "pre"}
    _SKIP = {"script", "style", "head", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines: list[list] = [[0, ""]]   # [quote depth, text] per output line
        self.skip = 0
        self.quote = 0
        self.pre = 0
        self.divs: list[bool] = []            # per open <div>: did it open a quote?

    def _break(self) -> None:
        self.lines.append([self.quote, ""])

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self.skip += 1
            return
        quote = tag == "blockquote" or (tag == "div" and "gmail_quote" in (dict(attrs).get("class") or "").split())
        if tag == "div":
            self.divs.append(quote)
        self.quote += quote
        self.pre += tag == "pre"
        if tag in self._BLOCKS:
            self._break()
        elif tag in ("td", "th"):  # cells of a row side by side, not glued into one word
            self.lines[-1][1] += " "

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag == "blockquote" or (tag == "div" and self.divs and self.divs.pop()):
            self.quote = max(0, self.quote - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in self._BLOCKS:
            self._break()

    def handle_data(self, data):
        if self.skip:
            return
        if not self.pre:
            self.lines[-1][1] += data.replace("\n", " ")
            return
        first, *rest = data.split("\n")
        self.lines[-1][1] += first
        for line in rest:
            self.lines.append([self.quote, line])


def html_to_text(markup: str) -> str:
    parser = _TextFromHtml()
    parser.feed(markup)
    parser.close()
    lines = []
    for depth, text in parser.lines:
        text = " ".join(text.split())  # also \xa0 (&nbsp;)
        lines.append(">" * depth + " " + text if depth and text else text)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def strip_reply(text: str) -> str:
    """The new part of a reply: up to the quoted history's header or the signature; with nothing above the
    history (bottom-posting, Thunderbird's default), what follows the quoted lines; empty-safe."""
    lines = text.split("\n")
    cut = len(lines)
    for i, line in enumerate(lines):
        wrapped = [" ".join(part.strip() for part in lines[i:i + n]) for n in (1, 2, 3)]
        if any(p.match(line) for p in _SEPARATORS) or any(p.match(w) for p in _ATTRIBUTIONS for w in wrapped):
            cut = i
            break
        if line.startswith(">") and all(l.startswith(">") or not l.strip() for l in lines[i:]):
            cut = i
            break
        if _SIGNATURE.match(line.strip()):
            cut = i
            break
    kept = "\n".join(lines[:cut]).strip()
    if not kept:
        below = cut
        while below < len(lines) and not lines[below].startswith(">"):  # the history's (wrapped) header
            below += 1
        while below < len(lines) and (lines[below].startswith(">") or not lines[below].strip()):
            below += 1
        if below < len(lines):
            return strip_reply("\n".join(lines[below:]))
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
