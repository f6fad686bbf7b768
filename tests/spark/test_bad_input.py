"""Bad input on Spark behaves as on one machine: without --skip-invalid the screen stops with the
same one-line message naming the file and line, and writes nothing; with it, the same problems
are skipped and listed in the same summary.json."""

from __future__ import annotations

import shutil
from pathlib import Path

from ips_screen.cli.main import main
from tests.support.paths import FIXTURES, ROOT
from tests.support.spark import SOCKETS_LEFT_OPEN

pytestmark = SOCKETS_LEFT_OPEN

INVALID = ROOT / "tests" / "data" / "invalid"
AS_OF = ["--as-of", "2026-11-26"]


def bad_input(tmp_path: Path) -> Path:
    """The fixtures and every kind of invalid input file (tests/data/invalid) in one folder."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES / "patients", data / "patients")
    shutil.copytree(INVALID, data / "invalid")
    return data


def test_an_error_names_the_file_and_line_and_writes_nothing(spark, capsys, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    bad = data / "Condition.000.ndjson"
    bad.write_bytes(b'{"resourceType":"Patient","id":"p1","birthDate":"1980-01-01"}\n{not json\n')
    out = tmp_path / "out"
    code = main(["screen", str(data), *AS_OF, "--out", str(out), "--engine", "spark"])
    _, err = capsys.readouterr()
    assert code == 3
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"ips-screen: error: {bad}:2: not valid JSON")
    assert not out.exists(), "nothing is written when the input is refused"


def test_the_first_error_is_the_single_machine_one(spark, capsys, tmp_path: Path):
    data = bad_input(tmp_path)
    args = ["screen", str(data), *AS_OF, "--out", str(tmp_path / "o")]
    assert main(args) == 3
    single = capsys.readouterr().err
    assert main([*args, "--engine", "spark"]) == 3
    assert capsys.readouterr().err == single


def test_skip_invalid_skips_and_lists_the_same_problems(spark, capsys, tmp_path: Path):
    data = bad_input(tmp_path)
    single, spark_out = tmp_path / "single", tmp_path / "spark"
    args = ["screen", str(data), *AS_OF, "--skip-invalid"]
    assert main([*args, "--out", str(single)]) == 0
    assert main([*args, "--out", str(spark_out), "--engine", "spark"]) == 0
    capsys.readouterr()
    for name in ("summary.json", "decisions.ndjson", "report.html"):
        assert (spark_out / name).read_bytes() == (single / name).read_bytes(), name
    assert b'"records_skipped": 0' not in (single / "summary.json").read_bytes()
