"""The Spark job's steps (ips_screen.spark.parts and .reduce) without Spark: merging the parts'
states in any order gives the single-machine population and decisions, the last copy read
winning; the parts' outlines merged give the single machine's report and first error."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from ips_screen.engine import evaluate
from ips_screen.errors import InputError
from ips_screen.facts.extract import CodeIndex
from ips_screen.outputs.formats.decisions_ndjson import decision_line
from ips_screen.outputs.summary import SummaryCounter
from ips_screen.reading import ReadReport
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.sources import collect, discover
from ips_screen.sources.chunks import ReadOptions, plan, read_chunk
from ips_screen.sources.parallel import merge
from ips_screen.spark.parts import UriFile, outline, read_uri_file, states
from ips_screen.spark.reduce import KEPT, UNLINKED, latest, result_of, screen_patients
from tests.support.paths import FIXTURES, FROZEN_NOW
from tests.support.spark import PAIN

AS_OF = FROZEN_NOW.date()


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset()


def read_parts(folder: Path, ruleset, skip_invalid: bool = False, range_bytes: int | None = None):
    """The parts of the input read as the Spark tasks read them, and the merged report."""
    options = ReadOptions(CodeIndex(ruleset.codelists.values()), skip_invalid)
    report = ReadReport(skip_invalid=skip_invalid)
    chunks = plan(discover([folder], report), range_bytes)
    parts = [(i, read_chunk(chunk, options)) for i, chunk in enumerate(chunks)]
    outlines = [outline(i, facts) for i, facts in reversed(parts)]  # in any order
    merge((o.part for o in sorted(outlines, key=lambda o: o.index)), options, report)
    return parts, report


def spark_like(folder: Path, ruleset, skip_invalid: bool = False, range_bytes: int | None = None):
    """What the Spark job does, in plain Python, with the events in reverse order."""
    parts, report = read_parts(folder, ruleset, skip_invalid, range_bytes)
    events = [e for i, facts in parts for e in states(i, facts)]
    events.reverse()
    merged: dict[tuple[str, str], object] = {}
    for kind, key, state in events:
        old = merged.get((kind, key))
        merged[(kind, key)] = state if old is None else latest(old, state)
    groups: dict[str, tuple[list, list]] = {}
    unlinked = 0
    for (kind, key), state in merged.items():
        if kind == "patient":
            groups.setdefault(key, ([], []))[0].append(state)
        elif state.state == KEPT:
            groups.setdefault(state.patient, ([], []))[1].append(state.record)
        else:
            unlinked += state.state == UNLINKED
    screened = list(screen_patients(sorted(groups.items(), reverse=True), ruleset, AS_OF))
    return report, screened, unlinked


def single(folder: Path, ruleset):
    population = collect([folder], ruleset)
    counter = SummaryCounter(ruleset)
    results = [result_of(evaluate(ruleset, f, AS_OF), counter) for f in population]
    return population, results


@pytest.mark.parametrize("range_bytes", [None, 2000])
def test_fixtures_merge_to_the_single_machine_decisions(ruleset, range_bytes):
    report, screened, unlinked = spark_like(FIXTURES, ruleset, range_bytes=range_bytes)
    population, results = single(FIXTURES, ruleset)
    assert [r for kind, r in screened if kind == "patient"] == results
    assert dict(r for kind, r in screened if kind == "orphan") == population.orphans
    assert unlinked == population.unlinked
    assert report.to_dict() == population.report.to_dict()


def test_the_file_read_last_wins(ruleset, tmp_path: Path):
    pain = dict(PAIN)
    erased = {**pain, "verificationStatus": {"coding": [{"code": "entered-in-error"}]}}
    moved = {**pain, "id": "c2", "subject": {"reference": "Patient/p2"}}
    unlinked = {**pain, "id": "c3", "subject": None}
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"}
    files = {
        "a/1.ndjson": [patient, pain, {**moved, "subject": {"reference": "Patient/p1"}}],
        "b/2.ndjson": [erased, moved, unlinked, {**patient, "birthDate": "1990-03-03"}],
    }
    for name, resources in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    _, screened, unlinked_count = spark_like(tmp_path, ruleset)
    population, results = single(tmp_path, ruleset)
    assert [r for kind, r in screened if kind == "patient"] == results
    assert population.patients["p1"].records == ()  # c1 erased, c2 moved away
    assert population.patients["p1"].birth_date.year == 1990
    assert dict(r for kind, r in screened if kind == "orphan") == {"p2": 1}
    assert unlinked_count == population.unlinked == 1


def test_the_first_file_in_input_order_gives_the_error(ruleset, tmp_path: Path):
    for name in ("a.ndjson", "b.ndjson"):
        (tmp_path / name).write_bytes(b'{"resourceType":"Patient","id":"p"}\n{bad\n')
    with pytest.raises(InputError, match=r"a\.ndjson:2: not valid JSON"):
        read_parts(tmp_path, ruleset)


def test_a_bad_line_in_a_later_range_names_its_line_in_the_file(ruleset, tmp_path: Path):
    patient = b'{"resourceType":"Patient","id":"p%d","birthDate":"1980-01-01"}\n'
    (tmp_path / "Patient.000.ndjson").write_bytes(
        b"".join(patient % n for n in range(200)) + b"{x\n"
    )
    with pytest.raises(InputError, match=r"Patient\.000\.ndjson:201: not valid JSON"):
        read_parts(tmp_path, ruleset, range_bytes=1000)
    parts, report = read_parts(tmp_path, ruleset, skip_invalid=True, range_bytes=1000)
    assert len(parts) > 5
    assert [s.where for s in report.skipped] == [f"{tmp_path / 'Patient.000.ndjson'}:201"]


def test_one_function_gives_the_decisions_line(ruleset):
    population, results = single(FIXTURES, ruleset)
    decisions = [evaluate(ruleset, facts, AS_OF) for facts in population]
    assert [r.line for r in results] == [decision_line(d) for d in decisions]


def test_a_file_read_from_a_uri_gives_the_local_files_facts(ruleset, tmp_path: Path):
    """`parts.read_uri_file` (the bytes Spark read from a URI) gives what `read_chunk` gives for
    the same local file, problems named by the URI: a truncated gzip file among them."""
    options = ReadOptions(CodeIndex(ruleset.codelists.values()), skip_invalid=True)
    lines = b"".join(
        orjson.dumps({"resourceType": "Patient", "id": f"p{n}", "birthDate": "1980-01-01"}) + b"\n"
        for n in range(300)
    )
    for name, data in [
        ("Patient.000.ndjson", lines),
        ("Patient.001.ndjson.gz", gzip.compress(lines)[:-400]),  # truncated
        ("bundle.json", (FIXTURES / "patients" / "01-unemployed-recent.json").read_bytes()),
    ]:
        path = tmp_path / name
        path.write_bytes(data)
        local = read_chunk(plan([path])[0], options)
        uri = UriFile(path.as_uri(), path.as_uri())
        remote = read_uri_file(uri, data, options)
        assert remote.patients == local.patients and remote.records == local.records, name
        assert (remote.lines, remote.files_read, remote.resources_read, remote.problem_count) == (
            local.lines,
            local.files_read,
            local.resources_read,
            local.problem_count,
        ), name
        renamed = [
            (p.where.replace(str(path), path.as_uri()), p.problem) for p, _ in local.problems
        ]
        assert [(p.where, p.problem) for p, _ in remote.problems] == renamed, name
        if name.endswith(".gz"):
            assert remote.problems and "not a readable gzip file" in remote.problems[0][0].problem
