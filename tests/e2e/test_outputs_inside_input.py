"""A folder of the tool's own outputs inside the folder it reads (the screen's --out, the nightly
job's runs in its state folder) is not read as input: its decisions.ndjson and summary.json are
not patient data (every later night exited 9 over them), and its proposals.json read back made
the tool's proposals count as open though never written. A source folder inside the state folder
is read as before.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from ips_screen.cli.main import main
from tests.support.paths import FIXTURES

AS_OF = "2026-11-26"
SAME = ("decisions.ndjson", "worklist.csv", "proposals.json")


def test_the_screen_does_not_read_its_earlier_outputs_in_its_input_folder(capsys, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    out = data / "out"
    argv = ["screen", str(data), "--as-of", AS_OF, "--out", str(out)]
    assert main(argv) == 0
    first = {name: (out / name).read_bytes() for name in SAME}
    assert b'"propose"' in first["decisions.ndjson"]
    capsys.readouterr()
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 0, err
    assert {name: (out / name).read_bytes() for name in SAME} == first
    assert orjson.loads((out / "summary.json").read_bytes())["data_quality"]["skipped"] == []


def test_an_output_folder_that_is_or_holds_the_input_folder_is_refused(capsys, tmp_path: Path):
    """Before anything is written: its outputs could not be told from the data the next time."""
    data = tmp_path / "export" / "data"
    shutil.copytree(FIXTURES, data)
    for out in (data, data.parent, data / ".."):
        code = main(["screen", str(data), "--as-of", AS_OF, "--out", str(out)])
        _, err = capsys.readouterr()
        assert code == 2
        assert f"--out {out} " in err and "the input folder" in err and str(data / "out") in err
        assert not (data / "decisions.ndjson").exists()
        assert not (data.parent / "decisions.ndjson").exists()


def test_nights_with_the_state_folder_inside_the_source_folder_read_only_the_data(
    capsys, tmp_path: Path
):
    data = tmp_path / "export"
    shutil.copytree(FIXTURES, data)
    state = data / "ips-screen-state"
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{data}"\nincremental = true\n'
        f'[output]\nstate_dir = "{state}"\n',
        encoding="utf-8",
    )
    argv = ["-q", "nightly", "--config", str(config), "--as-of", AS_OF]
    assert main(argv) == 0
    latest = state / "runs" / "latest"
    first = {name: (latest / name).read_bytes() for name in SAME}
    capsys.readouterr()
    assert main(argv) == 0  # not 9: nothing unreadable
    out, _ = capsys.readouterr()
    assert ", 0 open;" in out  # no proposal read back as an open referral
    assert {name: (latest / name).read_bytes() for name in SAME} == first
    summary = orjson.loads((latest / "summary.json").read_bytes())
    assert summary["data_quality"]["skipped"] == []


def test_a_source_folder_inside_the_state_folder_is_still_read(capsys, tmp_path: Path):
    state = tmp_path / "state"
    shutil.copytree(FIXTURES, state / "incoming")
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{state / "incoming"}"\nincremental = true\n'
        f'[output]\nstate_dir = "{state}"\n',
        encoding="utf-8",
    )
    assert main(["-q", "nightly", "--config", str(config), "--as-of", AS_OF]) == 0
    assert b'"propose"' in (state / "runs" / "latest" / "decisions.ndjson").read_bytes()
