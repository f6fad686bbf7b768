"""Codelists: CSV files of (system, code, display, category, source), pinned by sha256.

Matching is on system and code. Codes are normalised as real exports need: surrounding
whitespace removed, upper case, and for ICD-10 family systems the dot removed (R52.2 = R522).
A codelist row whose code ends in ``*`` matches every code with that prefix (ICD-11 children).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ips_screen.code_keys import ICD_SYSTEMS as ICD_SYSTEMS  # re-exported
from ips_screen.code_keys import Coding, normalise
from ips_screen.errors import RulesError

HEADER = ["system", "code", "display", "category", "source"]
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CodeRow:
    system: str
    code: str
    display: str
    category: str
    source: str


@dataclass
class Codelist:
    """One codelist: exact codes, prefix codes, and each code's category (may be empty)."""

    name: str
    path: Path
    rows: tuple[CodeRow, ...]
    _exact: dict[Coding, str] = field(default_factory=dict, repr=False)
    _prefixes: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        prefixes: dict[str, list[tuple[str, str]]] = {}
        for row in self.rows:
            system, code = normalise(row.system, row.code)
            if code.endswith("*"):
                prefixes.setdefault(system, []).append((code[:-1], row.category))
            else:
                self._exact[(system, code)] = row.category
        self._prefixes = {s: tuple(p) for s, p in prefixes.items()}

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(row.category for row in self.rows if row.category)

    def category_of(self, key: Coding) -> str | None:
        """The category of a normalised coding ("" when the list carries none); None if absent."""
        found = self._exact.get(key)
        if found is not None:
            return found
        for prefix, category in self._prefixes.get(key[0], ()):
            if key[1].startswith(prefix):
                return category
        return None

    def __contains__(self, key: Coding) -> bool:
        return self.category_of(key) is not None

    def first_match(self, keys: tuple[Coding, ...]) -> str | None:
        """Category of the first of `keys` in the list, or None."""
        for key in keys:
            category = self.category_of(key)
            if category is not None:
                return category
        return None

    def exact_keys(self) -> frozenset[Coding]:
        return frozenset(self._exact)

    def prefix_keys(self) -> dict[str, tuple[str, ...]]:
        return {s: tuple(p for p, _ in ps) for s, ps in self._prefixes.items()}


def file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the codelist ({_reason(exc)})") from None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def read_codelist(name: str, path: Path) -> Codelist:
    """Parse and check one codelist CSV; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{path}: codelist file not found") from None
    except UnicodeDecodeError as exc:
        raise RulesError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:  # a folder, no permission...
        raise RulesError(f"{path}: cannot read the codelist ({_reason(exc)})") from None
    reader = csv.reader(io.StringIO(text))
    try:
        return _rows(name, path, reader)
    except csv.Error as exc:  # a field over the csv module's limit, say
        raise RulesError(f"{path}:{reader.line_num}: not CSV as expected ({exc})") from None


def _rows(name: str, path: Path, reader: Any) -> Codelist:
    header = next(reader, None)
    if header != HEADER:
        raise RulesError(
            f"{path}:1: header must be {','.join(HEADER)}, got {','.join(header or [])}"
        )
    rows: list[CodeRow] = []
    seen: dict[Coding, int] = {}
    for row in reader:
        line = reader.line_num
        if len(row) != len(HEADER):
            raise RulesError(f"{path}:{line}: expected {len(HEADER)} fields, got {len(row)}")
        system, code, display, category, source = row
        if not system.strip() or not code.strip():
            raise RulesError(f"{path}:{line}: system and code are required")
        if not source.strip():
            raise RulesError(f"{path}:{line}: every code needs a source")
        key = normalise(system, code)
        if key in seen:
            raise RulesError(f"{path}:{line}: duplicate of line {seen[key]} ({system}|{code})")
        seen[key] = line
        rows.append(CodeRow(system.strip(), code.strip(), display, category.strip(), source))
    if not rows:
        raise RulesError(f"{path}: codelist has no codes")
    return Codelist(name=name, path=path, rows=tuple(rows))


def read_manifest(directory: Path) -> dict[str, str]:
    path = directory / MANIFEST
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the manifest ({_reason(exc)})") from None
    except orjson.JSONDecodeError as exc:
        raise RulesError(f"{path}: not valid JSON ({exc})") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise RulesError(f'{path}: expected {{"files": {{"name.csv": "<sha256>"}}}}')
    return {str(k): str(v) for k, v in files.items()}


def check_pinned(path: Path) -> None:
    """Fail when a codelist differs from the sha256 its folder's manifest pins."""
    manifest = read_manifest(path.parent)
    pinned = manifest.get(path.name)
    if pinned is None:
        raise RulesError(
            f"{path}: not pinned in {path.parent / MANIFEST}; "
            f"run `ips-screen rules pin {path.parent}`"
        )
    actual = file_sha256(path)
    if actual != pinned:
        raise RulesError(
            f"{path}: sha256 {actual[:12]}… differs from the manifest's {pinned[:12]}…; "
            "the codelist changed since it was pinned (review the change, then "
            f"`ips-screen rules pin {path.parent}`)"
        )


def pin_directory(directory: Path) -> dict[str, str]:
    """Write the manifest pinning every *.csv in `directory`; returns what it pinned."""
    files = {}
    for path in sorted(directory.glob("*.csv")):
        read_codelist(path.stem, path)  # refuse to pin a broken file
        files[path.name] = file_sha256(path)
    manifest = directory / MANIFEST
    try:
        manifest.write_bytes(
            orjson.dumps({"files": files}, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            + b"\n"
        )
    except OSError as exc:
        raise RulesError(f"{manifest}: cannot write the manifest ({_reason(exc)})") from None
    return files
