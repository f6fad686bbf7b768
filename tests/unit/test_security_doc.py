"""docs/security.md names, for each defence, the tests that hold it: each must exist."""

import re

from tests.support.paths import ROOT

NAMED = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def test_every_test_the_threat_model_names_exists():
    text = (ROOT / "docs" / "security.md").read_text()
    named = NAMED.findall(text)
    assert len(named) >= 40  # the page names a test for every defence
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not (ROOT / path).is_file()
        or not re.search(rf"^\s*(async )?def {name}\(", (ROOT / path).read_text(), re.M)
    ]
    assert missing == []
