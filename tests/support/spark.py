"""What the Spark tests (tests/spark) share besides the session fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from ips_screen.cli.main import main

# PySpark (3.5) leaves the local sockets it reads results through for the garbage collector.
SOCKETS_LEFT_OPEN = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)

AS_OF = ["--as-of", "2026-11-26"]
# Patient p1's active chronic pain (SNOMED 82423001), the record the merge tests move and erase.
PAIN = {
    "resourceType": "Condition",
    "id": "c1",
    "subject": {"reference": "Patient/p1"},
    "clinicalStatus": {"coding": [{"code": "active"}]},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]},
    "onsetDateTime": "2025-01-01",
}
OUTPUTS = ("decisions.ndjson", "proposals.json", "summary.json", "report.html", "worklist.csv")


def screen_both(
    capsys, tmp_path: Path, *sources: Path | str, extra: tuple[str, ...] = (), spark_sources=()
) -> Path:
    """Screen on one machine and on Spark (reading `spark_sources` when given, else the same
    sources); assert every output is identical; the Spark out."""
    single, spark = tmp_path / "single", tmp_path / "spark"
    args = ["screen", *map(str, sources), *AS_OF, *extra]
    assert main([*args, "--out", str(single)]) == 0
    single_stdout = capsys.readouterr().out
    if spark_sources:
        args = ["screen", *map(str, spark_sources), *AS_OF, *extra]
    assert main([*args, "--out", str(spark), "--engine", "spark"]) == 0
    out, err = capsys.readouterr()
    assert out == single_stdout.replace(str(single), str(spark)), err
    for name in OUTPUTS:
        assert (spark / name).read_bytes() == (single / name).read_bytes(), name
    return spark
