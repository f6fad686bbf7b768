"""The Spark screen's outputs (the partitioned ones included) and logs carry resource ids and
clinical facts, never names, birth dates, addresses or NHS numbers, whether it reads a path or a
URI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ips_screen.cli.main import main
from tests.support.personal import NHS_NUMBER, fixtures_with_personal_data, leaks
from tests.support.spark import SOCKETS_LEFT_OPEN

pytestmark = SOCKETS_LEFT_OPEN


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_spark_outputs_and_logs_hold_no_personal_data(
    spark, tmp_path: Path, capsys, caplog, as_uri: bool
):
    data = tmp_path / "data"
    secrets = fixtures_with_personal_data(data)
    assert NHS_NUMBER in secrets
    out = tmp_path / "out"
    source = data.as_uri() if as_uri else str(data)  # a URI: read through Spark (binaryFiles)
    args = ["-v", "screen", source, "--as-of", "2026-11-26", "--out", str(out)]
    with caplog.at_level(logging.DEBUG, logger="ips_screen"):
        assert main([*args, "--engine", "spark"]) == 0
    stdout, stderr = capsys.readouterr()
    texts = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}
    assert any(name.startswith("spark/proposals/part-") for name in texts)
    texts["stdout"], texts["stderr"], texts["log"] = stdout, stderr, caplog.text
    assert leaks(texts, secrets) == {}
