"""Variants of the default ruleset for tests, written as YAML and loaded as a user's would be."""

from __future__ import annotations

from pathlib import Path

import yaml

from ips_screen.ruleset.loader import DEFAULT_RULESET, load_ruleset
from ips_screen.ruleset.model import Ruleset


def ruleset_with_defer_months(tmp_path: Path, months: int) -> Ruleset:
    """The default ruleset with its not-now deferral window set to `months`, saved in `tmp_path`."""
    data = yaml.safe_load(DEFAULT_RULESET.read_text(encoding="utf-8"))
    data["codelists"] = {
        name: str((DEFAULT_RULESET.parent / rel).resolve())
        for name, rel in data["codelists"].items()
    }
    data.pop("examples", None)
    for exclusion in data["exclusions"]:
        if exclusion["rule"]["id"] == "ips-declined":
            [deferral] = exclusion["rule"]["deferrals"]
            deferral["within_months"] = months
    path = tmp_path / "ruleset.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_ruleset(path)


def ruleset_with_quality_notes(tmp_path: Path, notes: dict[str, str] | None) -> Ruleset:
    """The default ruleset with `priority.quality_notes` replaced (None: none declared)."""
    data = yaml.safe_load(DEFAULT_RULESET.read_text(encoding="utf-8"))
    data["codelists"] = {
        name: str((DEFAULT_RULESET.parent / rel).resolve())
        for name, rel in data["codelists"].items()
    }
    data.pop("examples", None)
    data["priority"].pop("quality_notes", None)
    if notes is not None:
        data["priority"]["quality_notes"] = notes
    path = tmp_path / "ruleset.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_ruleset(path)
