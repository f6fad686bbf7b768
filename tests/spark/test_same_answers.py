"""`screen --engine spark` gives the single-machine screen's files, byte for byte: on the
fixtures, on a synthetic population, on ../shared/data; and its partitioned outputs hold the same
decisions, one part file per patient partition."""

from __future__ import annotations

import zlib
from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.synth import write_bulk
from tests.support.paths import FIXTURES, FROZEN_NOW
from tests.support.spark import AS_OF, PAIN, SOCKETS_LEFT_OPEN, screen_both

pytestmark = SOCKETS_LEFT_OPEN


def part_lines(out: Path, kind: str) -> list[list[bytes]]:
    parts = sorted((out / "spark" / kind).glob("part-*"))
    return [p.read_bytes().splitlines() for p in parts]


def check_partitions(out: Path, expected: int = 2) -> None:
    """The part files hold every decision once, sorted, each in its patient's partition; the
    proposals of a partition form one transaction Bundle. `expected` partitions (default the
    session's default parallelism: small inputs)."""
    parts = part_lines(out, "decisions")
    assert len(parts) == expected
    lines = (out / "decisions.ndjson").read_bytes().splitlines()
    assert sorted(line for part in parts for line in part) == sorted(lines)
    for number, part in enumerate(parts):
        patients = [orjson.loads(line)["patient"] for line in part]
        assert patients == sorted(patients)
        for patient in patients:
            pid = patient.removeprefix("Patient/")
            assert zlib.crc32(pid.encode()) % expected == number
    proposed = {orjson.loads(line)["patient"] for line in lines if b'"propose"' in line}
    found = set()
    for part in part_lines(out, "proposals"):
        for line in part:
            bundle = orjson.loads(line)
            assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
            for entry in bundle["entry"]:
                subject = entry["resource"].get("subject") or entry["resource"].get("for")
                if subject:
                    found.add(subject["reference"])
    assert found == proposed
    for path in (out / "spark").rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"


def test_fixtures_give_the_same_files(spark, capsys, tmp_path: Path):
    out = screen_both(capsys, tmp_path, FIXTURES)
    check_partitions(out)


def test_a_synthetic_population_gives_the_same_files(spark, capsys, tmp_path: Path):
    data = tmp_path / "synth"
    write_bulk(data, 400, 7, FROZEN_NOW.date())
    out = screen_both(capsys, tmp_path, data)
    check_partitions(out)


def test_a_larger_input_is_cut_into_more_patient_partitions(
    spark, capsys, tmp_path: Path, monkeypatch
):
    """By default a patient partition per PARTITION_BYTES of input (so that the driver never
    gathers more than a partition at once): here 1 MB, over about 5.5 MB of Bulk NDJSON; the
    answers do not change."""
    from ips_screen.spark import read

    monkeypatch.setattr(read, "PARTITION_BYTES", 2**20)
    data = tmp_path / "synth"
    write_bulk(data, 400, 7, FROZEN_NOW.date())
    size = sum(p.stat().st_size for p in data.glob("*.ndjson"))
    expected = -(-size // 2**20)
    assert expected >= 4
    out = screen_both(capsys, tmp_path, data)
    check_partitions(out, expected)


SHARED = ["synthea-bulk-10", "ahrq-pain-test-patient", "synthea-california"]


@pytest.mark.parametrize("name", SHARED)
def test_shared_data_gives_the_same_files(spark, shared_data: Path, capsys, tmp_path, name):
    screen_both(capsys, tmp_path, shared_data / name)


def test_the_last_copy_read_wins_across_files(spark, capsys, tmp_path: Path):
    """The same resource in two files: the copy in the file read last wins, on Spark as on one
    machine, including a last copy the rules cannot use (it removes the earlier record) and a
    Patient updated in a later file."""
    data = tmp_path / "data"
    first = data / "a" / "Condition.000.ndjson"
    second = data / "b" / "Condition.000.ndjson"
    patients = data / "Patient.000.ndjson"
    for path in (first, second):
        path.parent.mkdir(parents=True, exist_ok=True)
    pain = dict(PAIN)
    erased = {**pain, "verificationStatus": {"coding": [{"code": "entered-in-error"}]}}
    moved = {**pain, "id": "c2", "subject": {"reference": "Patient/p2"}}
    before_move = {**moved, "subject": {"reference": "Patient/p1"}}
    first.write_bytes(b"\n".join(orjson.dumps(r) for r in (pain, before_move)) + b"\n")
    second.write_bytes(b"\n".join(orjson.dumps(r) for r in (erased, moved)) + b"\n")
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"}
    updated = {**patient, "birthDate": "1981-02-02"}
    patients.write_bytes(b"\n".join(orjson.dumps(r) for r in (patient, updated)) + b"\n")
    out = screen_both(capsys, tmp_path, data)
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["data_quality"]["resources_for_absent_patients"] == 1  # c2, now Patient/p2


def test_above_the_gather_limit_only_the_summary_and_partitions(spark, capsys, tmp_path: Path):
    single = tmp_path / "single"
    assert main(["screen", str(FIXTURES), *AS_OF, "--out", str(single)]) == 0
    out = tmp_path / "spark"
    out.mkdir()
    (out / "decisions.ndjson").write_bytes(b"an earlier run's\n")
    args = ["screen", str(FIXTURES), *AS_OF, "--out", str(out), "--engine", "spark"]
    assert main([*args, "--gather-limit", "10"]) == 0
    capsys.readouterr()
    assert (out / "summary.json").read_bytes() == (single / "summary.json").read_bytes()
    assert not (out / "decisions.ndjson").exists(), "no earlier run's file beside this summary"
    parts = part_lines(out, "decisions")
    lines = (single / "decisions.ndjson").read_bytes().splitlines()
    assert sorted(line for part in parts for line in part) == sorted(lines)
