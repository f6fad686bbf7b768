"""The card's detail: markdown from the clinician note (the decision trace in plain words, or a
pending proposal's stored note) and the fit-note timeline, with the records' words escaped by
`md_escape` (one line each: a display cannot start a heading, a list or a new paragraph)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ips_screen.facts.extract import CODE_FIELD, codings, record_date
from ips_screen.ruleset.loader import CompiledRuleset

FITNESS_WORDS = {
    "not-fit": "not fit for work",
    "may-be-fit": "may be fit for work",
    "back-to-work": "back to work",
    "unspecified": "fitness not stated",
}
_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|#~&!"})
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f]+")  # newlines, tabs, Unicode line separators, controls
_BLOCK_START = re.compile(r"^(?:(\d{1,9})([.)])|([-+=]))")


def md_escape(text: str) -> str:
    """Record text as inline markdown that stays where it is put (in a list item, in bold).

    Every run of whitespace or control characters (newlines included) becomes one space, the
    characters markdown gives meaning to are backslash-escaped, and so is a list, heading
    underline or ordered-list marker at the start. Used for every string in the card's detail
    that comes from a record (displays, references, a stored proposal's note)."""
    flat = _BREAKS.sub(" ", text).strip().translate(_MD_SPECIAL)
    return _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", flat, count=1)


def _note_markdown(note: str) -> list[str]:
    """The clinician note as markdown: first line bold, "- " lines as bullets. Lines are split
    at newlines only (as markdown splits them); `md_escape` flattens any other separator."""
    out: list[str] = []
    for n, line in enumerate(note.strip().split("\n")):
        line = line.strip()
        if not line:
            out.append("")
        elif n == 0:
            out.append(f"**{md_escape(line.rstrip(':'))}**")
            out.append("")
        elif line.startswith("- "):
            out.append(f"- {md_escape(line[2:])}")
        else:
            out.append(md_escape(line))
    return out


def _fit_note_lines(
    refs: Iterable[str], resources: Mapping[str, dict], ruleset: CompiledRuleset
) -> list[str]:
    fit_list = ruleset.codelists[ruleset.model.proposal.supporting_info.codelist]
    rows = []
    for ref in dict.fromkeys(refs):
        resource = resources.get(ref)
        if resource is None:
            rows.append(("9999", f"- {md_escape(ref)}: not in the record sent"))
            continue
        rtype = resource["resourceType"]
        concept = resource.get(CODE_FIELD.get(rtype, "code")) or {}
        when = record_date(resource, rtype)
        fitness = fit_list.first_match(codings(concept))
        if fitness is None:  # other evidence in supportingInfo, e.g. a pain review (Procedure)
            continue
        fitness = fitness or "unspecified"
        display = next(
            (c.get("display") for c in concept.get("coding") or () if c.get("display")),
            concept.get("text") or "fit note",
        )
        day = when.isoformat() if when else "undated"
        text = f"{day}: {FITNESS_WORDS.get(fitness, fitness)} ({display})"
        rows.append((day, f"- {md_escape(text)}"))
    return [line for _, line in sorted(rows)]


def detail_markdown(
    note: str,
    fit_notes: Iterable[str],
    resources: Mapping[str, dict],
    ruleset: CompiledRuleset,
    *,
    pending: bool,
) -> str:
    months = ruleset.model.proposal.supporting_info.within_months or 12
    lines = _note_markdown(note)
    fit_lines = _fit_note_lines(fit_notes, resources, ruleset)
    lines += ["", f"**Fit notes in the last {months} months**", ""]
    lines += fit_lines or ["- none recorded"]
    done = " It also completes the proposal's review in ips-screen." if pending else ""
    lines += [
        "",
        "**IPS is voluntary.** An employment specialist helps the person find and keep paid work, "
        "alongside their health care. Offer it; refer only if they want to work and agree.",
        "",
        "**What happens next:** *Refer to IPS* creates a draft IPS referral for you to review "
        f"and sign.{done} If the patient says no, dismiss this card with a reason: IPS will not "
        "be suggested again for 12 months.",
    ]
    return "\n".join(lines).strip()
