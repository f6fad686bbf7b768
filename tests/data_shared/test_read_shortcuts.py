"""On ../shared/data (skipped when absent): the reading shortcuts and --jobs change nothing.

Decisions and summary, byte for byte, with every line parsed on one process, with the shortcuts
(types from the bytes and file names, the code prefilter), and on 2 and 3 processes with the
files cut into small ranges.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from ips_screen.dates import LONDON
from ips_screen.pipeline import decide_all, finish
from ips_screen.ruleset.loader import load_ruleset
from ips_screen.sources import chunks, collect

AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)


def _outputs(folder: Path, out: Path, **options) -> dict[str, bytes]:
    ruleset = load_ruleset()
    population = collect([folder], ruleset, **options)
    decisions = decide_all(ruleset, population.patients.values(), AS_OF)
    finish(
        decisions,
        ruleset,
        as_of=AS_OF,
        now=NOW,
        out_dir=out,
        read_report=population.report.to_dict(),
        orphans=population.orphans,
        unlinked=population.unlinked,
    )
    return {name: (out / name).read_bytes() for name in ("decisions.ndjson", "summary.json")}


@pytest.mark.parametrize("name", ["synthea-bulk-10", "synthea-california"])
def test_shortcuts_and_jobs_give_byte_identical_outputs(
    shared_data: Path, tmp_path: Path, monkeypatch, name: str
):
    folder = shared_data / name
    exact = _outputs(folder, tmp_path / "exact", shortcuts=False, jobs=1)
    assert _outputs(folder, tmp_path / "shortcuts", jobs=1) == exact
    monkeypatch.setattr(chunks, "RANGE_BYTES", 256 << 10)
    assert _outputs(folder, tmp_path / "two", jobs=2) == exact
    assert _outputs(folder, tmp_path / "three", jobs=3) == exact
