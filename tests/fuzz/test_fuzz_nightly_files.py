"""Fuzz the nightly job's file reading (`nightly` with `[source] kind = "files"`): a full load of a
clean folder, then the fuzzed folder applied as incremental changes, with fuzzed Bulk-style
deleted files in its deleted/ subfolder. The job skips and counts what it cannot read; a run
must end with exit 0, 3 or 9 and a one-line message, never a traceback.

A nightly run costs several screens, so this test runs a quarter of IPS_SCREEN_FUZZ_EXAMPLES.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import shutil
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ips_screen.cli.main import main
from tests.fuzz.fuzz_settings import EXAMPLES, FUZZ, SCRATCH
from tests.fuzz.inputs import MALFORMED, byte_mutation, input_folders, structural_mutation
from tests.fuzz.seeds import fixture_seeds
from tests.support.paths import FIXTURES

NIGHTLY = settings(FUZZ, max_examples=max(EXAMPLES // 4, 10))
FIRST_LOAD = ("01-unemployed-recent.json", "04-fit-notes-no-employment-status.json")
CONFIG = """\
[source]
kind = "files"
path = "in"
incremental = true
[screen]
write = false
[output]
state_dir = "state"
keep_runs = 2
"""


@st.composite
def deleted_files(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    """Bulk-style deleted files: Bundles of DELETE requests for fixture records, then broken."""
    refs = [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for seed in fixture_seeds()
        for e in seed
    ]
    chosen = draw(st.lists(st.sampled_from(refs), max_size=4))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": ref}} for ref in chosen],
    }
    for _ in range(draw(st.integers(0, 3))):
        draw(structural_mutation(bundle))
    data = orjson.dumps(bundle) + b"\n"
    for _ in range(draw(st.integers(0, 2))):
        data = draw(byte_mutation(data))
    files = [("del.ndjson", data)]
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(n for n in MALFORMED if n.endswith(".ndjson.gz"))))
        files.append((name, MALFORMED[name]))
    return files


def _nightly(work: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["-q", "nightly", "--config", str(work / "practice.toml")])
    return code, err.getvalue()


def check_nightly(files: list[tuple[str, bytes]], deleted: list[tuple[str, bytes]]) -> None:
    work = Path(tempfile.mkdtemp(prefix="ips-fuzz-nightly-", dir=SCRATCH))
    try:
        (work / "practice.toml").write_text(CONFIG, encoding="utf-8")
        (work / "in").mkdir()
        for name in FIRST_LOAD:
            shutil.copy(FIXTURES / "patients" / name, work / "in" / name)
        code, message = _nightly(work)
        assert code == 0, message
        shutil.rmtree(work / "in")
        (work / "in" / "deleted").mkdir(parents=True)
        for name, data in files:
            (work / "in" / name).write_bytes(data)
        for name, data in deleted:
            (work / "in" / "deleted" / name).write_bytes(data)
        code, message = _nightly(work)
        assert code in (0, 3, 9), message
        assert "Traceback" not in message
        if code == 3:
            lines = message.splitlines()
            assert len(lines) == 1 and lines[0].startswith("ips-screen: error: "), lines
    finally:
        shutil.rmtree(work)


@NIGHTLY
@given(input_folders(fixture_seeds()), deleted_files())
def test_fuzzed_nightly_files_complete_or_fail_in_one_line(files, deleted):
    check_nightly(files, deleted)


BUNDLES_OF_DELETES = (
    b'{"resourceType":"Bundle","entry":[{"request":{"method":"DELETE","url":"Patient/fx-01"}}]}\n'
)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("del.ndjson", b'{"resourceType":"Bundle","type":"transaction","entry":5}\n'),
        ("del.ndjson.gz", b"not gzip at all"),
        ("del.ndjson.gz", gzip.compress(BUNDLES_OF_DELETES * 40, mtime=0)[:-10]),
        ("del.ndjson", b"\xef\xbb\xbf" + BUNDLES_OF_DELETES),
    ],
    ids=["entry-not-a-list", "not-gzip", "truncated-gzip", "bom"],
)
def test_malformed_deleted_file(name: str, data: bytes):
    check_nightly([("a.ndjson", b'{"resourceType":"Patient","id":"zz"}\n')], [(name, data)])
