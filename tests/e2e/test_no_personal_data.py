"""Outputs and logs carry resource ids and clinical facts, never names, birth dates, addresses or
NHS numbers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ips_screen.cli.main import main
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
