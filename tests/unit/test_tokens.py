from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outreach.tokens import LinkToken, Purpose, sign, verify

KEY = "k" * 48
OLD = "o" * 48


def test_round_trip_and_purpose_is_bound() -> None:
    token = LinkToken(Purpose.CLICK, 123456, 3)
    text = sign(token, KEY)
    assert verify(text, [KEY], Purpose.CLICK) == token
    assert verify(text, [KEY], Purpose.UNSUBSCRIBE) is None  # a click token cannot unsubscribe
    assert len(text) <= 32 and text.replace("-", "").replace("_", "").isalnum()


def test_rotation_keeps_old_links_working() -> None:
    old_link = sign(LinkToken(Purpose.UNSUBSCRIBE, 7), OLD)
    assert verify(old_link, [KEY, OLD], Purpose.UNSUBSCRIBE) == LinkToken(Purpose.UNSUBSCRIBE, 7)
    assert verify(old_link, [KEY], Purpose.UNSUBSCRIBE) is None


def test_token_reveals_no_personal_data() -> None:
    text = sign(LinkToken(Purpose.OPEN, 42), KEY)
    assert "42" not in text and "@" not in text


@given(st.integers(0, 2**63 - 1), st.integers(0, 65535), st.integers(0, 21), st.integers(1, 255))
def test_any_altered_byte_is_rejected(touch_id: int, link: int, position: int, flip: int) -> None:
    text = sign(LinkToken(Purpose.CLICK, touch_id, link), KEY)
    chars = list(text)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = position % len(chars)
    chars[i] = alphabet[(alphabet.index(chars[i]) + flip) % 64]
    altered = "".join(chars)
    result = verify(altered, [KEY], Purpose.CLICK)
    assert result is None or result == LinkToken(Purpose.CLICK, touch_id, link)  # only padding bits may differ


@given(st.text(max_size=80))
def test_garbage_is_never_a_token(text: str) -> None:
    assert verify(text, [KEY], Purpose.UNSUBSCRIBE) is None
