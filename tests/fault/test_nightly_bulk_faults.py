"""`ips-screen nightly` against a fake Bulk Data exporter (`responses`): a damaged export keeps
`_since` and exits 9, types the server cannot export are reported, a first export without
Patient is an error, the server's words reach the ledger, and the line cap on input files."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import responses

from ips_screen.cli.main import main
from ips_screen.store import StateStore
from tests.support.bulk_responses import BASE, STATUS, TYPES, exporter, statement
from tests.support.paths import FROZEN_NOW

AS_OF = FROZEN_NOW.date().isoformat()


def ndjson(*resources: dict) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1980-01-01", "gender": "female"}


def condition(cid: str, pid: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]},
    }


def write_config(tmp_path: Path, *, mode: str = "bulk", level: str = "system") -> Path:
    group = '\ngroup_id = "g1"' if level == "group" else ""
    path = tmp_path / "practice.toml"
    path.write_text(
        f"""
[source]
kind = "server"

[fhir]
base_url = "{BASE}"

[export]
mode = "{mode}"
level = "{level}"{group}

[screen]
write = false

[output]
state_dir = "state"
"""
    )
    return path


def nightly(config: Path, *options: str) -> int:
    return main([*(options or ["-q"]), "nightly", "--config", str(config), "--as-of", AS_OF], {})


def since_asked(mock: responses.RequestsMock, url: str = f"{BASE}/$export") -> str | None:
    kicks = [c for c in mock.calls if c.request.url.startswith(url)]
    return parse_qs(urlsplit(kicks[-1].request.url).query).get("_since", [None])[0]


def ledger(tmp_path: Path) -> list[dict]:
    with StateStore(tmp_path / "state" / "store.sqlite") as store:
        return store.ledger.recent_runs(10)


def store_state(tmp_path: Path) -> tuple[str | None, dict[str, int]]:
    with StateStore(tmp_path / "state" / "store.sqlite") as store:
        return store.facts.get_since(), store.facts.counts()


T1, T2, T3 = "2026-11-24T01:30:00.000Z", "2026-11-25T01:30:00.000Z", "2026-11-26T01:30:00.000Z"


# -- 1. a damaged export -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_short_file_keeps_since_applies_nothing_and_exits_9(tmp_path, capsys):
    config = write_config(tmp_path)
    with exporter({"Patient": (ndjson(patient("p1"), patient("p2")), 2)}, when=T1):
        assert nightly(config) == 0
    before = store_state(tmp_path)
    assert before[0] == T1

    # The server lists 3 Patients but sends 2; the Condition file is fine but not applied either.
    night2 = {
        "Patient": (ndjson(patient("p1"), patient("p3")), 3),
        "Condition": (ndjson(condition("c1", "p1")), 1),
    }
    capsys.readouterr()
    with exporter(night2, when=T2) as mock:
        assert nightly(config) == 9
        assert since_asked(mock) == T1
    assert store_state(tmp_path) == before  # nothing applied, `since` kept
    run = ledger(tmp_path)[-1]
    assert run["status"] == "errors"
    assert "the manifest's count is 3, the file holds 2" in run["errors"][0]
    assert "count is 3" in capsys.readouterr().err
    assert not (tmp_path / "state" / "exports" / "current").exists()

    with exporter(night2 | {"Patient": (ndjson(patient("p1"), patient("p3")), 2)}, when=T3) as m:
        assert nightly(config) == 0
        assert since_asked(m) == T1  # the same changes asked for again
    since, counts = store_state(tmp_path)
    assert since == T3 and counts["patients"] == 3


def test_a_line_of_another_type_is_a_damaged_night(tmp_path):
    config = write_config(tmp_path)
    with exporter({"Patient": (ndjson(patient("p1"), condition("c1", "p1")), None)}, when=T1):
        assert nightly(config) == 9
    assert store_state(tmp_path) == (None, {"patients": 0, "records": 0})
    assert "expected resourceType Patient" in ledger(tmp_path)[-1]["errors"][0]


def issue(severity: str, text: str) -> dict:
    return {"severity": severity, "code": "informational", "diagnostics": text}


def test_an_error_file_that_only_informs_does_not_hold_since_back(tmp_path, capsys):
    """Bulk Data puts "error, warning, and information messages" in the manifest's error files:
    a server that always writes an informational one (e.g. "Observation: 0 resources") kept
    `_since` where it was and made every night exit 9, re-exporting everything since for good.
    Only an OperationOutcome with an issue that is not information holds `_since` back."""
    config = write_config(tmp_path)
    note = {"resourceType": "OperationOutcome", "issue": [issue("information", "0 Procedures")]}
    files = {"Patient": (ndjson(patient("p1")), 1)}
    with exporter(files, when=T1, errors=(ndjson(note, note),)):
        assert nightly(config, "--log-format", "text") == 0
    assert store_state(tmp_path)[0] == T1
    assert ledger(tmp_path)[-1]["status"] == "ok"
    logged = capsys.readouterr().err
    assert logged.count("the export's error files inform: information informational: 0 Pro") == 2

    warned = {**note, "issue": [issue("information", "x"), issue("warning", "Observation cut")]}
    with exporter(files, when=T2, errors=(ndjson(note), ndjson(warned))) as mock:
        assert nightly(config) == 9
        assert since_asked(mock) == T1
    assert store_state(tmp_path)[0] == T1  # kept: the next night asks for the same changes
    assert ledger(tmp_path)[-1]["errors"] == [
        "Bulk export: information informational: x; warning informational: Observation cut"
    ]


# -- 2. types the server cannot export -----------------------------------------------------------


def test_auto_mode_exports_the_supported_types_and_reports_the_others(tmp_path):
    config = write_config(tmp_path, mode="auto")
    files = {"Patient": (ndjson(patient("p1")), 1)}
    with exporter(files, when=T1, types=(*TYPES, "ServiceRequest")) as mock:
        refusal = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "bad _type"}],
        }
        mock.replace("GET", f"{BASE}/$export", status=400, json=refusal)
        mock.add("GET", f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
        assert nightly(config) == 0
        kicks = [c.request.url for c in mock.calls if "/$export" in c.request.url]
    assert [parse_qs(urlsplit(k).query)["_type"][0].endswith("Task") for k in kicks] == [
        True,
        False,
    ]
    run = ledger(tmp_path)[-1]
    assert run["status"] == "ok"
    assert [u["type"] for u in run["counts"]["unread_types"]] == ["Task"]
    report = (tmp_path / "state" / "runs" / "latest" / "report.html").read_text()
    assert "declines made outside this tool cannot be seen" in report
    summary = orjson.loads((tmp_path / "state" / "runs" / "latest" / "summary.json").read_bytes())
    assert summary["input"]["unread_types"][0]["type"] == "Task"


@pytest.mark.slow
def test_a_type_that_becomes_exportable_makes_the_next_run_full(tmp_path):
    config = write_config(tmp_path, mode="auto")
    files = {"Patient": (ndjson(patient("p1")), 1)}
    refusal = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-supported", "diagnostics": "no Task"}],
    }
    with exporter(files, when=T1, types=(*TYPES, "ServiceRequest")) as mock:
        mock.replace("GET", f"{BASE}/$export", status=400, json=refusal)
        mock.add("GET", f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
        assert nightly(config) == 0
    assert store_state(tmp_path)[0] == T1
    with exporter(files, when=T2) as mock:  # Task is exported again, but only since T1
        assert nightly(config) == 0
        assert since_asked(mock) == T1
    assert store_state(tmp_path)[0] is None  # so the next run reads everything
    assert "unread_types" not in ledger(tmp_path)[-1]["counts"]
    with exporter(files, when=T3) as mock:
        assert nightly(config) == 0
        assert since_asked(mock) is None
    assert store_state(tmp_path)[0] == T3


# -- 3. empty or unknown group -------------------------------------------------------------------


def test_a_first_export_without_patient_is_an_error(tmp_path, capsys):
    config = write_config(tmp_path, level="group")
    with exporter({}, when=T1, kick_off=f"{BASE}/Group/g1/$export"):
        assert nightly(config) == 5
    err = capsys.readouterr().err
    assert "Group/g1" in err and "holds no Patient" in err
    assert ledger(tmp_path)[-1]["status"] == "failed"
    assert store_state(tmp_path)[0] is None  # the next run is a full export again


@pytest.mark.slow
def test_a_later_night_without_changes_is_fine(tmp_path, capsys):
    config = write_config(tmp_path)
    with exporter({"Patient": (ndjson(patient("p1")), 1)}, when=T1):
        assert nightly(config) == 0
    capsys.readouterr()
    with exporter({}, when=T2):
        assert nightly(config, "--log-format", "text") == 0
    assert f"the Bulk export since {T1} holds no changes" in capsys.readouterr().err
    assert store_state(tmp_path)[0] == T2


# -- 4. the server's words -----------------------------------------------------------------------


def test_a_failed_kick_off_keeps_the_outcome_text_in_the_message_and_ledger(tmp_path, capsys):
    config = write_config(tmp_path)
    failed = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "exception", "diagnostics": "File generation failed"}
        ],
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{BASE}/metadata", json=statement(*TYPES))
        mock.get(f"{BASE}/$export", status=500, json=failed, headers={"Retry-After": "0"})
        assert nightly(config) == 5
    assert "File generation failed" in capsys.readouterr().err
    assert "File generation failed" in ledger(tmp_path)[-1]["errors"][0]


# -- 12. the line cap on input files -------------------------------------------------------------


def test_a_line_over_the_cap_in_an_input_file_is_exit_3(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    huge = {"resourceType": "Patient", "id": "p2", "text": "x" * (2 << 20)}
    (data / "patients.ndjson").write_bytes(ndjson(patient("p1"), huge))
    config = tmp_path / "practice.toml"
    config.write_text(
        '[source]\nkind = "files"\npath = "data"\nmax_line_mib = 1\n\n'
        '[output]\nstate_dir = "state"\n'
    )
    assert main(["-q", "nightly", "--config", str(config), "--as-of", AS_OF], {}) == 3
    err = capsys.readouterr().err
    assert "patients.ndjson:2: a line longer than 1048576 bytes" in err


@pytest.mark.parametrize("gz", [False, True])
def test_the_file_reader_refuses_a_long_line_without_reading_it_whole(tmp_path, gz):
    import gzip

    from ips_screen.errors import InputError
    from ips_screen.sources.files import ReadReport, iter_resources

    line = ndjson({"resourceType": "Patient", "id": "p1", "text": "x" * 5000})
    path = tmp_path / ("p.ndjson.gz" if gz else "p.ndjson")
    path.write_bytes(
        gzip.compress(ndjson(patient("p0")) + line) if gz else ndjson(patient("p0")) + line
    )
    with pytest.raises(InputError, match=r"p.ndjson(.gz)?:2: a line longer than 4096 bytes"):
        list(iter_resources([path], ReadReport(skip_invalid=True), max_line=4096))
    assert len(list(iter_resources([path], max_line=len(line)))) == 2
