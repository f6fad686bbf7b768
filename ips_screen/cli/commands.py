"""The commands, as plain functions of parsed arguments (printing is allowed here only)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path

from ips_screen.dates import LONDON, today_london
from ips_screen.engine import Decision, evaluate
from ips_screen.engine.decision import Step
from ips_screen.errors import InputError, UserError
from ips_screen.ruleset.loader import DEFAULT_RULESET, load_ruleset

log = logging.getLogger("ips_screen.cli")
RULES_TEST_FAILED = 8


def dispatch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.command == "screen":
        return cmd_screen(args, environ)
    if args.command == "explain":
        return cmd_explain(args)
    if args.command == "rules":
        return {"validate": cmd_rules_validate, "test": cmd_rules_test, "pin": cmd_rules_pin}[
            args.rules_command
        ](args)
    raise AssertionError(f"unhandled command {args.command}")


def _as_of(args: argparse.Namespace) -> date:
    return args.as_of or today_london()


def _paths(sources: list[str]) -> list[Path]:
    urls = [s for s in sources if s.startswith(("http://", "https://"))]
    if urls:
        raise UserError(f"{urls[0]}: reading from a FHIR server needs the FHIR source (not built)")
    return [Path(s) for s in sources]


def cmd_screen(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from ips_screen.pipeline import screen_files

    ruleset = load_ruleset(args.rules)
    as_of = _as_of(args)
    out = Path(args.out)
    result = screen_files(
        _paths(args.sources),
        ruleset,
        as_of=as_of,
        out_dir=out,
        now=datetime.now(tz=LONDON),
        skip_invalid=args.skip_invalid,
        owner=args.owner,
    )
    _print_summary(result.summary, out)
    return 0


def _print_summary(summary: dict, out: Path) -> None:
    outcomes = summary["outcomes"]
    print(
        f"Screened {summary['patients']} patients as of {summary['as_of']} "
        f"with {summary['ruleset']}: {outcomes['propose']} to propose, "
        f"{outcomes['not-eligible']} not eligible, {outcomes['excluded']} excluded."
    )
    skipped = summary.get("data_quality", {}).get("records_skipped", 0)
    if skipped:
        print(f"{skipped} unreadable records were skipped (listed in summary.json).")
    print(f"Outputs in {out}/: decisions.ndjson, proposals.json, summary.json, report.html")


def cmd_explain(args: argparse.Namespace) -> int:
    from ips_screen.sources import collect

    ruleset = load_ruleset(args.rules)
    patient_id = args.patient.removeprefix("Patient/")
    population = collect(_paths(args.sources), ruleset)
    facts = population.patients.get(patient_id)
    if facts is None:
        raise InputError(f"Patient/{patient_id} is not in the input")
    decision = evaluate(ruleset, facts, _as_of(args))
    if args.json:
        import orjson

        print(orjson.dumps(decision.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_decision(decision))
    return 0


MARK = {"pass": "pass", "fail": "FAIL", "unknown": "  ? "}


def format_decision(decision: Decision) -> str:
    """A readable trace: one line per step, nested parts indented."""
    lines = [
        f"{decision.patient}: {decision.outcome.upper()}"
        + (f" ({', '.join(decision.reasons)})" if decision.reasons else ""),
        f"  ruleset {decision.ruleset}, as of {decision.as_of}",
    ]
    if decision.outcome == "propose":
        lines.append(
            f"  priority {decision.priority}; flags: {', '.join(decision.flags) or 'none'}"
        )
        lines.append(f"  fit notes linked: {', '.join(decision.links.supporting) or 'none'}")
    lines.append("  (pass = kept by this step; FAIL = stopped by it; ? = cannot tell)")

    def add(step: Step, depth: int) -> None:
        reason = f" -> {step.reason}" if step.reason else ""
        lines.append(f"{'  ' * depth}{MARK[step.status]}  {step.id}{reason}: {step.detail}")
        for part in step.parts:
            add(part, depth + 2)

    for step in decision.trace:
        add(step, 1)
    return "\n".join(lines)


def cmd_rules_validate(args: argparse.Namespace) -> int:
    ruleset = load_ruleset(args.path)
    model = ruleset.model
    codes = sum(len(c.rows) for c in ruleset.codelists.values())
    print(
        f"{ruleset.path}: ok: {model.id} {model.version}, {len(model.exclusions)} exclusions, "
        f"{len(model.criteria)} criteria, {len(ruleset.codelists)} codelists ({codes} codes, "
        f"all pinned), {len(model.examples)} examples"
    )
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    from ips_screen.assurance import run_examples

    ruleset = load_ruleset(args.path)
    results = run_examples(ruleset)
    if not results:
        print(f"{ruleset.path}: no examples to run")
        return 0
    failed = [r for r in results if not r.ok]
    for result in results:
        status = "ok  " if result.ok else "FAIL"
        print(f"{status} {result.example.name}: {result.decision.outcome}")
        for mismatch in result.mismatches:
            print(f"       {mismatch}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return RULES_TEST_FAILED if failed else 0


def cmd_rules_pin(args: argparse.Namespace) -> int:
    from ips_screen.ruleset.codelists import pin_directory

    directory = Path(args.path) if args.path else DEFAULT_RULESET.parent / "codelists"
    if not directory.is_dir():
        raise UserError(f"{directory}: not a folder")
    pinned = pin_directory(directory)
    print(f"pinned {len(pinned)} codelists in {directory / 'manifest.json'}")
    return 0
