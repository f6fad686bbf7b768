"""The clinical safety hazard log (docs/clinical-safety/hazard-log.md) stays true to the code:
every test it names as a control exists, every hazard has the fields DCB0129 asks for and names
at least one test, and every risk rating is the one the log's own matrix gives.

Tests are found by reading the test modules' syntax trees (module-level test functions and
methods of test classes), without running pytest; a parametrized id's brackets are not checked.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAFETY = ROOT / "docs" / "clinical-safety"
LOG = SAFETY / "hazard-log.md"

NODE_ID = re.compile(r"\btests/[\w/]+\.py::[A-Za-z_]\w*(?:::[A-Za-z_]\w*)?(?:\[[^\]\s]*\])?")
HAZARD = re.compile(r"^### (H\d+): (.+)$", re.MULTILINE)
FIELDS = (
    "Cause",
    "Effect on the patient",
    "Initial risk",
    "Controls in the product",
    "Residual risk",
)
RATING = re.compile(
    r"\*\*(Initial|Residual) risk:\*\* severity (\w[\w ]*?), likelihood (\w[\w ]*?): risk (\d)"
)
SEVERITIES = ("Minor", "Significant", "Considerable", "Major", "Catastrophic")
LIKELIHOODS = ("Very high", "High", "Medium", "Low", "Very low")


def log_text() -> str:
    return LOG.read_text(encoding="utf-8")


def hazards() -> dict[str, str]:
    """Hazard id -> its section of the log."""
    text = log_text()
    starts = list(HAZARD.finditer(text))
    return {
        m.group(1): text[m.start() : starts[n + 1].start() if n + 1 < len(starts) else None]
        for n, m in enumerate(starts)
    }


@cache
def named_tests(module: Path) -> frozenset[str]:
    """ "name" of each test function and "Class::name" of each test method in the module."""
    tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef):
            found |= {
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return frozenset(n for n in found if n.split("::")[-1].startswith("test"))


def missing(node_id: str) -> str | None:
    """Why `node_id` names no test (None when it does)."""
    path, _, name = node_id.partition("::")
    name = name.split("[", 1)[0]
    module = ROOT / path
    if not module.is_file():
        return f"{node_id}: no file {path}"
    if name not in named_tests(module):
        return f"{node_id}: no test {name} in {path}"
    return None


def matrix() -> dict[tuple[str, str], int]:
    """(likelihood, severity) -> risk, from the log's own risk matrix table."""
    out = {}
    for line in log_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].strip("*") in LIKELIHOODS and len(cells) == 6:
            for severity, risk in zip(SEVERITIES, cells[1:], strict=True):
                out[(cells[0].strip("*"), severity)] = int(risk)
    return out


def test_the_log_and_the_safety_case_exist():
    assert LOG.is_file()
    case = (SAFETY / "clinical-safety-case.md").read_text(encoding="utf-8")
    for heading in ("Scope", "Intended use", "Sign-off", "Maintaining"):
        assert re.search(rf"^## .*{heading}", case, re.MULTILINE | re.IGNORECASE), heading


def test_every_test_the_log_names_exists():
    named = sorted(set(NODE_ID.findall(log_text())))
    assert len(named) >= 20
    problems = [p for p in map(missing, named) if p]
    assert problems == []


def test_the_checker_notices_a_test_that_does_not_exist():
    assert (
        missing("tests/unit/test_clinical_safety_log.py::test_every_test_the_log_names_exists")
        is None
    )
    assert missing("tests/unit/test_clinical_safety_log.py::test_no_such_test") is not None
    assert missing("tests/unit/no_such_module.py::test_x") is not None


@pytest.mark.parametrize(
    "title",
    [
        "unmapped code",
        "died",
        "palliative",
        "duplicate referral",
        "after a decline",
        "wrong patient",
        "stale employment status",
        "leak",
        "goes nowhere",
    ],
)
def test_the_hazards_the_issue_lists_are_in_the_log(title):
    titles = [name.lower() for _, name in HAZARD.findall(log_text())]
    assert any(title in name for name in titles), titles


def test_every_hazard_has_its_fields_and_names_a_test():
    found = hazards()
    assert len(found) >= 8
    for hazard, section in found.items():
        for name in FIELDS:
            assert f"**{name}" in section, f"{hazard}: no {name}"
        assert NODE_ID.search(section), f"{hazard}: names no test"


def test_every_risk_is_the_one_the_matrix_gives():
    risks = matrix()
    assert len(risks) == 25
    for hazard, section in hazards().items():
        ratings = RATING.findall(section)
        assert [kind for kind, *_ in ratings] == ["Initial", "Residual"], hazard
        for kind, severity, likelihood, risk in ratings:
            assert severity in SEVERITIES and likelihood in LIKELIHOODS, (hazard, kind)
            assert risks[(likelihood, severity)] == int(risk), (hazard, kind)
