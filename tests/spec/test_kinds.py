"""Criterion kinds are declared once (ips_screen/kinds) and their typed evidence is worded in one
place (ips_screen/presentation), with the words from the ruleset's `texts:`."""

from __future__ import annotations

import ast
import sys
import types
import typing
from datetime import date
from pathlib import Path

import orjson
import pytest

import ips_screen
from ips_screen.engine import Decision, evaluate
from ips_screen.engine.decision import Step
from ips_screen.engine.horizon import window_lengths
from ips_screen.errors import RulesError
from ips_screen.kinds.context import Context
from ips_screen.kinds.registry import KINDS, Criterion, evaluate_rule, walk_criteria, windows_of
from ips_screen.presentation.notes import clinician_note, reasons_in_brief, task_description
from ips_screen.presentation.trace import step_line
from ips_screen.ruleset.loader import _DISCRIMINATORS, load_ruleset
from tests.helpers import default_ruleset, facts_from, fit_note, load_json, patient

RULESET = default_ruleset()
T = date(2026, 11, 26)
PACKAGE = Path(ips_screen.__file__).parent
FIXTURES = sorted((PACKAGE.parent / "fhir_fixtures" / "patients").glob("*.json"))


def test_the_ruleset_union_is_built_from_the_registered_kinds():
    union = typing.get_args(typing.get_args(Criterion)[0])
    tags = {typing.get_args(m.model_fields["kind"].annotation)[0] for m in union}
    assert tags == set(KINDS) == set(_DISCRIMINATORS)
    for name, spec in KINDS.items():
        assert spec.model.model_fields["kind"].annotation == typing.Literal[name]


def test_windows_are_what_each_kind_declares():
    declared = {}
    for top in [
        *(e.rule for e in RULESET.model.exclusions),
        *(c.rule for c in RULESET.model.criteria),
    ]:
        for rule in walk_criteria(top):
            declared[rule.id] = windows_of(rule)
    assert declared["ips-declined"] == (12, 3)  # decline window, and the not-now deferral
    assert declared["persistent-pain-condition"] == (3,)
    assert declared["out-of-work"] == (24,)
    assert declared["chronic-pain"] == () and declared["deceased"] == ()
    assert window_lengths(RULESET) == (3, 12, 24)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_a_decision_read_back_from_decisions_ndjson_words_the_same(path: Path):
    """The nightly job reuses cached decisions (decisions.ndjson lines) and words proposals from
    them: the typed evidence must come back whole."""
    decision = evaluate(RULESET, facts_from([load_json(path)], RULESET), T)
    line = orjson.dumps(decision.to_dict(step_line), option=orjson.OPT_SORT_KEYS)
    again = Decision.from_dict(orjson.loads(line))
    assert again == decision
    assert all(step_line(s) for s in again.trace)
    assert orjson.dumps(again.to_dict(step_line), option=orjson.OPT_SORT_KEYS) == line
    if decision.outcome == "propose":
        assert clinician_note(again, RULESET) == clinician_note(decision, RULESET)
        assert reasons_in_brief(again, RULESET) == reasons_in_brief(decision, RULESET)


def test_no_regular_expression_reads_engine_output():
    """The words are rendered from typed evidence, never parsed back from prose."""
    files = [
        *(PACKAGE / "presentation").glob("*.py"),
        PACKAGE / "proposals" / "text.py",
        PACKAGE / "service" / "card_detail.py",
        PACKAGE / "outputs" / "report.py",
        PACKAGE / "outputs" / "summary.py",
    ]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "re" not in imported, path


# --- texts: ---------------------------------------------------------------------------------


def _with_texts(tmp_path: Path, texts: str) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir(parents=True)
    source = RULESET.path.parent
    (rules / "codelists").symlink_to(source / "codelists")
    text = RULESET.path.read_text(encoding="utf-8")
    head, _, tail = text.partition("\ntexts:\n")
    tail = tail[tail.index("\n# Example patients") :]
    path = rules / "rules.yaml"
    path.write_text(
        head.replace("../fhir_fixtures", str(source.parent / "fhir_fixtures")) + texts + tail
    )
    return path


def test_the_proposal_words_come_from_the_ruleset_texts(tmp_path: Path):
    texts = """
texts:
  proposal_title: Work support
  task_line: "Offer work support"
  service_title: Work support finder
  service_description: Finds people who may want work support.
  criteria: {chronic-pain: Long-term condition, out-of-work: Work}
  flags: {employment-status-unconfirmed: work status not confirmed}
  flag_actions: {employment-status-unconfirmed: ask about work}
"""
    ruleset = load_ruleset(_with_texts(tmp_path, texts))
    fixture = next(p for p in FIXTURES if p.name.startswith("04-"))
    decision = evaluate(ruleset, facts_from([load_json(fixture)], ruleset), T)
    note = clinician_note(decision, ruleset).replace(
        " ".join(ruleset.model.proposal.clinician_summary.split()),
        "",  # the ruleset's own words
    )
    brief = note.split("\n\n")[0].split("\n")
    assert brief[0].startswith("Long-term condition: ") and brief[1] == (
        "Work not recorded: please ask."
    )
    assert "employment-status-unconfirmed" not in note
    assert task_description(decision, ruleset) == "Offer work support (early); ask about work"
    for words in (note, task_description(decision, ruleset)):
        assert "Individual Placement" not in words and "IPS" not in words.split()


def test_an_unknown_key_in_texts_names_file_and_line(tmp_path: Path):
    path = _with_texts(tmp_path, "\ntexts:\n  proposal_titel: Work support\n")
    line = path.read_text().splitlines().index("  proposal_titel: Work support") + 1
    with pytest.raises(RulesError, match=rf"rules.yaml:{line}: texts.proposal_titel: unknown key"):
        load_ruleset(path)


def test_texts_name_only_categories_the_codelist_has(tmp_path: Path):
    path = _with_texts(tmp_path, "\ntexts:\n  categories: {fit-notes: {unfit: not fit}}\n")
    with pytest.raises(RulesError, match=r"texts.categories.fit-notes: \['unfit'\]"):
        load_ruleset(path)
    path = _with_texts(tmp_path / "b", "\ntexts:\n  criteria: {chronic-pian: Pain}\n")
    with pytest.raises(RulesError, match=r"texts.criteria: \['chronic-pian'\]"):
        load_ruleset(path)


def test_the_readme_example_kind_runs(monkeypatch: pytest.MonkeyPatch):
    """README.md, "Adding a criterion kind": the example module evaluates as it says."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("# ips_screen/kinds/no_recent_records.py")
    module = types.ModuleType("readme_no_recent_records")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(readme[start : readme.index("```", start)], module.__dict__)
    (spec,) = module.SPECS
    rule = spec.model(id="no-fit-note", kind="no-recent-records", codelist="fit-notes")
    assert spec.windows(rule) == (12,)
    facts = facts_from([patient(), fit_note(when="2026-10-01")], RULESET)
    ctx = Context(facts, T, RULESET.codelists, facts.records, evaluate_rule)
    found = spec.evaluate(rule, ctx)
    assert found.matched is False and len(found.refs) == 1
    step = Step("no-fit-note", "no-recent-records", "fail", found.refs, found.evidence)
    assert step_line(step).startswith("1 record(s) in fit-notes (in the last 12 months): ")
    ctx = Context(facts, date(2028, 1, 1), RULESET.codelists, facts.records, evaluate_rule)
    assert spec.evaluate(rule, ctx).matched is True


def test_a_brief_template_with_an_unknown_name_names_file_and_line(tmp_path: Path):
    path = _with_texts(tmp_path, '\ntexts:\n  brief_spell: "Out of work from {when}."\n')
    line = path.read_text().splitlines().index('  brief_spell: "Out of work from {when}."') + 1
    with pytest.raises(RulesError, match=rf"rules.yaml:{line}: texts.brief_spell: .*may use only"):
        load_ruleset(path)


def test_only_kinds_that_give_a_birth_key_read_the_birth_date():
    """The nightly job shares a decision between record-less patients whose criteria read the
    same of their birth dates (`KindSpec.birth_key`, nightly/deciding.py): a kind, or the engine,
    reading the birth date any other way would give a patient another's decision."""
    root = Path(ips_screen.__file__).parent
    keyed = {spec.evaluate.__module__ for spec in KINDS.values() if spec.birth_key is not None}
    readers = {
        f"ips_screen.{folder}.{path.stem}"
        for folder in ("kinds", "engine")
        for path in (root / folder).glob("*.py")
        if "birth_date" in path.read_text(encoding="utf-8")
    }
    assert keyed == {"ips_screen.kinds.age_range"}
    assert readers - keyed == {"ips_screen.engine.horizon"}  # the birthdays, one's own
