"""Every setting of the example configs (docs/practice.example.toml, docs/serve.example.toml),
given a value of no type it accepts, is an error that names its own line: what a user who
mistypes any documented setting is told."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ips_screen.errors import ConfigError
from ips_screen.nightly.config import load_config as load_practice
from ips_screen.service.config import load_config as load_serve
from tests.support.paths import ROOT

SETTING = re.compile(r"^([a-z_]+) = ")


@pytest.mark.parametrize(
    ("example", "load"),
    [("practice.example.toml", load_practice), ("serve.example.toml", load_serve)],
    ids=["practice", "serve"],
)
def test_a_wrong_value_of_any_documented_setting_names_its_line(
    tmp_path: Path, example: str, load: Callable[[Path], object]
):
    lines = (ROOT / "docs" / example).read_text().splitlines(keepends=True)
    settings = [n for n, line in enumerate(lines) if SETTING.match(line)]
    assert len(settings) > 15
    for n in settings:
        key = SETTING.match(lines[n])[1]
        path = tmp_path / f"{n}.toml"
        path.write_text("".join([*lines[:n], f"{key} = [[1], 2]\n", *lines[n + 1 :]]))
        with pytest.raises(ConfigError) as raised:
            load(path)
        assert str(raised.value).startswith(f"{path}:{n + 1}: "), (lines[n], str(raised.value))
