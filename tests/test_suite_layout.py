"""The test suite's own rules: test modules never import each other or a conftest (shared helpers
live in tests/support/ and tests/helpers.py, shared fixtures in a conftest.py); every folder of
tests has a tier; `scripts/test --fast` deselects exactly the slow tiers, and every tier is a
registered mark; the Hypothesis example count comes from IPS_SCREEN_HYPOTHESIS_EXAMPLES."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.hypothesis_profile import DEFAULT_EXAMPLES, ENV, BadExampleCount, example_count
from tests.support.paths import ROOT
from tests.support.tiers import (
    FAST_SELECTION,
    FIXTURE_MARKS,
    FOLDER_MARKS,
    SLOW_TIERS,
    folder_not_needed,
)

TESTS = ROOT / "tests"


def _is_test_module(dotted: str) -> bool:
    last = dotted.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imported_test_modules(tests: Path) -> list[str]:
    """Every import of a test module or conftest in `tests`, as "file:line: module"."""
    found = []
    for path in sorted(tests.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            bad = sorted({m for m in modules if m.startswith("tests.") and _is_test_module(m)})
            found += [f"{path.relative_to(tests.parent)}:{node.lineno}: {m}" for m in bad]
    return found


def test_test_modules_do_not_import_each_other_or_a_conftest():
    assert imported_test_modules(TESTS) == [], (
        "move what is shared into tests/support/ (helpers) or a conftest.py (fixtures)"
    )


def test_the_import_check_sees_every_form_of_import(tmp_path: Path):
    (tmp_path / "unit").mkdir()
    (tmp_path / "unit" / "test_a.py").write_text(
        "from tests.unit.test_b import helper\n"
        "from tests.unit import test_b\n"
        "import tests.unit.test_b\n"
        "from tests.conftest import ROOT\n"
        "from tests.support.paths import ROOT\n"
        "from tests.helpers import patient\n"
    )
    assert [line.split(": ", 1)[1] for line in imported_test_modules(tmp_path)] == [
        "tests.unit.test_b",
        "tests.unit.test_b",
        "tests.unit.test_b",
        "tests.conftest",
    ]


def test_every_folder_of_tests_has_a_tier():
    folders = {
        p.parent.relative_to(TESTS).parts[0] if p.parent != TESTS else ""
        for p in TESTS.rglob("test_*.py")
    }
    assert folders - set(FOLDER_MARKS) == set()


def test_every_tier_is_a_registered_mark():
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    registered = {m.split(":")[0] for m in pytest_options["ini_options"]["markers"]}
    tiers = {m for marks in FOLDER_MARKS.values() for m in marks}
    assert tiers | set(FIXTURE_MARKS.values()) | set(SLOW_TIERS) <= registered


def test_scripts_test_fast_deselects_the_slow_tiers():
    script = (ROOT / "scripts" / "test").read_text()
    assert f'-m "{FAST_SELECTION}"' in script


def test_fast_runs_skip_only_folders_whose_tests_it_deselects():
    skipped = {p.name for p in TESTS.iterdir() if folder_not_needed(p, FAST_SELECTION)}
    assert skipped == {"property", "integration", "browser", "data_shared", "spark"} | (
        {"fuzz"} if (TESTS / "fuzz").is_dir() else set()
    )
    assert not any(folder_not_needed(p, "integration") for p in TESTS.iterdir())


def test_the_hypothesis_example_count_comes_from_the_environment():
    assert example_count({}) == DEFAULT_EXAMPLES
    assert example_count({ENV: " 5000 "}) == 5000
    for bad in ("0", "-3", "many", "1e3"):
        with pytest.raises(BadExampleCount, match=ENV):
            example_count({ENV: bad})
    assert settings().max_examples == example_count()  # the loaded profile uses it
