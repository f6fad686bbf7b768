"""Writing proposals back to a real FHIR R4 server: no duplicates across reruns, killed runs or
concurrent writers; one writer per server; the duplicate sweep.

The server is shared by the session: every test loads fixture patients under its own id prefix
and counts only its own patients' resources.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ips_screen import __version__
from ips_screen.cli.main import main
from ips_screen.codes import PROPOSAL_ID_SYSTEM
from ips_screen.devtools.load import load_bundles
from ips_screen.engine.decision import Decision
from ips_screen.errors import InputError, LockHeld
from ips_screen.fhir.client import FhirClient
from ips_screen.pipeline import screen_server
from ips_screen.proposals.build import (
    build_patient_transaction,
    proposal_entries,
    proposal_identifier,
)
from ips_screen.proposals.common import device_entry, transaction
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.writeback.writer import (
    PracticeLock,
    default_lock_path,
    sweep_duplicates,
    write_proposals,
)
from tests.support.paths import FIXTURES, FROZEN_NOW
from tests.support.retag import retagged_fixtures

pytestmark = pytest.mark.integration

AS_OF = FROZEN_NOW.date()
PROPOSED = ["01", "02", "03"]  # fixture patients the default ruleset proposes
EXCLUDED = "17"  # deceased
NOT_ELIGIBLE = "29"  # no chronic pain


@pytest.fixture(scope="module")
def ruleset() -> CompiledRuleset:
    return load_ruleset(None)


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    return {"IPS_SCREEN_STATE_DIR": str(tmp_path / "state")}


# -- loading fixture patients under unique ids ---------------------------------------------------


def load_patients(client: FhirClient, tmp_path: Path, numbers: list[str]) -> list[str]:
    """Load practice.json and the numbered fixture patients under a fresh tag; their ids."""
    folder = tmp_path / f"load-{uuid.uuid4().hex[:8]}"
    _, ids = retagged_fixtures(folder, numbers)
    assert load_bundles(client, [folder]) > len(numbers)
    return ids


def decisions_for(client: FhirClient, ruleset: CompiledRuleset, ids: list[str]) -> list[Decision]:
    result = screen_server(client, ruleset, as_of=AS_OF, out_dir=None, now=FROZEN_NOW, patients=ids)
    return result.decisions


def total(client: FhirClient, resource_type: str, ids: list[str], **params: str) -> int:
    """How many resources of a type the patients have (_summary=count)."""
    patients = ",".join(f"Patient/{i}" for i in ids)
    query = {"patient": patients, "_summary": "count", **params}
    bundle = next(client.search_pages(resource_type, query))
    return int(bundle["total"])


def by_identifier(client: FhirClient, resource_type: str, value: str) -> list[dict]:
    return list(client.search(resource_type, {"identifier": f"{PROPOSAL_ID_SYSTEM}|{value}"}))


def screen_cli(base_url: str, ids: list[str], out: Path, environ: dict[str, str], *extra: str):
    argv = ["screen", base_url, "--write", "--out", str(out)]
    for pid in ids:
        argv += ["--patient-id", pid]
    return main([*argv, *extra], environ)


@pytest.fixture
def patients(fhir_client: FhirClient, tmp_path: Path) -> Iterator[list[str]]:
    yield load_patients(fhir_client, tmp_path, [*PROPOSED, EXCLUDED, NOT_ELIGIBLE])


# -- tests ---------------------------------------------------------------------------------------


def test_writing_twice_adds_nothing_the_second_time(
    fhir_client: FhirClient, ruleset: CompiledRuleset, patients: list[str], tmp_path: Path,
    environ: dict[str, str], capsys: pytest.CaptureFixture[str],
):  # fmt: skip
    base = fhir_client.base_url
    assert screen_cli(base, patients, tmp_path / "one", environ) == 0
    assert "Wrote 3 new proposals (0 already present, 0 duplicates resolved, 0 failed)" in (
        capsys.readouterr().out
    )
    counts = [total(fhir_client, t, patients) for t in ("ServiceRequest", "Task")]
    assert counts == [3, 3]
    proposals = list(fhir_client.search("ServiceRequest", {"patient": ",".join(patients)}))
    provenances = [total_targets(fhir_client, f"ServiceRequest/{sr['id']}") for sr in proposals]
    assert provenances == [1, 1, 1]

    # The same decisions again (a stale screen): every proposal is already there.
    first = [d for d in decisions_from(tmp_path / "one") if d.outcome == "propose"]
    again = write_proposals(fhir_client, first, ruleset, now=FROZEN_NOW, tool_version=__version__)
    assert (again.created, again.existing, again.failed) == (0, 3, [])

    # A real second run: the screen sees the pending proposals and writes nothing.
    assert screen_cli(base, patients, tmp_path / "two", environ) == 0
    assert "Wrote 0 new proposals (0 already present" in capsys.readouterr().out
    assert [total(fhir_client, t, patients) for t in ("ServiceRequest", "Task")] == counts
    assert [total_targets(fhir_client, f"ServiceRequest/{sr['id']}") for sr in proposals] == (
        provenances
    )


def total_targets(client: FhirClient, target: str) -> int:
    return sum(1 for _ in client.search("Provenance", {"target": target}))


def decisions_from(out: Path) -> list[Decision]:
    lines = (out / "decisions.ndjson").read_bytes().splitlines()
    return [Decision.from_dict(orjson.loads(line)) for line in lines if line.strip()]


def test_rerun_excludes_written_patients_as_referral_open(
    fhir_client: FhirClient, patients: list[str], tmp_path: Path, environ: dict[str, str],
    capsys: pytest.CaptureFixture[str],
):  # fmt: skip
    assert screen_cli(fhir_client.base_url, patients, tmp_path / "one", environ) == 0
    capsys.readouterr()
    assert screen_cli(fhir_client.base_url, patients, tmp_path / "two", environ) == 0
    out = capsys.readouterr().out
    assert "0 to propose" in out
    assert "Wrote 0 new proposals (0 already present, 0 duplicates resolved, 0 failed)" in out
    decisions = {d.patient: d for d in decisions_from(tmp_path / "two")}
    for pid in patients[: len(PROPOSED)]:
        decision = decisions[f"Patient/{pid}"]
        assert (decision.outcome, decision.reasons[0]) == ("excluded", "ips-referral-open")
    proposals = orjson.loads((tmp_path / "two" / "proposals.json").read_bytes())
    assert not proposals.get("entry")


def test_second_writer_gets_lock_held(tmp_path: Path):
    path = tmp_path / "locks" / "x.lock"
    with PracticeLock(path, base_url="https://fhir.example.org/r4"):
        assert f"pid={os.getpid()}" in path.read_text()
        with pytest.raises(
            LockHeld, match=rf"writing to https://fhir.example.org/r4 .*pid {os.getpid()}\)"
        ):
            PracticeLock(path, base_url="https://fhir.example.org/r4").acquire()
    with PracticeLock(path):  # released: free again
        pass


def test_stale_lock_file_of_a_dead_process_does_not_block(tmp_path: Path):
    path = tmp_path / "stale.lock"
    path.write_text("pid=999999\nstarted=2020-01-01T00:00:00+00:00\n")
    with PracticeLock(path):
        assert f"pid={os.getpid()}" in path.read_text()


def test_cli_refuses_while_another_run_holds_the_lock(
    fhir_client: FhirClient, patients: list[str], tmp_path: Path, environ: dict[str, str],
    capsys: pytest.CaptureFixture[str],
):  # fmt: skip
    lock = default_lock_path(fhir_client.base_url, environ)
    with PracticeLock(lock, base_url=fhir_client.base_url):
        code = screen_cli(fhir_client.base_url, patients, tmp_path / "out", environ)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 7
    assert len(err) == 1
    assert err[0].startswith(
        f"ips-screen: error: another ips-screen run is writing to {fhir_client.base_url} "
    )
    assert f"pid {os.getpid()}" in err[0]
    assert total(fhir_client, "ServiceRequest", patients) == 0


def test_killed_run_then_full_run_leaves_each_proposal_once(
    fhir_client: FhirClient, ruleset: CompiledRuleset, patients: list[str], tmp_path: Path,
    environ: dict[str, str], capsys: pytest.CaptureFixture[str],
):  # fmt: skip
    decisions = [d for d in decisions_for(fhir_client, ruleset, patients) if d.outcome == "propose"]
    assert len(decisions) == 3
    # Killed after the first patient's transaction.
    partial = write_proposals(
        fhir_client, decisions[:1], ruleset, now=FROZEN_NOW, tool_version=__version__
    )
    assert partial.created == 1
    # Killed on a non-atomic server after the second patient's ServiceRequest: no Task.
    entries = proposal_entries(decisions[1], ruleset, now=FROZEN_NOW, tool_version=__version__)
    request_only = [e for e in entries if e.resource["resourceType"] == "ServiceRequest"]
    fhir_client.transaction(transaction([device_entry(__version__), *request_only]))

    # The stale decisions again: the second gets its Task back, the third is written.
    resumed = write_proposals(
        fhir_client, decisions, ruleset, now=FROZEN_NOW, tool_version=__version__
    )
    assert [r.status for r in resumed.results] == ["existing", "repaired", "created"]
    # A full run afterwards writes nothing more.
    assert screen_cli(fhir_client.base_url, patients, tmp_path / "full", environ) == 0
    assert "Wrote 0 new proposals" in capsys.readouterr().out

    for decision in decisions:
        _, value = proposal_identifier(ruleset, decision.patient)
        requests_ = by_identifier(fhir_client, "ServiceRequest", value)
        tasks = by_identifier(fhir_client, "Task", f"{value}-review")
        assert len(requests_) == 1 and len(tasks) == 1, decision.patient
        assert tasks[0]["focus"]["reference"] == f"ServiceRequest/{requests_[0]['id']}"
        assert tasks[0]["status"] == "requested"


def test_sweep_retires_duplicates_and_rescreen_ignores_them(
    fhir_client: FhirClient, ruleset: CompiledRuleset, tmp_path: Path
):
    ids = load_patients(fhir_client, tmp_path, ["01"])
    (decision,) = [d for d in decisions_for(fhir_client, ruleset, ids) if d.outcome == "propose"]
    bundle = build_patient_transaction(decision, ruleset, now=FROZEN_NOW, tool_version=__version__)
    for entry in bundle["entry"]:  # what two racing writers can do: plain creates
        if entry["resource"]["resourceType"] in ("ServiceRequest", "Task"):
            entry["request"].pop("ifNoneExist")
    fhir_client.transaction(bundle)
    fhir_client.transaction(bundle)
    _, value = proposal_identifier(ruleset, decision.patient)
    first, second = sorted(
        by_identifier(fhir_client, "ServiceRequest", value),
        key=lambda r: (r["meta"]["lastUpdated"], r["id"]),
    )
    tasks = {
        t["focus"]["reference"]: t for t in by_identifier(fhir_client, "Task", f"{value}-review")
    }
    first_task, second_task = (
        tasks[f"ServiceRequest/{first['id']}"],
        tasks[f"ServiceRequest/{second['id']}"],
    )
    # and a third review Task, of the first proposal, with the same identifier
    extra = fhir_client.create({k: v for k, v in first_task.items() if k not in ("id", "meta")})
    assert extra.resource is not None

    done = sweep_duplicates(fhir_client, ruleset, now=FROZEN_NOW)
    mine = [d for d in done if d.identifier in (value, f"{value}-review")]
    assert [(d.resource_type, d.kept, d.retired, d.retired_tasks, d.error) for d in mine] == [
        (
            "ServiceRequest",
            f"ServiceRequest/{first['id']}",
            (f"ServiceRequest/{second['id']}",),
            (f"Task/{second_task['id']}",),
            None,
        ),
        ("Task", f"Task/{first_task['id']}", (f"Task/{extra.resource['id']}",), (), None),
    ]

    statuses = {r["id"]: r["status"] for r in by_identifier(fhir_client, "ServiceRequest", value)}
    assert statuses == {first["id"]: "draft", second["id"]: "entered-in-error"}
    tasks = by_identifier(fhir_client, "Task", f"{value}-review")
    live = [t for t in tasks if t["status"] != "entered-in-error"]
    assert len(tasks) == 3 and len(live) == 1
    assert live[0]["focus"]["reference"] == f"ServiceRequest/{first['id']}"
    assert live[0]["status"] == "requested"

    # Nothing left to do; the re-screen counts only the live proposal.
    again = sweep_duplicates(fhir_client, ruleset, now=FROZEN_NOW)
    assert not [d for d in again if d.identifier in (value, f"{value}-review")]
    (rescreen,) = decisions_for(fhir_client, ruleset, ids)
    assert rescreen.reasons == ("ips-referral-open",)
    step = rescreen.step("ips-referral-open")
    assert step is not None and step.refs == (f"ServiceRequest/{first['id']}",)
    # and writing the old decision again finds the live proposal and its Task
    report = write_proposals(
        fhir_client, [decision], ruleset, now=FROZEN_NOW, tool_version=__version__
    )
    assert [(r.status, r.service_request) for r in report.results] == [
        ("existing", f"ServiceRequest/{first['id']}")
    ]


def test_owner_from_the_record_or_configured(
    fhir_client: FhirClient, tmp_path: Path, environ: dict[str, str],
    capsys: pytest.CaptureFixture[str],
):  # fmt: skip
    ids = load_patients(fhir_client, tmp_path, ["01", "02"])
    tag = ids[0].removesuffix("-fx-01")
    assert screen_cli(fhir_client.base_url, ids[:1], tmp_path / "a", environ) == 0
    owner = f"Organization/{tag}-practice"
    assert screen_cli(fhir_client.base_url, ids[1:], tmp_path / "b", environ, "--owner", owner) == 0
    owners = {
        t["for"]["reference"]: t["owner"]["reference"]
        for t in fhir_client.search("Task", {"patient": ",".join(f"Patient/{i}" for i in ids)})
    }
    assert owners == {f"Patient/{ids[0]}": f"Practitioner/{tag}-gp-1", f"Patient/{ids[1]}": owner}


@pytest.mark.parametrize("owner", ["gp-1", "Patient/x", "Practitioner/", "Device/a b"])
def test_bad_owner_is_a_usage_error(tmp_path: Path, owner: str, capsys: pytest.CaptureFixture[str]):
    path = str(FIXTURES / "patients")
    assert main(["screen", path, "--out", str(tmp_path), "--owner", owner]) == 2
    assert "--owner must be Organization/<id>" in capsys.readouterr().err


def test_write_needs_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["screen", str(FIXTURES / "patients"), "--out", str(tmp_path), "--write"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ips-screen: error: --write needs a FHIR server as SOURCE"
    )


def test_load_bundles_puts_in_chunks_and_last_copy_wins(fhir_client: FhirClient, tmp_path: Path):
    tag = uuid.uuid4().hex[:8]
    pid = f"{tag}-p"
    first = {"resourceType": "Patient", "id": pid, "gender": "female"}
    (tmp_path / "a.json").write_bytes(orjson.dumps(first))
    lines = [
        {
            "resourceType": "Condition",
            "id": f"{tag}-c{n}",
            "subject": {"reference": f"Patient/{pid}"},
        }
        for n in range(5)
    ]
    lines.append({**first, "gender": "male"})
    (tmp_path / "b.ndjson").write_bytes(b"\n".join(orjson.dumps(x) for x in lines))
    assert load_bundles(fhir_client, [tmp_path], chunk_size=2) == 7
    assert load_bundles(fhir_client, [tmp_path]) == 7  # PUTs: loading again changes nothing
    assert fhir_client.read("Patient", pid)[0]["gender"] == "male"
    assert total(fhir_client, "Condition", [pid]) == 5


def test_load_bundles_refuses_a_resource_without_id(fhir_client: FhirClient, tmp_path: Path):
    (tmp_path / "x.ndjson").write_bytes(b'{"resourceType": "Patient"}\n')
    with pytest.raises(InputError, match=r"x.ndjson:1: a resource to load needs a valid id"):
        load_bundles(fhir_client, [tmp_path])


def test_lock_of_a_killed_process_is_free_again(tmp_path: Path):
    path = tmp_path / "killed.lock"
    holder = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ips_screen.writeback.writer import PracticeLock\n"
        "PracticeLock(Path(sys.argv[1])).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "held\n"
            with pytest.raises(LockHeld, match=rf"pid {proc.pid}\)"):
                PracticeLock(path).acquire()
        finally:
            proc.kill()  # SIGKILL: no clean release, the file keeps its pid
            proc.wait()
    assert f"pid={proc.pid}" in path.read_text()
    with PracticeLock(path):
        assert f"pid={os.getpid()}" in path.read_text()
