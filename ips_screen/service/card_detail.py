"""The card's detail: markdown from the clinician note (the decision trace in plain words, or a
pending proposal's stored note), the timeline of the records linked as supportingInfo (fit notes
in the default ruleset) and the ruleset's closing notes (`texts.card_notes`), with the records'
words escaped by `md_escape` (one line each: a display cannot start a heading, a list or a new
paragraph)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from ips_screen.facts.extract import CODE_FIELD, codings, record_date
from ips_screen.presentation.supporting import one_per_record, supporting_words
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.service.markdown import md_escape


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


def _supporting_lines(
    refs: Iterable[str], resources: Mapping[str, dict], ruleset: CompiledRuleset
) -> list[str]:
    """One line per supporting record as the ruleset counts them (a fit note's coded entry and
    its document: one line, `one_per_record`), oldest first, in the ruleset's words."""
    fit_list = ruleset.codelists[ruleset.model.proposal.supporting_info.codelist]
    found: list[tuple[str, date | None, str, str]] = []  # ref, day, category, display
    absent = []
    for ref in dict.fromkeys(refs):
        resource = resources.get(ref)
        if resource is None:
            absent.append(f"- {md_escape(ref)}: not in the record sent")
            continue
        rtype = resource["resourceType"]
        concept = resource.get(CODE_FIELD.get(rtype, "code")) or {}
        fitness = fit_list.first_match(codings(concept))
        if fitness is None:  # other evidence in supportingInfo (not in the codelist)
            continue
        display = next(
            (c.get("display") for c in concept.get("coding") or () if c.get("display")),
            concept.get("text") or rtype,
        )
        found.append((ref, record_date(resource, rtype), fitness or "unspecified", display))
    found.sort(key=lambda f: (f[0].startswith("DocumentReference/"), f[0]))  # coded entry first
    groups = one_per_record(
        found, ruleset, day=lambda f: f[1], category=lambda f: f[2], ref=lambda f: f[0]
    )
    rows = []
    for (_, day, category, display), *_ in groups:
        text = f"{supporting_words(day, category, ruleset)} ({display})"
        rows.append((day.isoformat() if day else "9999", f"- {md_escape(text)}"))
    return [line for _, line in sorted(rows)] + absent


def detail_markdown(
    note: str,
    supporting: Iterable[str],
    resources: Mapping[str, dict],
    ruleset: CompiledRuleset,
    *,
    pending: bool,
) -> str:
    texts = ruleset.model.texts
    months = ruleset.model.proposal.supporting_info.within_months or 12
    lines = _note_markdown(note)
    fit_lines = _supporting_lines(supporting, resources, ruleset)
    lines += ["", f"**{md_escape(texts.supporting_title)} in the last {months} months**", ""]
    lines += fit_lines or ["- none recorded"]
    for paragraph in texts.card_notes:  # the ruleset's own markdown
        lines += ["", " ".join(paragraph.split())]
    if pending:
        lines += [
            "",
            "Accepting the suggestion also completes the proposal's review in ips-screen.",
        ]
    return "\n".join(lines).strip()
