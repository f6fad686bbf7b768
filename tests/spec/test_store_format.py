"""A facts store written before Task.statusReason was kept (store format 1) is rebuilt, not
trusted: the `not-now` deferral needs the statusReason, so the next nightly run reloads
everything (a full load, even where an incremental one was asked for) and sees the deferral end.
Without the rebuild, a Bulk `_since` export would never send the unchanged Task again."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from ips_screen.sources import population
from ips_screen.store import StateStore, rows
from tests.support.paths import FIXTURES, FROZEN_NOW

DEFERRED_4_MONTHS_AGO = FIXTURES / "patients" / "44-declined-not-now-4-months-ago.json"


def nightly(folder: Path) -> dict:
    """Run the nightly job on `folder`'s config; the decision for fx-44."""
    config = str(folder / "practice.toml")
    assert main(["-q", "nightly", "--config", config, "--as-of", FROZEN_NOW.date().isoformat()],
                {"IPS_SCREEN_STATE_DIR": str(folder / "writer")}) == 0  # fmt: skip
    lines = (folder / "state" / "runs" / "latest" / "decisions.ndjson").read_bytes().splitlines()
    [decision] = [orjson.loads(line) for line in lines if b"Patient/fx-44" in line]
    return decision


def test_a_store_from_before_status_reasons_were_kept_is_reloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DEFERRED_4_MONTHS_AGO, data)
    (tmp_path / "practice.toml").write_text(
        '[source]\nkind = "files"\npath = "data"\nincremental = true\n'
        '[output]\nstate_dir = "state"\n'
    )

    # The store as an older version wrote it: format 1, Tasks without their statusReason.
    old_extract = rows.extract_record

    def without_status_reason(*args, **kwargs):
        record = old_extract(*args, **kwargs)
        return record and dataclasses.replace(record, status_reason=())

    with monkeypatch.context() as old:
        old.setattr(rows, "STORE_FORMAT", "1")
        old.setattr(rows, "extract_record", without_status_reason)  # loads of changes
        old.setattr(population, "extract_record", without_status_reason)  # full loads
        assert nightly(tmp_path)["reasons"] == ["ips-declined"]  # read as a 12-month decline

    assert nightly(tmp_path)["outcome"] == "propose"  # the 3-month deferral is over
    with StateStore(tmp_path / "state" / "store.sqlite") as store:
        assert [run["mode"] for run in store.ledger.recent_runs(5)] == ["full", "full"]
