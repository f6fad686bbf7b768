"""The records linked as a proposal's supportingInfo (fit notes in the default ruleset) as shown
to a clinician: one entry per record as the ruleset counts them, each in plain words.

A ruleset whose `proposal.supporting_info` rule says `distinct: day-and-category` counts records
of the same category on the same day as one (default-ruleset.md, "Fit notes": a coded entry and
its document are one fit note); the engine's count and these displays share that rule
(`ips_screen.kinds.records.one_record_key`), so the review (CLI and page) and the CDS card show
such a fit note once, with every record that holds it. The words are the ruleset's
(`texts.supporting_record`, `texts.undated`, `texts.categories`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import TypeVar

from ips_screen.kinds.records import one_record_key
from ips_screen.presentation.labels import category_text
from ips_screen.ruleset.loader import CompiledRuleset

T = TypeVar("T")


def day_words(day: date) -> str:
    """A day as people write it: 3 March 2026."""
    return f"{day.day} {day:%B %Y}"


def parse_day(value: str | None) -> date | None:
    """A YYYY-MM-DD day (None when absent or unreadable)."""
    try:
        return date.fromisoformat(value or "")
    except ValueError:
        return None


def one_per_record(
    items: Iterable[T],
    ruleset: CompiledRuleset,
    *,
    day: Callable[[T], date | None],
    category: Callable[[T], str],
    ref: Callable[[T], str],
) -> list[list[T]]:
    """`items` (supporting records) grouped into the records the ruleset counts, in the order
    each group first appears: one group per item unless the supporting rule counts by
    `day-and-category`."""
    if ruleset.model.proposal.supporting_info.distinct != "day-and-category":
        return [[item] for item in items]
    groups: dict[tuple[str, ...], list[T]] = {}
    for item in items:
        groups.setdefault(one_record_key(day(item), category(item), ref(item)), []).append(item)
    return list(groups.values())


def supporting_words(day: date | None, category: str, ruleset: CompiledRuleset) -> str:
    """One supporting record in plain words, e.g. "Fit note: not fit for work, 3 March 2026"."""
    texts = ruleset.model.texts
    codelist = ruleset.model.proposal.supporting_info.codelist
    return texts.supporting_record.format(
        category=category_text(codelist, category or "unspecified", ruleset),
        date=day_words(day) if day is not None else texts.undated,
    )
