"""The reading shortcuts (type from the bytes, the code prefilter, parts) never change the facts.

A fuzzed mixed NDJSON file, and the same data as Bulk files (``Type.000.ndjson``), read with every
line parsed and with the shortcuts, on one process and in small ranges, give the same population:
the same patients, records, orphans and counts, so the same decisions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ips_screen.facts.extract import CodeIndex, extract_record
from ips_screen.facts.prefilter import Prefilter, resource_type
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.sources import chunks, collect
from tests.fuzz.fuzz_settings import FUZZ, SCRATCH
from tests.fuzz.seeds import codelist_codings

RULESET = load_ruleset()
INDEX = CodeIndex(RULESET.codelists.values())
CODINGS = codelist_codings()
TYPES = ("Patient", "Condition", "Observation", "Procedure", "DocumentReference",
         "ServiceRequest", "Task", "Claim", "Encounter", "ExplanationOfBenefit")  # fmt: skip
ICD = "http://hl7.org/fhir/sid/icd-10"


def _code_variant(code: str, how: int) -> str:
    return [code, code.lower(), f"  {code} ", code[:1] + "." + code[1:], code + "9", "x" + code][
        how
    ]


@st.composite
def codings(draw) -> dict:
    if draw(st.booleans()):
        system, code = draw(st.sampled_from(CODINGS))
    else:
        system, code = (
            draw(st.sampled_from((ICD, "http://snomed.info/sct"))),
            draw(st.sampled_from(("R52", "MG30.01", "1234", "82423001", "r52.2", "Z56.0"))),
        )
    return {"system": system, "code": _code_variant(code, draw(st.integers(0, 5)))}


@st.composite
def resources(draw) -> dict:
    rtype = draw(st.sampled_from(TYPES))
    rid = draw(st.sampled_from(("a", "b", "c", "p1", "p2")))
    out: dict = {"resourceType": rtype, "id": rid}
    if rtype == "Patient":
        out["birthDate"] = draw(st.sampled_from(("1980-01-01", "1950-05-05", "2010-01-01")))
        return out
    subject = {"reference": f"Patient/{draw(st.sampled_from(('p1', 'p2', 'p3')))}"}
    out["for" if rtype == "Task" else "subject"] = subject
    out["status"] = draw(st.sampled_from(("final", "active", "entered-in-error", "draft")))
    key = "type" if rtype == "DocumentReference" else "code"
    out[key] = {"coding": draw(st.lists(codings(), max_size=2))}
    if draw(st.booleans()):
        out["valueCodeableConcept"] = {"coding": [draw(codings())]}
    if draw(st.booleans()):
        out["contained"] = [{"resourceType": draw(st.sampled_from(TYPES)), "id": "x"}]
    out["effectiveDateTime" if rtype == "Observation" else "recordedDate"] = "2026-01-01"
    if rtype == "Task":
        out["focus"] = {"reference": "ServiceRequest/a"}
        out["authoredOn"] = "2026-01-01"
    return out


@st.composite
def lines(draw) -> bytes:
    resource = draw(resources())
    items = list(resource.items())
    if draw(st.booleans()):
        items = draw(st.permutations(items))
    sep = draw(st.sampled_from((b":", b" : ", b":\t")))
    body = b",".join(orjson.dumps(k) + sep + orjson.dumps(v) for k, v in items)
    line = b"{" + body + b"}"
    tweak = draw(st.integers(0, 9))
    if tweak == 0:
        line = line.replace(b'"code"', b'"\\u0063ode"', 1)
    elif tweak == 1:
        line = b"  " + line + b"  "
    elif tweak == 2:
        line = line[: len(line) // 2]  # broken: skipped with --skip-invalid
    return line + b"\n"


def _type_of(line: bytes) -> str | None:
    """The line's type as a parser sees it (key order free: the byte look is not enough)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    rtype = value.get("resourceType") if isinstance(value, dict) else None
    return rtype if isinstance(rtype, str) and rtype.isalpha() else None


def _facts(paths: list[Path], **options):
    population = collect(paths, RULESET, skip_invalid=True, **options)
    return (
        population.patients,
        population.orphans,
        population.unlinked,
        population.report.to_dict(),
    )


@FUZZ
@given(st.lists(lines(), min_size=1, max_size=40))
def test_shortcuts_and_parts_never_change_the_facts(data: list[bytes]) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        folder = Path(tmp)
        (folder / "mixed.ndjson").write_bytes(b"".join(data))
        bulk = folder / "bulk"
        bulk.mkdir()
        for n, line in enumerate(data):  # Bulk files named by each line's type (when it has one)
            rtype = _type_of(line) or "Mixed"
            with (bulk / f"{rtype}.000.ndjson").open("ab") as out:
                out.write(line)
                out.write(b'{"resourceType":"%s","id":"extra%d"}\n' % (rtype.encode(), n))
        for paths in ([folder / "mixed.ndjson"], [bulk]):
            exact = _facts(paths, shortcuts=False)
            assert _facts(paths) == exact
            saved = chunks.RANGE_BYTES
            chunks.RANGE_BYTES = 200
            try:
                assert _facts(paths, jobs=1) == exact
            finally:
                chunks.RANGE_BYTES = saved


@FUZZ
@given(lines())
def test_the_prefilter_never_drops_a_resource_the_rules_keep(line: bytes) -> None:
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError:
        return
    # Patient, ServiceRequest and Task lines are always parsed: the prefilter is not asked
    if resource["resourceType"] not in chunks.ALWAYS_PARSED and extract_record(resource, INDEX):
        assert Prefilter(INDEX).maybe(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"resourceType":"Claim","id":"1"}', "Claim"),
        (b'{ "id" : "1", "resourceType" : "Claim" }\n', "Claim"),
        (b'{"contained":[{"resourceType":"Claim"}],"resourceType":"Condition"}', None),
        (b'{"resourceType":"Claim","contained":[{"resourceType":"Condition"}]}', None),
        (b'{"resourceType":"Claim","resourceType":"Condition"}', None),  # the last one counts
        (b'{"resourceType":"Cl\\u0061im"}', None),
        (b'{"resourceType":"Claim"', None),  # truncated: parsed, and so reported
        (b'{"resourceType":"Claim","code":{"coding":[]}', None),  # cut after a nested value
        (b'{"note":"[","resourceType":"Claim"}', None),  # in doubt
    ],
)
def test_the_type_is_read_from_the_bytes_only_when_certain(line: bytes, expected) -> None:
    assert resource_type(line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"code":{"coding":[]},"id":"1","resourceType":"Observation"}', "Observation"),
        (b'{"note":"[]","resourceType":"Observation"}', "Observation"),
        (b'{"note":"[","resourceType":"Observation"}', None),  # unbalanced: in doubt
        (b'{"code":{"coding":[]},"resourceType":"Condition"}', None),  # not the declared type
        (b'{"contained":[{"resourceType":"Patient"}],"resourceType":"Observation"}', None),
        (b'{"code":{"coding":[]},"resourceType":"Observ\\u0061tion"}', None),
    ],
)
def test_in_a_file_of_a_declared_type_key_order_is_free(line: bytes, expected) -> None:
    """Key-sorted lines (nested values before "resourceType") in a file whose Bulk name or
    manifest says Observation: the only "resourceType" key naming that type is taken."""
    assert resource_type(line, "Observation") == expected


def _observation(rid: str, code: str, extra: bytes = b"") -> bytes:
    return (
        b'{"resourceType":"Observation","id":"%s","status":"final",%s"code":{"coding":[{"system":'
        b'"%s","code":"%s"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":'
        b'"2026-01-01"}\n' % (rid.encode(), extra, CODINGS[0][0].encode(), code.encode())
    )


_PATIENT = b'{"resourceType":"Patient","id":"p1","birthDate":"1980-01-01"}\n'
_CLAIM = b'{"resourceType":"Claim","id":"c%d"}\n'


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # files of a type no rule reads, counted from their line ends
        ("Claim.000.ndjson", _CLAIM % 1 + b"  \n" + _CLAIM % 2),  # a blank line
        ("Claim.000.ndjson", (_CLAIM % 1).replace(b"\n", b"\r\n") + _CLAIM % 2),
        ("Claim.000.ndjson", _CLAIM % 1 + (_CLAIM % 2).rstrip(b"\n")),  # no last line end
        # Bulk blocks of a prefiltered type, split and looked at from the bytes
        ("Observation.000.ndjson", _observation("a", "x") + _observation("b", CODINGS[0][1])),
        ("Observation.000.ndjson", _observation('a\\"b', CODINGS[0][1]) + _observation("c", "x")),
        ("Observation.000.ndjson", _observation("a", "x", b'"note":"a\\\\b",')),  # an escape
        ("Observation.000.ndjson", _observation("a", CODINGS[0][1], b'"id":"z",')),  # two ids
        ("Observation.000.ndjson", _observation("a", "x").replace(b'"code":"x"', b'"code" : "x"')),
        ("Observation.000.ndjson", _observation("a", CODINGS[0][1]) * 2),  # the same id twice
        ("Observation.000.ndjson", _observation("a", "x") + b'{"resourceType":"Observation"\n'),
    ],
)
def test_bulk_edge_cases_give_the_same_facts(name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        folder = Path(tmp)
        (folder / "Patient.000.ndjson").write_bytes(_PATIENT)
        (folder / name).write_bytes(data)
        exact = _facts([folder], shortcuts=False)
        assert _facts([folder]) == exact
        saved = chunks.RANGE_BYTES
        chunks.RANGE_BYTES = 100  # parts of one or two lines, read into the same buffer
        try:
            assert _facts([folder], jobs=1) == exact
        finally:
            chunks.RANGE_BYTES = saved


def test_threads_reading_at_once_each_use_their_own_buffer() -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = b"".join(
        _observation(f"o{n}", CODINGS[n % len(CODINGS)][1] if n % 3 else "x") for n in range(300)
    )
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        folder = Path(tmp)
        (folder / "Patient.000.ndjson").write_bytes(_PATIENT)
        (folder / "Observation.000.ndjson").write_bytes(data)
        exact = _facts([folder], shortcuts=False)
        saved = chunks.RANGE_BYTES
        chunks.RANGE_BYTES = 2000  # many parts of different sizes
        try:
            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(lambda _: _facts([folder], jobs=1), range(8)))
        finally:
            chunks.RANGE_BYTES = saved
        assert all(result == exact for result in results)
