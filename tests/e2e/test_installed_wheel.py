"""`pip install` of the built wheel, not the checkout: the installed `ips-screen` finds its
built-in ruleset, codelists and templates from any folder.

The wheel is built with the setup step's tools (setuptools in .venv, no build isolation) and
installed without dependencies into a fresh virtual environment that borrows .venv's installed
dependencies through a .pth line (which does not run .venv's own .pth files, so the editable
checkout stays out of reach): no network is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import orjson
import pytest

from tests.support.paths import FIXTURES, ROOT

pytestmark = pytest.mark.slow

# What a source distribution holds: everything the build reads.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "ips_screen", "rules")


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the wheel installed: (its bin folder, the environment to run it in)."""
    work = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PIP_NO_INDEX"] = "1"  # never the network
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = _run(
        [
            *pip,
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "-w",
            "dist",
            str(source),
        ],
        work,
        env,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (work / "dist").glob("ips_screen-*.whl")

    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], work, env
    ).stdout.strip()
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(purelib) / "_ips_screen_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    installed = _run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        work,
        env,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv / "bin", env


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path: Path):
    bin_dir, env = installed
    where = _run(
        [
            str(bin_dir / "python"),
            "-c",
            "import ips_screen, ips_screen.ruleset.loader as l; "
            "print(ips_screen.__file__); print(l.DEFAULT_RULESET)",
        ],
        tmp_path,
        env,
    )
    assert where.returncode == 0, where.stderr
    package, ruleset = where.stdout.splitlines()
    venv = bin_dir.parent.resolve()
    assert Path(package).resolve().is_relative_to(venv)
    assert Path(ruleset).resolve().is_relative_to(venv) and Path(ruleset).is_file()


def test_installed_ips_screen_validates_its_built_in_rules(installed, tmp_path: Path):
    bin_dir, env = installed
    done = _run([str(bin_dir / "ips-screen"), "rules", "validate"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "ips-chronic-pain" in done.stdout


def test_installed_ips_screen_screens_a_folder_far_from_the_checkout(installed, tmp_path: Path):
    bin_dir, env = installed
    data = tmp_path / "practice-export"
    shutil.copytree(FIXTURES, data)
    out = tmp_path / "out"
    done = _run(
        [str(bin_dir / "ips-screen"), "screen", str(data), "--as-of", "2026-11-26", "--out", "out"],
        tmp_path,
        env,
    )
    assert done.returncode == 0, done.stderr
    for name in ("decisions.ndjson", "summary.json", "proposals.json", "report.html"):
        assert (out / name).is_file(), name
    decisions = [
        orjson.loads(line) for line in (out / "decisions.ndjson").read_bytes().splitlines()
    ]
    assert len(decisions) == len(list((FIXTURES / "patients").glob("*.json")))
    assert any(d["outcome"] == "propose" for d in decisions)
    assert "<svg" in (out / "report.html").read_text(encoding="utf-8")  # the packaged template
