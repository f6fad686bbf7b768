"""`prefilter.Block.hits` in a block without backslashes makes one pass over the "code" values
but those it has learned do not match (`Prefilter.candidates`), learning as it goes and across
blocks. Against the simple reference (every value found, then the lines of those that may
match), for any block, read with a prefilter that has seen any blocks before it."""

from __future__ import annotations

import re
from bisect import bisect_right

import orjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ips_screen.facts.extract import CodeIndex
from ips_screen.facts.prefilter import _PLAIN_CODE, MISSES_KNOWN, Block, Prefilter
from ips_screen.ruleset.loader import load_ruleset
from tests.support.hypothesis_profile import examples

INDEX = CodeIndex(load_ruleset(None).codelists.values())
SHARED = Prefilter(INDEX)  # learns across the examples, as a reading process across parts
MATCHING = ["82423001", " 82423001 ", "751481000000104", "MG30.0", "mg30", "Mg30.01", "73438004"]
OTHER = ["8867-4", "vital-signs", "{score}", "final", "72514-3", "", " ", "MG3", "G89"]
value = st.sampled_from(MATCHING + OTHER) | st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters='"\\'),
    max_size=12,
)


def reference_hits(data: bytes, prefilter: Prefilter) -> list[int]:
    """The lines (from 0) with a "code" value that may match: every value found, then a search
    for those that may (the implementation before the one-pass `candidates`)."""
    values = set(_PLAIN_CODE.findall(data))
    spelled = [re.escape(v) + b'"' for v in values if prefilter.value_matches(v)]
    if not spelled:
        return []
    pattern = re.compile(rb'"code"\s*:\s*"(?:' + b"|".join(spelled) + rb")")
    starts = [0] + [n + 1 for n, byte in enumerate(data[:-1]) if byte == 0x0A]
    out: list[int] = []
    for found in pattern.finditer(data):
        line = bisect_right(starts, found.start()) - 1
        if not out or out[-1] != line:
            out.append(line)
    return out


def observation(n: int, codes: list[str], spaced: bool) -> dict:
    coding = [{"system": "http://example.org", "code": c} for c in codes]
    extra = {"valueCodeableConcept": {"coding": coding[1:]}} if len(coding) > 1 else {}
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "code": {"coding": coding[:1]},
        "subject": {"reference": "Patient/p"},
        **extra,
    }


@given(
    lines=st.lists(st.lists(value, min_size=1, max_size=3), min_size=1, max_size=25),
    sort_keys=st.booleans(),
    spaced=st.booleans(),
)
@settings(max_examples=examples(1.0), deadline=None)
def test_the_lines_found_are_the_references(lines, sort_keys, spaced):
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    data = b"".join(
        orjson.dumps(observation(n, codes, spaced), option=option) + b"\n"
        for n, codes in enumerate(lines)
    )
    if spaced:  # "code" : "value", as some servers write it
        data = data.replace(b'"code":"', b'"code" : "')
    assert b"\\" not in data
    block = Block.of(data, "Observation", 1 << 20)
    assume(block is not None)  # not when a value spells "id" or "resourceType"
    assert block.hits(SHARED) == reference_hits(data, Prefilter(INDEX))


def test_values_past_those_it_keeps_in_the_pattern_are_still_looked_at():
    prefilter = Prefilter(INDEX)
    misses = [f"x{n}" for n in range(MISSES_KNOWN + 50)]
    data = b"".join(
        orjson.dumps(observation(n, [code], False)) + b"\n"
        for n, code in enumerate([*misses, "82423001", *misses[:10], "mg30"])
    )
    block = Block.of(data, "Observation", 1 << 20)
    assert block is not None
    expected = [MISSES_KNOWN + 50, MISSES_KNOWN + 61]
    assert block.hits(prefilter) == expected == reference_hits(data, Prefilter(INDEX))
    assert block.hits(prefilter) == expected  # again, with what it learned
