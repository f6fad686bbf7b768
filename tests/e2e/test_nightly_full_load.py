"""The nightly job's full load reads its files in parts on several processes (`[source] jobs`),
with the reading shortcuts, and decides the patients on several processes (`[screen] jobs`),
and gives the store and the outputs that reading every resource in turn and deciding in one
process give: for any number of processes, when a large file is cut into many parts, when a
later part holds a copy of a kept record that the prefilter skips unparsed, and with problems
named by file and line. Workers start once the night has enough patients to evaluate, however
few each batch brings (an incremental night's changed patients come a few at a time).

The Bulk files here are written with sorted keys (as many servers write them): their
"resourceType" comes after nested values, so the files' Bulk names tell the type.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.nightly import deciding
from ips_screen.nightly import screen as nightly_screen
from ips_screen.sources import chunks
from ips_screen.store import StateStore
from tests.support.paths import FIXTURES, FROZEN_NOW

PATIENTS = ("01-unemployed-recent.json", "04-fit-notes-no-employment-status.json")
FILLER = 400  # Observations of no rule's codes, so that the file is cut into several parts
CORRECTED = "fx-01-obs-2"  # fx-01's fit note, coded again later as something no rule reads


def bulk_folder(folder: Path, *, correct_later: bool = False, bad_line: bool = False) -> None:
    by_type: dict[str, list[dict]] = {}
    for name in PATIENTS:
        bundle = orjson.loads((FIXTURES / "patients" / name).read_bytes())
        for entry in bundle["entry"]:
            resource = entry["resource"]
            by_type.setdefault(resource["resourceType"], []).append(resource)
    observations = by_type["Observation"]
    for n in range(FILLER):
        observations.append(
            {
                "resourceType": "Observation",
                "id": f"filler-{n}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": "Patient/fx-01"},
                "effectiveDateTime": "2026-10-01",
            }
        )
    if correct_later:
        [fit_note] = [o for o in observations if o["id"] == CORRECTED]
        corrected = {
            **fit_note,
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        }
        observations.append(corrected)
    folder.mkdir()
    for rtype, resources in by_type.items():
        lines = [orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in resources]
        if bad_line and rtype == "Observation":
            lines.insert(len(lines) - 3, b'{"resourceType": "Observation", "id": ')
        (folder / f"{rtype}.000.ndjson").write_bytes(b"\n".join(lines) + b"\n")


def night(
    work: Path, data: Path, jobs: int, incremental: bool = False, exit_code: int = 0
) -> tuple[bytes, dict, list, list]:
    """A nightly run on `data` in `work` (its state kept there); decisions, summary, store rows."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "practice.toml"
    state = work / "state"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{data}"\njobs = {jobs}\n'
        f"incremental = {str(incremental).lower()}\n"
        f'[screen]\nwrite = false\njobs = {jobs}\n[output]\nstate_dir = "{state}"\n',
        encoding="utf-8",
    )
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(
            ["-q", "nightly", "--config", str(config), "--as-of", FROZEN_NOW.date().isoformat()]
        )
    assert code == exit_code
    run = state / "runs" / "latest"
    with StateStore(state / "store.sqlite") as store:
        rows = list(
            store.facts.sql.execute("SELECT ref, patient_id, data FROM records ORDER BY ref")
        )
        rows += list(store.facts.sql.execute("SELECT id, NULL, data FROM patients ORDER BY id"))
        cache = list(  # the cached decisions, without the generation of the screen that made them
            store.facts.sql.execute(
                "SELECT patient_id, as_of, valid_until, digest, summary, data, proposal, texts "
                "FROM decision_cache ORDER BY patient_id"
            )
        )
    return (
        (run / "decisions.ndjson").read_bytes(),
        orjson.loads((run / "summary.json").read_bytes()),
        rows,
        cache,
    )


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks, "RANGE_BYTES", 4096)  # Observation.000.ndjson: about 30 parts


def test_one_or_two_processes_and_many_parts_give_the_same_store_and_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data = tmp_path / "in"
    bulk_folder(data)
    # The reference: the same files applied resource by resource, as changes to a store that
    # a first night loaded with the Patients alone.
    first = tmp_path / "patients-only"
    first.mkdir()
    (first / "Patient.000.ndjson").write_bytes((data / "Patient.000.ndjson").read_bytes())
    night(tmp_path / "ref", first, 1, incremental=True)
    _, ref_summary, ref_rows, ref_cache = night(tmp_path / "ref", data, 1, incremental=True)
    assert ref_summary["input"]["by_type"]["Observation"] > FILLER

    whole = night(tmp_path / "a", data, 1)
    monkeypatch.setattr(chunks, "RANGE_BYTES", 4096)
    monkeypatch.setattr(deciding, "PARALLEL_MIN", 1)  # decided on worker processes too
    monkeypatch.setattr(deciding, "PIECE", 1)
    assert len(chunks.plan(sorted(data.iterdir()))) > 20
    one = night(tmp_path / "b", data, 1)
    two = night(tmp_path / "c", data, 2)
    assert whole == one == two
    _, summary, rows, cache = two
    assert rows == ref_rows
    assert cache == ref_cache  # what the next night reuses
    assert summary["input"]["by_type"] == ref_summary["input"]["by_type"]
    assert not any(ref.startswith("Observation/filler-") for ref, _, _ in rows)  # never kept


def test_a_later_copy_the_prefilter_skips_still_removes_the_record(
    tmp_path: Path, small_parts: None
):
    plain, corrected = tmp_path / "plain", tmp_path / "corrected"
    bulk_folder(plain)
    bulk_folder(corrected, correct_later=True)
    kept = {ref for ref, _, _ in night(tmp_path, plain, 2)[2]}
    assert f"Observation/{CORRECTED}" in kept
    after = {ref for ref, _, _ in night(tmp_path / "again", corrected, 2)[2]}
    assert after == kept - {f"Observation/{CORRECTED}"}


def test_a_bad_line_in_a_later_part_is_named_by_its_file_and_line(
    tmp_path: Path, small_parts: None
):
    data = tmp_path / "in"
    bulk_folder(data, bad_line=True)
    lines = (data / "Observation.000.ndjson").read_bytes().splitlines()
    lineno = next(n for n, line in enumerate(lines, 1) if line.endswith(b'"id": '))
    assert lineno > 300  # far past the first part
    summary = night(tmp_path, data, 2, exit_code=9)[1]  # 9: the night ended with errors
    [skipped] = summary["data_quality"]["skipped"]
    assert skipped["where"] == f"{data / 'Observation.000.ndjson'}:{lineno}"


def test_patients_to_evaluate_a_few_per_batch_still_go_to_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data = tmp_path / "in"
    data.mkdir()
    with (data / "all.ndjson").open("wb") as out:  # every fixture patient
        for path in sorted((FIXTURES / "patients").glob("*.json")):
            for entry in orjson.loads(path.read_bytes())["entry"]:
                out.write(orjson.dumps(entry["resource"]) + b"\n")
    alone = night(tmp_path / "one", data, 1)
    pools: list[int] = []

    class Counted(deciding.ProcessPoolExecutor):
        def __init__(self, workers: int, **kwargs: object) -> None:
            pools.append(workers)
            super().__init__(workers, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(deciding, "ProcessPoolExecutor", Counted)
    monkeypatch.setattr(nightly_screen, "CHUNK", 3)  # every batch smaller than PARALLEL_MIN
    monkeypatch.setattr(deciding, "PARALLEL_MIN", 10)
    monkeypatch.setattr(deciding, "PIECE", 2)
    shared = night(tmp_path / "two", data, 2)
    assert pools == [2]
    assert shared == alone
    assert len(alone[3]) > 30  # cached decisions: most batches were decided by the workers
