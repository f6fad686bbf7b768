"""Fuzz the file readers through the command line: folders of Bundles, NDJSON and NDJSON.gz made
from real records, then broken (tests/fuzz/inputs.py).

Every input must give a completed screen (exit 0) or exit 3 with one line naming the file; with
--skip-invalid, a completed screen that counts what it skipped (some when the strict run exited
3, none when it completed). Anything else (a traceback, another exit code) is a bug.

IPS_SCREEN_FUZZ_EXAMPLES sets the number of examples per test (default 200, for CI). The runs are
derandomized, so CI sees the same inputs every time; a long run by hand, e.g.

    IPS_SCREEN_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/fuzz

tries many more. A crash found once is kept below as a regression example.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ips_screen.cli import commands
from ips_screen.cli.main import main
from ips_screen.ruleset.loader import load_ruleset
from tests.fuzz.fuzz_settings import FUZZ, SCRATCH
from tests.fuzz.inputs import MALFORMED, input_folders
from tests.fuzz.seeds import fixture_seeds, synthea_seeds
from tests.support.paths import SHARED_DATA


@pytest.fixture(scope="module", autouse=True)
def ruleset_once():
    """Load the default ruleset once for the whole module (the screen reads it on every run)."""
    ruleset = load_ruleset()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(commands, "load_ruleset", lambda path=None: ruleset)
        yield


def _screen(folder: Path, out: Path, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(
            ["-q", "screen", str(folder), "--as-of", "2026-11-26", "--out", str(out), *extra]
        )
    return code, err.getvalue()


def check_screen(files: list[tuple[str, bytes]]) -> None:
    """The property: exit 0, or exit 3 naming a file; --skip-invalid completes and counts."""
    work = Path(tempfile.mkdtemp(prefix="ips-fuzz-", dir=SCRATCH))
    try:
        folder = work / "in"
        folder.mkdir()
        for name, data in files:
            (folder / name).write_bytes(data)
        strict, message = _screen(folder, work / "strict")
        assert strict in (0, 3), message
        if strict == 3:
            lines = message.splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"ips-screen: error: {folder}/"), lines
        lenient, message = _screen(folder, work / "lenient", "--skip-invalid")
        assert lenient == 0, message
        summary = orjson.loads((work / "lenient" / "summary.json").read_bytes())
        skipped = summary["data_quality"]["records_skipped"]
        assert (skipped > 0) == (strict == 3), (strict, summary["data_quality"]["skipped"])
    finally:
        shutil.rmtree(work)


@FUZZ
@given(input_folders(fixture_seeds()))
def test_fuzzed_fixture_records_screen_or_exit_3(files):
    check_screen(files)


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not present at {SHARED_DATA}")
@FUZZ
@given(st.deferred(lambda: input_folders(synthea_seeds())))  # seeds read on the first draw
def test_fuzzed_synthea_records_screen_or_exit_3(files):
    check_screen(files)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_file_screens_or_exits_3(name: str):
    check_screen([(name, MALFORMED[name])])
