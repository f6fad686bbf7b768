"""The FHIR transport's public API, guarded as httpx guards its own.

`ips_screen.fhir.__all__` lists what the rest of ips-screen may use: every name in it exists and
is the transport's own, nothing public in the package's namespace is left out of it, and the code
outside the package (ips_screen, scripts, benchmarks; the tests may look inside) imports nothing
else from the transport, directly or as an attribute of one of its modules.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import types
from collections.abc import Iterator
from pathlib import Path

import ips_screen.fhir as fhir

PACKAGE_DIR = Path(fhir.__file__).resolve().parents[1]  # ips_screen/
CHECKOUT = PACKAGE_DIR.parent
TRANSPORT = "ips_screen.fhir"


def _outside_sources() -> Iterator[Path]:
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if (PACKAGE_DIR / "fhir") not in path.parents:
            yield path
    yield from sorted((CHECKOUT / "benchmarks").rglob("*.py"))
    for path in sorted((CHECKOUT / "scripts").iterdir()):
        if path.is_file() and (
            path.suffix == ".py" or path.read_text(errors="replace").startswith("#!/usr/bin/env py")
        ):
            yield path


def _is_submodule(name: str) -> bool:
    return importlib.util.find_spec(f"{TRANSPORT}.{name}") is not None


def _uses_outside_public_api(path: Path) -> list[str]:
    """Each import of a transport name not in `__all__`, as "file:line name"."""
    tree = ast.parse(path.read_text(), filename=str(path))
    public = set(fhir.__all__)
    where = path.relative_to(CHECKOUT)
    problems: list[str] = []
    module_names: set[str] = set()  # names bound to a transport module in this file
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(f"{TRANSPORT}."):
                    problems.append(f"{where}:{node.lineno} import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == TRANSPORT:
                for alias in node.names:
                    if alias.name in public:
                        continue
                    if _is_submodule(alias.name) and not alias.name.startswith("_"):
                        module_names.add(alias.asname or alias.name)
                    else:
                        problems.append(f"{where}:{node.lineno} {alias.name}")
            elif node.module.startswith(f"{TRANSPORT}."):
                for alias in node.names:
                    if alias.name not in public:
                        problems.append(f"{where}:{node.lineno} {node.module}.{alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_names
            and node.attr not in public
        ):
            problems.append(f"{where}:{node.lineno} {node.value.id}.{node.attr}")
    return problems


def test_all_names_are_public_and_unique():
    assert fhir.__all__, "ips_screen.fhir lists no public API"
    assert len(fhir.__all__) == len(set(fhir.__all__))
    assert [name for name in fhir.__all__ if name.startswith("_")] == []


def test_every_name_in_all_exists_and_is_the_transports_own():
    for name in fhir.__all__:
        value = getattr(fhir, name)  # AttributeError: listed but missing
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith(f"{TRANSPORT}."), (name, value.__module__)


def test_nothing_public_in_the_package_is_left_out_of_all():
    public = {
        name
        for name, value in vars(fhir).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(fhir.__all__)


def test_code_outside_the_transport_imports_only_its_public_api():
    sources = list(_outside_sources())
    assert any(path.name == "fhir_rest.py" for path in sources)  # the scan sees the code base
    problems = [problem for path in sources for problem in _uses_outside_public_api(path)]
    assert problems == []
