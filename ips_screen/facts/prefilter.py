"""Byte-level looks at one NDJSON line, so that most lines are never parsed.

    resource_type(line)   the resource's type when the bytes say it for certain, else None
    Prefilter(index)      "could the rules keep this resource?" from the bytes: `maybe(line)`
                          is False only when the full path would certainly drop it
    candidate_ids(line)   every string an "id" key holds in the line (the resource's own id is
                          one of them), to settle whether a skipped line replaces a kept record

Each look is exact in one direction: when in doubt it answers "parse" (None, True). A line with
a ``\\u`` escape is always in doubt, since an escape can spell a key or a code in other bytes;
so is a line that is not shaped like one JSON object (a truncated line is parsed, and so
reported). Codes are matched as the codelists match them (`code_keys.normalise`): surrounding
spaces and case ignored, for ICD-10 and ICD-11 the dot ignored, prefix rows (``MG30*``) as
prefixes; the system is not looked at, which only makes "maybe" more frequent.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ips_screen.facts.extract import CodeIndex

# The type of a resource: the top-level "resourceType" key. Only a key with nothing nested
# before it is certain to be the top-level one (no '{', '[', ']' or '}' between the line's
# opening brace and the key).
_TYPE_KEY = b'"resourceType"'
_TYPE_VALUE = re.compile(rb'\s*:\s*"([A-Za-z]{1,64})"')
_NESTING = re.compile(rb"[\[\]{}]")
# Every "code" (or "id") key with a string value; group 2 is non-empty when the value holds an
# escape (then the line is in doubt).
_CODE = re.compile(rb'"code"\s*:\s*"([^"\\]*)(\\?)')
_ID = re.compile(rb'"id"\s*:\s*(?:"([^"\\]*)(\\?)|(.))', re.DOTALL)
_WS = b" \t\r\n"


def resource_type(line: bytes) -> str | None:
    """The resource type the line's top-level ``resourceType`` names, or None when not certain
    (no such key, more than one, nested brackets before it, escapes, not one JSON object)."""
    if not _shaped(line) or line.count(_TYPE_KEY) != 1:
        return None
    start = line.find(b"{")
    pos = line.find(_TYPE_KEY, start)
    if pos != start + 1 and _NESTING.search(line, start + 1, pos) is not None:
        return None
    found = _TYPE_VALUE.match(line, pos + len(_TYPE_KEY))
    return found[1].decode("ascii") if found else None


def _shaped(line: bytes) -> bool:
    """One JSON object from the look of its ends, with no ``\\u`` escape anywhere."""
    if line[:1] != b"{" or not line.endswith((b"}\n", b"}")):
        body = line.strip(_WS)
        if body[:1] != b"{" or body[-1:] != b"}":
            return False
    return b"\\" not in line or b"\\u" not in line


class Prefilter:
    """ "Could any coding in this line be in a codelist?" from the bytes, with a cache per raw
    code value (the same few thousand values recur across millions of lines)."""

    def __init__(self, index: CodeIndex) -> None:
        codes: set[str] = set()
        prefixes: set[str] = set()
        for _, code in index.exact:
            codes.add(code)
        for found in index.prefixes.values():
            prefixes.update(found)
        self.codes = frozenset(codes)
        self.prefixes = tuple(sorted(prefixes))
        self._seen: dict[bytes, bool] = {}

    def maybe(self, line: bytes) -> bool:
        """False only when no "code" value in the line can match a codelist code."""
        if not _shaped(line):
            return True
        seen = self._seen
        for value, escaped in _CODE.findall(line):
            if escaped:
                return True
            hit = seen.get(value)
            if hit is None:
                hit = self._matches(value)
                if len(seen) < 1_000_000:
                    seen[value] = hit
            if hit:
                return True
        return False

    def _matches(self, raw: bytes) -> bool:
        try:
            code = raw.decode("utf-8").strip().upper()
        except UnicodeDecodeError:
            return True  # orjson would refuse the line: let it say so
        for form in (code, code.replace(".", "")):
            if form in self.codes or form.startswith(self.prefixes):
                return True
        return False


def candidate_ids(line: bytes) -> list[bytes] | None:
    """The raw values of every "id" key in the line, or None when one holds an escape or is not
    a string."""
    found = _ID.findall(line)
    if any(escaped or other for _, escaped, other in found):
        return None
    return [value for value, _, _ in found]
