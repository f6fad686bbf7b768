"""Ruleset and codelist files a reader cannot take as they are, met at the command line: one
built to hang its reader (YAML aliases that expand a few lines into billions of values, "billion
laughs"), a codelist field over the csv module's limit, a file that is a folder or not UTF-8. Each
is refused in one line naming the file (and the line, where there is one), exit 4, at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ips_screen.cli.main import main
from ips_screen.errors import RulesError
from ips_screen.ruleset.codelists import MANIFEST
from ips_screen.ruleset.loader import DEFAULT_RULESET
from tests.support.paths import FIXTURES, ROOT

# Nine lists of nine, each naming the one before nine times: 9 ** 9 strings when expanded.
BOMB = (
    "\n".join(
        ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        + [
            f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]"
            for a, b in zip("abcdefgh", "bcdefghi", strict=True)
        ]
    )
    + "\n"
)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TZ": "Europe/London"}
    return subprocess.run(
        [sys.executable, "-m", "ips_screen", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
        timeout=120,  # a reader that expands the aliases takes hours: a failure, not a hang
    )


def test_a_ruleset_of_nested_aliases_is_refused_at_once(tmp_path: Path):
    rules = tmp_path / "bomb.yaml"
    rules.write_text(BOMB)
    for args in (
        ("rules", "validate", str(rules)),
        ("screen", str(FIXTURES / "patients"), "--rules", str(rules), "--out", "out"),
    ):
        done = _run(*args, cwd=tmp_path)
        assert done.returncode == RulesError.exit_code, done.stderr
        assert done.stderr.splitlines() == [
            f"ips-screen: error: {rules}:1: a YAML anchor (&name) used again by an alias "
            "(*name): a ruleset spells every value out"
        ], done.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """A writable copy of the built-in rules folder."""
    target = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULESET.parent, target)
    return target


def _refused(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == RulesError.exit_code, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_codelist_field_over_the_csv_limit_names_the_file_and_line(capsys, rules: Path):
    csv = rules / "codelists" / "palliative-care.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([*lines, f"http://snomed.info/sct,1,{'x' * 200_000},,src"]) + "\n")
    err = _refused(capsys, "rules", "pin", str(rules / "codelists"))
    assert f"{csv}:{len(lines) + 1}: not CSV as expected (field larger than field limit" in err


def test_a_codelist_that_is_a_folder_is_named(capsys, rules: Path):
    csv = rules / "codelists" / "fit-notes.csv"
    csv.unlink()
    csv.mkdir()
    err = _refused(capsys, "rules", "validate", str(rules / DEFAULT_RULESET.name))
    assert err == f"ips-screen: error: {csv}: cannot read the codelist (Is a directory)\n"


def test_a_manifest_that_is_a_folder_is_named(capsys, rules: Path):
    manifest = rules / "codelists" / MANIFEST
    manifest.unlink()
    manifest.mkdir()
    err = _refused(capsys, "rules", "validate", str(rules / DEFAULT_RULESET.name))
    assert err == f"ips-screen: error: {manifest}: cannot read the manifest (Is a directory)\n"
    err = _refused(capsys, "rules", "pin", str(rules / "codelists"))
    assert err == f"ips-screen: error: {manifest}: cannot write the manifest (Is a directory)\n"


def test_a_ruleset_not_in_utf8_is_named(capsys, rules: Path):
    path = rules / DEFAULT_RULESET.name
    path.write_bytes(path.read_bytes().replace(b"title:", b"title: \xff", 1))
    err = _refused(capsys, "rules", "validate", str(path))
    assert err.startswith(f"ips-screen: error: {path}: not UTF-8 text ("), err
