"""A config file with a mistake stops `nightly` and `serve` in one line that names the file, the
line and the key, with exit 4 and nothing written; a file that is not UTF-8 text likewise."""

from __future__ import annotations

from pathlib import Path

import pytest

from ips_screen.cli.main import main


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


PRACTICE = """\
# the practice's nightly screen
[source]
kind = "files"
path = "records"

[output]
state_dir = "state"
keep_runs = [
    5,
]
"""

SERVE = """\
public_base_url = "http://127.0.0.1:8080"

[fhir]
base_url = "http://127.0.0.1:9/fhir"
read_timeout = 3

[ehr_auth]
disabled = true
"""


def test_a_nightly_config_mistake_names_the_file_line_and_key(capsys, tmp_path: Path):
    config = tmp_path / "practice.toml"
    config.write_text(PRACTICE)
    assert main(["nightly", "--config", str(config)], {}) == 4
    assert one_line(capsys) == (
        f"ips-screen: error: {config}:8: [output] keep_runs: Input should be a valid integer"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["practice.toml"]


def test_a_serve_config_mistake_names_the_file_line_and_key(capsys, tmp_path: Path):
    config = tmp_path / "serve.toml"
    config.write_text(SERVE)
    assert main(["serve", "--config", str(config)], {}) == 4
    assert one_line(capsys) == f"ips-screen: error: {config}:5: fhir.read_timeout: unknown key"


@pytest.mark.parametrize(("command", "text"), [("nightly", PRACTICE), ("serve", SERVE)])
def test_a_config_file_that_is_not_utf8_is_said_in_one_line(
    capsys, tmp_path: Path, command: str, text: str
):
    config = tmp_path / f"{command}.toml"
    config.write_bytes(text.replace("# the", "# caf\xe9: the").encode("latin-1") + b"# caf\xe9\n")
    assert main([command, "--config", str(config)], {}) == 4
    line = one_line(capsys)
    assert line.startswith(f"ips-screen: error: {config}: cannot read"), line
