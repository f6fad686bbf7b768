"""Text others wrote reaches a clinician's terminal as text: a control character or a
bidirectional override in a record's display, a patient id or a file name is shown as its
escape, in the output, the log lines and the one-line errors alike; tabs and line ends stay in
the output, and are escaped in a one-line error or a log line, which stays one line.
report.html and worklist.csv show such a display as text too."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from ips_screen.cli.main import main
from ips_screen.cli.terminal import safe_text
from ips_screen.log_setup import configure_logging
from tests.support.paths import FIXTURES

AS_OF = ["--as-of", "2026-11-26"]
HOSTILE = "Chronic pain\x1b]0;owned\x07\x1b[2J\u202eevil\x9b31m"
SHOWN = "Chronic pain\\x1b]0;owned\\x07\\x1b[2J\\u202eevil\\u009b31m"
RAW = [chr(c) for c in (*range(0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0), 0x202E)]


def _raw_controls(text: str) -> list[str]:
    return [c for c in RAW if c in text]


@pytest.fixture
def hostile_record(tmp_path: Path) -> Path:
    """Patient fx-01 with a Condition display written to drive a terminal."""
    bundle = json.loads((FIXTURES / "patients" / "01-unemployed-recent.json").read_text())
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Condition":
            entry["resource"]["code"]["coding"][0]["display"] = HOSTILE
            entry["resource"]["code"]["text"] = HOSTILE
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "01.json").write_text(json.dumps(bundle))
    return folder


def test_explain_shows_a_displays_control_characters_as_escapes(capsys, hostile_record: Path):
    assert main(["explain", str(hostile_record), "--patient", "fx-01", *AS_OF]) == 0
    out, err = capsys.readouterr()
    assert SHOWN in out
    assert _raw_controls(out + err) == []
    assert main(["explain", str(hostile_record), "--patient", "fx-01", *AS_OF, "--json"]) == 0
    out = capsys.readouterr().out  # JSON escapes them itself (\u001b), and is left as it is
    assert "Chronic pain\\u001b]0;owned\\u0007" in out and _raw_controls(out) == []


def test_an_error_naming_what_others_wrote_is_shown_as_text(capsys, hostile_record: Path):
    code = main(["explain", str(hostile_record), "--patient", "x\x1b[2J\x1b]0;t\x07", *AS_OF])
    _, err = capsys.readouterr()
    assert code == 3
    assert err == "ips-screen: error: Patient/x\\x1b[2J\\x1b]0;t\\x07 is not in the input\n"


def test_safe_text_keeps_tabs_and_line_ends_and_plain_unicode():
    assert safe_text("Ada\tOKAFOR\nJosé Ŝ 李\n") == "Ada\tOKAFOR\nJosé Ŝ 李\n"
    assert safe_text("a\rb\x00c\x7fd\u2066e") == "a\\x0db\\x00c\\x7fd\\u2066e"


def test_report_and_worklist_show_a_displays_control_characters_as_escapes(
    capsys, hostile_record: Path, tmp_path: Path
):
    out = tmp_path / "out"
    assert main(["screen", str(hostile_record), "--out", str(out), *AS_OF, "-q"]) == 0
    html = (out / "report.html").read_text()
    assert SHOWN.replace("\\u009b31m", "") in html
    assert _raw_controls(html) == []
    worklist = (out / "worklist.csv").read_text()  # a spreadsheet shows it as text too
    assert SHOWN.replace("\\u009b31m", "") in worklist
    assert _raw_controls(worklist) == []


def test_an_error_naming_a_file_with_a_line_end_in_its_name_stays_one_line(capsys, tmp_path):
    """A file name can hold a line feed: the error quoting it cannot print a second line that
    looks like one of the tool's own."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad\n21:00:00 INFO run 7 done.json").write_text("not json")
    code = main(["screen", str(folder), "--out", str(tmp_path / "out"), *AS_OF, "-q"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.splitlines() == [
        f"ips-screen: error: {folder}/bad\\n21:00:00 INFO run 7 done.json:1: not valid JSON "
        "(invalid literal, expected 'null' at column 1)"
    ]


def test_a_text_log_line_stays_one_line(capsys):
    configure_logging(argparse.Namespace(verbose=False, quiet=False, log_format="text"))
    logging.getLogger("ips_screen.test").warning("read %s", "a\n12:00:00 ERROR forged\x1b[2J")
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(" WARNING read a\\n12:00:00 ERROR forged\\x1b[2J")
