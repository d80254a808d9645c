"""Link rewriting and the open pixel: what is tracked, what is never touched, and that tokens lead back."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.link_tracking import TrackingOptions, add_pixel, text_to_html, track_touch
from outreach.tokens import LinkToken, Purpose, verify

KEY = "k" * 48
BASE = "https://t.example.com"
UNSUB = f"{BASE}/u/UNSUBTOKEN"
BOTH = TrackingOptions(BASE, KEY, opens=True, clicks=True, unsubscribe_url=UNSUB)
CLICKS = TrackingOptions(BASE, KEY, opens=False, clicks=True, unsubscribe_url=UNSUB)
OPENS = TrackingOptions(BASE, KEY, opens=True, clicks=False, unsubscribe_url=UNSUB)
NEITHER = TrackingOptions(BASE, KEY, opens=False, clicks=False, unsubscribe_url=UNSUB)
TRACKED = re.compile(re.escape(BASE) + r"/c/([A-Za-z0-9_-]+)")


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.imgs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("a", "area") and values.get("href") is not None:
            self.hrefs.append(values["href"] or "")
        if tag == "img":
            self.imgs.append(values.get("src") or "")


def _parse(page: str) -> _Hrefs:
    parser = _Hrefs()
    parser.feed(page)
    return parser


def _destination(url: str, touch_id: int, links: list[str]) -> str:
    token = verify(url.rsplit("/", 1)[1], [KEY], Purpose.CLICK)
    assert token is not None and token.touch_id == touch_id
    return links[token.link_index]


def test_both_off_changes_nothing_and_invents_no_html() -> None:
    result = track_touch(7, "Hi https://a.example/x", None, NEITHER)
    assert (result.text, result.html, result.links) == ("Hi https://a.example/x", None, [])
    page = '<p><a href="https://a.example">a</a></p>'
    assert track_touch(7, "t", page, NEITHER).html == page


def test_html_links_are_rewritten_and_each_leads_back_to_its_url() -> None:
    page = (
        "<html><body>\n<p>See <a class='cta' href=\"https://a.example/p?x=1&amp;y=2\">this</a> and\r\n"
        '<A HREF="https://b.example/">that</A> and <area href="http://c.example/map" alt="m"></p></body></html>'
    )
    result = track_touch(42, "text", page, CLICKS)
    hrefs = _parse(result.html or "").hrefs
    assert all(TRACKED.fullmatch(h) for h in hrefs) and len(hrefs) == 3
    assert [_destination(h, 42, result.links) for h in hrefs] == [
        "https://a.example/p?x=1&y=2",  # stored as the browser would follow it (entity decoded)
        "https://b.example/",
        "http://c.example/map",
    ]
    assert 'class="cta"' in (result.html or "") and "that</A>" in (result.html or "")  # the rest is untouched


def test_unsubscribe_mailto_tel_anchors_and_other_schemes_are_never_rewritten() -> None:
    kept = [UNSUB, "mailto:ann@acme.example", "tel:+15551234", "#section", "/relative/path", "javascript:void(0)",
            "data:text/html,hi", "ftp://files.example/x", f"{BASE}/u/OTHER"]  # fmt: skip
    page = "".join(f'<a href="{h}">x</a>' for h in kept)
    result = track_touch(1, f"Unsubscribe: {UNSUB}", page, CLICKS)
    assert _parse(result.html or "").hrefs == kept
    assert result.text == f"Unsubscribe: {UNSUB}" and result.links == []


def test_plain_text_urls_are_rewritten_without_their_punctuation() -> None:
    text = "Read https://a.example/post. Or (https://b.example/x_(y)) and <https://c.example/z>, ok? mailto:a@b.example"
    result = track_touch(3, text, None, CLICKS)
    assert result.links == ["https://a.example/post", "https://b.example/x_(y)", "https://c.example/z"]
    urls = TRACKED.findall(result.text)
    assert len(urls) == 3
    assert result.text.startswith("Read https://t.example.com/c/") and ". Or (" in result.text
    assert result.text.endswith(">, ok? mailto:a@b.example")
    assert result.html is None  # clicks only: no HTML part is invented


def test_the_same_url_in_text_and_html_shares_one_index() -> None:
    result = track_touch(5, "Go to https://a.example/", '<a href="https://a.example/">go</a>', CLICKS)
    assert result.links == ["https://a.example/"]
    assert TRACKED.search(result.text).group(0) == _parse(result.html or "").hrefs[0]


def test_opens_add_one_pixel_inside_body_with_an_open_token() -> None:
    result = track_touch(9, "t", "<html><body><p>Hi</p></body></html>", OPENS)
    parsed = _parse(result.html or "")
    assert len(parsed.imgs) == 1
    token = parsed.imgs[0].removeprefix(f"{BASE}/o/")
    assert verify(token, [KEY], Purpose.OPEN) == LinkToken(Purpose.OPEN, 9)
    assert (result.html or "").index("<img") < (result.html or "").index("</body>")
    assert result.links == []


def test_opens_on_a_text_only_touch_make_an_escaped_html_alternative() -> None:
    text = 'Hi <script>alert("x")</script> & co\nsee https://a.example/?q=<b>'
    result = track_touch(11, text, None, BOTH)
    page = result.html or ""
    assert "<script>" not in page and "&lt;script&gt;" in page and "&amp; co<br>" in page
    assert len(_parse(page).imgs) == 1
    assert result.links == ["https://a.example/?q="]


def test_text_to_html_escapes_everything_and_keeps_lines() -> None:
    page = text_to_html('a < b > "c"\r\nline two')
    assert 'a &lt; b &gt; "c"<br>\nline two' in page
    assert page.startswith("<!DOCTYPE html>")


def test_pixel_goes_at_the_end_without_a_body_tag() -> None:
    assert add_pixel("<p>x</p>", "https://t/o/a").startswith("<p>x</p><img")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["https://a.example/1", "http://b.example/2?x=1", "mailto:x@y.example", "#top",
                                 "https://c.example/é", "tel:1", UNSUB]), min_size=0, max_size=12),
       st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))  # fmt: skip
def test_every_tracked_link_resolves_to_the_original_and_no_other_is_changed(hrefs: list[str], filler: str) -> None:
    from html import escape

    page = "<div>" + "".join(f'<a href="{escape(h)}">{escape(filler)}</a>' for h in hrefs) + "</div>"
    result = track_touch(77, filler, page, CLICKS)
    after = _parse(result.html or "").hrefs
    assert len(after) == len(hrefs)
    for before, now in zip(hrefs, after, strict=True):
        if before.startswith("http") and before != UNSUB:
            assert _destination(now, 77, result.links) == before
        else:
            assert now == before
