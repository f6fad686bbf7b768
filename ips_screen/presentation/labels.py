"""Plain words for names, from the ruleset's `texts:` (the name itself when it gives none)."""

from __future__ import annotations

from ips_screen.ruleset.loader import CompiledRuleset


def one_line(text: str) -> str:
    """A record's words on one line: every run of whitespace (newlines included) one space, so
    a display can never split a note or a trace line in two."""
    return " ".join(text.split())


def reason_text(reason: str, ruleset: CompiledRuleset) -> str:
    """One line of plain words for a reason name (the name itself when unknown)."""
    return ruleset.model.texts.reasons.get(reason, reason)


def flag_text(flag: str, ruleset: CompiledRuleset) -> str:
    """One line of plain words for a flag name (the name itself when unknown)."""
    return ruleset.model.texts.flags.get(flag, flag)


def report_text(name: str, ruleset: CompiledRuleset) -> str:
    """The practice report's words for a reason or flag name ("" when the ruleset has none)."""
    texts = ruleset.model.texts
    return texts.report.get(name) or texts.reasons.get(name) or texts.flags.get(name) or ""


def step_name(step_id: str, ruleset: CompiledRuleset) -> str:
    """A top-level step's name in the report's funnel ("the age check"): `texts.step_names`,
    else "the <criterion label, lower case> check"."""
    texts = ruleset.model.texts
    named = texts.step_names.get(step_id)
    if named:
        return named
    return f"the {criterion_label(step_id, ruleset).replace('-', ' ').lower()} check"


def deferring_reasons(ruleset: CompiledRuleset) -> frozenset[str]:
    """The decline reason codes the ruleset's `referral-declined` rule gives their own (shorter)
    window: a decline with one of them is a deferral ("not now")."""
    from ips_screen.codes import DECLINE_REASON_SYSTEM
    from ips_screen.kinds.referral_declined import ReferralDeclined
    from ips_screen.kinds.registry import walk_criteria

    return frozenset(
        d.code
        for exclusion in ruleset.model.exclusions
        for rule in walk_criteria(exclusion.rule)
        if isinstance(rule, ReferralDeclined)
        for d in rule.deferrals
        if d.system == DECLINE_REASON_SYSTEM
    )


def category_text(codelist: str, category: str, ruleset: CompiledRuleset) -> str:
    """Plain words for a category of a codelist (else the category with hyphens as spaces)."""
    words = ruleset.model.texts.categories.get(codelist, {})
    return words.get(category) or category.replace("-", " ")


def criterion_label(criterion_id: str, ruleset: CompiledRuleset) -> str:
    """A criterion's label in the clinician note (else its id)."""
    return ruleset.model.texts.criteria.get(criterion_id, criterion_id)


def proposal_title(ruleset: CompiledRuleset) -> str:
    return ruleset.model.texts.proposal_title or ruleset.model.title


def short_name(ruleset: CompiledRuleset) -> str:
    """What is offered, in short (e.g. "IPS")."""
    return ruleset.model.texts.short_name or proposal_title(ruleset)


def care_plan_words(ruleset: CompiledRuleset) -> tuple[str, str]:
    """(title, description) of the CarePlan an accepted proposal creates ("" for none)."""
    texts = ruleset.model.texts
    return texts.care_plan_title or proposal_title(ruleset), texts.care_plan_description


def card_words(ruleset: CompiledRuleset) -> dict[str, str]:
    """The CDS Hooks card's summaries and suggestion, from `texts:` or generic defaults."""
    texts, short = ruleset.model.texts, short_name(ruleset)
    return {
        "summary": texts.card_summary or f"Consider {short}",
        "pending": texts.pending_summary or f"{short} proposal awaiting review",
        "label": texts.suggestion_label or f"Refer for {short}",
        "description": texts.suggestion_description
        or f"Create a draft referral for {proposal_title(ruleset)} for you to review and sign",
    }


def service_title(ruleset: CompiledRuleset) -> str:
    return ruleset.model.texts.service_title or ruleset.model.title


def service_description(ruleset: CompiledRuleset) -> str:
    texts = ruleset.model.texts
    return texts.service_description or ruleset.model.description.strip()


def review_headings(ruleset: CompiledRuleset) -> tuple[str | None, str, str]:
    """Headings of a review's three lists: the Conditions of `proposal.addresses` (None without
    one), the other reason criteria's records, and the supporting records."""
    proposal = ruleset.model.proposal
    addressed = criterion_label(proposal.addresses, ruleset) if proposal.addresses else None
    others = [c for c in proposal.reason_criteria if c != proposal.addresses]
    reasons = ", ".join(criterion_label(c, ruleset) for c in others) or "Reasons"
    return addressed, reasons, ruleset.model.texts.supporting_title


def decline_window(ruleset: CompiledRuleset, reason_code: str) -> tuple[int, bool] | None:
    """(months a decline with `reason_code` suppresses new proposals, True when the reason is
    one of the rule's deferrals) by the ruleset's own `referral-declined` rule; None without."""
    from ips_screen.codes import DECLINE_REASON_SYSTEM
    from ips_screen.kinds.referral_declined import ReferralDeclined
    from ips_screen.kinds.registry import walk_criteria

    for exclusion in ruleset.model.exclusions:
        for rule in walk_criteria(exclusion.rule):
            if isinstance(rule, ReferralDeclined):
                for deferral in rule.deferrals:
                    if (deferral.system, deferral.code) == (DECLINE_REASON_SYSTEM, reason_code):
                        return deferral.within_months, True
                return rule.within_months, False
    return None


def decline_months(ruleset: CompiledRuleset, reason_code: str) -> int | None:
    """How many months a decline with `reason_code` suppresses new proposals, by the ruleset's own
    `referral-declined` rule (its deferral for the code, else its window); None without one."""
    window = decline_window(ruleset, reason_code)
    return None if window is None else window[0]
