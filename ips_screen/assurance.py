"""Example patients kept inside a ruleset, with their expected decisions ("assurance")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ips_screen.engine import Decision, evaluate
from ips_screen.errors import RulesError
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.ruleset.model import Example


@dataclass(frozen=True)
class ExampleResult:
    example: Example
    decision: Decision
    mismatches: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def run_example(ruleset: CompiledRuleset, example: Example) -> ExampleResult:
    from ips_screen.sources import collect

    path = (ruleset.path.parent / example.file).resolve()
    if not path.exists():
        raise RulesError(f"{ruleset.path}: example {example.name!r}: file not found: {path}")
    population = collect([path], ruleset)
    if example.patient:
        facts = population.patients.get(example.patient)
        if facts is None:
            raise RulesError(f"{path}: example {example.name!r}: no Patient/{example.patient}")
    elif len(population.patients) == 1:
        facts = next(iter(population.patients.values()))
    else:
        raise RulesError(
            f"{path}: example {example.name!r}: the file holds {len(population.patients)} "
            "patients; name one with `patient:`"
        )
    decision = evaluate(ruleset, facts, date.fromisoformat(example.as_of))
    expect = example.expect
    mismatches = []
    got = {
        "outcome": decision.outcome,
        "reasons": list(decision.reasons),
        "flags": list(decision.flags),
        "priority": decision.priority,
    }
    for key, want in expect.model_dump().items():
        if got[key] != want:
            mismatches.append(f"{key}: expected {want!r}, got {got[key]!r}")
    return ExampleResult(example, decision, tuple(mismatches))


def run_examples(ruleset: CompiledRuleset) -> list[ExampleResult]:
    return [run_example(ruleset, example) for example in ruleset.model.examples]
