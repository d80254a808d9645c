"""DKIM signing of messages built by our mailer, verified with the public key and no network."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from outreach.dkim import (
    DkimError,
    DkimRecord,
    DkimUnavailable,
    Signer,
    check_selector,
    decrypt_pem,
    encrypt_pem,
    load_private_key,
    normalize_domain,
    present_headers,
    public_key_b64,
    sign_bytes,
)
from outreach.mailer import OutgoingMessage, build_message

KEYS = ["current-secret-key-" + "c" * 30]
OLD = ["previous-secret-key-" + "p" * 30]
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def dns_for(record: DkimRecord):
    """A resolver that knows exactly one TXT record, as a zone would after the operator published it."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record.value.encode() if name.decode().rstrip(".") == record.name else None

    return lookup


def marketing_message(**changes: object) -> OutgoingMessage:
    fields = {
        "from_address": "dana@sender.example", "from_name": "Dana Sender", "to_address": "sam@prospect.example",
        "to_name": "Sam Prospect", "subject": "Quick idea for Big Bank", "text_body": "Hi Sam,\n\nA short note.",
        "html_body": "<p>Hi Sam,</p><p>A short note.</p>", "message_id": "<t1.abc@sender.example>", "date": NOW,
        "list_unsubscribe_url": "https://track.example/u/" + "x" * 120,
        "list_unsubscribe_mailto": "mailto:dana@sender.example?subject=unsubscribe",
        "postal_address": "Outreach Inc\n1 Main St",
    }  # fmt: skip
    return OutgoingMessage(**(fields | changes))


def record_for(key: rsa.RSAPrivateKey, selector: str = "outreach") -> DkimRecord:
    return DkimRecord("sender.example", selector, public_key_b64(key), 2048, "generated")


def signed_tags(message: bytes) -> dict[str, str]:
    header = message.split(b"\r\n\r\n", 1)[0].decode()
    value = re.search(r"^DKIM-Signature:(.*?)(?=\r\n\S)", header, re.S | re.M).group(1)
    value = re.sub(r"\s+", "", value)
    return dict(part.split("=", 1) for part in value.split(";") if part)


def test_a_marketing_message_signed_by_the_mailer_verifies_with_the_published_key(key, pem) -> None:
    message = build_message(marketing_message())
    signed = Signer("sender.example", "outreach", pem)(message)

    assert dkimpy.verify(signed, dnsfunc=dns_for(record_for(key)))
    tags = signed_tags(signed)
    assert (tags["d"], tags["s"], tags["c"], tags["a"]) == (
        "sender.example",
        "outreach",
        "relaxed/relaxed",
        "rsa-sha256",
    )
    covered = tags["h"].split(":")
    for header in ("from", "subject", "date", "message-id", "to", "list-unsubscribe", "list-unsubscribe-post"):
        assert header in covered


@pytest.mark.parametrize(
    ("header", "forged"),
    [
        (b"Subject: Quick idea for Big Bank", b"Subject: Quick idea for Big Bonk"),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click"),
        (b"A short note.", b"A long note.."),
    ],
)
def test_changing_a_signed_header_or_the_body_breaks_the_signature(key, pem, header, forged) -> None:
    signed = Signer("sender.example", "outreach", pem)(build_message(marketing_message()))
    assert header in signed

    assert not dkimpy.verify(signed.replace(header, forged, 1), dnsfunc=dns_for(record_for(key)))


def test_a_signature_does_not_verify_with_another_key_or_selector(key, pem) -> None:
    signed = Signer("sender.example", "outreach", pem)(build_message(marketing_message()))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    assert not dkimpy.verify(signed, dnsfunc=dns_for(record_for(other)))
    assert not dkimpy.verify(signed, dnsfunc=dns_for(record_for(key, selector="s2026")))


def test_only_headers_the_message_has_are_signed(pem) -> None:
    plain = build_message(marketing_message(list_unsubscribe_url=None, list_unsubscribe_mailto=None))
    follow_up = build_message(marketing_message(in_reply_to="<t0.abc@sender.example>"))

    assert b"list-unsubscribe" not in present_headers(plain.as_bytes())
    assert b"in-reply-to" in present_headers(follow_up.as_bytes())
    assert b"references" in present_headers(follow_up.as_bytes())
    tags = signed_tags(sign_bytes(plain.as_bytes(), domain="sender.example", selector="outreach", private_pem=pem))
    assert "list-unsubscribe" not in tags["h"].split(":")


def test_the_private_key_is_encrypted_and_decrypts_with_any_key_of_the_ring(pem) -> None:
    token = encrypt_pem(pem, OLD)

    assert b"PRIVATE KEY" not in token.encode() and pem.split(b"\n")[1].decode() not in token
    assert decrypt_pem(token, KEYS + OLD, "sender.example") == pem  # rotated: the old key still decrypts
    with pytest.raises(DkimUnavailable, match="OUTREACH_SECRET_KEY_PREVIOUS"):
        decrypt_pem(token, KEYS, "sender.example")


def test_imported_keys_must_be_unencrypted_rsa_of_enough_bits(key, pem) -> None:
    assert load_private_key(pem.decode()).private_numbers() == key.private_numbers()
    traditional = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert load_private_key(traditional).key_size == 2048
    locked = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for bad, message in [
        (locked, "password-protected"),
        (ec_key, "RSA"),
        (b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----", "not a PEM private key"),
    ]:
        with pytest.raises(DkimError, match=message) as raised:
            load_private_key(bad)
        assert "not a key" not in str(raised.value).replace("not a PEM", "")


def test_the_record_to_publish(key) -> None:
    record = record_for(key)
    assert record.name == "outreach._domainkey.sender.example"
    assert record.value == f"v=DKIM1; k=rsa; p={public_key_b64(key)}"
    assert record.zone_line == f'outreach._domainkey.sender.example  TXT "{record.value}"'


def test_domains_and_selectors_are_checked() -> None:
    assert normalize_domain(" Sender.Example. ") == "sender.example"
    assert normalize_domain("bücher.example") == "xn--bcher-kva.example"
    assert check_selector("S2026") == "s2026"
    for bad in ("not a domain", "", "x@y"):
        with pytest.raises(DkimError, match="not a domain"):
            normalize_domain(bad)
    for bad in ("has space", "-lead", "a_b", ""):
        with pytest.raises(DkimError, match="selector"):
            check_selector(bad)


def test_the_signer_never_shows_its_key(pem) -> None:
    assert "PRIVATE" not in repr(Signer("sender.example", "outreach", pem))
