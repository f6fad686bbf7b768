"""Proposals.json entries made on a process of their own, for the proposed patients the nightly
job decides in its own process.

Building a proposal's FHIR resources validates them with the fhir.resources models, and their
first use in a process costs about 0.15 s (pydantic builds each model's schema as it is
imported): as much as the rest of a small practice's incremental night, which decides its few
changed patients in the job's own process (nightly/deciding.py). `ProposalMaker` starts a process
when the screen begins, and that process imports the models while the job loads the night's
changes and reads the store. The job sends it each decision it proposes (`template`) and goes on;
the entries come back as a `Future`, which the proposals writer and the decision cache take when
they need the bytes (outputs/formats/proposals_json.py, nightly/screen.py). The tool's Device
entry, which begins proposals.json, is made there too (`device`).

report.html's HTML is made there as well (`page`): the report's template engine takes about 15 ms
to import, and the process imports it, and loads the compiled template, once the models are in
(`outputs.report.warm`); the job gathers the page's values as the files finish and writes the
HTML when they settle (outputs/formats/report_html.py).

What the process builds is what the job would: the same functions, with the same ruleset and
Task owner, so the outputs do not depend on where the entries were made. Worker processes
(`Deciders`) build their patients' entries themselves.
"""

from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ips_screen.engine.decision import Decision
from ips_screen.outputs.formats.proposals_json import device_bytes, proposal_template
from ips_screen.outputs.report import page_html, warm
from ips_screen.proposals.common import import_models
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.sources.parallel import fork_context, in_helper, start_guarded, stop_pool


class ProposalMaker:
    """One process that makes proposals.json entries (see the module). `close` when done."""

    def __init__(
        self, ruleset: CompiledRuleset, owner: str | None, cache_dir: Path | None = None
    ) -> None:
        """`cache_dir`: where the report's compiled template is kept (`outputs.report`)."""
        self.executor = ProcessPoolExecutor(
            1,
            mp_context=fork_context(),
            initializer=start_guarded,
            initargs=(_init, ruleset, owner),
        )
        self.device: Future[bytes] = self.executor.submit(in_helper, device_bytes)
        self.executor.submit(in_helper, warm, cache_dir)

    def page(self, page: dict[str, Any], cache_dir: Path | None) -> Future[str]:
        """report.html's HTML (`outputs.report.page_html`), made on the process."""
        return self.executor.submit(in_helper, page_html, page, cache_dir)

    def template(self, decision: Decision) -> Future[bytes]:
        """The proposed decision's entries (`proposal_template`), made on the process."""
        return self.executor.submit(in_helper, _template, decision)

    def close(self) -> None:
        """Wait for the entries asked for, and stop the process (at once after a SIGTERM:
        `stop_pool`)."""
        stop_pool(self.executor, cancel=False)


_RULESET: CompiledRuleset | None = None
_OWNER: str | None = None


def _init(ruleset: CompiledRuleset, owner: str | None) -> None:
    global _RULESET, _OWNER
    _RULESET, _OWNER = ruleset, owner
    import_models()


def _template(decision: Decision) -> bytes:  # on the process
    assert _RULESET is not None
    return proposal_template(decision, _RULESET, _OWNER)
