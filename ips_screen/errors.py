"""User-facing errors.

Every error a user can cause (bad input, bad rules, an unreachable server, a conflict) is a
subclass of `UserError`. The CLI turns these, and only these, into one line on stderr and an exit
code; anything else is a bug and shows a traceback.

    UserError                 exit 2   generic / usage
    ├── InputError            exit 3   input data that cannot be read (names file and line)
    ├── RulesError            exit 4   a ruleset, codelist or config file is invalid
    ├── ServerError           exit 5   the FHIR server or network failed or refused
    │   └── ConflictError     exit 6   someone else changed a resource first (If-Match)
    │       └── AlreadyDecided  exit 6   the review was already accepted or declined (says
    │                                   who did what and when); nothing was changed
    ├── LockHeld              exit 7   another run holds the practice lock
    ├── PortInUse             exit 10  `serve`: the address and port are taken
    ├── HelperDied            exit 11  a helper process was killed (`helper_died`)
    └── DiskFull              exit 12  a write the disk refused (`disk_failed`)

Exit 9 (`COMPLETED_WITH_ERRORS`) is not an exception: the nightly run finished, with errors.
Exit 141 (`OUTPUT_CLOSED`, 128 + SIGPIPE, as a shell reports a command killed by it) is not one
either: the reader of the output went away (`review show ... | head`); the CLI ends quietly.
Exit 143 (`TERMINATED`, 128 + SIGTERM) comes from `Terminated`, a KeyboardInterrupt the CLI
raises on SIGTERM, so that the command stops as Ctrl-C stops it (exit 130).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import ValidationError


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cron or systemd timeout, `kill`), raised in the main thread as Ctrl-C's
    KeyboardInterrupt is (`cli.main`), so that the command stops the same way: its helper
    processes stopped, nothing half-written left, its locks released, the nightly run recorded
    as failed; exit 143 (128 + SIGTERM)."""


_TERMINATING = False  # a SIGTERM reached the command (`note_terminated`)


def note_terminated() -> None:
    """The command was told to stop by SIGTERM (its handler, in `cli.main`, calls this before
    raising `Terminated`): from here its process pools end their helpers at once rather than in
    good order (`sources.parallel.stop_pool`), and the command exits without waiting for the
    pools' own threads (`cli.main.entry_point`)."""
    global _TERMINATING
    _TERMINATING = True


def terminating() -> bool:
    """Whether a SIGTERM reached the command (`note_terminated`)."""
    return _TERMINATING


_OUTPUTS_WRITTEN = False  # the command's output files are in place (`note_outputs_written`)


def note_outputs_written(written: bool = True) -> None:
    """The command's output files were moved into place (`outputs.staging`), so that a Ctrl-C
    or SIGTERM after it is not said as "no output files written"; False: a new command."""
    global _OUTPUTS_WRITTEN
    _OUTPUTS_WRITTEN = written


def outputs_written() -> bool:
    """Whether the command's output files are in place (`note_outputs_written`)."""
    return _OUTPUTS_WRITTEN


class UserError(Exception):
    """An error the user can fix; shown as one line, never a traceback."""

    exit_code = 2


class InputError(UserError):
    exit_code = 3


class RulesError(UserError):
    """A ruleset, codelist or configuration error. `key`: where in a config file the problem is
    (its keys and array indexes from the top), for the loader to name the line
    (`ips_screen.toml_lines`); empty when the message names its place itself."""

    exit_code = 4

    def __init__(self, message: str, *, key: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.key = key


ConfigError = RulesError


class ServerError(UserError):
    """The FHIR server (or the network to it) failed a request. `status`: the HTTP status the
    server answered with, when it answered (`refused_as_asked`)."""

    exit_code = 5
    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def refused_as_asked(self) -> bool:
        """Whether the server answered this request and failed or refused it as it was made (a
        4xx, or a 500 or 501: asking otherwise may work), rather than not answering at all: no
        connection or a timeout, a gateway's or an overloaded server's 502, 503 or 504, too many
        requests (429) or credentials refused (401, 407), which fail whatever is asked."""
        status = self.status
        return status is not None and status not in (401, 407, 408, 429, 502, 503, 504)


class ConflictError(ServerError):
    exit_code = 6


class AlreadyDecided(ConflictError):
    """Acting on a review someone already decided: the message says who did what and when."""

    exit_code = 6


class LockHeld(UserError):
    exit_code = 7


class PortInUse(UserError):
    exit_code = 10


class HelperDied(UserError):
    """A process the command started to use another core (reading input, deciding patients,
    making proposals) ended abruptly: killed from outside, most often by the system for want of
    memory. Not a fault in the input or the tool (a worker's own errors come back as errors)."""

    exit_code = 11


HELPER_DIED = (
    "a helper process ended abruptly (killed from outside, most often by the system for want of "
    "memory) and the command stopped: its output files were not written. Run again with fewer "
    "processes (--jobs, or jobs in the nightly config) or more memory"
)


class DiskFull(UserError):
    """A write to disk refused for want of room: the disk (or the user's quota) full, a file
    size limit reached, or SQLite finding its database or disk full or failing to write it."""

    exit_code = 12


_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_FULL = 13  # SQLite's result code, with any extended code
# SQLITE_IOERR_WRITE, _FSYNC, _DIR_FSYNC, _TRUNCATE, _SHMSIZE: what SQLite says when the system
# refuses to write, sync or grow its files (past a file size limit, say); not its read errors.
_SQLITE_WRITE_ERRORS = frozenset({778, 1034, 1290, 1546, 4874})


def disk_failed(exc: BaseException) -> DiskFull | None:
    """`DiskFull` for an error of writing to a disk with no room (None for anything else):
    an OSError of ENOSPC, EDQUOT or EFBIG, or an SQLite error of a full database or disk or of
    a write, sync or truncation the system refused."""
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        reason = f"{exc.strerror or os.strerror(exc.errno)}{where}"
    else:
        code = _sqlite_code(exc)
        if code is None or not (code & 0xFF == _SQLITE_FULL or code in _SQLITE_WRITE_ERRORS):
            return None
        reason = str(exc)
    return DiskFull(
        f"could not write to the disk ({reason}): the command stopped and its output files "
        "were not written. Free some space (or raise the limit) and run again"
    )


_SQLITE_UNREADABLE = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (with any extended code)


def sqlite_unreadable(exc: BaseException) -> bool:
    """Whether an SQLite error says its file cannot be read as a database: overwritten, cut
    short, or its pages damaged (the caller names the file and what to do)."""
    code = _sqlite_code(exc)
    return code is not None and code & 0xFF in _SQLITE_UNREADABLE


def _sqlite_code(exc: BaseException) -> int | None:
    """An SQLite error's extended result code (sqlite3.Error, Python 3.11+); None for others."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code if isinstance(code, int) else None


def environment_failure(exc: BaseException) -> UserError | None:
    """The user error an exception from the machine stands for (a helper process killed, a
    disk that refused a write), None for anything else: a bug, shown with its traceback."""
    return helper_died(exc) or disk_failed(exc)


def helper_died(exc: BaseException) -> HelperDied | None:
    """`HelperDied` for a process pool broken by the death of one of its processes (None for
    anything else). The pool's module is imported only if a pool was used."""
    process = sys.modules.get("concurrent.futures.process")
    if process is None or not isinstance(exc, process.BrokenProcessPool):
        return None
    return HelperDied(HELPER_DIED)


def validation_problem(exc: ValidationError) -> str:
    """The first problem pydantic found in a configuration, as "where: what (and N more)"; a key
    the model does not have is an "unknown key". Its place: `problem_key`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}"


def tag_key(error: Mapping[str, Any]) -> str | None:
    """The key a pydantic error about a tagged union's tag is about (its discriminator: a
    criterion's "kind", an auth table's "method"); None for any other error."""
    if error["type"] not in ("union_tag_invalid", "union_tag_not_found"):
        return None
    return str((error.get("ctx") or {}).get("discriminator", "")).strip("'") or None


def problem_key(exc: ValidationError) -> tuple[str | int, ...]:
    """Where pydantic's first problem is, as the keys and array indexes of the data."""
    return tuple(exc.errors()[0]["loc"])


EXIT_CODES = {
    0: "success",
    1: "internal error (a bug: please report it with the traceback)",
    2: "usage error (bad command-line arguments)",
    3: "input data error (the message names the file and line; also a line over the size cap)",
    4: "ruleset, codelist or configuration error",
    5: "FHIR server or network error",
    6: "conflict: a resource was changed by someone else, or the review was already decided "
    "(the message says who did what and when); nothing was changed",
    7: "another run holds the lock for this practice",
    8: "rules test failed: an example patient did not get its expected outcome",
    9: "completed with errors (some proposals not written, export errors for needed data, or a "
    "damaged Bulk export: a short or truncated file or a wrong line; none of it applied and the "
    "previous _since kept, so the next run asks again)",
    10: "serve: the address and port are already in use (another server is listening there)",
    11: "a helper process was killed (most often by the system, for want of memory); no output "
    "files written: run again with fewer processes (--jobs) or more memory",
    12: "a write the disk refused (full, over quota or past a file size limit); no output files "
    "written: free some space and run again",
    141: "the output was closed before it was all written (e.g. piped to head); nothing else",
    143: "terminated (SIGTERM, e.g. a timeout): stopped cleanly, no output files written (one "
    "that came as they moved into place: all of them, and the line says so); the nightly run "
    "is recorded as failed and the next one runs as usual",
}
EXIT_CODES_HELP = "exit codes:\n" + "\n".join(  # the commands' --help epilog
    f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items()
)
COMPLETED_WITH_ERRORS = 9
OUTPUT_CLOSED = 141
TERMINATED = 143
