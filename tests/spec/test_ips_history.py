"""A patient's IPS history (ips_screen.presentation.history) from the example patients' records:
declines dated by the review Task alone, deferrals for the ruleset's `not-now` months, referrals,
and the card's one line (default-ruleset.md, "Precise definitions")."""

from __future__ import annotations

from datetime import date

from ips_screen.presentation.history import (
    ago,
    card_line,
    history_line,
    ips_history,
    last_suppressed_day,
)
from tests.helpers import AS_OF, default_ruleset
from tests.support.cds import fixture_resources

RULESET = default_ruleset()


def history(name: str, today: date = AS_OF):
    return ips_history(fixture_resources(name), RULESET, today)


def test_a_not_now_decline_is_a_deferral_for_three_months():
    (decision, proposal) = history("43")
    assert decision.event == "deferred"
    assert (decision.when, decision.until) == ("2026-09-24", "2026-12-24")
    assert decision.suppressing and decision.task == "Task/fx-43-task-4"
    assert decision.reason == "Not the right time; reconsider later"
    assert (proposal.event, proposal.when) == ("proposed", "2026-09-01")
    line = history_line(decision, RULESET)
    assert "deferred until 24 December 2026" in line
    assert line.startswith("24 September 2026 deferred")


def test_a_decline_is_dated_by_its_task_not_the_edited_request():
    (decision, _) = history("45")
    assert decision.event == "declined"
    assert (decision.when, decision.until) == ("2025-10-20", "2026-10-20")
    assert not decision.suppressing  # over on 2026-11-26
    assert "ended 20 October 2026" in history_line(decision, RULESET)
    assert card_line(history("45"), RULESET, AS_OF) == (
        "declined 13 months ago: Patient not interested in IPS at present"
    )


def test_a_recent_decline_suppresses_for_twelve_months():
    (decision, _) = history("25")
    assert (decision.event, decision.until) == ("declined", "2027-05-01")
    assert decision.suppressing
    assert "not suggested again until 1 May 2027" in history_line(decision, RULESET)


def test_a_referral_order_is_referred_with_its_requester():
    (referral,) = history("15")
    assert (referral.event, referral.when) == ("referred", "2025-06-30")
    assert referral.status == "completed"
    assert card_line([referral], RULESET, AS_OF) == "referred to IPS 16 months ago"


def test_no_history_gives_no_card_line():
    assert history("01") == []
    assert card_line([], RULESET, AS_OF) is None


def test_suppression_ends_on_the_last_day_the_rule_still_counts():
    assert last_suppressed_day(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert last_suppressed_day(date(2026, 2, 28), 1) == date(2026, 3, 31)
    assert last_suppressed_day(date(2025, 11, 26), 12) == date(2026, 11, 26)


def test_ago_in_months_then_days():
    today = date(2026, 11, 26)
    assert ago(date(2025, 9, 26), today, RULESET) == "14 months ago"
    assert ago(date(2026, 10, 26), today, RULESET) == "1 month ago"
    assert ago(date(2026, 10, 27), today, RULESET) == "30 days ago"
    assert ago(date(2026, 11, 25), today, RULESET) == "1 day ago"
    assert ago(today, today, RULESET) == "today"
