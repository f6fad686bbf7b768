"""What the package ships: every sub-package, the built-in rules read as package resources, and a
core that runs without the web service's extra packages (the `serve` extra)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

from ips_screen.cli import serve_cmd
from ips_screen.cli.main import main
from ips_screen.proposals.codesystems import FHIR_DIR
from ips_screen.ruleset.loader import DEFAULT_RULESET, RULES_DIR
from tests.support.paths import FIXTURES, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SERVE_EXTRA = ("fastapi", "uvicorn", "starlette", "python_multipart", "multipart")


def _packages_on_disk() -> set[str]:
    """Every folder under ips_screen/ (templates are namespace packages), and the rules folder
    as ips_screen._rules."""
    found = set()
    for base, name in ((ROOT / "ips_screen", "ips_screen"), (ROOT / "rules", "ips_screen._rules")):
        found.add(name)
        for folder in base.rglob("*"):
            if folder.is_dir() and folder.name != "__pycache__":
                found.add(".".join([name, *folder.relative_to(base).parts]))
    return found


def test_pyproject_lists_every_package():
    """The package list is explicit (rules/ is mapped in); a new sub-package must be added to it
    or the wheel silently lacks it."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == _packages_on_disk()
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"ips_screen._rules": "rules"}


def test_the_built_in_rules_are_the_repo_rules_folder_read_as_package_resources():
    assert Path(str(files("ips_screen._rules"))).resolve() == (ROOT / "rules").resolve()
    assert RULES_DIR.resolve() == (ROOT / "rules").resolve()
    assert DEFAULT_RULESET.is_file() and DEFAULT_RULESET.parent == RULES_DIR
    assert FHIR_DIR == RULES_DIR / "fhir"
    shipped = PYPROJECT["tool"]["setuptools"]["package-data"]
    for pattern, folder in (
        (shipped["ips_screen._rules"], ROOT / "rules"),
        (shipped["ips_screen._rules.codelists"], ROOT / "rules" / "codelists"),
        (shipped["ips_screen._rules.fhir"], ROOT / "rules" / "fhir"),
    ):
        data = {p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".py"}
        covered = {name for glob in pattern for name in (p.name for p in folder.glob(glob))}
        assert data == covered, f"files in {folder} not shipped in the wheel"


def test_serve_without_its_extra_says_what_to_install(capsys, monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # `import fastapi` now fails
    monkeypatch.delitem(sys.modules, "ips_screen.service.app", raising=False)
    config = tmp_path / "serve.toml"
    config.write_text("", encoding="utf-8")
    code = main(["serve", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "ips-screen: error: serve needs fastapi: install ips-screen[serve] " + (
        "(pip install 'ips-screen[serve]')\n"
    )


def test_the_serve_extra_names_what_serve_checks_for():
    extra = PYPROJECT["project"]["optional-dependencies"]["serve"]
    names = {requirement.split(">")[0].split("=")[0] for requirement in extra}
    assert names == set(serve_cmd.SERVE_MODULES.values())
    core = " ".join(PYPROJECT["project"]["dependencies"])
    assert not any(name in core for name in names)


@pytest.mark.parametrize("command", ["screen", "rules"])
def test_core_commands_run_without_the_serve_packages(tmp_path: Path, command: str):
    """With every web-service package unimportable, `screen` and `rules validate` still work."""
    blocked = ", ".join(repr(m) for m in SERVE_EXTRA)
    args = (
        ["screen", str(FIXTURES), "--as-of", "2026-11-26", "--out", str(tmp_path / "out")]
        if command == "screen"
        else ["rules", "validate"]
    )
    script = (
        "import sys\n"
        f"for name in ({blocked}):\n"
        "    sys.modules[name] = None\n"
        "from ips_screen.cli.main import main\n"
        f"code = main({args!r})\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in ({blocked}) "
        "and sys.modules[m] is not None)\n"
        "assert not loaded, loaded\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr


def test_a_checkout_used_without_installing_it_reads_its_rules_folder(tmp_path: Path):
    """PYTHONPATH=<checkout> (or an editable install made before rules/ was mapped): no
    ips_screen._rules module, so the loader reads rules/ beside the package."""
    script = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from ips_screen.cli.main import main\n"
        "from ips_screen.ruleset.loader import DEFAULT_RULESET\n"
        "print(DEFAULT_RULESET)\n"
        "sys.exit(main(['rules', 'validate']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(ROOT / "rules" / "ips-chronic-pain.yaml")
