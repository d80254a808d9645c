"""DKIM: one key per sending domain, generated (RSA 2048) or imported, encrypted at rest, used at send time.

The private key is stored only as a Fernet token under a key derived (HKDF-SHA256) from the workspace's
secret key, so a copy of the database alone does not give it away; every key of the ring
(OUTREACH_SECRET_KEY_PREVIOUS) still decrypts after a rotation. It is never shown, logged or put in an
error message: what an operator sees is the public half as the DNS TXT record to publish.

Signing is over the exact bytes handed to the SMTP server (relaxed/relaxed canonicalization, which
survives re-folding by relays), with `d=` the From address's domain so DMARC aligns.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

import dkim as dkimpy
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.engine import transaction
from db.models import DkimKey, Mailbox
from outreach.campaigns import CAPTURE_MAILBOX
from outreach.errors import OutreachError
from outreach.mailer import MessageError, sender_domain
from outreach.smtp_transport import MailboxUnavailable

DEFAULT_SELECTOR = "outreach"
GENERATED_BITS = 2048
MIN_BITS = 1024  # RFC 8301: verifiers must not accept less
ADVISED_BITS = 2048
# The contract's headers first; the rest keep threading and the MIME structure from being altered unseen.
SIGNED_HEADERS = (
    b"from", b"subject", b"date", b"message-id", b"to", b"list-unsubscribe", b"list-unsubscribe-post",
    b"reply-to", b"in-reply-to", b"references", b"mime-version", b"content-type",
)  # fmt: skip
CANONICALIZATION = (b"relaxed", b"relaxed")
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_HKDF_SALT = b"outreach dkim"
_HKDF_INFO = b"encryption of DKIM private keys at rest"


class DkimError(OutreachError):
    """A DKIM key cannot be generated, imported or found as asked."""


class DkimUnavailable(MailboxUnavailable):
    """A domain has a key but it cannot be used now: nothing is sent unsigned in its place."""


@dataclass(frozen=True)
class DkimRecord:
    """What may be shown about a domain's key: the DNS record to publish, never the private key."""

    domain: str
    selector: str
    public_key: str
    key_bits: int
    source: str
    created_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def value(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.public_key}"

    @property
    def zone_line(self) -> str:
        return f'{self.name}  TXT "{self.value}"'

    def as_dict(self) -> dict[str, object]:
        return {
            "domain": self.domain, "selector": self.selector, "record_name": self.name, "record_type": "TXT",
            "record_value": self.value, "key_bits": self.key_bits, "source": self.source,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }  # fmt: skip


@dataclass(frozen=True)
class Signer:
    """Signs one domain's messages; the PEM is kept out of repr so it never lands in a log or traceback."""

    domain: str
    selector: str
    private_pem: bytes = field(repr=False)

    def __call__(self, message: EmailMessage | bytes) -> bytes:
        data = message if isinstance(message, bytes) else message.as_bytes()  # the send path passes its bytes
        try:
            return sign_bytes(data, domain=self.domain, selector=self.selector, private_pem=self.private_pem)
        except dkimpy.DKIMException as exc:  # the send path retries the touch later instead of sending it unsigned
            raise DkimUnavailable(f"DKIM signing for {self.domain} failed: {exc.__class__.__name__}") from None


# --- names -----------------------------------------------------------------------------------------


def normalize_domain(domain: str) -> str:
    """The domain as DNS and the d= tag spell it: lower case ASCII (IDN as punycode), no trailing dot."""
    text = (domain or "").strip().rstrip(".").lower()
    try:
        return sender_domain(f"dkim@{text}")
    except MessageError:
        raise DkimError(f"'{domain}' is not a domain name; give the part after @ of the sender address") from None


def check_selector(selector: str) -> str:
    text = (selector or "").strip().lower()
    if not _SELECTOR.match(text) or len(text) > 63:
        raise DkimError(f"selector '{selector}': use letters, digits and '-' (e.g. outreach or s2026)")
    return text


# --- encryption at rest ----------------------------------------------------------------------------


def _fernet_key(secret: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret.encode())
    return base64.urlsafe_b64encode(derived)


def _ring(keys: Sequence[str]) -> MultiFernet:
    if not keys:
        raise DkimError("no secret key to encrypt DKIM keys with; set OUTREACH_SECRET_KEY or OUTREACH_DATA_DIR")
    return MultiFernet([Fernet(_fernet_key(k)) for k in keys])


def encrypt_pem(pem: bytes, keys: Sequence[str]) -> str:
    """Encrypted under the current key (the first of the ring)."""
    return _ring(keys).encrypt(pem).decode("ascii")


def decrypt_pem(token: str, keys: Sequence[str], domain: str) -> bytes:
    try:
        return _ring(keys).decrypt(token.encode("ascii"))
    except InvalidToken:
        raise DkimUnavailable(
            f"the DKIM key of {domain} cannot be decrypted with the current secret key (was OUTREACH_SECRET_KEY "
            "changed?): list the old key in OUTREACH_SECRET_KEY_PREVIOUS, or import or generate the key again"
        ) from None


# --- keys ------------------------------------------------------------------------------------------


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """Parse an unencrypted PEM RSA private key; errors never quote the input."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data.strip() + b"\n", password=None)
    except TypeError:
        raise DkimError("the private key is password-protected; export it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise DkimError("this is not a PEM private key (expected '-----BEGIN PRIVATE KEY-----' or RSA)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimError(f"DKIM keys here are RSA (k=rsa); this is a {type(key).__name__.removeprefix('_')} key")
    if key.key_size < MIN_BITS:
        raise DkimError(f"the key has {key.key_size} bits; DKIM verifiers refuse fewer than {MIN_BITS} (use 2048)")
    return key


def public_key_b64(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def _record(row: DkimKey) -> DkimRecord:
    return DkimRecord(row.domain, row.selector, row.public_key, row.key_bits, row.source, row.created_at)


def _store(
    session: Session,
    domain: str,
    selector: str,
    key: rsa.RSAPrivateKey,
    *,
    source: str,
    keys: Sequence[str],
    replace: bool,
    now: datetime,
) -> DkimRecord:
    row = session.scalar(select(DkimKey).where(DkimKey.domain == domain))
    if row is not None and not replace:
        raise DkimError(
            f"{domain} already has a DKIM key (selector {row.selector}); replacing it breaks verification of mail "
            "in flight until DNS has the new record: pass --replace (best with a new --selector)"
        )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if row is None:
        row = DkimKey(domain=domain, created_at=now)
        session.add(row)
    row.selector, row.source, row.key_bits = selector, source, key.key_size
    row.private_key_encrypted = encrypt_pem(pem, keys)
    row.public_key = public_key_b64(key)
    row.updated_at = now
    session.flush()
    return _record(row)


def generate_key(
    session: Session,
    domain: str,
    *,
    keys: Sequence[str],
    now: datetime,
    selector: str = DEFAULT_SELECTOR,
    replace: bool = False,
) -> DkimRecord:
    """A new RSA 2048 key for the domain; returns the TXT record to publish."""
    name, sel = normalize_domain(domain), check_selector(selector)
    key = rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_BITS)
    return _store(session, name, sel, key, source="generated", keys=keys, replace=replace, now=now)


def import_key(
    session: Session,
    domain: str,
    pem: str | bytes,
    *,
    keys: Sequence[str],
    now: datetime,
    selector: str = DEFAULT_SELECTOR,
    replace: bool = False,
) -> DkimRecord:
    """Keep using a key already published in DNS (e.g. from the previous sending tool)."""
    name, sel = normalize_domain(domain), check_selector(selector)
    key = load_private_key(pem)
    return _store(session, name, sel, key, source="imported", keys=keys, replace=replace, now=now)


def set_selector(session: Session, domain: str, selector: str, now: datetime) -> DkimRecord:
    """The key is published under another selector name; the key itself is unchanged."""
    row = _row(session, domain)
    row.selector, row.updated_at = check_selector(selector), now
    session.flush()
    return _record(row)


def delete_key(session: Session, domain: str) -> None:
    """Mail from the domain goes out unsigned again."""
    session.delete(_row(session, domain))
    session.flush()


def _row(session: Session, domain: str) -> DkimKey:
    name = normalize_domain(domain)
    row = session.scalar(select(DkimKey).where(DkimKey.domain == name))
    if row is None:
        raise DkimError(f"{name} has no DKIM key; create one with `outreach mailbox dkim generate {name}`")
    return row


def dns_record(session: Session, domain: str) -> DkimRecord:
    return _record(_row(session, domain))


def list_records(session: Session) -> list[DkimRecord]:
    return [_record(row) for row in session.scalars(select(DkimKey).order_by(DkimKey.domain))]


@dataclass(frozen=True)
class DkimView:
    records: list[DkimRecord]
    unsigned: list[str]  # sending domains of mailboxes that have no key (their mail goes out unsigned)


def dns_records_view(session: Session) -> DkimView:
    """What Settings shows: each key's record, and the mailboxes' sending domains still without one."""
    records = list_records(session)
    signed = {r.domain for r in records}
    domains = set()
    for address in session.scalars(select(Mailbox.from_address).where(Mailbox.name != CAPTURE_MAILBOX)):
        try:
            domains.add(sender_domain(address))
        except MessageError:
            continue  # launch names that mailbox's bad address already
    return DkimView(records, sorted(domains - signed))


# --- signing ---------------------------------------------------------------------------------------


def present_headers(message: bytes) -> list[bytes]:
    """SIGNED_HEADERS that the message has, in that order (signing an absent header would freeze its absence)."""
    head = message.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    names = {
        line.split(b":", 1)[0].strip().lower()
        for line in head.splitlines()
        if line and not line[:1].isspace() and b":" in line
    }
    return [name for name in SIGNED_HEADERS if name in names]


def sign_bytes(message: bytes, *, domain: str, selector: str, private_pem: bytes) -> bytes:
    """The message with its DKIM-Signature header prepended."""
    signature = dkimpy.sign(
        message, selector.encode("ascii"), domain.encode("ascii"), private_pem,
        canonicalize=CANONICALIZATION, include_headers=present_headers(message),
    )  # fmt: skip
    return signature + message


def signer(session: Session, from_address: str, keys: Sequence[str]) -> Signer | None:
    """The signer for a sender address's domain, or None when that domain has no key."""
    try:
        domain = sender_domain(from_address)
    except MessageError:
        return None  # such a message cannot be built either; it fails alone, with that reason
    row = session.scalar(select(DkimKey).where(DkimKey.domain == domain))
    if row is None:
        return None
    return Signer(domain, row.selector, decrypt_pem(row.private_key_encrypted, keys, domain))


Sign = Callable[[EmailMessage | bytes], EmailMessage | bytes]


def _unsigned(message: EmailMessage | bytes) -> EmailMessage | bytes:
    return message


def signer_for(engine: Engine, from_address: str, keys: Sequence[str]) -> Sign:
    """What the send path applies to each message of a mailbox: DKIM-signed bytes, or the message as it is.

    Raises DkimUnavailable (a MailboxUnavailable) when the domain has a key that cannot be decrypted.
    """
    with transaction(engine, readonly=True) as session:
        found = signer(session, from_address, keys)
    return found if found is not None else _unsigned
