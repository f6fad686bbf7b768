"""The options of `screen --engine spark`, checked before Spark starts (no Spark needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ips_screen.cli.main import main

SPARK = ["--engine", "spark"]
URL = "http://127.0.0.1:1/fhir"
REFUSED = [
    ([*SPARK, "--write"], "--write with --engine spark needs --write-to URL (the FHIR server)"),
    (["--master", "local[2]"], "--master only applies with --engine spark"),
    (["--spark-conf", "a=b"], "--spark-conf only applies with --engine spark"),
    ([*SPARK, "--write-to", URL], "--write-to only applies with --write"),
    ([*SPARK, "--auth", "bearer"], "--auth only applies to a FHIR server (--write-to)"),
    ([*SPARK, "--page-size", "5"], "--page-size only applies when the source is a FHIR server URL"),
]


@pytest.mark.parametrize(("extra", "message"), REFUSED)
def test_spark_options_are_checked(capsys, tmp_path: Path, extra: list[str], message: str):
    assert main(["screen", str(tmp_path), "--out", str(tmp_path / "o"), *extra]) == 2
    assert capsys.readouterr().err.strip() == f"ips-screen: error: {message}"
    assert not (tmp_path / "o").exists()


def test_a_server_source_is_refused(capsys, tmp_path: Path):
    args = ["screen", "http://127.0.0.1:1/fhir", "--out", str(tmp_path / "o"), "--engine", "spark"]
    assert main(args) == 2
    assert "--engine spark reads files, folders and storage URIs" in capsys.readouterr().err


def test_a_bad_spark_conf_is_a_usage_error(capsys, tmp_path: Path):
    args = ["screen", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "spark"]
    assert main([*args, "--spark-conf", "novalue"]) == 2
    assert "--spark-conf expects key=value, not 'novalue'" in capsys.readouterr().err
