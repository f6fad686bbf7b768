"""A ruleset file built to hang its reader: YAML aliases that expand a few lines into billions of
values ("billion laughs"). `rules validate` and the screen refuse it in one line, at once, naming
the file and the anchor's line (exit 4), instead of walking the expansion for hours."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ips_screen.errors import RulesError
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
