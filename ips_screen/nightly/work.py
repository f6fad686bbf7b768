"""The work outstanding that leads the nightly report: the open reviews on the practice server
(counted as `ips-screen review list` counts them) and how long they have waited, the reviews
accepted, declined and deferred since the last run, and the new proposals tonight."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from ips_screen.errors import ServerError
from ips_screen.fhir.client import FhirClient
from ips_screen.presentation.labels import deferring_reasons
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.writeback.review_read import review_work

log = logging.getLogger("ips_screen.nightly")

LONG_WAIT_DAYS = 14
DEFAULT_PERIOD = timedelta(days=7)  # when there is no earlier run


def period_start(recent_runs: list[dict], run_id: int, now: datetime) -> tuple[datetime, bool]:
    """When the previous finished run started (the report's period), else a week ago; True
    when it is a run's start."""
    for run in reversed(recent_runs):
        if run.get("id") != run_id and run.get("status") in ("ok", "errors") and run.get("started"):
            try:
                started = datetime.fromisoformat(str(run["started"]))
            except ValueError:
                continue
            return (started if started.tzinfo else started.replace(tzinfo=UTC)), True
    return now - DEFAULT_PERIOD, False


def work_outstanding(
    client: FhirClient,
    ruleset: CompiledRuleset,
    *,
    since: datetime,
    now: datetime,
    new: int,
    since_run: bool = True,
) -> dict | None:
    """The report's "Work outstanding" figures; None (and a warning) when the server cannot say."""
    try:
        work = review_work(client, since, deferring_reasons(ruleset))
    except ServerError as exc:
        log.warning("work outstanding: reading the reviews failed: %s", exc)
        return None
    waits = []
    for item in work.open:
        try:
            authored = datetime.fromisoformat(item.authored or "")
        except ValueError:
            continue
        authored = authored if authored.tzinfo else authored.replace(tzinfo=UTC)
        waits.append(max(0, (now - authored).days))
    return {
        "open": len(work.open),
        "longest_days": max(waits, default=0),
        "over_two_weeks": sum(w > LONG_WAIT_DAYS for w in waits),
        "new": new,
        "since": since.isoformat(timespec="minutes"),  # shown in London time (`moment`)
        "since_run": since_run,  # False: a week before this run (there is no earlier one)
        "accepted": work.accepted,
        "declined": work.declined,
        "deferred": work.deferred,
    }
