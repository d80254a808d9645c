"""Content lint: each kind of problem is found, with where it is; a clean message has no warnings."""

from __future__ import annotations

from outreach.content_lint import lint_message

CLEAN_TEXT = "Hi Ann,\n\nQuick idea for Acme: a shorter month-end close.\n\nWorth a chat?\nDana"
CLEAN_HTML = "<p>Hi Ann,</p><p>Quick idea for Acme: a shorter month-end close.</p><p>Worth a chat?<br>Dana</p>"


def _found(warnings: list) -> set[tuple[str, str]]:
    return {(w.code, w.where) for w in warnings}


def test_a_clean_message_has_no_warnings() -> None:
    assert lint_message("Quick idea for Acme", CLEAN_TEXT, CLEAN_HTML) == []


def test_unrendered_template_code_and_placeholders_are_found_with_their_line() -> None:
    found = _found(lint_message("Idea for {{ company }}", "Hi [First Name],\n\nAbout {first_name}: {x|y}", None))
    assert ("unrendered", "subject") in found
    assert ("unrendered", "text line 1") in found
    assert ("unrendered", "text line 3") in found


def test_empty_fields_show_as_gaps() -> None:
    warnings = lint_message("Idea for ", "Hi ,\nyour  team at ()", None)
    messages = [str(w) for w in warnings if w.code == "empty_field"]
    assert any(m.startswith("text line 1") and "space before punctuation" in m for m in messages)
    assert any(m.startswith("text line 2") and "two spaces" in m for m in messages)
    assert any("empty brackets" in m for m in messages)
    assert lint_message("x", "Hi None, good to meet", None)[0].code == "empty_field"


def test_subject_length_and_shouting() -> None:
    found = _found(lint_message("A" + " very" * 15 + " long subject", CLEAN_TEXT, None))
    assert ("subject_length", "subject") in found
    shouted = lint_message("QUICK IDEA FOR ACME", "This is URGENT!!", None)
    assert {("all_caps", "subject"), ("spam_phrase", "text line 1"), ("punctuation", "text line 1")} <= _found(shouted)


def test_spam_phrases_are_named() -> None:
    [warning] = [w for w in lint_message("Hello", "Act now: it is risk-free.", None) if "Act now" in w.message]
    assert warning.where == "text line 1" and warning.code == "spam_phrase"
    assert len([w for w in lint_message("Hello", "Act now: it is risk-free.", None) if w.code == "spam_phrase"]) == 2


def test_links_and_images_are_counted() -> None:
    links = "\n".join(f"https://x{i}.example" for i in range(4))
    html = "".join(f'<a href="https://x{i}.example">x{i}</a><img src="https://i{i}.example/a.png">' for i in range(4))
    found = _found(lint_message("Hello", links, html))
    assert {("links", "text"), ("links", "html"), ("images", "html")} <= found


def test_text_and_html_that_say_different_things() -> None:
    found = _found(lint_message("Hello", CLEAN_TEXT, "<p>Completely unrelated words about gardening tools.</p>"))
    assert ("text_html_mismatch", "text/html") in found
    linked = lint_message("Hello", CLEAN_TEXT, CLEAN_HTML.replace("Acme", '<a href="https://acme.example">Acme</a>'))
    assert ("text_html_mismatch", "html") in _found(linked)


def test_the_footer_needs_unsubscribe_and_a_postal_address() -> None:
    found = _found(lint_message("Hello", CLEAN_TEXT, None, unsubscribe=False, postal_address=False))
    assert ("footer", "footer") in found
    assert len([w for w in lint_message("Hello", CLEAN_TEXT, None, unsubscribe=False) if w.code == "footer"]) == 1


def test_a_call_script_is_not_judged_as_an_email() -> None:
    assert lint_message(None, "Call Ann about the close", None, unsubscribe=False, postal_address=False) == []


def test_html_markup_itself_is_not_read_as_wording() -> None:
    html = '<div style="margin:0;  padding:0"><img alt="" src="https://x.example/logo.png"><p>Hi Ann</p></div>'
    assert [w for w in lint_message("Hello", "Hi Ann", html) if w.code in ("empty_field", "all_caps")] == []
    styled = "<style>\n@media (max-width:600px){p{margin:0}}\n</style><p>Hi Ann</p><p>{{ x }}</p>"
    assert [str(w) for w in lint_message("Hello", "Hi Ann", styled) if w.code == "unrendered"] == [
        "html line 3: template code was not filled in: '{{ x }}'"
    ]
