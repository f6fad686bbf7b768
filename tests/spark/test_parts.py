"""Spark reads large files in parts (`chunks.plan` ranges, many tasks per file) and still gives
the single-machine screen's files, byte for byte: problems name the file and the line in the
file, and a later copy of a kept record that the prefilter skipped in a later part is read
exactly (the part is read again with every line parsed), as on one machine."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.facts.extract import CodeIndex
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.sources import chunks, discover
from ips_screen.synth import write_bulk
from tests.support.paths import FROZEN_NOW
from tests.support.spark import AS_OF, PAIN, SOCKETS_LEFT_OPEN, screen_both

pytestmark = SOCKETS_LEFT_OPEN


@pytest.fixture
def small_ranges(monkeypatch):
    """NDJSON files cut into ranges of about 2 kB (16 MB in use)."""
    monkeypatch.setattr(chunks, "RANGE_BYTES", 2000)


def parts_of(path: Path) -> int:
    return sum(1 for chunk in chunks.plan(discover([path.parent])) if chunk.path == str(path))


def test_a_population_read_in_many_parts_gives_the_same_files(
    spark, small_ranges, capsys, tmp_path: Path
):
    data = tmp_path / "synth"
    write_bulk(data, 60, 11, FROZEN_NOW.date())
    observations = next(data.rglob("Observation*.ndjson*"))
    if observations.name.endswith(".gz"):
        pytest.skip("the synthetic export is gzipped: one part per file")
    assert parts_of(observations) > 10
    screen_both(capsys, tmp_path, data)


def bad_file(tmp_path: Path) -> tuple[Path, Path]:
    """Patients over several parts, a line that is not JSON at line 121 (a later part)."""
    data = tmp_path / "data"
    data.mkdir()
    path = data / "Patient.000.ndjson"
    lines = [
        orjson.dumps({"resourceType": "Patient", "id": f"p{n}", "birthDate": "1980-01-01"})
        for n in range(120)
    ]
    lines += [b"{not json", *lines[:5]]
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert parts_of(path) > 2
    return data, path


def test_a_bad_line_in_a_later_part_names_its_file_and_line(
    spark, small_ranges, capsys, tmp_path: Path
):
    data, path = bad_file(tmp_path)
    out = tmp_path / "out"
    code = main(["screen", str(data), *AS_OF, "--out", str(out), "--engine", "spark"])
    _, err = capsys.readouterr()
    assert code == 3
    assert err.startswith(f"ips-screen: error: {path}:121: not valid JSON"), err
    assert not out.exists()


def test_skip_invalid_lists_the_bad_line_of_a_later_part(
    spark, small_ranges, capsys, tmp_path: Path
):
    data, path = bad_file(tmp_path)
    out = screen_both(capsys, tmp_path, data, extra=("--skip-invalid",))
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert f"{path}:121" in orjson.dumps(summary).decode()


@pytest.mark.parametrize("where", ["same-file", "later-file"])
def test_a_later_copy_the_prefilter_skips_is_read_exactly(
    spark, small_ranges, capsys, tmp_path: Path, where: str
):
    """Condition/c1 is kept in the file's first part; its last copy, in a later part of the file
    or in a later file, carries no code of any codelist (so the prefilter skips the line): it
    removes the record, on Spark as on one machine."""
    data = tmp_path / "data"
    data.mkdir()
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"}
    (data / "Patient.000.ndjson").write_bytes(orjson.dumps(patient) + b"\n")
    filler = [{**PAIN, "id": f"f{n}", "code": {"text": "a cold"}} for n in range(40)]
    recoded = {**PAIN, "code": {"text": "pain, its code removed"}}
    path = data / "Condition.000.ndjson"
    if where == "later-file":  # read after data/Condition.000.ndjson (sorted)
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [PAIN, *filler]))
        path = data / "later" / "Condition.000.ndjson"
        path.parent.mkdir()
        filler = filler[:5]
    else:
        filler = [PAIN, *filler]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in [*filler, recoded]))
    last = [chunk for chunk in chunks.plan(discover([data])) if chunk.path == str(path)][-1]
    assert last.part > 1 or where == "later-file"
    options = chunks.ReadOptions(CodeIndex(load_ruleset().codelists.values()))
    assert b"c1" in chunks.read_chunk(last, options).skipped_blob.split(b"\n")  # skipped
    out = screen_both(capsys, tmp_path, data)
    assert b"Condition/c1" not in (out / "decisions.ndjson").read_bytes()
