"""Dump the screen's decisions in a comparable form, or compare two dumps.

    compare_decisions.py dump OUT.jsonl [--shared ../shared/data] [--synth 3000]
    compare_decisions.py compare BEFORE.jsonl AFTER.jsonl

`dump` evaluates the default ruleset on fhir_fixtures/, on every folder of the shared data and on
a synthetic population, at several as-of dates, and writes one line per decision with what must
not change under a refactoring of the engine (outcome, reasons, flags, priority, links, quality,
and every trace step's id, kind, status, reason and references, at any depth), and apart from it
the words (each step's trace line, the clinician note and the report's one-line reasons).
`compare` reports how many decisions differ in what must not change, and how many in wording.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AS_OF_DAYS = ("2026-11-26", "2025-06-15", "2027-03-01", "2024-02-29")


def _words_of_step(step) -> str:
    try:
        from ips_screen.presentation.trace import step_line
    except ImportError:
        return step.detail
    return step_line(step)


def _step(step) -> tuple[dict, list]:
    fixed = {
        "id": step.id,
        "kind": step.kind,
        "status": step.status,
        "reason": step.reason,
        "refs": list(step.refs),
    }
    words = [_words_of_step(step)]
    parts = []
    for part in step.parts:
        fixed_part, words_part = _step(part)
        parts.append(fixed_part)
        words.append(words_part)
    fixed["parts"] = parts
    return fixed, words


def _prose(decision, ruleset) -> dict:
    from ips_screen.proposals.text import clinician_note, reasons_in_brief

    if decision.outcome != "propose":
        return {}
    return {
        "note": clinician_note(decision, ruleset),
        "brief": reasons_in_brief(decision, ruleset),
    }


def _line(dataset: str, decision, ruleset) -> dict:
    trace = [_step(s) for s in decision.trace]
    links = decision.links
    return {
        "key": f"{dataset}|{decision.as_of}|{decision.patient}",
        "fixed": {
            "outcome": decision.outcome,
            "reasons": list(decision.reasons),
            "flags": list(decision.flags),
            "priority": decision.priority,
            "quality": list(decision.quality),
            "links": [list(links.reasons), list(links.supporting), list(links.pain), links.owner],
            "trace": [f for f, _ in trace],
        },
        "words": {"trace": [w for _, w in trace], **_prose(decision, ruleset)},
    }


def _datasets(shared: Path | None, synth: int, scratch: Path) -> list[tuple[str, Path]]:
    out = [("fixtures", ROOT / "fhir_fixtures")]
    if shared is not None and shared.is_dir():
        out += [(p.name, p) for p in sorted(shared.iterdir()) if p.is_dir()]
    if synth:
        from ips_screen.synth.writer import write_bulk

        folder = scratch / "synth"
        folder.mkdir()
        write_bulk(folder, synth, 20261126, date(2026, 11, 26))
        out.append((f"synth-{synth}", folder))
    return out


def dump(out: Path, shared: Path | None, synth: int) -> int:
    from ips_screen.engine.evaluate import evaluate
    from ips_screen.ruleset.loader import load_ruleset
    from ips_screen.sources import collect

    ruleset = load_ruleset()
    n = 0
    with tempfile.TemporaryDirectory() as scratch, out.open("w", encoding="utf-8") as handle:
        for name, folder in _datasets(shared, synth, Path(scratch)):
            population = collect([folder], ruleset, skip_invalid=True)
            for day in AS_OF_DAYS:
                as_of = date.fromisoformat(day)
                for facts in sorted(population.patients.values(), key=lambda f: f.ref):
                    decision = evaluate(ruleset, facts, as_of)
                    handle.write(json.dumps(_line(name, decision, ruleset), sort_keys=True))
                    handle.write("\n")
                    n += 1
    print(f"{n} decisions written to {out}")
    return 0


def _read(path: Path) -> dict[str, dict]:
    with path.open(encoding="utf-8") as handle:
        return {row["key"]: row for row in map(json.loads, handle)}


def compare(before: Path, after: Path) -> int:
    a, b = _read(before), _read(after)
    missing = sorted(set(a) ^ set(b))
    fixed = sorted(k for k in set(a) & set(b) if a[k]["fixed"] != b[k]["fixed"])
    words = sorted(k for k in set(a) & set(b) if a[k]["words"] != b[k]["words"])
    print(
        f"{len(a)} decisions before, {len(b)} after; {len(missing)} only on one side; "
        f"{len(fixed)} differ in outcome/reasons/flags/priority/links/quality/trace status+refs; "
        f"{len(words)} differ in wording (trace lines, clinician note, report line)"
    )
    for key in [*missing[:5], *fixed[:5], *words[:5]]:
        print(f"  {key}")
    return 1 if missing or fixed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    d.add_argument("--synth", type=int, default=3000)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "dump":
        return dump(args.out, args.shared, args.synth)
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
