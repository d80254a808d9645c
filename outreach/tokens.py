"""Signed, compact, URL-safe tokens for tracking, click and unsubscribe links.

A token names a touch (and for clicks, the link's position in it) and nothing else: no address, no
name. It is HMAC-SHA256 signed and compared in constant time; a forged or altered token is simply
not a token. Tokens never expire (CAN-SPAM: an opt-out link must keep working for at least 30 days,
and mail is read months later). Verification accepts every key in the ring, so rotating the secret
(new key first, old ones after) keeps links in old mail working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import StrEnum

MAC_BYTES = 12  # 96-bit tag: forging one is out of reach, and links stay short
_PACK = struct.Struct(">cQH")  # purpose, touch id, link index
_DOMAIN = b"outreach-link-v1"


class Purpose(StrEnum):
    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"


@dataclass(frozen=True)
class LinkToken:
    purpose: Purpose
    touch_id: int
    link_index: int = 0


def _mac(key: bytes, body: bytes) -> bytes:
    derived = hmac.new(key, _DOMAIN, hashlib.sha256).digest()
    return hmac.new(derived, body, hashlib.sha256).digest()[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(token: LinkToken, key: str) -> str:
    body = _PACK.pack(token.purpose.value.encode(), token.touch_id, token.link_index)
    return _b64(body + _mac(key.encode(), body))


def verify(text: str, keys: list[str], purpose: Purpose) -> LinkToken | None:
    """The token, if it is well-formed, made for `purpose`, and signed by one of `keys`; else None."""
    if not text or len(text) > 64 or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != _PACK.size + MAC_BYTES or _b64(raw) != text:
        return None  # the decoder tolerates stray characters and padding bits; only the canonical form counts
    body, tag = raw[: _PACK.size], raw[_PACK.size :]
    if not any(hmac.compare_digest(_mac(key.encode(), body), tag) for key in keys):
        return None
    kind, touch_id, link_index = _PACK.unpack(body)
    if kind != purpose.value.encode():
        return None
    return LinkToken(purpose, touch_id, link_index)
