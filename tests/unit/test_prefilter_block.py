"""`prefilter.Block`: a block of a Bulk file read from its bytes alone when every line is certainly
one resource of the file's type with its id in plain sight, whether "resourceType" and "id" come
first or where sorted keys put them; anything else leaves the block to be read line by line."""

from __future__ import annotations

import orjson
import pytest

from ips_screen.facts.extract import CodeIndex
from ips_screen.facts.prefilter import Block, Prefilter
from ips_screen.ruleset.loader import load_ruleset

FIT_NOTE = {"system": "http://snomed.info/sct", "code": "751481000000104"}
OTHER = {"system": "http://loinc.org", "code": "8867-4"}


def observation(rid: str, coding: dict, **extra: object) -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [coding]},
        "subject": {"reference": "Patient/p"},
        **extra,
    }


def block(resources: list[dict], *, sort_keys: bool) -> bytes:
    option = orjson.OPT_SORT_KEYS if sort_keys else 0
    return b"".join(orjson.dumps(r, option=option) + b"\n" for r in resources)


@pytest.fixture(scope="module")
def prefilter() -> Prefilter:
    return Prefilter(CodeIndex(load_ruleset(None).codelists.values()))


@pytest.mark.parametrize("sort_keys", [False, True])
def test_the_lines_to_parse_are_those_with_a_code_that_may_match(prefilter, sort_keys):
    data = block(
        [observation("a", OTHER), observation("b", FIT_NOTE), observation("c", OTHER)],
        sort_keys=sort_keys,
    )
    if sort_keys:
        assert not data.startswith(b'{"resourceType"')  # "code" and "id" come first
    found = Block.of(data, "Observation", 1 << 20)
    assert found is not None
    assert found.ids == [b"a", b"b", b"c"]
    assert found.hits(prefilter) == [1]


def test_both_shapes_in_one_block():
    data = block([observation("a", OTHER)], sort_keys=False)
    data += block([observation("b", OTHER)], sort_keys=True)
    found = Block.of(data, "Observation", 1 << 20)
    assert found is not None and found.ids == [b"a", b"b"]


@pytest.mark.parametrize(
    "odd",
    [
        # a nested "id" key: which one is the resource's is not certain from the bytes
        observation("b", OTHER, extension=[{"id": "x", "url": "http://e", "valueString": "v"}]),
        # a contained resource: a second "resourceType"
        observation("b", OTHER, contained=[{"resourceType": "Patient", "id": "q"}]),
        # another type than the file's
        {**observation("b", OTHER), "resourceType": "Condition"},
        # no id
        {k: v for k, v in observation("b", OTHER).items() if k != "id"},
        # an escaped character in a value
        observation("b", OTHER, note=[{"text": "caf\u00e9 \u2028"}]),
    ],
)
@pytest.mark.parametrize("sort_keys", [False, True])
def test_a_line_in_doubt_leaves_the_block_to_be_read_line_by_line(odd, sort_keys):
    resources = [observation("a", OTHER), odd, observation("c", FIT_NOTE)]
    data = block(resources, sort_keys=sort_keys)
    if b"\\u" not in data and odd.get("note"):
        data = data.replace("\u2028".encode(), b"\\u2028")
    assert Block.of(data, "Observation", 1 << 20) is None


def test_a_line_longer_than_the_cap_or_cut_short_leaves_the_block_too():
    data = block([observation("a", OTHER), observation("b", FIT_NOTE)], sort_keys=True)
    assert Block.of(data, "Observation", 40) is None
    assert Block.of(data[:-10] + b"\n", "Observation", 1 << 20) is None
