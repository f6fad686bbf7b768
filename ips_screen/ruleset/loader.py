"""Load a ruleset file: YAML -> strict model -> codelists, with errors that name file and line."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ips_screen.errors import RulesError, tag_key
from ips_screen.kinds.registry import KINDS, check_of, codelists_of, walk_criteria
from ips_screen.ruleset.codelists import Codelist, check_pinned, read_codelist
from ips_screen.ruleset.model import Criterion, LatestCategory, Ruleset

__all__ = ["DEFAULT_RULESET", "CompiledRuleset", "load_ruleset", "walk_criteria"]


def _rules_dir() -> Path:
    """The built-in rules: the repo's top-level rules/ folder, installed inside the package as
    ips_screen._rules (pyproject.toml), so a wheel and an editable install find the same files;
    a checkout used without installing it (PYTHONPATH) reads rules/ beside the package."""
    try:
        return Path(str(files("ips_screen._rules")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "rules"


RULES_DIR = _rules_dir()
DEFAULT_RULESET = RULES_DIR / "ips-chronic-pain.yaml"


@dataclass(frozen=True)
class CompiledRuleset:
    """A validated ruleset with its codelists loaded."""

    model: Ruleset
    path: Path
    codelists: dict[str, Codelist]

    @property
    def id(self) -> str:
        return self.model.id

    @property
    def version(self) -> str:
        return self.model.version

    def codelist(self, name: str) -> Codelist:
        return self.codelists[name]

    @cached_property
    def criteria(self) -> tuple[Criterion, ...]:
        """Every criterion of the exclusions and inclusions, nested ones too, in order."""
        return tuple(_all_criteria(self.model))

    @cached_property
    def criteria_by_id(self) -> dict[str, Criterion]:
        """Every criterion, nested ones too, by id (the first of an id), made once: each
        patient's evaluation looks some up."""
        rules: dict[str, Criterion] = {}
        for rule in self.criteria:
            rules.setdefault(rule.id, rule)
        return rules


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when PyYAML has it: ten times as fast, the same nodes and
    marks), whose nodes `_load_with_lines` walks for the line of every value."""


def _load_with_lines(text: str, path: Path) -> tuple[object, dict[tuple, int]]:
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise RulesError(f"{path}: the file is empty")
        lines: dict[tuple, int] = {}
        seen: set[int] = set()

        def walk(n: yaml.Node, loc: tuple) -> None:
            if id(n) in seen:  # an alias (*name) names a node met before: refused
                raise RulesError(
                    f"{path}:{n.start_mark.line + 1}: a YAML anchor (&name) used again by an "
                    "alias (*name): a ruleset spells every value out"
                )
            seen.add(id(n))
            lines[loc] = n.start_mark.line + 1
            if isinstance(n, yaml.MappingNode):
                for key, value in n.value:
                    if not isinstance(key, yaml.ScalarNode):
                        raise RulesError(
                            f"{path}:{key.start_mark.line + 1}: a key must be a plain word, "
                            "not a list or a mapping"
                        )
                    k = key.value
                    lines[(*loc, k)] = key.start_mark.line + 1
                    walk(value, (*loc, k))
                    lines[(*loc, k)] = key.start_mark.line + 1
            elif isinstance(n, yaml.SequenceNode):
                for i, item in enumerate(n.value):
                    walk(item, (*loc, i))

        walk(node, ())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark else ""
        raise RulesError(f"{path}{line}: invalid YAML: {exc.problem}") from None
    finally:
        loader.dispose()
    return data, lines


def _line_for(loc: tuple, lines: dict[tuple, int]) -> int | None:
    # pydantic inserts the discriminator value into locations of tagged unions: drop unknown parts
    clean: list = []
    for part in loc:
        candidate = (*clean, part)
        if candidate in lines:
            clean.append(part)
    return lines.get(tuple(clean))


def _format_error(exc: ValidationError, path: Path, lines: dict[tuple, int]) -> str:
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    message = first["msg"]
    if tag_key(first) is not None:  # a criterion's kind
        loc, message = _kind_problem(first)
    line = _line_for(loc, lines)
    where = ".".join(str(p) for p in loc if p not in _DISCRIMINATORS) or "(top level)"
    if first["type"] == "extra_forbidden":
        message = "unknown key (not part of the ruleset format; check the spelling)"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{path}{f':{line}' if line else ''}: {where}: {message}{more}"


def _kind_problem(error: Mapping[str, Any]) -> tuple[tuple, str]:
    """(where, what) of a criterion whose `kind` names no criterion kind, or has none: at its
    `kind` key, in words (pydantic says "Input tag ... found using 'kind' ...")."""
    context = error.get("ctx") or {}
    loc = (*error["loc"], tag_key(error) or "kind")
    if error["type"] == "union_tag_not_found":
        return loc, "missing (every criterion names its kind: README.md, Criterion kinds)"
    kinds = str(context.get("expected_tags", "")).replace("'", "")
    return loc, f"unknown criterion kind {context.get('tag')!r} (the kinds: {kinds})"


_DISCRIMINATORS = frozenset(KINDS)


def _all_criteria(model: Ruleset) -> Iterator[Criterion]:
    for exclusion in model.exclusions:
        yield from walk_criteria(exclusion.rule)
    for inclusion in model.criteria:
        yield from walk_criteria(inclusion.rule)


def _codelists_used(model: Ruleset) -> set[str]:
    used: set[str] = set()
    for criterion in _all_criteria(model):
        used.update(codelists_of(criterion))
    if model.priority and model.priority.also_starts:
        used.add(model.priority.also_starts.codelist)
    used.add(model.proposal.supporting_info.codelist)
    used.add(model.proposal.request_codelist)
    return used


def _check_references(model: Ruleset, path: Path, codelists: dict[str, Codelist]) -> None:
    ids: dict[str, int] = {}
    for criterion in _all_criteria(model):
        ids[criterion.id] = ids.get(criterion.id, 0) + 1
    duplicates = sorted(i for i, n in ids.items() if n > 1)
    if duplicates:
        raise RulesError(f"{path}: criterion ids must be unique; repeated: {', '.join(duplicates)}")
    for name in sorted(_codelists_used(model)):
        if name not in model.codelists:
            raise RulesError(f"{path}: codelist {name!r} is used but not listed under codelists")
    top_ids = {inc.rule.id for inc in model.criteria}
    addresses = [model.proposal.addresses] if model.proposal.addresses else []
    for name in [*model.proposal.reason_criteria, *addresses]:
        if name not in top_ids:
            raise RulesError(f"{path}: proposal names criterion {name!r}, which is not a criterion")
    if model.priority:
        target = next((c for c in _all_criteria(model) if c.id == model.priority.latest), None)
        if not isinstance(target, LatestCategory):
            raise RulesError(
                f"{path}: priority.latest must name a latest-category criterion, "
                f"not {model.priority.latest!r}"
            )
    for criterion in _all_criteria(model):
        problem = check_of(criterion, codelists)
        if problem:
            raise RulesError(f"{path}: criterion {criterion.id!r}: {problem}")
    _check_texts(model, path, codelists, set(ids))


def _check_texts(model: Ruleset, path: Path, codelists: dict[str, Codelist], ids: set) -> None:
    """`texts:` names only criteria and codelist categories that exist."""
    texts = model.texts
    sections = (("criteria", texts.criteria), ("steps", texts.steps))
    for section, names in (*sections, ("status_names", texts.status_names)):
        unknown = sorted(set(names) - ids)
        if unknown:
            raise RulesError(f"{path}: texts.{section}: {unknown} are not criterion ids")
    for name, words in texts.categories.items():
        if name not in codelists:
            raise RulesError(f"{path}: texts.categories: {name!r} is not a listed codelist")
        unknown = sorted(set(words) - codelists[name].categories)
        if unknown:
            raise RulesError(
                f"{path}: texts.categories.{name}: {unknown} are not categories of the codelist"
            )


def load_ruleset(path: Path | str | None = None, *, check_pins: bool = True) -> CompiledRuleset:
    """Read, validate and compile a ruleset file (YAML)."""
    path = Path(path) if path else DEFAULT_RULESET
    if path.is_dir():
        candidates = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml"))
        if len(candidates) != 1:
            raise RulesError(f"{path}: expected exactly one ruleset (*.yaml) in the folder")
        path = candidates[0]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{path}: ruleset file not found") from None
    except UnicodeDecodeError as exc:
        raise RulesError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:  # no permission...
        raise RulesError(f"{path}: cannot read the ruleset ({exc.strerror or exc})") from None
    data, lines = _load_with_lines(text, path)
    if not isinstance(data, dict):
        raise RulesError(f"{path}:1: a ruleset must be a mapping of keys to values")
    try:
        model = Ruleset.model_validate(data)
    except ValidationError as exc:
        raise RulesError(_format_error(exc, path, lines)) from None
    codelists: dict[str, Codelist] = {}
    for name, relative in model.codelists.items():
        csv_path = (path.parent / relative).resolve()
        codelists[name] = read_codelist(name, csv_path)
        if check_pins:
            check_pinned(csv_path)
    _check_references(model, path, codelists)
    return CompiledRuleset(model=model, path=path.resolve(), codelists=codelists)
