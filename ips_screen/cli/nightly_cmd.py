"""`ips-screen nightly --config practice.toml [--as-of DATE]`: one nightly run for a practice."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ips_screen.cli.arg_types import as_of_arg
from ips_screen.errors import EXIT_CODES_HELP

HELP = "sync the practice's facts store, re-screen everyone, write proposals and the report"
DESCRIPTION = (
    "One nightly run for the practice described by --config (see docs/practice.example.toml): "
    "bring the facts store up to date (Bulk export since the last run, or a full reload), "
    "re-screen every patient, write new proposals to the FHIR server, and write the report, "
    "worklist and decisions to <state_dir>/runs/<run id>/ (and runs/latest). One run at a time "
    "per practice: a second gets exit 7. A damaged Bulk export (a file shorter than its manifest "
    "count, a truncated gzip stream, a line of the wrong type or over the size cap) is applied "
    "not at all: the previous _since is kept, the store stays as it was, and the run exits 9."
)


def add_nightly_parser(sub: Any) -> None:
    """Register the `nightly` command on the main parser's sub-parsers."""
    parser = sub.add_parser(
        "nightly",
        help=HELP,
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="practice config (TOML)")
    parser.add_argument(
        "--as-of",
        type=as_of_arg,
        help="screen as of this date (YYYY-MM-DD; default: today in Europe/London)",
    )


def run_nightly_cmd(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from ips_screen.dates import LONDON, today_london
    from ips_screen.nightly.config import load_config
    from ips_screen.nightly.progress import make_progress
    from ips_screen.nightly.run import run_nightly
    from ips_screen.presentation.counts import counted, plural

    config = load_config(args.config)
    result = run_nightly(
        config,
        now=datetime.now(tz=LONDON),
        as_of=args.as_of or today_london(),
        environ=environ,
        progress=make_progress(sys.stderr),
    )
    outcomes = result.summary.get("outcomes", {})
    new, changes, errors = result.proposals_new, result.changes, len(result.errors)
    print(
        f"Nightly run {result.run_id} ({result.mode}, {result.method}) as of "
        f"{result.summary.get('as_of')}: {counted(result.patients, 'patient')} screened, "
        f"{outcomes.get('propose', 0)} to propose; {counted(new, 'new proposal')} written, "
        f"{result.proposals_open} open; {counted(changes, 'change')} since the last run; "
        f"{errors or 'no'} {plural(errors, 'error')}."
    )
    for error in result.errors[:20]:
        print(f"ips-screen: {error}", file=sys.stderr)
    if len(result.errors) > 20:
        print(f"ips-screen: and {len(result.errors) - 20} more errors", file=sys.stderr)
    print(f"Report: {result.report}")
    return result.exit_code
