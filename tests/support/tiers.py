"""Test tiers: the marks a test gets from where it lives and what it uses.

tests/conftest.py applies these at collection, so a test never has to be marked by hand for its
folder. Marks by hand remain for what no folder says: `slow` on a test that takes seconds, and
`integration` on a test outside tests/integration/ that starts its own FHIR server.

`scripts/test --fast` deselects every tier in `SLOW_TIERS`; `scripts/test` runs everything.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

# Every folder under tests/ that holds test modules, with the marks its tests get. A new folder
# must be added here (tests/test_suite_layout.py checks), so no test silently lands in a tier.
FOLDER_MARKS: dict[str, tuple[str, ...]] = {
    "": (),  # tests/test_*.py: ruleset examples and the suite's own layout
    "spec": (),
    "unit": (),
    "fault": (),
    "e2e": (),
    "property": ("property",),
    "fuzz": ("property",),  # Hypothesis fuzzing of the readers
    "integration": ("integration",),
    "browser": ("browser", "integration"),
    "data_shared": ("shared_data",),
    "spark": ("spark",),  # Apache Spark on local[2], one session for the run
}
# A test that uses one of these fixtures is in that fixture's tier, wherever it lives.
FIXTURE_MARKS: dict[str, str] = {
    "fhir_server": "integration",
    "fhir_client": "integration",
    "browser": "browser",
    "shared_data": "shared_data",
    "spark": "spark",
}
# Deselected by `scripts/test --fast` (kept in step with scripts/test by test_suite_layout.py).
SLOW_TIERS = ("slow", "browser", "integration", "property", "shared_data", "spark")
FAST_SELECTION = f"not ({' or '.join(SLOW_TIERS)})"


class UnknownTestFolder(Exception):
    """A test module in a folder that has no tier in FOLDER_MARKS."""


def folder_of(path: Path) -> str:
    """The first folder under tests/ that holds `path` ("" for tests/ itself)."""
    parts = path.resolve().relative_to(TESTS).parts
    return parts[0] if len(parts) > 1 else ""


def tier_marks(path: Path, fixturenames: list[str] | tuple[str, ...], hypothesis: bool) -> set[str]:
    """The marks for a test in the module at `path` that uses `fixturenames`; `hypothesis` is
    true for a Hypothesis test (always in the property tier)."""
    folder = folder_of(path)
    if folder not in FOLDER_MARKS:
        raise UnknownTestFolder(
            f"tests/{folder}/ has no test tier: add it to FOLDER_MARKS in tests/support/tiers.py"
        )
    marks = set(FOLDER_MARKS[folder])
    marks.update(mark for name, mark in FIXTURE_MARKS.items() if name in fixturenames)
    if hypothesis:
        marks.add("property")
    return marks


def folder_not_needed(path: Path, markexpr: str) -> bool:
    """True for a folder of tests that the fast selection would deselect entirely: `--fast` need
    not import it (its conftest imports Selenium, the test server...)."""
    if markexpr != FAST_SELECTION or path.parent != TESTS or not path.is_dir():
        return False
    return bool(set(FOLDER_MARKS.get(path.name, ())) & set(SLOW_TIERS))
