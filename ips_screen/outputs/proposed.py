"""A proposed patient as the outputs keep them until a screen finishes: what the worklist and the
report show of them, and their decision, for the outputs that need it whole (the FHIR writer).

What the two files show in words (`texts`) depends only on the decision and the ruleset, not on
the date it was made for, so the nightly job caches it beside the decision
(store/decision_cache.py). A reused proposed patient then needs neither their decision read back
from its line nor their words made again: the decision is read from the line only if asked for.
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from ips_screen.engine.decision import Decision
from ips_screen.outputs.summary import SummaryKey
from ips_screen.presentation.brief import brief_lines
from ips_screen.presentation.notes import reasons_in_brief
from ips_screen.ruleset.loader import CompiledRuleset


def proposed_texts(decision: Decision, ruleset: CompiledRuleset) -> bytes:
    """A proposed decision's words, as cached: the worklist's reason, then the report's lines."""
    why = " ".join(brief_lines(decision, ruleset))  # the card's plain lines
    return orjson.dumps([reasons_in_brief(decision, ruleset), why])


class Proposed:
    """One proposed patient: reference, priority, flags and data-quality notes (as the summary
    key has them), the worklist's `reason` and the report's `why`, and `decision`."""

    __slots__ = (
        "_decision",
        "_line",
        "as_of",
        "flags",
        "patient",
        "priority",
        "quality",
        "reason",
        "why",
    )
    outcome = "propose"

    def __init__(
        self,
        patient: str,
        key: SummaryKey,
        texts: bytes,
        *,
        decision: Decision | None = None,
        line: bytes = b"",
        as_of: str = "",
    ) -> None:
        """`decision`, or else the `line` it is read from when asked for, as of `as_of`."""
        self.patient, self.priority = patient, key.priority
        self.flags, self.quality = tuple(key.flags), tuple(key.quality)
        self.reason, self.why = orjson.loads(texts)
        self._decision, self._line, self.as_of = decision, line, as_of

    @classmethod
    def of(cls, decision: Decision, key: SummaryKey, ruleset: CompiledRuleset) -> Proposed:
        """A proposed decision in hand, its words made here."""
        return cls(decision.patient, key, proposed_texts(decision, ruleset), decision=decision)

    @property
    def decision(self) -> Decision:
        if self._decision is None:
            read = Decision.from_dict(orjson.loads(self._line))
            self._decision = replace(read, as_of=self.as_of)
            self._line = b""
        return self._decision
