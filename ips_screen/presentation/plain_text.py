"""Text others wrote (names, notes, record displays), shown as text on every screen.

A control character in such text (an escape sequence that drives a terminal) or a bidirectional
override (which makes a name read as another, on a terminal or a web page alike) is shown as its
escape (``\\x1b``, ``\\u202e``); tabs and line feeds stay, as do letters of every script
(right-to-left ones need no override). The commands' output passes through it
(cli/terminal.py), and so does every value the review page and report.html put into their HTML
(`html_value`, the templates' `finalize`); a one-line error and a text log line have their line
feeds escaped as well (`one_line`).
"""

from __future__ import annotations

from markupsafe import Markup

_C0 = [c for c in range(0x20) if c not in (0x09, 0x0A)]  # but tab and line feed
UNSAFE = {c: f"\\x{c:02x}" for c in (*_C0, 0x7F)} | {
    c: f"\\u{c:04x}"
    for c in (
        *range(0x80, 0xA0),  # C1 controls (CSI, OSC ... in one character)
        *range(0x202A, 0x202F),  # bidirectional embeddings and overrides
        *range(0x2066, 0x206A),  # bidirectional isolates
    )
}


def safe_text(text: str) -> str:
    """`text` with every control character but tab and line feed, and every bidirectional
    override, written as its escape."""
    # Every character of UNSAFE is "Other" in Unicode (Cc, Cf), so printable text has none: one
    # pass in C, where `translate` looks up each character of a text that is not ASCII in a dict
    # (6 ms over a 10,000-patient night's worklist.csv, of cells with an em dash)
    return text if text.isprintable() else text.translate(UNSAFE)


def one_line(text: str) -> str:
    """`safe_text` with line feeds escaped too: a message quoting what others wrote (a file name
    with a line end in it, say) stays the one line it is, and cannot print one that looks like
    the tool's own."""
    return safe_text(text).replace("\n", "\\n")


def html_value(value: object) -> object:
    """A template value as `safe_text` (HTML the template marked safe stays marked)."""
    if isinstance(value, Markup):
        return Markup(safe_text(str(value)))  # noqa: S704 (HTML given as safe, escapes added)
    if isinstance(value, str):
        return safe_text(value)
    return value
