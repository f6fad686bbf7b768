"""The line of a key in a TOML document, so that a config error names the file and the line.

`tomllib` reports positions only for syntax errors, not for the keys of a document it parsed.
`key_line` finds one from the lines that spell the key's name: such a line is the key's when the
lines before it parse (so it begins a statement, not the inside of a multi-line value) and the
document up to the end of the value begun there holds the key. A key the document lacks (a
required setting missing) is located by the nearest table around it that the document has.
Only on errors, and only for documents of config size: a name spelled on more than
`MAX_CANDIDATES` lines, or escaped in a quoted key, is not located (None).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence

MAX_LINES = 2_000
MAX_CHARS = 256 * 1024
MAX_CANDIDATES = 40


def key_line(text: str, key: Sequence[str | int]) -> int | None:
    """The line (from 1) of `key` (its keys and array indexes from the document's top, as a
    pydantic error's `loc` gives them once the models' own parts are taken out), else of the
    nearest enclosing table the document writes; None when neither is written (or the key is
    empty, or the document is too long to locate keys in)."""
    lines = text.splitlines(keepends=True)
    if not key or len(lines) > MAX_LINES or len(text) > MAX_CHARS:
        return None
    for depth in range(len(key), 0, -1):
        found = _line_of(lines, tuple(key[:depth]))
        if found is not None:
            return found
    return None


def located(path: object, text: str, key: Sequence[str | int]) -> str:
    """ "file:line" of `key` in the file's `text`, or "file" when it has no line."""
    line = key_line(text, key)
    return f"{path}:{line}" if line is not None else str(path)


def _line_of(lines: list[str], key: tuple[str | int, ...]) -> int | None:
    name = next((str(p) for p in reversed(key) if not str(p).isdigit()), None)
    if name is None:
        return None
    candidates = [n for n, line in enumerate(lines) if name in line]
    for n in candidates[:MAX_CANDIDATES]:
        if n and _parsed(lines, n) is None:
            continue  # inside a value over several lines: no key begins here
        for end in range(n + 1, len(lines) + 1):
            data = _parsed(lines, end)
            if data is not None:  # the value begun on line n ends on line `end`
                if _holds(data, key):
                    return n + 1
                break
    return None


def _parsed(lines: list[str], count: int) -> dict | None:
    """The document's first `count` lines, parsed; None when they are not a document."""
    try:
        return tomllib.loads("".join(lines[:count]))
    except tomllib.TOMLDecodeError:
        return None


def _holds(data: object, key: tuple[str | int, ...]) -> bool:
    for part in key:
        if isinstance(data, dict) and isinstance(part, str) and part in data:
            data = data[part]
        elif isinstance(data, list) and str(part).isdigit() and int(part) < len(data):
            data = data[int(part)]  # an array's index, as a number or as its digits
        else:
            return False
    return True
