"""report.html: the practice's report (`outputs.report`), from the summary, the proposed patients
and those with data-quality notes, and (nightly) the trends of earlier runs.

The page's values are gathered here (`report_page`); its HTML is made here too, or, when the run
has somewhere else to make it (`RunInfo.pages`: the nightly job's helper process), there, while
the other files finish, and written when the folder settles."""

from __future__ import annotations

from concurrent.futures import Future

from ips_screen.outputs.registry import register
from ips_screen.outputs.report import page_html, report_page
from ips_screen.outputs.writers import Finished, OutputWriter


@register
class ReportHtml(OutputWriter):
    name = "report"
    filename = "report.html"
    order = 15  # finished before the other files but decisions.ndjson: made elsewhere meanwhile

    pending: Future[str] | None = None  # the page being made elsewhere

    def finish(self, done: Finished) -> None:
        page = report_page(
            done.summary,
            [*done.proposed, *done.listed],
            self.run.ruleset,
            trends=done.trends,
            unfinished=done.unfinished,
            work=done.work,
        )
        if self.run.pages is None:
            self._write(page_html(page, self.run.cache_dir))
        else:
            self.pending = self.run.pages(page, self.run.cache_dir)

    def settle(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._write(pending.result())

    def _write(self, html: str) -> None:
        self.folder.write_bytes(self.filename, html.encode("utf-8"))
