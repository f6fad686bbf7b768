"""`ips-screen review`: list, show, accept or decline IPS proposals on the practice's FHIR server.

    review list [--owner NAME] [--find TEXT] [--priority early|routine] [--json]
    review show TASK [--json]
    review accept TASK --by Practitioner/ID --patient-agreed --config practice.toml
    review decline TASK --by Practitioner/ID --reason CODE [--note TEXT]
    review followup [--weeks N] [--config practice.toml] [--json]

The server is `--server URL`, else $IPS_SCREEN_FHIR_BASE. TASK is ``ID`` or ``Task/ID``; a Task the
server does not have is a usage error (exit 2), as is a clinician (--by) it does not have.
Accepting refers the patient to the practice's IPS service ([referral] ips_service of the
practice.toml given with --config; exit 4 without it) and needs --patient-agreed (exit 2
without). A concurrent change, or a review someone already decided, gives exit 6 (the message
says who did what and when), nothing changed.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING

import orjson

from ips_screen import __version__
from ips_screen.cli.server_args import add_server_args, client_from_args
from ips_screen.dates import LONDON, long_iso
from ips_screen.errors import UserError
from ips_screen.fhir.client import FhirClient
from ips_screen.writeback.followup import FOLLOWUP_WEEKS

if TYPE_CHECKING:  # imported when a review command runs: it needs the FHIR models
    from ips_screen.ruleset.loader import CompiledRuleset
    from ips_screen.writeback import review
    from ips_screen.writeback.followup import Unanswered

SERVER_ENV = "IPS_SCREEN_FHIR_BASE"
_BY = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


def _by(value: str) -> str:
    if not _BY.match(value):
        raise argparse.ArgumentTypeError(
            f"expected Practitioner/<id> or PractitionerRole/<id>, not {value!r}"
        )
    return value


def _weeks(value: str) -> int:
    try:
        weeks = int(value)
    except ValueError:
        weeks = 0
    if not 1 <= weeks <= 520:
        raise argparse.ArgumentTypeError(f"expected a number of weeks from 1 to 520, not {value!r}")
    return weeks


def add_review_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `review` and its actions to the top-level subparsers."""
    parser = subparsers.add_parser(
        "review",
        help="list, show, accept or decline IPS proposals on the FHIR server",
        description="Clinician review of the IPS proposals the screen wrote to the FHIR server.",
    )
    actions = parser.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="open reviews, early first, then oldest first")
    listing.add_argument(
        "--owner",
        metavar="NAME",
        help="only Tasks owned by this clinician or team (a name, or Type/id)",
    )
    listing.add_argument(
        "--find", metavar="TEXT", help="only patients with this name or NHS number"
    )
    listing.add_argument("--priority", choices=["early", "routine"], help="only this priority")
    listing.add_argument("--json", action="store_true", help="print the reviews as JSON")

    show = actions.add_parser("show", help="one review with its evidence and fit notes")
    show.add_argument("task", metavar="TASK", help="Task id (ID or Task/ID)")
    show.add_argument("--json", action="store_true", help="print the review as JSON")

    accept = actions.add_parser(
        "accept", help="accept with the patient's agreement: referral order to the IPS service"
    )
    accept.add_argument("task", metavar="TASK", help="Task id (ID or Task/ID)")
    accept.add_argument(
        "--patient-agreed",
        action="store_true",
        help="confirm the patient agreed to be referred (required; recorded as an Observation)",
    )
    accept.add_argument(
        "--config",
        metavar="FILE",
        help="practice.toml whose [referral] ips_service receives the order (required)",
    )

    decline = actions.add_parser("decline", help="decline: Task rejected, proposal revoked")
    decline.add_argument("task", metavar="TASK", help="Task id (ID or Task/ID)")
    decline.add_argument(
        "--reason", required=True, help="a decline reason of the ruleset (proposal.decline_reasons)"
    )
    decline.add_argument("--note", help="free text for the record (required with --reason other)")

    followup = actions.add_parser(
        "followup", help="accepted referrals the IPS service has not answered after N weeks"
    )
    followup.add_argument(
        "--weeks",
        type=_weeks,
        metavar="N",
        help="list referrals accepted at least N weeks ago (default: [followup] weeks of "
        f"--config, else {FOLLOWUP_WEEKS})",
    )
    followup.add_argument(
        "--config", metavar="FILE", help="the practice config (practice.toml) giving the default"
    )
    followup.add_argument("--json", action="store_true", help="print the referrals as JSON")

    for action in (accept, decline):
        action.add_argument(
            "--by", required=True, type=_by, metavar="Practitioner/ID", help="the clinician"
        )
    for action in (listing, show, accept, decline, followup):
        action.add_argument(
            "--server", metavar="URL", help=f"FHIR base URL (default ${SERVER_ENV})"
        )
        if action in (listing, show, accept, decline):
            action.add_argument("--rules", help="ruleset file (default: the built-in one)")
        add_server_args(action, patient_ids=False)


def _client(args: argparse.Namespace, environ: Mapping[str, str]) -> FhirClient:
    url = args.server or environ.get(SERVER_ENV)
    if not url:
        raise UserError(f"no FHIR server: pass --server or set {SERVER_ENV}")
    return client_from_args(args, environ, url)


def run_review(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run `review <action>`; returns the exit code (user errors are raised)."""
    from ips_screen.ruleset.loader import load_ruleset
    from ips_screen.writeback import followup, review

    now = datetime.now(tz=LONDON)
    with _client(args, environ) as client:
        if args.review_command == "list":
            _list(client, args, now)
        elif args.review_command == "show":
            from ips_screen.cli.review_views import history_lines, identity_lines
            from ips_screen.writeback.ips_history import read_history
            from ips_screen.writeback.patient_identity import read_identities

            ruleset = load_ruleset(args.rules)
            detail = review.review_detail(client, args.task, ruleset=ruleset)
            patient = detail.item.patient or ""
            identity = read_identities(client, [patient], now.date()).get(patient)
            history = read_history(client, patient, ruleset, now.date())
            if args.json:
                _print_json(
                    {
                        **asdict(detail),
                        "identity": asdict(identity) if identity else None,
                        "history": [asdict(e) for e in history.entries],
                    }
                )
            else:
                lines = [*identity_lines(identity), "", format_detail(detail, ruleset)]
                print("\n".join([*lines, "", *history_lines(history, ruleset)]))
        elif args.review_command == "accept":
            ruleset = load_ruleset(args.rules)
            done = review.accept(
                client,
                args.task,
                by=args.by,
                now=now,
                tool_version=__version__,
                ips_service=_ips_service(args.config),
                patient_agreed=args.patient_agreed,
                ruleset=ruleset,
            )
            print(f"{done.message} {done.provenance} records {args.by}.")
        elif args.review_command == "decline":
            ruleset = load_ruleset(args.rules)
            declined = review.decline(
                client,
                args.task,
                by=args.by,
                reason_code=args.reason,
                note=args.note,
                now=now,
                tool_version=__version__,
                ruleset=ruleset,
            )
            print(
                f"{declined.message} {declined.task} rejected, {declined.proposal} revoked; "
                f"{declined.provenance} records {args.by}."
            )
        elif args.review_command == "followup":
            weeks = args.weeks or _config_weeks(args.config)
            late = followup.unanswered_referrals(client, now=now, weeks=weeks)
            if args.json:
                _print_json([{**asdict(u), "weeks": u.weeks} for u in late])
            else:
                print(format_followup(late, weeks))
        else:
            raise AssertionError(f"unhandled review action {args.review_command}")
    return 0


def _list(client: FhirClient, args: argparse.Namespace, now: datetime) -> None:
    """`review list`: the open reviews in the worklist's order with who each patient is, the
    owner given by name (or Type/id), found by name or NHS number, and the counts."""
    from ips_screen.cli.review_views import format_worklist
    from ips_screen.ruleset.loader import load_ruleset
    from ips_screen.writeback.patient_identity import read_identities
    from ips_screen.writeback.worklist import owner_refs, review_counts, reviews_owned_by

    owners = owner_refs(client, args.owner) if args.owner else None
    if owners is not None and not owners:
        raise UserError(f"no clinician, team or practice is called {args.owner!r}")
    items = reviews_owned_by(client, owners, priority=args.priority)
    identities = read_identities(client, [i.patient for i in items], now.date())
    if args.find:
        items = [
            i
            for i in items
            if (i.patient or "") in identities and identities[i.patient or ""].matches(args.find)
        ]
    if args.json:
        _print_json(
            [
                {
                    **asdict(i),
                    "identity": asdict(identities[i.patient]) if i.patient in identities else None,
                }
                for i in items
            ]
        )
        return
    counts = review_counts(client, items, load_ruleset(args.rules), now.date(), owners=owners)
    print(format_worklist(items, identities, counts))


def _ips_service(config: str | None) -> str | None:
    """[referral] ips_service of the practice config file, None without one."""
    if config is None:
        return None
    from ips_screen.nightly.config import load_config

    referral = load_config(config).referral
    return referral.ips_service if referral else None


def _print_json(value: object) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _config_weeks(path: str | None) -> int:
    """The practice config's [followup] weeks, else the default."""
    if path is None:
        return FOLLOWUP_WEEKS
    from pathlib import Path

    from ips_screen.nightly.config import load_config

    return load_config(Path(path)).followup.weeks


def format_followup(late: list[Unanswered], weeks: int) -> str:
    """An aligned table (order, patient, proposal, accepted date, age) and a count line: ids
    only, as in the batch outputs."""
    from ips_screen.presentation.counts import plural

    if not late:
        return (
            f"No accepted referral is waiting for an answer after {weeks} "
            f"{plural(weeks, 'week')} or more."
        )
    rows = [("ORDER", "PATIENT", "PROPOSAL", "ACCEPTED", "AGE")]
    rows += [
        (u.order, u.patient or "-", u.proposal or "-", (u.accepted or "-")[:10], _age(u.days))
        for u in late
    ]
    widths = [max(len(row[n]) for row in rows) for n in range(4)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[4]])
        for row in rows
    ]
    noun = "referral" if len(late) == 1 else "referrals"
    return "\n".join(
        [
            *(line.rstrip() for line in lines),
            f"{len(late)} accepted {noun} with no answer from the service after {weeks} "
            f"{plural(weeks, 'week')} "
            "or more: check that they reached it",
        ]
    )


def _age(days: int | None) -> str:
    from ips_screen.presentation.counts import counted

    if days is None:
        return "unknown (no authoredOn)"
    weeks, rest = divmod(days, 7)
    text = counted(weeks, "week")
    return f"{text} {counted(rest, 'day')}" if rest else text


def _evidence_line(e: review.Evidence) -> str:
    if not e.found:
        return f"  - {e.ref}: not found"
    what = e.display or e.ref
    if e.value and e.value != e.display:
        what = f"{what}: {e.value}"
    facts = [e.date or "undated", *([e.status] if e.status else [])]
    return f"  - {what} ({e.ref}), {', '.join(facts)}"


def _indent(text: str) -> list[str]:
    out: list[str] = []
    for paragraph in text.strip().splitlines():
        out.extend(
            textwrap.wrap(
                paragraph, 96, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False
            )
        )
    return out or ["  (none)"]


def format_detail(detail: review.ReviewDetail, ruleset: CompiledRuleset) -> str:
    """Readable sections: Why, the addressed Conditions (the default ruleset: Chronic pain), the
    other reasons (Employment), the supporting records' timeline (Fit notes), For the patient."""
    from ips_screen.presentation.labels import review_headings

    addressed, reasons, supporting = review_headings(ruleset)
    item = detail.item
    lines = [
        f"Task/{item.task_id} ({item.status}): review of {item.proposal} ({item.proposal_status})",
        f"Patient {item.patient or '-'}; priority {item.priority or '-'}; "
        f"proposed on {long_iso(item.authored)}; owner {item.owner or '-'}",
        "",
        "Why",
        *_indent(item.reason),
        *_indent(detail.clinician_note),
        "",
        *(
            [addressed, *([_evidence_line(e) for e in detail.addressed] or ["  (none linked)"]), ""]
            if addressed
            else []
        ),
        reasons,
        *([_evidence_line(e) for e in detail.reasons] or ["  (none linked)"]),
        "",
        f"{supporting} timeline",
    ]
    for note in detail.supporting:
        if not note.found:
            lines.append(f"  - {note.ref}: not found")
        else:
            refs = ", ".join((note.ref, *note.same_as))
            lines.append(f"  - {note.words} ({refs}){f': {note.display}' if note.display else ''}")
    if not detail.supporting:
        lines.append("  (none linked)")
    if detail.not_found:
        lines += ["", "Not found on the server", *(f"  - {e.ref}" for e in detail.not_found)]
    lines += ["", "For the patient", *_indent(detail.patient_explanation)]
    return "\n".join(lines)
