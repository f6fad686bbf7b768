"""The CDS Hooks card's one line of IPS history ("**IPS history:** declined 14 months ago: ...")
from the patient's prefetched ServiceRequests and Tasks, in the ruleset's words
(`texts.history`); nothing when the patient has no earlier referral, decline or deferral."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from ips_screen.presentation.history import card_line, ips_history
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.service.markdown import md_escape


def history_markdown(
    resources: Iterable[dict], ruleset: CompiledRuleset, today: date | None
) -> str:
    """The line and a blank line, to open the card's detail; "" without history or `today`."""
    if today is None:
        return ""
    line = card_line(ips_history(resources, ruleset, today), ruleset, today)
    if line is None:
        return ""
    heading = ruleset.model.texts.history.heading
    return f"**{md_escape(heading)}:** {md_escape(line)}\n\n"
