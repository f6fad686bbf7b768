"""Every setting of the default ruleset (rules/ips-chronic-pain.yaml), given a value of no type it
accepts, is an error that names its own line: what someone who edits a ruleset and mistypes any
of its settings is told (a criterion's `kind` included)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ips_screen.errors import RulesError
from ips_screen.ruleset.loader import DEFAULT_RULESET, load_ruleset

SETTING = re.compile(r"^(\s*(?:- )?[a-z_]+): (?![|>])\S")


def test_a_wrong_value_of_any_setting_names_its_line(tmp_path: Path):
    fhir = shutil.ignore_patterns("fhir")
    shutil.copytree(DEFAULT_RULESET.parent, tmp_path / "rules", ignore=fhir)
    path = tmp_path / "rules" / DEFAULT_RULESET.name
    lines = DEFAULT_RULESET.read_text().splitlines(keepends=True)
    settings = [n for n, line in enumerate(lines) if SETTING.match(line)]
    assert len(settings) > 300
    for n in settings:
        key = SETTING.match(lines[n])[1]
        path.write_text("".join([*lines[:n], f"{key}: [[1], 2]\n", *lines[n + 1 :]]))
        with pytest.raises(RulesError) as raised:
            load_ruleset(path)
        assert str(raised.value).startswith(f"{path}:{n + 1}: "), (lines[n], str(raised.value))
