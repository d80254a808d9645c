"""Bounces: RFC 3464 delivery status notifications, and the free-text notices older MTAs still send.

Pure: a parsed message in, a `BounceReport` (or None) out. A DSN is read field by field (one
`Failure` per failed or delayed recipient); a DSN whose MIME structure is broken is read from its text.
Everything else (qmail, Exim, Sendmail, Exchange, GroupWise, Yahoo, AOL, MDaemon, …) is recognized
by its sender, subject and wording, and its failed recipients are read with patterns checked against
the sisimai, flufl.bounce and Mail-DeliveryStatus-BounceParser corpora (docs/reply-classification.md).

Hard or soft: an enhanced status (5.x.x / 4.x.x) decides, then an SMTP code, then the wording. An
unknown failure counts as hard: listmonk's "unknown means soft" keeps mailing dead addresses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import HeaderParser

from outreach.mailparts import (
    addresses_in,
    content_type,
    decoded,
    header_text,
    html_to_text,
    message_ids,
    own_parts,
    sender_address,
)


@dataclass(frozen=True)
class Failure:
    """One recipient the notice says could not be reached."""

    recipient: str
    status: str | None  # the enhanced status code, e.g. "5.1.1"
    permanent: bool
    action: str | None = None  # failed or delayed (DSNs only)
    diagnostic: str | None = None


@dataclass(frozen=True)
class BounceReport:
    """What a bounce says about the failed delivery; the first hard failure speaks for the message."""

    recipient: str | None  # the address we wrote to when the notice says (Original-Recipient), else the final one
    status: str | None
    permanent: bool
    action: str | None = None
    diagnostic: str | None = None
    original_message_ids: tuple[str, ...] = ()
    original_recipient: str | None = None  # the address as first written, before forwarding or aliasing
    failures: tuple[Failure, ...] = field(default=())

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.recipient for f in self.failures))


# --- recognizing a bounce -------------------------------------------------------------------------

SYSTEM_LOCAL_PARTS = frozenset(
    {"mailer-daemon", "postmaster", "mdaemon", "mail-daemon", "mailerdaemon", "mailer_daemon", "noreply-dmarc"}
)
_SYSTEM_NAMES = re.compile(r"mail delivery (sub)?system|mailer.daemon|postmaster|system administrator", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|failed|problem|has failed|report)|"
    r"delivery notification|returned mail|return(ed|ing) (mail|message) to sender|mail delivery failed|"
    r"failure (notice|delivery)|failed mail|mail failure|mail failed|returning to sender|could not be delivered|"
    r"non.?delivery|not delivered|message status|nondeliverable|"
    r"delayed|warning: message|mail delivery warning|nicht zugestellt|unzustellbar|non remis|no entregado",
    re.I,
)
# A bounce subject at the very start (never a "Re:") is a bounce whoever sent it: gateways and virus
# scanners use their own sender names.
_STRONG_BOUNCE_SUBJECT = re.compile(
    r"^(undeliverable|undelivered mail|delivery status notification|mail delivery failed|returned mail|"
    r"failure notice|delivery failure|mail could not be delivered|non.?delivery|delivery notification|"
    r"delivery report|failed mail|message you sent blocked|mail system error|delivery has failed|"
    r"undeliverable mail|nondeliverable)",
    re.I,
)
_SUCCESS_SUBJECT = re.compile(r"\((success|relay|relayed|delivered|expanded)\)", re.I)
_BOUNCE_BODY = re.compile(
    r"(could not be delivered|couldn'?t be delivered|undeliverable|delivery (to the following recipients? )?"
    r"(has )?failed|permanent(ly)? (error|fatal)|user unknown|unknown user|no such user|"
    r"not a valid (user|mailbox|recipient)|mailbox (unavailable|not found|full)|unable to deliver|"
    r"did not reach the following|not be delivered|was not delivered|were not delivered|"
    r"i'm afraid i wasn't able to deliver|returned to sender|(has been|was) returned|returned mail follows|"
    r"无法送达|无法发送|не доставлено|nicht zugestellt|unzustellbar)",
    re.I,
)
_DELAY_WORDS = re.compile(
    r"\bdelay|not yet been delivered|still being retried|will (continue|retry|keep trying)|warning: message|"
    r"will be retried|try again later",
    re.I,
)
# Challenge-response filters answer with a bounce-shaped "please confirm you are human": not a dead address.
_CHALLENGE = re.compile(
    r"pre-?approved|requires confirmation|confirm (this|your) (mail|sender|server|address)|"
    r"verify (that )?you are (a )?(human|real)|boxbe|bluebottle|approved senders",
    re.I,
)


def is_system_sender(msg: Message) -> bool:
    """MAILER-DAEMON, postmaster and friends, or the empty sender bounces are sent from."""
    value = header_text(msg, "From").strip()
    if value in ("", "<>") or value.endswith("<>"):
        return True
    address = sender_address(msg)
    if address and address.split("@", 1)[0].strip('"') in SYSTEM_LOCAL_PARTS:
        return True
    return bool(_SYSTEM_NAMES.search(value))


def looks_like_bounce(msg: EmailMessage) -> bool:
    """A failure subject or a mail-system sender, confirmed by the notice's own wording where needed."""
    subject = " ".join(header_text(msg, "Subject").split())
    if _SUCCESS_SUBJECT.search(subject):
        return False
    if _STRONG_BOUNCE_SUBJECT.match(subject):
        return True
    subject_says = bool(_BOUNCE_SUBJECT.search(subject))
    system = is_system_sender(msg)
    if system and subject_says:
        return True
    if header_text(msg, "X-Failed-Recipients") and (system or subject_says):
        return True
    return (subject_says or system) and bool(_BOUNCE_BODY.search(notice_text(msg)[:20_000]))


# --- reading it ------------------------------------------------------------------------------------


def parse_bounce(msg: EmailMessage) -> BounceReport | None:
    """The report of a bounce, or None when the message is not one (success notices and challenges are not)."""
    blocks = delivery_status_blocks(msg)
    if blocks is None:
        blocks = _text_dsn_blocks(msg)
    recipients = [b for b in blocks or [] if _field(b, "Final-Recipient") or _field(b, "Original-Recipient")]
    if recipients:
        return _dsn_report(msg, recipients)
    if blocks and any(_field(b, "Action") for b in blocks) and not looks_like_bounce(msg):
        return None
    if not looks_like_bounce(msg):
        return None
    if _CHALLENGE.search(header_text(msg, "Subject") + "\n" + notice_text(msg)[:5000]):
        return None
    return _heuristic_report(msg)


def delivery_status_blocks(msg: Message) -> list[Message] | None:
    """The field blocks of the message/delivery-status part, or None when the message carries none.

    Only the notice's own parts are searched: a DSN quoted inside a returned message is someone else's.
    """
    for part in own_parts(msg):
        if content_type(part) == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                return [block for block in payload if isinstance(block, Message)]
            return [HeaderParser(policy=policy.default).parsestr(str(payload))]
    return None


_TEXT_DSN_FIELD = re.compile(r"(?im)^(Final-Recipient|Original-Recipient|Action|Status|Diagnostic-Code):[ \t]*(.*)$")


def _text_dsn_blocks(msg: EmailMessage) -> list[Message]:
    """DSN fields written in the body of a notice whose MIME structure is broken or absent."""
    text = notice_text(msg, cut_returned=False)
    if "final-recipient:" not in text.lower():
        return []
    blocks: list[Message] = []
    current: Message | None = None
    lines = text.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        match = _TEXT_DSN_FIELD.match(line)
        if match is None:
            if current is not None and not line.strip():
                blocks.append(current)
                current = None
            continue
        name, value = match.group(1), match.group(2)
        # Folded continuation lines (a long Diagnostic-Code) belong to the field.
        for following in lines[index + 1 : index + 4]:
            if following[:1] in (" ", "\t") and following.strip():
                value += " " + following.strip()
            else:
                break
        if current is None or (name.lower() == "final-recipient" and current.get("Final-Recipient")):
            if current is not None:
                blocks.append(current)
            current = Message()
        current[name] = value
    if current is not None:
        blocks.append(current)
    return blocks


def _field(block: Message, name: str) -> str | None:
    value = " ".join(header_text(block, name).split())
    return value or None


def _typed_address(value: str | None) -> str | None:
    """'rfc822; Dana@X.example' → 'dana@x.example'."""
    if not value:
        return None
    address = value.split(";", 1)[-1].strip().strip("<>").strip().strip("'\"")
    return address.lower() if "@" in address and " " not in address else None


# An enhanced status code (RFC 3463) standing alone: not part of an IP address or a version number.
_STATUS = re.compile(r"(?<![\w.])([245])\.([0-7])\.(\d{1,3})(?![\w]|\.\d)")
_FAILURE_STATUS = re.compile(r"(?<![\w.])([45])\.([0-7])\.(\d{1,3})(?![\w]|\.\d)")
# An SMTP reply code where servers write one: at a line start, or after a space or colon ("said: 550 …").
_SMTP_CODE = re.compile(r"(?:^|(?<=[\s:;]))([45])[0-5]\d(?=[ ,-](?!\d))", re.M)


def _status_code(text: str | None, pattern: re.Pattern[str] = _STATUS) -> str | None:
    match = pattern.search(text or "")
    return ".".join(match.groups()) if match else None


_FAILED_ACTIONS = frozenset({"failed", "delayed"})


def _action(block: Message) -> str:
    """The DSN Action, tolerating what real servers write ("failure", "failed (Bad address)")."""
    value = (_field(block, "Action") or "").lower()
    if not value:
        return "failed" if (_status_code(_field(block, "Status")) or "").startswith(("4", "5")) else ""
    if value.startswith("fail"):
        return "failed"
    if value.startswith("delay"):
        return "delayed"
    return value.split()[0]


def _dsn_failure(block: Message, action: str) -> Failure | None:
    diagnostic = _field(block, "Diagnostic-Code")
    status = _status_code(_field(block, "Status")) or _status_code(diagnostic)
    original = _typed_address(_field(block, "Original-Recipient"))
    final = _typed_address(_field(block, "Final-Recipient"))
    recipient = original or final
    if recipient is None:
        return None
    if status and status[0] in "45":
        permanent = status.startswith("5")
    else:
        smtp = _SMTP_CODE.search(f"{_field(block, 'Status') or ''} {diagnostic or ''}")
        permanent = smtp.group(1) == "5" if smtp else action == "failed"
    return Failure(recipient, status, permanent, action, diagnostic)


def _dsn_report(msg: EmailMessage, recipients: list[Message]) -> BounceReport | None:
    """None for a success notice (delivered / relayed / expanded) and for challenge-response robots."""
    failing = [(b, _action(b)) for b in recipients if _action(b) in _FAILED_ACTIONS]
    if not failing:
        return None
    diagnostics = " ".join(_field(b, "Diagnostic-Code") or "" for b in recipients)
    if _CHALLENGE.search(diagnostics):
        return None
    failures = tuple(f for f in (_dsn_failure(b, action) for b, action in failing) if f is not None)
    if not failures:
        return None
    worst = next((f for f in failures if f.action == "failed"), failures[0])
    original = next(
        (_typed_address(_field(b, "Original-Recipient")) for b, _ in failing if _field(b, "Original-Recipient")),
        None,
    )
    return BounceReport(
        recipient=worst.recipient,
        status=worst.status,
        permanent=worst.permanent,
        action=worst.action,
        diagnostic=worst.diagnostic,
        original_message_ids=original_message_ids(msg),
        original_recipient=original,
        failures=failures,
    )


# --- free-text notices -----------------------------------------------------------------------------

# Where the returned copy starts in a notice that pastes it into its own text.
_RETURNED_START = re.compile(
    r"(?im)^[ \t>]*(?:-{2,}[ \t]*)?(?:"
    r"(?:original|returned|unsent|undelivered) message (?:follows|below|as received|is as follows)|"
    r"start of returned message|below this line is a copy|this is a copy of the message|"
    r"a copy of the original message below|message header follows|unsent message below|"
    r"the original message follows|original message (?:headers|header) follow|"
    r"here is a copy of the first part of the message|old message:"
    r")"
)
_HEADER_LINE = re.compile(r"(?im)^(?:return-path|received|message-id|x-[\w-]+|dkim-signature):[ \t]")


def notice_text(msg: EmailMessage, *, cut_returned: bool = True) -> str:
    """Every text part of the notice itself (not of the returned message), joined; HTML as text."""
    texts = []
    for part in own_parts(msg):
        kind = content_type(part)
        if part.is_multipart() or not kind.startswith("text/") or kind == "text/rfc822-headers":
            continue
        text = decoded(part)
        texts.append(html_to_text(text) if kind == "text/html" else text)
    if not texts and not msg.is_multipart():
        texts.append(str(msg.get_payload()))
    joined = "\n".join(texts).replace("\r\n", "\n")
    if cut_returned:
        match = _RETURNED_START.search(joined)
        if match:
            joined = joined[: match.start()]
        header = _HEADER_LINE.search(joined)
        if header and header.start() > 0:
            joined = joined[: header.start()]
    return joined


_ADDRESS = r"[\w.+'=/%!~#$&*^`{|}-]+@[\w-]+(?:\.[\w-]+)+"
_ADDRESS_RE = re.compile(_ADDRESS)
_ANGLE_LINE = re.compile(rf"(?m)^[ \t]*<({_ADDRESS})>:?[ \t]*(.*)$")
_LIST_INTRO = re.compile(
    "|".join(
        phrase.replace(" ", r"\s+")
        for phrase in (
            # Any "… the following recipients / addresses / users …:" line introduces a list.
            r"following[\w() \t]{0,40}?(?:recipient|address|user)(?:s|es|\(s\)|\(es\))?\b[^\n]*:[ \t]*$",
            r"following address(?:es|\(es\))? (?:had|failed)",
            r"did not reach the following recipient",
            r"delivery to the following recipients? failed",
            r"did not receive a copy of your message",
            r"message not delivered to the following",
            r"(?:could not|couldn't|cannot|can't) be delivered to:?[ \t]*$",
            r"not delivered to(?: the following)?:",
            r"address(?:es)? to which the message has not yet been delivered",
            r"delivery of email to this address",
            r"n'a pas pu (?:e|ê)tre d(?:e|é)livr(?:e|é) (?:a|à)[ \t]*$",
            r"-+ ?failure reasons ?-+",
        )
    ),
    re.I | re.M,
)
_INLINE = re.compile(
    rf"(?i)(?:unknown user|user unknown|no such user|invalid recipient|undeliverable address|bad address|"
    rf"intended recipient|"
    rf"unable to deliver (?:your )?message to|your message to|addressed to|delivery to|mailbox)[:\s'\"<(]+"
    rf"({_ADDRESS})"
    rf"|({_ADDRESS})[>'\"]*(?:\.\.\.|:| -| is)[ \t]*(?:user unknown|no such user|unknown user|"
    rf"mailbox (?:unavailable|full|not found)|addressee unknown|not a valid|"
    rf"account (?:is )?(?:disabled|over quota)|does not exist|recipient rejected|over quota|quota exceeded)"
)
_SMTP_LINE_ADDRESS = re.compile(rf"(?im)^[ \t]*[45]\d\d[ -][^\n]*?<?({_ADDRESS})>?")
_EXPANDED = re.compile(rf"(?i)\((?:expanded|generated) from:?\s*<?({_ADDRESS})>?\)")
_AOL_NAMES = re.compile(r"(?m)^[ \t]+([a-z][a-z0-9._-]{2,30})[ \t]*$", re.I)
_FAILURE_WORDS = re.compile(
    r"(?i)unknown|no such|not (?:found|exist|deliver|reach|a valid)|undeliver|fail|reject|refused|invalid|"
    r"quota|full|exceed|disabled|discontinued|denied|unavailable|bounced|does not|doesn't|error|sorry"
)
_NOT_RECIPIENT_CONTEXT = re.compile(
    r"(?i)^\s*(?:>?\s*)?(?:mail from|from:|sender:|return-path|reply-to|errors-to|received|message-id|"
    r"please (?:reply|send mail) to|for (?:further )?assistance|contact|x-[\w-]+:)"
)


def _own_addresses(msg: EmailMessage) -> set[str]:
    """Addresses that are the notice's own or ours (its To), never the failed recipient."""
    own: set[str] = set()
    for name in ("From", "To", "Return-Path", "Sender", "Reply-To", "Errors-To"):
        own.update(addr for _, addr in addresses_in(header_text(msg, name)))
    for part in own_parts(msg):
        if content_type(part) != "message/rfc822":
            continue
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            for name in ("From", "Sender", "Return-Path", "Reply-To"):
                own.update(addr for _, addr in addresses_in(header_text(inner[0], name)))
    return own


def _usable(address: str, own: set[str]) -> bool:
    local = address.split("@", 1)[0]
    return address not in own and local not in SYSTEM_LOCAL_PARTS and not local.startswith(("owner-", "bounce"))


def _clean(address: str) -> str:
    """Trim what notices wrap around an address (quotes, brackets, Exchange's "SMTP=" prefix)."""
    address = address.strip("'\"<>.,;:()").lower()
    return re.sub(r"^(?:smtp|rfc822)[=:]", "", address)


def heuristic_recipients(msg: EmailMessage, text: str) -> list[tuple[str, str]]:
    """(failed address, the text about it) pairs read from a free-text notice, in order of mention."""
    own = _own_addresses(msg)
    found: dict[str, str] = {}

    def add(address: str, context: str) -> None:
        address = _clean(address)
        if _usable(address, own) and address not in found:
            found[address] = context

    failed_header = header_text(msg, "X-Failed-Recipients")
    for address in _ADDRESS_RE.findall(failed_header):
        add(address, text)
    if found:
        return list(found.items())
    _angle_lines(text, add)
    _listed(text, add)
    for match in _INLINE.finditer(text):
        add(match.group(1) or match.group(2), _line_around(text, match.start()))
    for match in _SMTP_LINE_ADDRESS.finditer(text):
        line = _line_around(text, match.start())
        if not _NOT_RECIPIENT_CONTEXT.match(line):
            add(match.group(1), line)
    if not found:
        for line in text.split("\n"):
            if _NOT_RECIPIENT_CONTEXT.match(line) or not _FAILURE_WORDS.search(line):
                continue
            for address in _ADDRESS_RE.findall(line):
                add(address, line)
    if not found:
        _aol_names(msg, text, add)
    return list(found.items())


def _line_around(text: str, position: int) -> str:
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    return text[start : end if end >= 0 else len(text)]


def _angle_lines(text: str, add: object) -> None:
    """qmail, Postfix, Yahoo and Sina put each failed address alone as "<address>:" with the reason below."""
    matches = list(_ANGLE_LINE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else min(len(text), match.end() + 600)
        add(match.group(1), text[match.start() : end])  # type: ignore[operator]


def _listed(text: str, add: object) -> None:
    """Sendmail, Exchange, GroupWise, MDaemon, Netscape: an intro line, then the addresses, one a line."""
    for intro in _LIST_INTRO.finditer(text):
        rest = text[intro.end() :]
        rest = rest.split("\n", 1)[1] if "\n" in rest else ""
        block: list[str] = []
        for line in rest.split("\n")[:12]:
            stripped = line.strip()
            if not stripped:
                if block:
                    break
                continue
            if stripped.startswith("-----") and block:
                break
            block.append(line)
        context = "\n".join(block)
        addresses: list[str] = []
        for line in block:
            expanded = _EXPANDED.search(line)
            if expanded:
                # Sendmail and Exim name the alias we wrote to in "(expanded from: …)" / "(generated from …)".
                addresses[-1:] = [expanded.group(1)]
                continue
            if _NOT_RECIPIENT_CONTEXT.match(line):
                continue
            addresses += [a for a in _ADDRESS_RE.findall(line.split(" on ")[0] if " on " in line else line)]
        for address in addresses:
            add(address, context)  # type: ignore[operator]


def _aol_names(msg: EmailMessage, text: str, add: object) -> None:
    """AOL's old notices list bare screen names: they are addresses at aol.com."""
    sender = sender_address(msg) or ""
    if not sender.endswith("aol.com") or "could not be delivered" not in text:
        return
    for match in _AOL_NAMES.finditer(text.split("could not be delivered", 1)[1]):
        add(f"{match.group(1)}@aol.com", text)  # type: ignore[operator]


_EXPIRED = re.compile(r"(?i)retry time ?out exceeded|message timed out|queue period|expired")
_PERMANENT_WORDS = re.compile(r"(?i)permanent (?:error|failure)|permanently|fatal error")


def _permanent(context: str, whole: str, subject: str) -> tuple[str | None, bool]:
    """The status and hard/soft for one failed address, from what is written about it."""
    status = _status_code(context, _FAILURE_STATUS)
    if status is None:
        status = _status_code(whole, _FAILURE_STATUS)
    if status:
        return status, status.startswith("5")
    smtp = _SMTP_CODE.search(context) or _SMTP_CODE.search(whole)
    if smtp:
        return None, smtp.group(1) == "5"
    if _EXPIRED.search(context):
        return None, False  # the remote host never answered in time: nothing says the address is dead
    if _PERMANENT_WORDS.search(whole[:3000]):
        return None, True
    return None, not _DELAY_WORDS.search(subject + "\n" + whole[:3000])


def _heuristic_report(msg: EmailMessage) -> BounceReport:
    """A bounce without a machine-readable report: recipients, status and hard/soft read from the text."""
    text = notice_text(msg)
    subject = header_text(msg, "Subject")
    pairs = heuristic_recipients(msg, text)
    if not pairs:
        returned_to = _original_recipient(msg)
        pairs = [(returned_to, text)] if returned_to else []
    failures = []
    for address, context in pairs:
        status, permanent = _permanent(context, text, subject)
        failures.append(Failure(address, status, permanent, None, None))
    if not failures:
        status, permanent = _permanent(text, text, subject)
        return BounceReport(None, status, permanent, None, None, original_message_ids(msg))
    worst = next((f for f in failures if f.permanent), failures[0])
    return BounceReport(
        worst.recipient, worst.status, worst.permanent, None, None, original_message_ids(msg), None, tuple(failures)
    )


# --- the returned message ---------------------------------------------------------------------------

_BODY_MESSAGE_ID = re.compile(r"(?im)^[ \t>]*Message-ID:[ \t]*(<[^<>\s]+>)")


def original_message_ids(msg: EmailMessage) -> tuple[str, ...]:
    """The Message-ID of the message that bounced: from the returned message, its headers, or the text."""
    found: list[str] = []
    for part in own_parts(msg):
        kind = content_type(part)
        if kind == "message/rfc822":
            inner = part.get_payload()
            original = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(original, Message):
                found += message_ids(header_text(original, "Message-ID"))
        elif kind == "text/rfc822-headers":
            headers = HeaderParser(policy=policy.default).parsestr(decoded(part))
            found += message_ids(header_text(headers, "Message-ID"))
    if not found:
        found = _BODY_MESSAGE_ID.findall(notice_text(msg, cut_returned=False))
    own = set(message_ids(header_text(msg, "Message-ID")))
    return tuple(dict.fromkeys(i for i in found if i not in own))


def _original_recipient(msg: EmailMessage) -> str | None:
    """The To of the returned message: the address we wrote to."""
    for part in own_parts(msg):
        if content_type(part) != "message/rfc822":
            continue
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            found = addresses_in(header_text(inner[0], "To"))
            if found:
                return found[0][1]
    return None
