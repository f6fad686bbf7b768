"""Outputs and logs carry resource ids and clinical facts, never names, birth dates, addresses or
NHS numbers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ips_screen.cli.main import main
from tests.fhir_support import running_test_server
from tests.support.personal import NHS_NUMBER, fixtures_with_personal_data


@pytest.mark.slow
def test_outputs_and_logs_hold_no_personal_data(tmp_path: Path, capsys, caplog):
    data = tmp_path / "data"
    secrets = fixtures_with_personal_data(data)
    assert NHS_NUMBER in secrets and "Fictional" not in secrets  # the check sees what it should
    assert any(len(v) == 10 and v[4] == "-" for v in secrets)  # birth dates are among them

    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG, logger="ips_screen"):
        assert main(["-v", "screen", str(data), "--as-of", "2026-11-26", "--out", str(out)]) == 0
        for pid in ("fx-01", "fx-04", "fx-35"):
            main(["explain", str(data), "--patient", pid, "--as-of", "2026-11-26"])
    stdout, stderr = capsys.readouterr()
    texts = {name.name: name.read_text() for name in out.iterdir()}
    texts["stdout"], texts["stderr"], texts["log"] = stdout, stderr, caplog.text
    for where, text in texts.items():
        leaked = sorted(v for v in secrets if len(v) > 3 and v in text)
        assert not leaked, f"{where} contains personal data: {leaked}"


@pytest.mark.integration
def test_clinician_screens_show_who_the_patient_is_and_batch_outputs_and_logs_do_not(
    tmp_path: Path, capsys, caplog
):
    """Both sides on a real FHIR server: `review list` and `review show` (a clinician's terminal)
    show the patient's name, date of birth and NHS number (3 3 4); the screen written to the
    server (decisions, summary, report, worklist), and every log line, hold none of them."""
    data = tmp_path / "data"
    secrets = fixtures_with_personal_data(data)
    out = tmp_path / "out"
    logs = []  # the log lines go to stderr (log_setup: the ips_screen logger does not propagate)
    with running_test_server() as server, caplog.at_level(logging.DEBUG, logger="ips_screen"):
        url = server.base_url
        assert main(["load", url, str(data)]) == 0
        argv = ["-v", "screen", url, "--as-of", "2026-11-26", "--out", str(out), "--write"]
        assert main(argv) == 0
        batch_stdout, err = capsys.readouterr()
        logs.append(err)
        assert main(["-v", "review", "list", "--server", url]) == 0
        listed, err = capsys.readouterr()
        logs.append(err)
        task = next(line.split()[0] for line in listed.splitlines() if "OKONKWO-TEST" in line)
        assert main(["-v", "review", "show", task, "--server", url]) == 0
        shown, err = capsys.readouterr()
        logs.append(err)
    # the clinician's side: who the patient is
    assert "OKONKWO-TEST, Amina" in listed and "1979-04-12 (47 y)" in listed
    assert "943 476 5919" in listed  # NHS_NUMBER, shown 3 3 4
    for words in (
        "Name: OKONKWO-TEST, Amina",
        "Born: 1979-04-12 (47 y)",
        "NHS number: 943 476 5919",
    ):
        assert words in shown
    # the batch side and the logs: ids only
    texts = {name.name: name.read_text() for name in out.iterdir() if name.is_file()}
    texts["screen stdout"], texts["log"] = batch_stdout, "\n".join([*logs, caplog.text])
    assert all(logs) and "GET /fhir/Patient" in logs[1]  # logged, and read the Patients
    for where, text in texts.items():
        leaked = sorted(v for v in secrets if len(v) > 3 and v in text)
        assert not leaked, f"{where} contains personal data: {leaked}"
