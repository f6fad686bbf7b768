"""Byte-level looks at one NDJSON line, so that most lines are never parsed.

    resource_type(line)   the resource's type when the bytes say it for certain, else None
                          (given the type its file declares, key order is free)
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
from bisect import bisect_right
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


def resource_type(line: bytes, declared: str | None = None) -> str | None:
    """The resource type the line's top-level ``resourceType`` names, or None when not certain
    (no such key, more than one, nested brackets before it, escapes, not one JSON object).

    `declared`: the type the line's file is said to hold (its Bulk manifest entry or name).
    A line naming that type in its only ``resourceType`` key is taken to be of that type
    wherever the key is (key-sorted lines have nested values before it): the one key is the
    top-level one unless the line has none, and a line without one is not a resource; in such a
    file it is read as one of the declared type (reported only if it is parsed), as a broken
    line in a file of a type no rule reads is only counted."""
    if not _shaped(line) or line.count(_TYPE_KEY) != 1:
        return None
    start = line.find(b"{")
    pos = line.find(_TYPE_KEY, start)
    found = _TYPE_VALUE.match(line, pos + len(_TYPE_KEY))
    if found is None:
        return None
    if pos != start + 1 and _NESTING.search(line, start + 1, pos) is not None:
        if declared is not None and found[1] == declared.encode("ascii"):
            return declared
        return None
    return found[1].decode("ascii")


def _shaped(line: bytes) -> bool:
    """One JSON object from the look of its ends and as many closing braces and brackets as
    opening ones (a line cut short after a nested value ends in "}" too), with no ``\\u``
    escape anywhere. A line cut short whose strings hold unbalanced braces still looks whole."""
    if line[:1] != b"{" or not line.endswith((b"}\n", b"}")):
        body = line.strip(_WS)
        if body[:1] != b"{" or body[-1:] != b"}":
            return False
    if line.count(b"{") != line.count(b"}") or line.count(b"[") != line.count(b"]"):
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
        return not _shaped(line) or self.maybe_shaped(line)

    def maybe_shaped(self, line: bytes) -> bool:
        """`maybe` for a line already found shaped like one object without escapes (a line
        `resource_type` named a type for)."""
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

    def value_matches(self, raw: bytes) -> bool:
        """Whether a raw "code" value (no escapes) may match a codelist code."""
        hit = self._seen.get(raw)
        if hit is None:
            hit = self._seen[raw] = self._matches(raw)
        return hit

    def _matches(self, raw: bytes) -> bool:
        try:
            code = raw.decode("utf-8").strip().upper()
        except UnicodeDecodeError:
            return True  # orjson would refuse the line: let it say so
        for form in (code, code.replace(".", "")):
            if form in self.codes or form.startswith(self.prefixes):
                return True
        return False


# The usual Bulk line: the type, then the id, first; with only one "id" key in the line it is
# certainly the resource's own.
_LEADING_ID = re.compile(rb'\{\s*"resourceType"\s*:\s*"[A-Za-z]+"\s*,\s*"id"\s*:\s*"([^"\\]*)"')


def candidate_ids(line: bytes) -> list[bytes] | None:
    """The raw values of every "id" key in the line, or None when one holds an escape or is not
    a string."""
    leading = _LEADING_ID.match(line)
    if leading is not None and line.count(b'"id"') == 1:
        return [leading[1]]
    found = _ID.findall(line)
    if any(escaped or other for _, escaped, other in found):
        return None
    return [value for value, _, _ in found]


# --- whole blocks of a Bulk file -----------------------------------------------------------------

# A "code" value in a block without any backslash (so no escape can hide in a value).
_PLAIN_CODE = re.compile(rb'"code"\s*:\s*"([^"]*)')


def plain_lines(data: bytes | bytearray) -> int | None:
    """The number of lines of a block when every line ends in ``}\n`` (none is blank), else None.
    One memchr-speed search per line: far cheaper than counting over the bytes."""
    if not data.endswith(b"}\n"):
        return None
    find, at, size, lines = data.find, 0, len(data), 0
    while at < size:
        end = find(b"\n", at)
        if data[end - 1] != 0x7D:  # "}"
            return None
        lines += 1
        at = end + 1
    return lines


class Block:
    """A block of whole lines of one Bulk file, each certainly a `rtype` resource: an object with
    one "resourceType" key, ``"resourceType":"<rtype>"``, and one "id" key, ``"id":"<id>"``,
    anywhere in the line (first, as most servers write them, or in sorted key order), and no
    ``\\u`` escape: then the lines to parse are only those a "code" value that may match points
    to, and every line's id is known from the bytes. `of` returns None when the block is not like
    that (or has a line longer than `max_line`)."""

    def __init__(
        self, data: bytes | bytearray, starts: list[int], ids: list[bytes], escapes: bool
    ) -> None:
        self.data, self.starts, self.ids, self.escapes = data, starts, ids, escapes

    @classmethod
    def of(cls, data: bytes | bytearray, rtype: str, max_line: int) -> Block | None:
        if not data.endswith(b"}\n") or data.startswith(_BOM_BYTES):
            return None
        escapes = data.find(b"\\") != -1
        if escapes and b"\\u" in data:
            return None
        head = b'{"resourceType":"%s","id":"' % rtype.encode()
        typed = head[1:-7]  # "resourceType":"<rtype>"
        skip = len(head)
        find, startswith = data.find, data.startswith
        starts: list[int] = []
        ids: list[bytes] = []
        at, size = 0, len(data)
        # One pass line by line (memchr-speed searches): every line starts with "{" and ends in
        # "}", and holds `typed` and an "id" key with a string value (after `head` when the line
        # starts so); the counts below then make each the line's only one.
        while at < size:
            end = find(b"\n", at)
            if end - at > max_line or data[end - 1] != 0x7D:
                return None
            if startswith(head, at):
                key = at + skip
            elif data[at] != 0x7B or find(typed, at, end) == -1:
                return None
            else:
                key = find(b'"id":"', at, end) + 6
                if key == 5:
                    return None
            quote = find(b'"', key, end)
            if quote == -1:
                return None
            starts.append(at)
            ids.append(bytes(data[key:quote]))
            at = end + 1
        lines = len(starts)
        if data.count(_TYPE_KEY) != lines or data.count(b'"id"') != lines:
            return None  # another "resourceType" or "id" key somewhere: line by line
        if len(set(ids)) != lines or (escapes and any(b"\\" in rid for rid in ids)):
            return None  # the same id twice, or an escaped quote in one
        return cls(data, starts, ids, escapes)

    def hits(self, prefilter: Prefilter) -> list[int]:
        """The numbers (from 0) of the lines with a "code" value that may match a codelist code
        (as `Prefilter` matches one), in order."""
        if self.escapes:
            found = set(_CODE.findall(self.data))
            spelled = [
                re.escape(v) + b'"' for v, e in found if not e and prefilter.value_matches(v)
            ]
            if any(escaped for _, escaped in found):  # every line with an escaped value
                spelled.append(rb'[^"\\]*\\')
        else:
            values = set(_PLAIN_CODE.findall(self.data))
            spelled = [re.escape(v) + b'"' for v in values if prefilter.value_matches(v)]
        if not spelled:
            return []
        pattern = re.compile(rb'"code"\s*:\s*"(?:' + b"|".join(spelled) + rb")")
        starts, out, last = self.starts, [], -1
        for found in pattern.finditer(self.data):
            line = bisect_right(starts, found.start()) - 1
            if line != last:
                out.append(line)
                last = line
        return out


_BOM_BYTES = b"\xef\xbb\xbf"
