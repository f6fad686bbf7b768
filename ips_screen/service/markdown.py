"""Record text made safe for CDS card markdown (the words come from records the EHR sent, so
they are escaped, never parsed: engine output is rendered by ips_screen.presentation)."""

from __future__ import annotations

import re

__all__ = ["md_escape"]

_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|#~&!"})
# newlines, tabs, Unicode line separators, C0 and C1 controls, bidirectional overrides
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")
_BLOCK_START = re.compile(r"^(?:(\d{1,9})([.)])|([-+=]))")


def md_escape(text: str) -> str:
    """Record text as inline markdown that stays where it is put (in a list item, in bold).

    Every run of whitespace or control characters (newlines included) becomes one space, the
    characters markdown gives meaning to are backslash-escaped, and so is a list, heading
    underline or ordered-list marker at the start. Used for every string in the card's detail
    that comes from a record (displays, references, a stored proposal's note)."""
    flat = _BREAKS.sub(" ", text).strip().translate(_MD_SPECIAL)
    return _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", flat, count=1)
