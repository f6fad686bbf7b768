"""`screen --jobs N`: the same outputs, byte for byte, for any number of processes, with large
files read in ranges; problems still named by file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.sources import chunks
from tests.support.bulk_files import as_bulk, resources_in
from tests.support.paths import FIXTURES

OUTPUTS = ("decisions.ndjson", "summary.json", "report.html", "worklist.csv", "proposals.json")


@pytest.fixture
def small_ranges(monkeypatch):
    """Ranges of 4 KiB, so that every fixture file is read in several parts."""
    monkeypatch.setattr(chunks, "RANGE_BYTES", 4096)


def _screen(capsys, source: Path, out: Path, *extra: str) -> dict[str, bytes]:
    code = main(["screen", str(source), "--out", str(out), "--as-of", "2026-11-26", *extra])
    capsys.readouterr()
    assert code == 0
    return {name: (out / name).read_bytes() for name in OUTPUTS}


@pytest.mark.slow
def test_outputs_are_the_same_for_any_number_of_processes(capsys, tmp_path, small_ranges):
    bulk = as_bulk(resources_in([FIXTURES]), tmp_path / "bulk")
    assert len(chunks.plan(sorted(bulk.iterdir()))) > 2 * len(list(bulk.iterdir()))
    one = _screen(capsys, bulk, tmp_path / "1", "--jobs", "1")
    assert one == _screen(capsys, bulk, tmp_path / "2", "--jobs", "2")
    assert one == _screen(capsys, bulk, tmp_path / "3", "--jobs", "3")
    assert one == _screen(capsys, bulk, tmp_path / "all")  # default: all cores
    # and the same decisions as from the fixtures' Bundles, every line parsed
    bundles = _screen(capsys, FIXTURES, tmp_path / "bundles", "--jobs", "2")
    assert one["decisions.ndjson"] == bundles["decisions.ndjson"]
    summary = orjson.loads(one["summary.json"])
    assert summary["input"]["by_type"] == orjson.loads(bundles["summary.json"])["input"]["by_type"]


def test_a_bad_line_in_a_later_range_is_named_by_its_line_in_the_file(
    capsys, tmp_path, small_ranges
):
    bulk = as_bulk(resources_in([FIXTURES]), tmp_path / "bulk")
    path = bulk / "Observation.000.ndjson"
    lines = path.read_bytes().splitlines(keepends=True)
    assert sum(map(len, lines[:-3])) > 3 * 4096  # the broken line is in a later range
    lines[-3] = b'{"resourceType": "Observation", "id": \n'
    path.write_bytes(b"".join(lines))
    for jobs in ("1", "3"):
        code = main(["screen", str(bulk), "--out", str(tmp_path / "o"), "--jobs", jobs])
        err = capsys.readouterr().err
        assert code == 3
        assert f"{path}:{len(lines) - 2}: not valid JSON" in err
    out = tmp_path / "skipped"
    code = main(["screen", str(bulk), "--out", str(out), "--jobs", "2", "--skip-invalid"])
    capsys.readouterr()
    assert code == 0
    skipped = orjson.loads((out / "summary.json").read_bytes())["data_quality"]["skipped"]
    assert [s["where"] for s in skipped] == [f"{path}:{len(lines) - 2}"]


def test_jobs_must_be_a_positive_number(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["screen", str(FIXTURES), "--out", str(tmp_path / "o"), "--jobs", "0"])
    assert exit_.value.code == 2
    assert "--jobs: expected a whole number of processes >= 1, got '0'" in capsys.readouterr().err


def test_a_file_of_a_type_no_rule_reads_is_counted_unparsed(capsys, tmp_path):
    bulk = as_bulk(resources_in([FIXTURES]), tmp_path / "bulk")
    claims = b'{"resourceType":"Claim","id":"c1"}\n' + b"not json, never parsed\n" * 2
    (bulk / "Claim.000.ndjson").write_bytes(claims)
    # a file whose name says Claim but whose first line is a Condition is read line by line
    shutil.copy(bulk / "Condition.000.ndjson", bulk / "Claim.001.ndjson")
    out = _screen(capsys, bulk, tmp_path / "o")
    by_type = orjson.loads(out["summary.json"])["input"]["by_type"]
    conditions = len((bulk / "Condition.000.ndjson").read_bytes().splitlines())
    assert by_type["Claim"] == 3
    assert by_type["Condition"] == 2 * conditions
