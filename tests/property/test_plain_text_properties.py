"""Properties of the text shown on screens (ips_screen.presentation.plain_text): the quick
path for text with nothing to escape must escape exactly what the character table does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ips_screen.presentation.plain_text import UNSAFE, html_value, one_line, safe_text

# every character the table escapes, its neighbours, and text of any script around them
_EDGES = sorted(
    {n for c in UNSAFE for n in (c - 1, c, c + 1) if n >= 0} | {0x2014, 0x05D0, 0x1F600}
)
texts = st.text(
    alphabet=st.one_of(st.sampled_from([chr(c) for c in _EDGES]), st.characters()), max_size=40
)


@given(texts)
def test_safe_text_escapes_what_the_table_names_and_nothing_else(text):
    assert safe_text(text) == text.translate(UNSAFE)


@given(texts)
def test_nothing_unsafe_is_left_on_one_line_or_in_a_page(text):
    for shown in (safe_text(text), one_line(text), html_value(text)):
        assert not any(ord(c) in UNSAFE for c in shown)
    assert "\n" not in one_line(text)


def test_every_character_of_the_basic_plane_is_escaped_as_the_table_says():
    for code in range(0x10000):
        if 0xD800 <= code < 0xE000:  # surrogates: no text holds one alone
            continue
        text = f"a{chr(code)}\u2014"  # beside a character that makes the text not ASCII
        assert safe_text(text) == text.translate(UNSAFE), hex(code)
