"""The card's detail: at most about 60 words, most important first (issue 8).

1. the brief: one line per reason criterion (`presentation.brief`; for a pending proposal, the
   first block of its stored note, so the card says what the reviewer will see);
2. the supporting records linked as supportingInfo as a count and the latest date (fit notes in
   the last 12 months, in the default ruleset), left out when there are none;
3. one line of history when there is any (`history`: given by the caller, None for none);
4. the ruleset's closing notes (`texts.card_notes`: IPS is voluntary) and its one action
   (`texts.card_action`), then `texts.card_pending` for a proposal awaiting review.

No reason code, flag name or codelist display is shown; the records' words are escaped by
`md_escape` (one line each: a display cannot start a heading, a list or a new paragraph).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from ips_screen.facts.extract import CODE_FIELD, codings, record_date
from ips_screen.presentation.brief import supporting_line
from ips_screen.presentation.supporting import one_per_record
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.service.markdown import md_escape


def note_brief(note: str) -> list[str]:
    """The brief lines of a stored clinician note: its first block (up to the first blank line),
    without bullet marks or a heading line ending in ':' (notes written by older versions)."""
    block = note.strip().split("\n\n", 1)[0]
    lines = [line.strip() for line in block.split("\n")]
    return [
        line.removeprefix("- ").strip()
        for line in lines
        if line and not (line.endswith(":") and not line.startswith("- "))
    ]


def _supporting(
    refs: Iterable[str], resources: Mapping[str, dict], ruleset: CompiledRuleset
) -> str | None:
    """The supporting records in the codelist as one line, counted as the ruleset counts them (a
    fit note's coded entry and its document are one, `one_per_record`); records not sent are
    left out."""
    fit_list = ruleset.codelists[ruleset.model.proposal.supporting_info.codelist]
    found: list[tuple[str, date | None, str]] = []  # ref, day, category
    for ref in dict.fromkeys(refs):
        resource = resources.get(ref)
        if resource is None:
            continue
        rtype = resource["resourceType"]
        category = fit_list.first_match(codings(resource.get(CODE_FIELD.get(rtype, "code")) or {}))
        if category is None:  # other evidence in supportingInfo (not in the codelist)
            continue
        found.append((ref, record_date(resource, rtype), category or "unspecified"))
    found.sort(key=lambda f: (f[0].startswith("DocumentReference/"), f[0]))  # coded entry first
    groups = one_per_record(
        found, ruleset, day=lambda f: f[1], category=lambda f: f[2], ref=lambda f: f[0]
    )
    return supporting_line([group[0][1] for group in groups], ruleset)


def detail_markdown(
    brief: list[str],
    supporting: Iterable[str],
    resources: Mapping[str, dict],
    ruleset: CompiledRuleset,
    *,
    pending: bool,
    history: str | None = None,
) -> str:
    """The card's detail as markdown (see the module's docstring for its order)."""
    texts = ruleset.model.texts
    facts = [*brief, _supporting(supporting, resources, ruleset), history]
    lines = [f"- {md_escape(line)}" for line in facts if line]
    closing = [*texts.card_notes, texts.card_action, texts.card_pending if pending else ""]
    for paragraph in closing:  # the ruleset's own markdown
        if paragraph.strip():
            lines += ["", " ".join(paragraph.split())]
    return "\n".join(lines).strip()
