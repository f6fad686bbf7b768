"""Writing the outputs: the writers chosen by name, atomic and private files, byte-reproducible."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import orjson
import pytest

from ips_screen.engine.decision import Decision
from ips_screen.errors import UserError
from ips_screen.outputs import registry
from ips_screen.outputs.formats import report_html
from ips_screen.outputs.writers import Finished, OutputWriter
from ips_screen.pipeline import ScreenResult, decide_all, finish
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.sources import collect
from tests.support.paths import FIXTURES, FROZEN_NOW

AS_OF = FROZEN_NOW.date()
NAMES = ["decisions.ndjson", "proposals.json", "report.html", "summary.json", "worklist.csv"]
READ = {"files": 1, "resources": 2, "by_type": {"Patient": 2}, "skipped_count": 0, "skipped": []}


@pytest.fixture(scope="module")
def ruleset() -> CompiledRuleset:
    return load_ruleset(None)


@pytest.fixture(scope="module")
def decisions(ruleset) -> list[Decision]:
    found = decide_all(ruleset, collect([FIXTURES], ruleset), AS_OF)
    assert {d.outcome for d in found} == {"propose", "not-eligible", "excluded"}
    return found


def write(out: Path, decisions, ruleset, **kwargs) -> ScreenResult:
    report = {"read_report": READ, "orphans": {}, "unlinked": 0}
    return finish(decisions, ruleset, as_of=AS_OF, now=FROZEN_NOW, out_dir=out, **report, **kwargs)


def test_the_default_formats_by_name():
    assert registry.default_names() == ("decisions", "proposals", "report", "summary", "worklist")
    assert sorted(registry.filenames()) == NAMES
    writers = registry.make_writers(None)
    assert [w.filename for w in writers][-1] == "summary.json"  # moved into place last


def test_outputs_are_byte_identical_in_any_order_private_and_leave_no_temporary_files(
    decisions, ruleset, tmp_path
):
    first, second = tmp_path / "one" / "out", tmp_path / "two"
    previous = os.umask(0)  # the files are 0600 however the process is set up
    try:
        result = write(first, decisions, ruleset)
        write(second, list(reversed(decisions)), ruleset)
    finally:
        os.umask(previous)
    assert sorted(p.name for p in first.iterdir()) == NAMES
    for name in NAMES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
        assert stat.S_IMODE((first / name).stat().st_mode) == 0o600, name
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["out"]
    assert orjson.loads((first / "summary.json").read_bytes()) == result.summary
    lines = (first / "decisions.ndjson").read_bytes().splitlines()
    assert [Decision.from_dict(orjson.loads(line)) for line in lines] == decisions


def test_formats_are_chosen_by_name_and_files_of_others_removed(decisions, ruleset, tmp_path):
    out = tmp_path / "out"
    write(out, decisions, ruleset)
    summary = (out / "summary.json").read_bytes()
    write(out, decisions, ruleset, formats=["summary", "decisions"])
    assert sorted(p.name for p in out.iterdir()) == ["decisions.ndjson", "summary.json"]
    assert (out / "summary.json").read_bytes() == summary
    with pytest.raises(UserError, match=r"unknown output format 'pdf' \(known: decisions, "):
        write(out, decisions, ruleset, formats=["pdf"])


def test_a_failed_writer_leaves_the_folder_as_it_was(decisions, ruleset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    write(out, decisions, ruleset)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("template missing")

    monkeypatch.setattr(report_html, "page_html", broken)
    with pytest.raises(RuntimeError, match="template missing"):
        write(out, decisions[:3], ruleset)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left
    with pytest.raises(RuntimeError, match="template missing"):
        write(tmp_path / "new", decisions[:3], ruleset)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nor the folder it made


def test_a_close_that_also_fails_is_in_the_debug_log(
    decisions, ruleset, tmp_path, monkeypatch, caplog
):
    """A failed run closes its writers whatever their `close` raises (on a full disk it fails
    again) and raises its own error; what a close raised is kept in the debug log, where a bug
    in a writer's close shows."""

    def broken(*args, **kwargs):
        raise RuntimeError("template missing")

    def close_broken(self):
        raise ValueError("close went wrong")

    monkeypatch.setattr(report_html, "page_html", broken)
    monkeypatch.setattr(report_html.ReportHtml, "close", close_broken)
    with (
        caplog.at_level(logging.DEBUG, logger="ips_screen.outputs"),
        pytest.raises(RuntimeError, match="template missing"),
    ):
        write(tmp_path / "out", decisions[:3], ruleset)
    [record] = [r for r in caplog.records if r.name == "ips_screen.outputs"]
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == "closing report.html also failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "close went wrong"
    assert list(tmp_path.iterdir()) == []  # nothing left behind


class FlagsCsv(OutputWriter):
    """The README's worked example of a new format: how often each flag was raised."""

    name = "flags"
    filename = "flags.csv"
    order = 50
    default = False

    def finish(self, done: Finished) -> None:
        rows = [f"{flag},{count}\n" for flag, count in done.summary["flags"].items()]
        self.folder.write_bytes(self.filename, ("flag,patients\n" + "".join(rows)).encode())


def test_a_new_format_is_one_registered_writer(decisions, ruleset, tmp_path, monkeypatch):
    registry.available()  # the formats package imported before the registry is copied
    monkeypatch.setattr(registry, "_FORMATS", dict(registry._FORMATS))  # undone after the test
    registry.register(FlagsCsv)
    assert "flags" not in registry.default_names()
    out = tmp_path / "out"
    result = write(out, decisions, ruleset, formats=["flags", "summary"])
    lines = (out / "flags.csv").read_text().splitlines()
    assert lines[0] == "flag,patients"
    assert lines[1:] == [f"{k},{v}" for k, v in result.summary["flags"].items()]
    assert stat.S_IMODE((out / "flags.csv").stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="taken"):
        registry.register(type("Again", (FlagsCsv,), {"name": "flags2"}))
