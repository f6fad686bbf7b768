"""Argument parsing and the one place where user errors become a message and an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress

from ips_screen import __version__
from ips_screen.cli.arg_types import as_of_arg
from ips_screen.cli.nightly_cmd import add_nightly_parser
from ips_screen.cli.review_cmd import add_review_parser
from ips_screen.cli.serve_cmd import add_serve_parser
from ips_screen.cli.server_args import add_server_args
from ips_screen.cli.spark_cmd import add_spark_args
from ips_screen.cli.terminal import safe_terminal
from ips_screen.errors import (
    EXIT_CODES_HELP,
    OUTPUT_CLOSED,
    TERMINATED,
    Terminated,
    UserError,
    environment_failure,
    note_outputs_written,
    note_terminated,
    outputs_written,
    terminating,
)
from ips_screen.log_setup import configure_logging
from ips_screen.presentation.plain_text import one_line
from ips_screen.secret_values import redact


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ips-screen",
        description="Find people with chronic pain who are out of work and may want IPS.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ips-screen {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    screen = sub.add_parser(
        "screen",
        help="screen FHIR data and write decisions, summary, report and proposals",
        description="Screen FHIR data (files, folders, or a FHIR server base URL). Without "
        "--write nothing is written anywhere but --out.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    screen.add_argument("sources", nargs="+", metavar="SOURCE", help="file, folder or FHIR URL")
    _common_screen_args(screen)
    screen.add_argument("--out", required=True, help="output folder")
    screen.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip unreadable records (counted and listed in summary.json) instead of stopping",
    )
    screen.add_argument(
        "--jobs",
        type=_jobs,
        metavar="N",
        help="processes that read input files (default: all cores); the outputs are the same "
        "for any N",
    )
    screen.add_argument(
        "--owner",
        metavar="REF",
        help="Task owner for proposals: Organization/<id>, PractitionerRole/<id> or "
        "Practitioner/<id> (default: the patient's general practitioner)",
    )
    screen.add_argument(
        "--write",
        action="store_true",
        help="write the proposals (ServiceRequest, review Task, Provenance) back to the FHIR "
        "server SOURCE; one run at a time per server (exit 7 if another holds the lock)",
    )
    add_spark_args(screen)

    explain = sub.add_parser("explain", help="print one patient's decision and trace")
    explain.add_argument("sources", nargs="+", metavar="SOURCE", help="file, folder or FHIR URL")
    explain.add_argument("--patient", required=True, help="patient id (or Patient/<id>)")
    _common_screen_args(explain, patient_ids=False)
    explain.add_argument("--json", action="store_true", help="print the decision as JSON")

    rules = sub.add_parser("rules", help="check, test and pin rulesets")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    validate = rules_sub.add_parser("validate", help="check a ruleset and its codelists")
    validate.add_argument("path", nargs="?", help="ruleset file (default: the built-in one)")
    test = rules_sub.add_parser("test", help="run the example patients kept in the ruleset")
    test.add_argument("path", nargs="?", help="ruleset file (default: the built-in one)")
    pin = rules_sub.add_parser("pin", help="record the sha256 of every codelist in a folder")
    pin.add_argument("path", nargs="?", help="codelists folder (default: rules/codelists)")
    add_review_parser(sub)
    add_serve_parser(sub)
    add_nightly_parser(sub)

    load = sub.add_parser(
        "load",
        help="PUT FHIR files into a server (for test servers and demos, not a practice's system)",
    )
    load.add_argument("server", metavar="URL", help="FHIR base URL")
    load.add_argument("sources", nargs="+", metavar="SOURCE", help="files or folders to load")
    add_server_args(load, patient_ids=False)

    synth = sub.add_parser(
        "synth", help="write a synthetic UK practice population as Bulk Data NDJSON"
    )
    synth.add_argument("--patients", type=int, required=True, help="number of patients")
    synth.add_argument("--seed", type=int, default=1, help="random seed (same seed, same files)")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--as-of", type=as_of_arg, help="reference date (default: today, London)")
    _everywhere(parser)
    return parser


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v, -q and --log-format: on the top-level parser with their defaults, and again on every
    command (with no default, so a value given before the command is kept) so that they work
    after the command too: `ips-screen review list -q`."""
    kept = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail", **kept)
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="log warnings and errors only", **kept
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines on stderr",
        **(kept or {"default": "text"}),
    )


def _everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every command and action under `parser` the global options."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # aliases: once
                _global_options(command, top=False)
                _everywhere(command)


def _common_screen_args(parser: argparse.ArgumentParser, *, patient_ids: bool = True) -> None:
    parser.add_argument(
        "--as-of",
        type=as_of_arg,
        help="screen as of this date (YYYY-MM-DD; default: today in Europe/London)",
    )
    parser.add_argument("--rules", help="ruleset file (default: the built-in one)")
    add_server_args(parser, patient_ids=patient_ids)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run a command; returns the exit code. Tests call this directly."""
    environ = os.environ if environ is None else environ
    note_outputs_written(False)  # none yet, by this command
    parser = build_parser()
    args = parser.parse_args(argv)
    with safe_terminal(), _terminate_as_interrupt():
        configure_logging(args)
        return _run(args, environ)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread while the command runs (by default it
    would end the process at once: no clean-up, and helper processes left holding its locks).
    Helper processes forked meanwhile are set apart from it (`_helper_sigterm`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        note_terminated()
        raise Terminated

    global _HANDLING
    previous = signal.signal(signal.SIGTERM, terminated)
    _HANDLING = True
    try:
        yield
    finally:
        _HANDLING = False
        signal.signal(signal.SIGTERM, previous)


_HANDLING = False  # the command's SIGTERM handler is in place (`_helper_sigterm` acts only then)


def _helper_sigterm() -> None:
    """In a process forked from the command (its helpers: multiprocessing's fork), before any
    of its Python code runs: a process group of its own, so that the signals a terminal, a
    `timeout` or `kill -TERM -<group>` send to the command's group reach the command alone,
    which then stops its helpers (`sources.parallel.stop_pool`); and SIGTERM, which a process
    pool sends its helpers when one of them died, ends it, rather than raising the command's
    `Terminated` in it. Before, a helper signalled with the command printed a traceback, and
    one blocked writing results the command had stopped reading did not end, so the command
    waited for it for good. (A helper the system ends outright still has it end with the command:
    `sources.parallel.start_guarded`.) Nothing outside the command."""
    global _HANDLING
    if _HANDLING:
        _HANDLING = False  # in the helper: not the command
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setpgid(0, 0)


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_helper_sigterm)


def _run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        from ips_screen.cli import commands  # here: a SIGTERM while importing is said in one line

        code = commands.dispatch(args, environ)
        sys.stdout.flush()  # here, so a closed pipe is met inside this try
        return code
    except UserError as exc:  # a secret that slipped into a message is not printed
        print(f"ips-screen: error: {one_line(redact(str(exc)))}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        if outputs_written():  # the signal came as they moved into place: they all did
            line = "ips-screen: terminated (SIGTERM): stopped after its output files were written"
        else:
            line = "ips-screen: terminated (SIGTERM): stopped, no output files written"
        print(line, file=sys.stderr)
        return TERMINATED
    except KeyboardInterrupt:
        after = " after its output files were written" if outputs_written() else ""
        print(f"ips-screen: interrupted{after}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `review show ... | head`: the reader has all it wanted
        _stdout_to_devnull()
        return OUTPUT_CLOSED
    except Exception as exc:  # what the machine refused (not a bug) is said in one line too
        refused = environment_failure(exc)
        if refused is None:
            raise
        print(f"ips-screen: error: {one_line(redact(str(refused)))}", file=sys.stderr)
        return refused.exit_code


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit finds no closed pipe
    (it would print "Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (tests capture stdout)
        pass


def entry_point() -> None:
    code = main()
    if terminating():  # stopped by SIGTERM: its process pools may hold threads that never end
        _exit_now(code)
    # Done: a Ctrl-C while the interpreter shuts down is ignored, so that the command ends with
    # its own exit code. (The interpreter puts SIGINT's default action back as it finalizes, and
    # a Ctrl-C then killed the process with no message, its outputs all written; an ignored
    # signal it leaves as it is. SIGTERM still ends a shutdown that does not.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's clean-up, which would join every process pool's thread,
    one perhaps waiting for good for the rest of a result its helper, killed, never wrote
    (`sources.parallel.stop_pool`): what the command wrote is flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _jobs(value: str) -> int:
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of processes >= 1, got {value!r}"
        )
    return jobs
