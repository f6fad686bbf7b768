"""decisions.ndjson: every patient's decision, one sorted-key JSON object per line, in patient
order (`Decision.to_dict()`; `Decision.from_dict` reads a line back)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ips_screen.engine.decision import Decision, Step
from ips_screen.engine.evaluate import is_constant_step
from ips_screen.outputs.background import BackgroundFile, Part
from ips_screen.outputs.registry import register
from ips_screen.outputs.staging import StagedFolder
from ips_screen.outputs.summary import SummaryKey
from ips_screen.outputs.writers import Finished, Lines, OutputWriter, PatientOutput, RunInfo
from ips_screen.presentation.trace import step_line

BUFFER = 1 << 20
WRITE_BYTES = 4 << 20  # lines gathered before they are written


_WRITTEN: dict[int, orjson.Fragment] = {}  # id of a constant step -> its JSON (both kept)


def decision_line(decision: Decision) -> bytes:
    """A decision's decisions.ndjson line, without the newline: the one format of the line for
    every engine (one machine, the nightly job, Spark)."""
    return orjson.dumps(decision.to_dict(step_line, _step_json), option=orjson.OPT_SORT_KEYS)


def _step_json(step: Step) -> object:
    """A trace step (at any depth) as the line holds it: a step the same for every patient (most
    of a trace, `engine.evaluate.is_constant_step`) is written once and its JSON reused; the same
    bytes, as JSON written with sorted keys holds an object's keys sorted at every depth."""
    if not is_constant_step(step):
        return step.to_dict(step_line, _step_json)  # its nested steps may be constant
    written = _WRITTEN.get(id(step))
    if written is None:
        text = orjson.dumps(step.to_dict(step_line, _step_json), option=orjson.OPT_SORT_KEYS)
        written = _WRITTEN.setdefault(id(step), orjson.Fragment(text))
    return written


@register
class DecisionsNdjson(OutputWriter):
    name = "decisions"
    filename = "decisions.ndjson"
    order = 10

    def begin(self, folder: StagedFolder, run: RunInfo) -> None:
        super().begin(folder, run)
        self.lines: list[bytes | bytearray | memoryview] = []  # single lines, in parts
        self.pieces: list[Part] = []  # joined lines and whole stretches, in order
        self.size = 0  # bytes gathered (about)
        self.handle = BackgroundFile(folder.open(self.filename, "wb", buffering=BUFFER))

    def add(self, patient: PatientOutput) -> None:
        lines = self.lines
        lines += (patient.head, patient.line, b"\n")
        self.size += len(patient.line)
        if self.size >= WRITE_BYTES:
            self._write()

    def add_run(self, patients: Sequence[tuple[str, SummaryKey]], lines: Lines) -> None:
        """A stretch of lines goes on as it is (megabytes, which joining would copy)."""
        self._join()
        self.pieces.append(lines)
        self.size += len(lines)
        if self.size >= WRITE_BYTES:
            self._write()

    def _join(self) -> None:
        if self.lines:
            self.pieces.append(b"".join(self.lines))
            self.lines.clear()

    def _write(self) -> None:
        """Hand what is gathered to the writing thread (in large pieces: each piece costs the
        thread a turn of the interpreter lock)."""
        self._join()
        self.handle.write(self.pieces)
        self.pieces = []
        self.size = 0

    def finish(self, done: Finished) -> None:
        self._write()
        self.handle.finish()  # flushed to disk on its thread while the other outputs finish

    def settle(self) -> None:
        self.handle.wait()

    def close(self) -> None:
        self.handle.abort()
