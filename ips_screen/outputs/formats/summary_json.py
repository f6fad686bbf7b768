"""summary.json: the counts of the screen (`outputs.summary`), indented, keys sorted. Moved into
place last, so a folder with a summary.json has the rest of the run's files."""

from __future__ import annotations

import orjson

from ips_screen.outputs.registry import register
from ips_screen.outputs.writers import Finished, OutputWriter

JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


@register
class SummaryJson(OutputWriter):
    name = "summary"
    filename = "summary.json"
    order = 90

    def finish(self, done: Finished) -> None:
        self.folder.write_bytes(self.filename, orjson.dumps(done.summary, option=JSON_OPTIONS))
