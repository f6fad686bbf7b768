"""decisions.ndjson: every patient's decision, one sorted-key JSON object per line, in patient
order (`Decision.to_dict()`; `Decision.from_dict` reads a line back)."""

from __future__ import annotations

from typing import BinaryIO

import orjson

from ips_screen.engine.decision import Decision
from ips_screen.outputs.registry import register
from ips_screen.outputs.staging import StagedFolder
from ips_screen.outputs.writers import Finished, OutputWriter, PatientOutput, RunInfo
from ips_screen.presentation.trace import step_line

BUFFER = 1 << 20
LINES_BUFFERED = 3_000  # pieces of lines joined into one write


def decision_line(decision: Decision) -> bytes:
    """A decision's decisions.ndjson line, without the newline: the one format of the line for
    every engine (one machine, the nightly job, Spark)."""
    return orjson.dumps(decision.to_dict(step_line), option=orjson.OPT_SORT_KEYS)


@register
class DecisionsNdjson(OutputWriter):
    name = "decisions"
    filename = "decisions.ndjson"
    order = 10

    def begin(self, folder: StagedFolder, run: RunInfo) -> None:
        super().begin(folder, run)
        self.lines: list[bytes | memoryview] = []
        self.handle: BinaryIO = folder.open(self.filename, "wb", buffering=BUFFER)

    def add(self, patient: PatientOutput) -> None:
        lines = self.lines
        lines += (patient.head, patient.line, b"\n")
        if len(lines) >= LINES_BUFFERED:
            self.handle.write(b"".join(lines))
            lines.clear()

    def finish(self, done: Finished) -> None:
        self.handle.write(b"".join(self.lines))
        self.lines.clear()
        self.handle.close()

    def close(self) -> None:
        self.handle.close()
