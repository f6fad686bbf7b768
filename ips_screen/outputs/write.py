"""Write a screen's outputs to a folder, atomically and byte-reproducibly.

Every file is first written in full into a temporary sibling folder, flushed to disk, and only
then moved into place with `os.replace` (atomic on one file system), so a crash never leaves a
half-written file in the output folder. Every file is made 0600 (it holds patient data); the
folder's own mode is left as the user made it. The same input always gives byte-identical files:
JSON keys are sorted, decisions are sorted by patient, and nothing records the time of the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from ips_screen.engine.decision import Decision
from ips_screen.outputs.summary import write_worklist_csv
from ips_screen.presentation.trace import step_line
from ips_screen.private_dir import FILE_MODE
from ips_screen.ruleset.loader import CompiledRuleset

DECISIONS = "decisions.ndjson"
SUMMARY = "summary.json"
PROPOSALS = "proposals.json"
REPORT = "report.html"
WORKLIST = "worklist.csv"
_JSON = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
JSON_OPTIONS = _JSON  # summary.json and proposals.json


def decisions_ndjson(decisions: list[Decision]) -> bytes:
    """One sorted-key JSON object per line, decisions sorted by patient."""
    ordered = sorted(decisions, key=lambda d: d.patient)
    return b"".join(
        orjson.dumps(d.to_dict(step_line), option=orjson.OPT_SORT_KEYS) + b"\n" for d in ordered
    )


def _write_synced(path: Path, produce: Callable[[Path], None]) -> None:
    """Produce the file, make it readable by its owner only (it holds patient data, and the
    folder is the user's choice), flush it to disk."""
    produce(path)
    path.chmod(FILE_MODE)
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def _sync_dir(path: Path) -> None:
    """Make the renames durable (POSIX; elsewhere a no-op)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _bytes_writer(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


class StagedFolder:
    """An output folder written in a temporary sibling folder first: files are written (or
    streamed, then `synced`) there, and `commit` moves them into place, each with `os.replace`.
    `discard` removes the temporary folder (a no-op after `commit`)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        parent = self.out_dir.parent
        self.staging = Path(
            tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".tmp", dir=parent)
        )

    def path(self, name: str) -> Path:
        return self.staging / name

    def write(self, name: str, produce: Callable[[Path], None]) -> None:
        _write_synced(self.path(name), produce)

    def synced(self, name: str) -> None:
        """Flush a file written in the staging folder by other means to disk."""
        _write_synced(self.path(name), lambda path: None)

    def commit(self, names: Iterable[str], remove: Iterable[str] = ()) -> None:
        """Move `names` into the output folder, remove `remove` from it, make it durable."""
        try:
            for name in names:
                os.replace(self.path(name), self.out_dir / name)
            for name in remove:
                (self.out_dir / name).unlink(missing_ok=True)
            _sync_dir(self.out_dir)
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def write_outputs(
    out_dir: Path,
    decisions: list[Decision],
    summary: dict,
    proposals_bundle: dict | None,
    html: str,
    ruleset: CompiledRuleset | None = None,
) -> None:
    """Write decisions.ndjson, summary.json, proposals.json (when given), report.html and
    worklist.csv into `out_dir` (created if missing).

    Without a proposals bundle, a proposals.json left by an earlier run is removed, so the folder
    never pairs this run's summary with another run's proposals.
    """
    files: list[tuple[str, Callable[[Path], None]]] = [
        (DECISIONS, _bytes_writer(decisions_ndjson(decisions))),
        (WORKLIST, lambda path: write_worklist_csv(decisions, path, ruleset=ruleset)),
    ]
    if proposals_bundle is not None:
        files.append((PROPOSALS, _bytes_writer(orjson.dumps(proposals_bundle, option=_JSON))))
    files += [
        (REPORT, _bytes_writer(html.encode("utf-8"))),
        (SUMMARY, _bytes_writer(orjson.dumps(summary, option=_JSON))),
    ]
    folder = StagedFolder(out_dir)
    try:
        for name, produce in files:
            folder.write(name, produce)
    except BaseException:
        folder.discard()
        raise
    stale = (PROPOSALS,) if proposals_bundle is None else ()
    folder.commit([name for name, _ in files], remove=stale)
