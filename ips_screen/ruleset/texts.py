"""The words a ruleset gives its outputs (`texts:` in the ruleset file), as a strict model.

Every field is optional: a name with no words is shown as the name itself (hyphens as spaces for
a category), and the titles fall back to the ruleset's `title`. `ips_screen.presentation` reads
these; nothing else words a reason, flag, category or title.
"""

from __future__ import annotations

from string import Formatter

from pydantic import Field, field_validator

from ips_screen.kinds.base import Id, Strict

# The brief's templates and the names each may use (anything else is a ruleset error).
TEMPLATE_NAMES = {
    "brief_records": ("label", "term", "date"),
    "brief_spell": ("label", "category", "date"),
    "brief_status": ("label", "category", "date"),
    "brief_status_missing": ("status",),
    "brief_status_old": ("status", "category", "date"),
    "brief_status_conflict": ("status", "date"),
    "brief_supporting": ("title", "months", "count", "date"),
}

_RECORD_FIELDS = frozenset({"category", "date"})

# The placeholders each `decisions` template may use (any other is an error naming it).
DECISION_FIELDS: dict[str, frozenset[str]] = {
    "agreement_check": frozenset({"short"}),
    "agreement_record": frozenset({"title"}),
    "agreement_missing": frozenset({"short"}),
    "reason_missing": frozenset(),
    "note_missing": frozenset(),
    "accepted": frozenset({"task", "order", "careplan", "service", "agreement", "priority"}),
    "declined": frozenset({"task", "reason", "months", "until", "short"}),
    "deferred": frozenset({"task", "reason", "months", "until", "short"}),
    "declined_no_window": frozenset({"task", "reason", "short"}),
    "already_accepted": frozenset({"who", "date", "time"}),
    "already_declined": frozenset({"who", "date", "time", "reason"}),
    "already_other": frozenset({"who", "date", "time", "status"}),
    "before_deciding": frozenset({"short"}),
    "decline_windows": frozenset({"short", "months"}),
    "deferral_window": frozenset({"months", "reason"}),
}


class DecisionTexts(Strict):
    """What the review (CLI, page, CDS Hooks feedback) says about a clinician's decision.

    Templates with {placeholders}: dates read "2 December 2026", times "11:02" (UK time)."""

    agreement_check: str = Field(
        "The patient agrees to be referred to {short}",
        description="the review page's checkbox confirming the patient's agreement",
    )
    agreement_record: str = Field(
        "Patient agreed to be referred to {title}",
        description="the text of the Observation recording the patient's agreement",
    )
    agreement_missing: str = Field(
        "Confirm that the patient agrees to be referred to {short}",
        description="the error when accepting without the agreement confirmed",
    )
    reason_missing: str = Field(
        "Choose a reason for declining", description="the error when declining with no reason"
    )
    note_missing: str = Field(
        "Add a note when the reason is Other",
        description="the error when declining as 'other' with no note",
    )
    accepted: str = Field(
        "Accepted {task}: referral {order} ({priority}) to {service} and care plan {careplan}; "
        "the patient's agreement is recorded in {agreement}.",
        description="the confirmation of an accepted proposal",
    )
    declined: str = Field(
        "Declined {task} ({reason}): not suggested again for {months} months, until {until}.",
        description="the confirmation of a decline with the rule's usual window",
    )
    deferred: str = Field(
        "Deferred {task} ({reason}): deferred until {until}, then suggested again if still "
        "eligible.",
        description="the confirmation of a decline whose reason is a deferral (e.g. not now)",
    )
    declined_no_window: str = Field(
        "Declined {task} ({reason}).",
        description="the confirmation of a decline when the ruleset has no referral-declined rule",
    )
    already_accepted: str = Field(
        "{who} accepted this on {date} at {time}.",
        description="acting on a proposal someone already accepted",
    )
    already_declined: str = Field(
        "{who} declined this on {date} at {time}: {reason}.",
        description="acting on a proposal someone already declined or deferred",
    )
    already_other: str = Field(
        "{who} changed this on {date} at {time} (now {status}).",
        description="acting on a proposal changed in another way",
    )
    before_deciding: str = Field(
        "Offer {short} to the patient first. Accept when they want to be referred; decline when "
        "they do not.",
        description="the review page's line above the decision forms",
    )
    decline_windows: str = Field(
        "After a decline, {short} is not suggested again for {months} months",
        description="the review page's hint on what a decline does (the rule's usual window)",
    )
    deferral_window: str = Field(
        ', or for {months} months when the reason is "{reason}"',
        description="added to decline_windows for each deferring reason (e.g. not now)",
    )

    @field_validator("*")
    @classmethod
    def _placeholders(cls, value: str, info: object) -> str:
        name = getattr(info, "field_name", "")
        allowed = DECISION_FIELDS.get(name, frozenset())
        try:
            used = {field for _, field, _, _ in Formatter().parse(value) if field is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        unknown = sorted(used - allowed)
        if unknown:
            names = ", ".join("{" + n + "}" for n in sorted(allowed)) or "none"
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; allowed: {names}")
        return value


class HistoryTexts(Strict):
    """The words of a patient's history of earlier proposals and referrals (review show, the
    review page, the card's one line). `{...}` are filled in; see each description."""

    heading: str = Field(
        "History", description="the heading of the history (review show, page, the card's line)"
    )
    proposed: str = Field("proposed", description="a proposal was written")
    awaiting: str = Field("awaiting review", description="a proposal's review is still open")
    referred: str = Field("referred", description="a referral order exists (accepted proposal)")
    declined: str = Field("declined", description="a proposal declined by a clinician")
    deferred: str = Field("deferred", description="a proposal declined for now (a deferral)")
    declined_until: str = Field(
        "not suggested again until {date}", description="after a decline; {date}: when it ends"
    )
    deferred_until: str = Field(
        "deferred until {date}", description="after a deferral; {date}: when it ends"
    )
    ended: str = Field("ended {date}", description="a decline or deferral that is over")
    by: str = Field("by {who}", description="who decided; {who}: the clinician")
    card_line: str = Field(
        "{event} {ago}: {reason}",
        description="the card's one line; {event}, {ago} (e.g. '14 months ago'), {reason}",
    )
    card_line_no_reason: str = Field(
        "{event} {ago}", description="the card's one line when the event has no reason"
    )
    today: str = Field("today", description="'ago' for today")
    day_ago: str = Field("1 day ago", description="'ago' for yesterday")
    days_ago: str = Field("{n} days ago", description="'ago' in days, under a month")
    month_ago: str = Field("1 month ago", description="'ago' for one whole month")
    months_ago: str = Field("{n} months ago", description="'ago' in whole months")


class Texts(Strict):
    proposal_title: str = Field(
        "", description="what is proposed, in the clinician note's first line (default: title)"
    )
    task_line: str = Field(
        "", description="the review Task's description, before the priority (default: title)"
    )
    short_name: str = Field(
        "",
        description="what is offered, in short: 'routine offer of <short_name>' (default: "
        "proposal_title)",
    )
    care_plan_title: str = Field(
        "", description="the accepted proposal's CarePlan title (default: proposal_title)"
    )
    care_plan_description: str = Field("", description="the CarePlan's description (optional)")
    card_summary: str = Field(
        "",
        description="the CDS Hooks card's summary for a live proposal (default: 'Consider "
        "<short_name>')",
    )
    pending_summary: str = Field(
        "",
        description="the card's summary for a proposal awaiting review (default: "
        "'<short_name> proposal awaiting review')",
    )
    suggestion_label: str = Field(
        "", description="the card's suggestion label (default: 'Refer for <short_name>')"
    )
    suggestion_description: str = Field(
        "",
        description="what the card's suggestion creates (default: 'Create a draft referral "
        "for <proposal_title> for you to review and sign')",
    )
    service_title: str = Field("", description="the CDS Hooks service title (default: title)")
    service_description: str = Field(
        "", description="the CDS Hooks service description (default: description)"
    )
    early_note: str = Field("", description="added to an early priority in the clinician note")
    routine_note: str = Field(
        "", description="added to a routine priority (with a known start) in the clinician note"
    )
    supporting_title: str = Field(
        "Linked records", description="the card's heading for the records in supportingInfo"
    )
    supporting_record: str = Field(
        "{category}, {date}",
        description="one supporting record in plain words (review, review page, card): "
        "'{category}' is its category's words, '{date}' its day, e.g. 'Fit note: {category}, "
        "{date}'",
    )
    undated: str = Field("date not recorded", description="'{date}' of an undated record")
    card_notes: list[str] = Field(
        default_factory=list,
        description="markdown paragraphs after the card's facts (e.g. that the offer is "
        "voluntary), before its action",
    )
    card_action: str = Field(
        "Offer it; refer only if they agree.",
        description="the card's one action, its last paragraph (markdown)",
    )
    card_pending: str = Field(
        "Accepting the suggestion also completes the review in ips-screen.",
        description="added to the card of a proposal awaiting review",
    )
    brief_records: str = Field(
        "{label}: {term}, first recorded {date}.",
        description="the brief (card, note) line of a reason criterion met by records: "
        "{label} the criterion's label, {term} the earliest record's clinical term, {date} its day",
    )
    brief_spell: str = Field(
        "{label}: {category} since {date}.",
        description="the brief line of a latest-category reason with the start of the current "
        "spell ({category} the latest category's words, {date} the spell's first day)",
    )
    brief_status: str = Field(
        "{label}: {category}, recorded {date}.",
        description="the brief line of a latest-category reason met by a recent record",
    )
    brief_status_missing: str = Field(
        "{status} not recorded: please ask.",
        description="the brief line when the status was inferred with nothing recorded "
        "({status}: status_names' words)",
    )
    brief_status_old: str = Field(
        "{status} last recorded {date} ({category}): please confirm.",
        description="the brief line when the latest status record is too old to rely on",
    )
    brief_status_conflict: str = Field(
        "{status} records of {date} disagree: please confirm.",
        description="the brief line when the latest status records disagree",
    )
    brief_supporting: str = Field(
        "{title} in the last {months} months: {count}, latest {date}.",
        description="the card's line for the records linked as supportingInfo ({title}: "
        "supporting_title); left out when there are none",
    )
    leaflet_title: str = Field(
        "", description="the printable leaflet's heading (default: 'About <short_name>')"
    )
    report_offer: str = Field(
        "an offer", description="what the report says patients are proposed for"
    )
    report_waiting: str = Field(
        "a proposal for them is waiting for a clinician's review",
        description="the nightly report's line for patients whose only open referral is a "
        "proposal awaiting review (apart from those already referred)",
    )
    report_intro: str = Field("", description="the report's paragraph under its headline numbers")
    report_review: str = Field(
        "Each proposal waits for a clinician to review it.",
        description="the report's sentence on what happens to a proposal",
    )
    status_names: dict[Id, str] = Field(
        default_factory=dict,
        description="latest-category criterion id -> what it reads, in the clinician note "
        "('their current <name>'; default: its label in lower case)",
    )
    criteria: dict[Id, str] = Field(
        default_factory=dict, description="criterion id -> its label in the clinician note"
    )
    reasons: dict[Id, str] = Field(
        default_factory=dict, description="reason name -> plain words (note, card, review)"
    )
    flags: dict[Id, str] = Field(default_factory=dict, description="flag name -> plain words")
    flag_actions: dict[Id, str] = Field(
        default_factory=dict, description="flag name -> what the review Task line asks"
    )
    report: dict[Id, str] = Field(
        default_factory=dict,
        description="reason or flag name -> words in the practice report, when other than above",
    )
    step_names: dict[Id, str] = Field(
        default_factory=dict,
        description="top-level exclusion or criterion id -> its name in the report's funnel, "
        "as in 'still in the screen after <name>' (default: 'the <label> check')",
    )
    steps: dict[Id, str] = Field(
        default_factory=dict,
        description="top-level criterion id -> what it keeps, in the report's funnel",
    )
    history: HistoryTexts = Field(
        default_factory=HistoryTexts,
        description="the words of a patient's earlier proposals, referrals and declines",
    )
    categories: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="codelist name -> category -> plain words"
    )
    decisions: DecisionTexts = Field(
        default_factory=DecisionTexts,
        description="what the review says about a decision: agreement, confirmations, warnings",
    )

    @field_validator(*TEMPLATE_NAMES)
    @classmethod
    def _known_names(cls, value: str, info) -> str:
        names = TEMPLATE_NAMES[info.field_name]
        try:
            value.format(**dict.fromkeys(names, ""))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"may use only {{{'}, {'.join(names)}}} ({exc})") from None
        return value

    @field_validator("supporting_record")
    @classmethod
    def _record_fields(cls, value: str) -> str:
        try:
            names = {name for _, name, _, _ in Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        unknown = sorted(names - _RECORD_FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {unknown}: use {{category}} and {{date}}")
        return value
