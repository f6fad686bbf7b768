"""Hypothesis strategies for reader input: real seed records laid out as the readers accept them
(Bundle or single-resource JSON, NDJSON, NDJSON.gz, nested Bundles), then broken.

Breakage comes in two layers. Structural: a field set to a value of the wrong type (huge numbers,
deep nesting, odd dates, codelist codes that make a record count), a field removed, a Bundle whose
entry is not a list... Byte-level: truncation, NUL bytes, BOMs, bad UTF-8, stray newlines, a
truncated or corrupt gzip stream. `MALFORMED` holds whole files for the cases a mutation rarely
hits; each is also a regression example of its own.
"""

from __future__ import annotations

import copy
import gzip

import orjson
from hypothesis import strategies as st

from tests.fuzz.seeds import Seed, codelist_codings

LAYOUTS = ("bundle", "resource", "ndjson", "ndjson.gz", "nested", "malformed")
BUNDLE_TYPES = ("collection", "transaction", "searchset", "batch", "document", "history", None)
# Fields the readers and the fact extraction look at (a mutation picks among these first).
KEYS = (
    "resourceType", "id", "status", "intent", "subject", "for", "focus", "code", "category",
    "valueCodeableConcept", "component", "birthDate", "deceasedBoolean", "deceasedDateTime",
    "onsetDateTime", "onsetPeriod", "recordedDate", "effectiveDateTime", "effectivePeriod",
    "issued", "performedDateTime", "performedPeriod", "authoredOn", "lastModified", "meta",
    "identifier", "generalPractitioner", "clinicalStatus", "verificationStatus",
    "abatementDateTime", "abatementBoolean", "abatementString", "context", "type", "date",
    "statusReason", "coding", "reference", "system", "display", "entry", "resource", "fullUrl",
    "search", "mode", "start",
)  # fmt: skip
DATE_KEYS = (
    "birthDate", "deceasedDateTime", "onsetDateTime", "recordedDate", "effectiveDateTime",
    "effectiveInstant", "issued", "performedDateTime", "authoredOn", "lastModified", "date",
    "abatementDateTime",
)  # fmt: skip
ODD_DATES = (
    "0001-01-01", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "9999-12-31",
    "9999-12-31T23:59:59-14:00", "9999", "9999-12", "9000-12-31", "2024-02-30", "2024-13",
    "2024-00", "0000", "10000-01-01", "2024-01-01T25:00:00Z", "2024-01-01T10:00:00",
    "2024-01-01T10:00:00+99:00", "2026-11-26", "2026-11-27", "1958-06-01", "19580601", "",
)  # fmt: skip
ODD_STRINGS = (
    "", " ", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12-31", "0000",
    "2024-02-30", "2024-13", "10000-01-01", "2024-01-01T25:00:00Z", "2024", "-001", "+2024",
    "Patient/", "Patient", "/", "urn:uuid:", "urn:uuid:x", "Patient/a/_history/1",
    "http://x/Patient/a/_history/", "entered-in-error", "proposal", "rejected", "Bundle",
    "OperationOutcome", "constructor", "__proto__", "\x00", "\u202e", "é" * 3, "x" * 300,
)  # fmt: skip
# Placeholders replaced after serialising (orjson cannot write these values itself).
RAW = {
    '"__HUGE_INT__"': b"123456789012345678901234567890123456789",
    '"__HUGE_FLOAT__"': b"1e999999",
    '"__NEG_ZERO__"': b"-0.0e-0",
    '"__SURROGATE__"': b'"\\ud800x"',
    '"__NUL_ESCAPE__"': b'"\\u0000"',
}
INSERTS = (
    b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\x80", b"\xed\xa0\x80", b"\xc3", b"\n", b"\r\n",
    b"{", b"}", b"[", b"]", b",", b'"', b"\\", b"null\n", b"[]\n", b"1\n", b'"x"\n',
)  # fmt: skip


def _deep(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"coding":' * depth + b"[]" + b"}" * depth


MALFORMED = {
    "truncated.json": b'{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"re',
    "entry-string.json": b'{"resourceType":"Bundle","type":"collection","entry":"nope"}',
    "entry-object.json": b'{"resourceType":"Bundle","type":"collection","entry":{"a":1}}',
    "bom-bom.json": b"\xef\xbb\xbf\xef\xbb\xbf{}",
    "nul.ndjson": b'{"resourceType":"Patient","id":"a"}\n\x00\n',
    "bad-utf8.ndjson": b'{"resourceType":"Patient","id":"\xff\xfe"}\n',
    "surrogate.json": b'{"resourceType":"Patient","id":"\\ud800"}',
    "huge-number.ndjson": b'{"resourceType":"Patient","id":1' + b"0" * 400 + b"}\n",
    "huge-float.json": b'{"resourceType":"Patient","id":"h","birthDate":1e999999}',
    "deep-list.json": b'{"resourceType":"Condition","id":"d","code":' + _deep(1100, "list") + b"}",
    "deep-1000.ndjson": b'{"resourceType":"Patient","id":"d","x":' + _deep(1000, "list") + b"}\n",
    "deep-values.ndjson": (
        b'{"resourceType":"Observation","id":"o","subject":{"reference":"Patient/p"},'
        b'"code":{"coding":[{"system":"http://loinc.org","code":"67875-5"}]},'
        b'"valueCodeableConcept":' + _deep(1000, "list") + b"}\n"
    ),
    "not-object-lines.ndjson": b'[]\n"Patient"\n42\ntrue\nnull\n{"resourceType":["Patient"]}\n',
    "type-list.ndjson": b'{"resourceType":["Condition"],"id":"c"}\n',
    "type-object.ndjson": b'{"resourceType":{"a":1},"id":"c"}\n',
    "status-list.ndjson": b'{"resourceType":"Procedure","id":"p","status":["done"]}\n',
    "birth-year-9999.ndjson": b'{"resourceType":"Patient","id":"b","birthDate":"9999-12-31"}\n',
    "birth-overflow.ndjson": (
        b'{"resourceType":"Patient","id":"b","birthDate":"9999-12-31T23:59:59-14:00"}\n'
    ),
    "deceased-year-one.ndjson": (
        b'{"resourceType":"Patient","id":"d","deceasedDateTime":"0001-01-01T00:00:00+14:00"}\n'
    ),
    "crlf.ndjson": b'{"resourceType":"Patient","id":"a"}\r\n\r\n',
    "only-newlines.ndjson": b"\n\n\n",
    "empty.ndjson.gz": b"",
    "truncated.ndjson.gz": gzip.compress(b'{"resourceType":"Patient","id":"a"}\n' * 50)[:-12],
    "garbage-after.ndjson.gz": gzip.compress(b'{"resourceType":"Patient","id":"a"}\n') + b"junk",
    "double-gzip.ndjson.gz": gzip.compress(gzip.compress(b'{"resourceType":"Patient","id":"a"}')),
    "gzip-bad-utf8.ndjson.gz": gzip.compress(b'{"resourceType":"Patient","id":"\xc3"}\n'),
    "nested-deep.json": (
        b'{"resourceType":"Bundle","type":"collection","entry":[{"resource":' * 300
        + b'{"resourceType":"Patient","id":"n"}'
        + b"}]}" * 300
    ),
}


@st.composite
def odd_values(draw: st.DrawFn) -> object:
    """A JSON value of a type (or content) a field would not normally hold."""
    pick = draw(st.integers(0, 9))
    if pick == 0:
        return draw(st.sampled_from(sorted(RAW))).strip('"')
    if pick == 1:
        return draw(st.sampled_from(ODD_STRINGS))
    if pick == 2:
        system, code = draw(st.sampled_from(codelist_codings()))
        return {"coding": [{"system": system, "code": code}]}
    if pick == 3:
        return draw(st.text(max_size=12))
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=6,
    )
    return draw(values)


def _containers(value: object, out: list, depth: int = 0) -> list:
    """Every (container, key) in a JSON value, in a stable order (keys the readers use first)."""
    if depth > 12 or len(out) > 400:
        return out
    if isinstance(value, dict):
        for key in sorted(value, key=lambda k: (k not in KEYS, k)):
            out.append((value, key))
            _containers(value[key], out, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.append((value, i))
            _containers(item, out, depth + 1)
    return out


@st.composite
def structural_mutation(draw: st.DrawFn, document: object) -> None:
    """Change the document in place: set, delete or add one field."""
    spots = _containers(document, [])
    if not spots:
        return
    container, key = spots[draw(st.integers(0, len(spots) - 1))]
    action = draw(st.sampled_from(("set", "set", "delete", "add", "date")))
    if action == "date":
        resources = [c for c, _ in spots if isinstance(c, dict) and "resourceType" in c]
        if resources:
            resource = resources[draw(st.integers(0, len(resources) - 1))]
            resource[draw(st.sampled_from(DATE_KEYS))] = draw(st.sampled_from(ODD_DATES))
    elif action == "delete":
        del container[key]
    elif action == "add" and isinstance(container, dict):
        container[draw(st.sampled_from(KEYS))] = draw(odd_values())
    else:
        container[key] = draw(odd_values())


def _ndjson(resources: list[object]) -> bytes:
    return b"".join(_dumps(r) + b"\n" for r in resources)


def _dumps(value: object) -> bytes:
    data = orjson.dumps(value)
    for placeholder, raw in RAW.items():
        data = data.replace(placeholder.encode(), raw)
    return data


@st.composite
def byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """Truncate, insert or overwrite bytes."""
    at = draw(st.integers(0, len(data)))
    action = draw(st.sampled_from(("truncate", "insert", "insert", "overwrite", "bom")))
    if action == "truncate":
        return data[:at]
    if action == "bom":
        return b"\xef\xbb\xbf" + data
    piece = draw(st.sampled_from(INSERTS) | st.binary(min_size=1, max_size=4))
    if action == "insert":
        return data[:at] + piece + data[at:]
    return data[:at] + piece + data[at + len(piece) :]


@st.composite
def input_file(draw: st.DrawFn, seeds: tuple[Seed, ...], n: int) -> tuple[str, bytes]:
    """One input file (name, content) built from 1-3 seeds."""
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "malformed":
        name = draw(st.sampled_from(sorted(MALFORMED)))
        return f"{n}-{name}", MALFORMED[name]
    chosen = draw(st.lists(st.sampled_from(seeds), min_size=1, max_size=3))
    entries = copy.deepcopy([entry for seed in chosen for entry in seed])
    bundle = {"resourceType": "Bundle", "type": draw(st.sampled_from(BUNDLE_TYPES))}
    bundle["entry"] = entries
    if layout == "nested":
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": bundle}]}
    document: object = bundle
    if layout == "resource":
        document = entries[0]["resource"]
    elif layout.startswith("ndjson"):
        document = [entry["resource"] for entry in entries]
    for _ in range(draw(st.integers(0, 4))):
        draw(structural_mutation(document))
    if layout.startswith("ndjson"):
        data = _ndjson(document if isinstance(document, list) else [document])
    else:
        data = _dumps(document)
    for _ in range(draw(st.integers(0, 2))):
        data = draw(byte_mutation(data))
    if layout == "ndjson.gz":
        data = gzip.compress(data, mtime=0)
        if draw(st.integers(0, 3)) == 0:
            data = draw(byte_mutation(data))
    suffix = {"bundle": "json", "resource": "json", "nested": "json"}.get(layout, layout)
    return f"{n}.{suffix}", data


@st.composite
def input_folders(draw: st.DrawFn, seeds: tuple[Seed, ...]) -> list[tuple[str, bytes]]:
    """The files of one input folder (1-3 files)."""
    count = draw(st.integers(1, 3))
    return [draw(input_file(seeds, n)) for n in range(count)]
