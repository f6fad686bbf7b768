"""The read report and `gc_paused`, shared by the sources and the facts store."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from ips_screen.errors import InputError
from ips_screen.reading import MAX_SKIPPED, ReadReport, Skipped, gc_paused


def test_a_problem_raises_unless_skipping_and_the_report_becomes_the_summary_input():
    with pytest.raises(InputError, match=r"^a\.ndjson:3: no id$"):
        ReadReport().problem("a.ndjson:3", "no id")
    report = ReadReport(skip_invalid=True, files_read=2, resources_read=7)
    report.by_type.update({"Patient": 2, "Condition": 5})
    for n in range(MAX_SKIPPED + 1):
        report.problem(f"a.ndjson:{n}", "no id")
    assert report.skipped_count == MAX_SKIPPED + 1
    assert report.skipped[0] == Skipped("a.ndjson:0", "no id")
    data = report.to_dict()
    assert list(data["by_type"]) == ["Condition", "Patient"]
    assert {k: data[k] for k in ("files", "resources", "skipped_count")} == {
        "files": 2,
        "resources": 7,
        "skipped_count": MAX_SKIPPED + 1,
    }
    assert len(data["skipped"]) == MAX_SKIPPED
    assert data["skipped"][0] == {"where": "a.ndjson:0", "problem": "no id"}


def test_gc_paused_restores_the_collector_even_after_an_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()


@pytest.mark.parametrize(
    ("imported", "absent"),
    [
        ("ips_screen.store.facts_store, ips_screen.store.rows", "ips_screen.sources"),
        ("ips_screen.sources.population, ips_screen.sources.fhir_rest", "ips_screen.store"),
    ],
)
def test_the_store_and_the_sources_do_not_import_each_other(imported: str, absent: str):
    code = (
        f"import sys, {imported}\n"
        f"found = [m for m in sys.modules if m.startswith({absent!r})]\n"
        "assert not found, found\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
