"""`screen --engine spark --write` against a real FHIR test server: the proposals of a Bulk
export screened on Spark are written in batches from the driver, under the practice lock and the
server's lease, and a second run writes nothing new."""

from __future__ import annotations

from pathlib import Path

from ips_screen.cli.main import main
from ips_screen.devtools.load import load_bundles
from ips_screen.fhir.client import FhirClient
from tests.fhir_support import strict_client
from tests.support.retag import retagged_fixtures
from tests.support.spark import SOCKETS_LEFT_OPEN

pytestmark = SOCKETS_LEFT_OPEN

PROPOSED = ["01", "02", "03"]  # fixture patients the default ruleset proposes
OTHERS = ["17", "29"]  # deceased; no chronic pain


def count(client: FhirClient, resource_type: str, ids: list[str]) -> int:
    query = {"patient": ",".join(f"Patient/{i}" for i in ids), "_summary": "count"}
    return int(next(client.search_pages(resource_type, query))["total"])


def test_write_from_spark_is_idempotent(spark, fhir_server, capsys, tmp_path: Path):
    export = tmp_path / "export"
    _, ids = retagged_fixtures(export, PROPOSED + OTHERS)
    environ = {"IPS_SCREEN_STATE_DIR": str(tmp_path / "state")}
    with strict_client(fhir_server.base_url) as client:
        load_bundles(client, [export])
        args = ["screen", str(export), "--as-of", "2026-11-26", "--engine", "spark", "--write"]
        args += ["--write-to", fhir_server.base_url, "--write-batch", "2"]
        assert main([*args, "--out", str(tmp_path / "one")], environ) == 0
        out, err = capsys.readouterr()
        assert "Wrote 3 new proposals (0 already present, 0 duplicates resolved, 0 failed)" in out
        # the log tells of each batch and then of the whole write, once: no partial "Wrote"
        # line for a batch or for the duplicate sweep
        wrote = [line.split(" INFO ", 1)[1] for line in err.splitlines() if " Wrote " in line]
        assert wrote == [
            "Wrote 3 new proposals (0 already present, 0 duplicates resolved, 0 failed)"
        ]
        assert "batch 2: 3 proposed patients written or checked" in err
        counts = [count(client, t, ids) for t in ("ServiceRequest", "Task")]
        assert counts == [3, 3]

        assert main([*args, "--out", str(tmp_path / "two")], environ) == 0
        out = capsys.readouterr().out
        assert "Wrote 0 new proposals (3 already present, 0 duplicates resolved, 0 failed)" in out
        assert [count(client, t, ids) for t in ("ServiceRequest", "Task")] == counts
