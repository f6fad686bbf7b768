"""The CDS Hooks card's one line of IPS history ("IPS history: declined 14 months ago: ...")
from the patient's prefetched ServiceRequests and Tasks, in the ruleset's words
(`texts.history`); nothing when the patient has no earlier referral, decline or deferral."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from ips_screen.presentation.history import card_line, ips_history
from ips_screen.ruleset.loader import CompiledRuleset


def history_line(
    resources: Iterable[dict], ruleset: CompiledRuleset, today: date | None
) -> str | None:
    """The same history as one plain line ("IPS history: declined 14 months ago: ..."), for
    `card_detail.detail_markdown` to escape and place after the supporting records; None
    without history or `today`."""
    if today is None:
        return None
    line = card_line(ips_history(resources, ruleset, today), ruleset, today)
    if line is None:
        return None
    return f"{ruleset.model.texts.history.heading}: {line}"
