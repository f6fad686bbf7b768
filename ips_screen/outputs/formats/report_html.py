"""report.html: the practice's report (`outputs.report.render_report`), from the summary, the
proposed patients and those with data-quality notes, and (nightly) the trends of earlier runs."""

from __future__ import annotations

from ips_screen.outputs.registry import register
from ips_screen.outputs.report import render_report
from ips_screen.outputs.writers import Finished, OutputWriter


@register
class ReportHtml(OutputWriter):
    name = "report"
    filename = "report.html"
    order = 40

    def finish(self, done: Finished) -> None:
        html = render_report(
            done.summary,
            [*done.proposed, *done.listed],
            self.run.ruleset,
            trends=done.trends,
            unfinished=done.unfinished,
            work=done.work,
            cache_dir=self.run.cache_dir,
        )
        self.folder.write_bytes(self.filename, html.encode("utf-8"))
