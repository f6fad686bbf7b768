"""The commands, as plain functions of parsed arguments (printing is allowed here only)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ips_screen.cli.server_args import client_from_args, is_server_url, server_options_given
from ips_screen.dates import LONDON, long_date, today_london
from ips_screen.engine import Decision, evaluate
from ips_screen.engine.decision import Step
from ips_screen.errors import InputError, UserError
from ips_screen.presentation.counts import counted, plural
from ips_screen.presentation.trace import step_line
from ips_screen.ruleset.loader import DEFAULT_RULESET, load_ruleset

if TYPE_CHECKING:
    from ips_screen.fhir.client import FhirClient
    from ips_screen.ruleset.loader import CompiledRuleset
    from ips_screen.writeback.writer import WriteReport

log = logging.getLogger("ips_screen.cli")
RULES_TEST_FAILED = 8


def dispatch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.command == "screen":
        return cmd_screen(args, environ)
    if args.command == "explain":
        return cmd_explain(args, environ)
    if args.command == "rules":
        return {"validate": cmd_rules_validate, "test": cmd_rules_test, "pin": cmd_rules_pin}[
            args.rules_command
        ](args)
    if args.command == "review":
        from ips_screen.cli.review_cmd import run_review

        return run_review(args, environ)
    if args.command == "load":
        return cmd_load(args, environ)
    if args.command == "synth":
        return cmd_synth(args)
    if args.command == "serve":
        from ips_screen.cli.serve_cmd import run_serve

        return run_serve(args, environ)
    if args.command == "nightly":
        from ips_screen.cli.nightly_cmd import run_nightly_cmd

        return run_nightly_cmd(args, environ)
    raise AssertionError(f"unhandled command {args.command}")


def _as_of(args: argparse.Namespace) -> date:
    return args.as_of or today_london()


def _source(args: argparse.Namespace) -> str | list[Path]:
    """One FHIR server base URL, or the files and folders to read.

    Server-only options with files are refused rather than ignored."""
    sources: list[str] = args.sources
    urls = [s for s in sources if is_server_url(s)]
    if not urls:
        given = server_options_given(args)
        if given:
            raise UserError(f"{given[0]} only applies when the source is a FHIR server URL")
        return [Path(s) for s in sources]
    if len(sources) > 1:
        what = "several FHIR servers" if len(urls) > 1 else "a FHIR server and files"
        raise UserError(f"give one FHIR server base URL or files and folders, not {what}")
    return urls[0]


def cmd_screen(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from ips_screen.cli.spark_cmd import check_engine_args, run_spark_screen
    from ips_screen.outputs.staging import check_folder
    from ips_screen.pipeline import screen_files, screen_server
    from ips_screen.sources.files import check_output_folder

    local = [s for s in args.sources if not is_server_url(s) and "://" not in s]
    check_folder(Path(args.out))  # before anything is read or written
    check_output_folder(local, args.out)
    if check_engine_args(args) == "spark":
        summary, written = run_spark_screen(args, environ, _as_of(args))
        _print_summary(summary, Path(args.out))
        return 0 if written is None else _print_written(written)
    ruleset = load_ruleset(args.rules)
    as_of = _as_of(args)
    out = Path(args.out)
    now = datetime.now(tz=LONDON)
    source = _source(args)
    _check_write_args(args, source)
    if isinstance(source, str):
        with client_from_args(args, environ, source) as client:
            if args.write:
                return _screen_and_write(args, environ, client, ruleset, as_of, now)
            result = screen_server(client, ruleset, **_server_screen_options(args, as_of, now))
    else:
        result = screen_files(
            source,
            ruleset,
            as_of=as_of,
            out_dir=out,
            now=now,
            skip_invalid=args.skip_invalid,
            owner=args.owner,
            jobs=args.jobs,
        )
    _print_summary(result.summary, out)
    return 0


def _server_screen_options(args: argparse.Namespace, as_of: date, now: datetime) -> dict[str, Any]:
    """The keyword arguments of `screen_server` (and `write_to_server`) from the command line."""
    from ips_screen.sources.fhir_rest import DEFAULT_PAGE_SIZE

    return {
        "as_of": as_of,
        "out_dir": Path(args.out),
        "now": now,
        "owner": args.owner,
        "patients": args.patient_id,
        "page_size": args.page_size or DEFAULT_PAGE_SIZE,
        "skip_invalid": args.skip_invalid,
    }


def _check_write_args(args: argparse.Namespace, source: str | list[Path]) -> None:
    if args.owner is not None:
        from ips_screen.writeback.writer import check_owner

        check_owner(args.owner)
    if args.write and not isinstance(source, str):
        raise UserError("--write needs a FHIR server as SOURCE")


def _screen_and_write(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    client: FhirClient,
    ruleset: CompiledRuleset,
    as_of: date,
    now: datetime,
) -> int:
    """Screen the server and write the proposals back (under the practice lock); exit 5 when a
    patient could not be written or the duplicate sweep failed."""
    from ips_screen.pipeline import write_to_server
    from ips_screen.writeback.writer import default_lock_path

    result, written = write_to_server(
        client,
        ruleset,
        lock_path=default_lock_path(client.base_url, environ),
        **_server_screen_options(args, as_of, now),
    )
    _print_summary(result.summary, Path(args.out))
    return _print_written(written)


def _print_written(written: WriteReport) -> int:
    """What a write did; the exit code: 5 when a patient or the duplicate sweep failed."""
    from ips_screen.errors import ServerError

    print(written.summary_line())
    if written.repaired:
        repaired = written.repaired
        print(f"Restored the missing review Task of {counted(repaired, 'proposal')}.")
    for patient, message in written.failed:
        print(f"ips-screen: {patient} not written: {message}", file=sys.stderr)
    if written.sweep_error:
        print(f"ips-screen: duplicate sweep: {written.sweep_error}", file=sys.stderr)
    return 0 if written.ok else ServerError.exit_code


def _print_summary(summary: dict, out: Path) -> None:
    """Three lines at most: the counts, any skipped records, and every output written. An as-of
    day in the past is said to be one, beside today's date that the proposals carry; a day in
    the future too (a mistyped year decides everyone as they would be then)."""
    from ips_screen.outputs.registry import filenames

    outcomes = summary["outcomes"]
    as_of, today = date.fromisoformat(summary["as_of"]), today_london()
    past = ""
    if as_of < today:
        past = f" (a past date: proposals are dated today, {long_date(today)})"
    elif as_of > today:
        past = f" (a future date: ages and time windows as of then; today is {long_date(today)})"
    patients = summary["patients"]
    print(
        f"Screened {counted(patients, 'patient')} on records up to "
        f"{long_date(as_of)}{past} with {summary['ruleset']}: {outcomes['propose']} to propose, "
        f"{outcomes['not-eligible']} not eligible, {outcomes['excluded']} excluded."
    )
    skipped = summary.get("data_quality", {}).get("records_skipped", 0)
    if skipped:
        were = plural(skipped, "record was", "records were")
        print(f"{skipped} unreadable {were} skipped (listed in summary.json).")
    written = [name for name in filenames() if (out / name).is_file()]
    print(f"Outputs in {out}/: {', '.join(written) or 'none'}")


def cmd_explain(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    ruleset = load_ruleset(args.rules)
    patient_id = args.patient.removeprefix("Patient/")
    source = _source(args)
    if isinstance(source, str):
        from ips_screen.sources.fhir_rest import DEFAULT_PAGE_SIZE, read_server

        with client_from_args(args, environ, source) as client:
            population = read_server(
                client,
                ruleset,
                patients=[patient_id],
                page_size=args.page_size or DEFAULT_PAGE_SIZE,
            )
    else:
        from ips_screen.sources import collect

        population = collect(source, ruleset)
    facts = population.patients.get(patient_id)
    if facts is None:
        raise InputError(f"Patient/{patient_id} is not in the input")
    decision = evaluate(ruleset, facts, _as_of(args))
    if args.json:
        import orjson

        print(orjson.dumps(decision.to_dict(step_line), option=orjson.OPT_INDENT_2).decode())
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
        lines.append(f"{'  ' * depth}{MARK[step.status]}  {step.id}{reason}: {step_line(step)}")
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


def cmd_synth(args: argparse.Namespace) -> int:
    from ips_screen.outputs.staging import make_folder
    from ips_screen.synth import write_bulk

    if args.patients < 1:
        raise UserError("--patients must be at least 1")
    out = Path(args.out)
    make_folder(out)
    counts = write_bulk(out, args.patients, args.seed, _as_of(args))
    total = sum(counts.values())
    print(
        f"Wrote {counted(args.patients, 'patient')} ({counted(total, 'resource')}) to {out}/ "
        "as Bulk NDJSON:"
    )
    for kind, n in sorted(counts.items()):
        print(f"  {kind:<18} {n:>9}")
    return 0


def cmd_load(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from ips_screen.cli.server_args import client_from_args, is_server_url
    from ips_screen.devtools.load import load_bundles

    if not is_server_url(args.server):
        raise UserError(f"{args.server}: expected a FHIR base URL (http:// or https://)")
    client = client_from_args(args, environ, args.server)
    written = load_bundles(client, [Path(s) for s in args.sources])
    print(f"Loaded {counted(written, 'resource')} into {args.server}")
    return 0
