"""The second test ruleset (tests/rulesets/smoking: stop-smoking support for adults who smoke),
its records, and the default ruleset's words that none of its outputs may hold."""

from __future__ import annotations

import re

from tests.helpers import observation
from tests.support.paths import ROOT

SMOKING = ROOT / "tests" / "rulesets" / "smoking" / "smoking-cessation.yaml"
SMOKER, EX_SMOKER = "77176002", "8517006"
SNOMED = "http://snomed.info/sct"

# The default ruleset's words (IPS as a whole word in capitals; the tool's name and URLs are fine).
FORBIDDEN = (
    re.compile(r"(?<![\w/.-])IPS(?![\w-])"),
    re.compile(r"individual placement", re.IGNORECASE),
    re.compile(r"pain", re.IGNORECASE),
    re.compile(r"fit.note", re.IGNORECASE),
    re.compile(r"employment", re.IGNORECASE),
)


def smoking_status(code: str, pid: str, when: str = "2026-06-01") -> dict:
    """A smoking-status Observation `<pid>-smoking` of the patient."""
    return observation(code, SNOMED, when, id=f"{pid}-smoking", subject=pid)


def assert_clean(what: str, text: str) -> None:
    """`text` holds none of the default ruleset's words."""
    for pattern in FORBIDDEN:
        found = [text[max(m.start() - 40, 0) : m.end() + 40] for m in pattern.finditer(text)]
        assert not found, f"{what}: {pattern.pattern!r} in {found[:3]}"
