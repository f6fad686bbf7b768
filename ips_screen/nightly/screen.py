"""Screen the store: every patient's decision brought up to date as of tonight, evaluating only
the patients who need it.

Decisions change with time alone, so every night gives every patient a decision as of that night.
A patient's cached decision (store/decision_cache.py) is reused, with only `as_of` replaced, when

- their facts have not changed since it was made (any change removes the cached row),
- it was made with the same ruleset, codelists and tool version (`decisions_fingerprint`), and
- tonight falls within its horizon: cached as_of <= as_of < valid_until, where valid_until
  (`engine.horizon.valid_until`) is a day no later than the first day on which the decision could
  differ with the same facts (property-tested in tests/property/test_horizon.py).

A reused decision is not loaded as facts, nor evaluated: its decisions.ndjson line is the cached
one with the as-of date replaced, and its summary counts, proposal counts, digest and (when
proposed) proposals.json entries are cached beside it. Everyone else is evaluated from their
facts (loaded by id, ROWS_PER_QUERY at a time) and their cache row replaced.
`[screen] reuse_decisions = false` evaluates everyone (the cache is
still refreshed). Either way the outputs are the same, byte for byte.

Patients are visited in id order, CHUNK at a time, and each decision goes straight to the outputs
(`OutputFolder`), so memory does not grow with the practice (beyond the proposed patients).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache

import orjson

from ips_screen.engine import Decision
from ips_screen.nightly.deciding import Decided, Deciders, Deciding, Need, date_prefix
from ips_screen.nightly.progress import Progress
from ips_screen.nightly.steps import ProposalTally
from ips_screen.outputs.folder import OutputFolder
from ips_screen.outputs.summary import SummaryKey
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.sources.parallel import default_jobs
from ips_screen.store.decision_cache import CacheRow, ScreenRow
from ips_screen.store.rows import ruleset_fingerprint
from ips_screen.store.state import StateStore

log = logging.getLogger("ips_screen.nightly")

CHUNK = 2_000  # patients read from the store at a time
CACHE_FORMAT = "2"  # bump when what is cached per decision changes (2: typed evidence)


def decisions_fingerprint(ruleset: CompiledRuleset, owner: str | None) -> str:
    """What a cached decision (and proposal) depends on besides the facts and the date: the
    facts' fingerprint (ruleset id and version, codelists, tool version), the whole ruleset as
    loaded (an edited ruleset file re-evaluates everyone even without a new version) and the
    configured Task owner of proposals."""
    head = f"{CACHE_FORMAT}\n{ruleset_fingerprint(ruleset)}\n{owner or ''}\n"
    digest = hashlib.sha256(head.encode())
    digest.update(ruleset.model.model_dump_json().encode())
    return digest.hexdigest()


_prefix = lru_cache(maxsize=64)(date_prefix)  # how every cached line starts


def reusable(row: ScreenRow, day: str) -> bool:
    """Whether a patient's cached decision holds on `day` (ISO dates compare as strings)."""
    cached_day, until, data = row[1], row[2], row[5]
    if cached_day is None or until is None or data is None:
        return False
    return cached_day <= day < until and data.startswith(_prefix(cached_day))


@dataclass
class ScreenStats:
    patients: int = 0
    evaluated: int = 0
    reused: int = 0
    changes: int = 0  # patients whose decision digest differs from the last run's
    kept: int = 0  # patients screened who had a digest after the last run
    gone: int = 0  # patients with a digest after the last run who are no longer in the store
    tally: ProposalTally = field(default_factory=ProposalTally)


class _Screen:
    def __init__(
        self,
        store: StateStore,
        ruleset: CompiledRuleset,
        as_of: date,
        outputs: OutputFolder,
    ) -> None:
        self.store, self.ruleset, self.as_of, self.outputs = store, ruleset, as_of, outputs
        self.day = as_of.isoformat()
        self.new_prefix = _prefix(self.day)
        self.stats = ScreenStats()
        self.summaries: dict[bytes, tuple[SummaryKey, tuple[int, ...]]] = {}

    def need(self, rows: list[ScreenRow], reuse: bool) -> Need:
        """The chunk's patients who are evaluated tonight, in id order, each with what of their
        cached decision may be reused (its proposal entries)."""
        return [
            (row[0], _cached_proposal(row) if reuse else None)
            for row in rows
            if not (reuse and reusable(row, self.day))
        ]

    def chunk(self, rows: list[ScreenRow], decided: list[Decided]) -> None:
        """Write and cache the chunk's decisions: those `decided` tonight, the others reused."""
        by_pid = {d.pid: d for d in decided}
        cached: list[CacheRow] = []
        staged: list[tuple[str, str]] = []
        for row in rows:
            pid, previous = row[0], row[6]
            done = by_pid.get(pid)
            digest = self.evaluated(done, cached) if done is not None else self.reuse(pid, row)
            if digest != previous:
                staged.append((pid, digest))
            if previous is not None:
                self.stats.kept += 1
        self.store.cache.put(cached)
        self.store.ledger.stage_digests(staged)
        self.stats.patients += len(rows)
        self.stats.changes += len(staged)

    def evaluated(self, done: Decided, cached: list[CacheRow]) -> str:
        summary = orjson.dumps([*done.key, *done.counts])
        line, proposal = done.line, done.proposal
        data = done.parts or line  # a shared line: cached once for all who share it
        cached.append((done.pid, self.day, done.until, done.digest, summary, data, proposal))
        self.stats.tally.add_counts(done.counts)
        self.stats.evaluated += 1
        self.outputs.add(f"Patient/{done.pid}", line, done.key, done.decision, proposal)
        return done.digest

    def reuse(self, pid: str, row: ScreenRow) -> str:
        cached_day, digest, summary, data, proposal = row[1], row[3], row[4], row[5], row[7]
        assert cached_day is not None and digest is not None and summary and data
        known = self.summaries.get(summary)  # few distinct summaries: each decoded once
        if known is None:
            values = orjson.loads(summary)
            key = SummaryKey(*(tuple(v) if isinstance(v, list) else v for v in values[:7]))
            known = self.summaries[summary] = (key, tuple(values[7:10]))
        key, counts = known
        body = memoryview(data)[len(_prefix(cached_day)) :]
        decision = None
        if key.outcome == "propose":  # kept whole for the report, the worklist and the writer
            decision = replace(Decision.from_dict(orjson.loads(data)), as_of=self.day)
        if any(counts):
            self.stats.tally.add_counts(counts)
        self.stats.reused += 1
        self.outputs.add(f"Patient/{pid}", body, key, decision, proposal, head=self.new_prefix)
        return digest


def _cached_proposal(row: ScreenRow) -> tuple[bytes, bytes] | None:
    """A cached decision's line after its date, and its proposal entries, when it has both."""
    cached_day, cached, proposal = row[1], row[5], row[7]
    if cached_day is None or cached is None or proposal is None:
        return None
    prefix = _prefix(cached_day)
    return (cached[len(prefix) :], proposal) if cached.startswith(prefix) else None


def screen_all(
    store: StateStore,
    ruleset: CompiledRuleset,
    as_of: date,
    progress: Progress,
    outputs: OutputFolder,
    *,
    reuse: bool = True,
    jobs: int | None = None,
) -> ScreenStats:
    """Every patient in the store decided as of `as_of`, into `outputs`; the tool's proposals
    counted; the decisions whose digest differs from the last run's staged for the ledger."""
    fingerprint = decisions_fingerprint(ruleset, outputs.owner)
    usable = store.cache.prepare(fingerprint) and reuse
    store.ledger.clear_staged_digests()
    screen = _Screen(store, ruleset, as_of, outputs)
    how = Deciding(ruleset, as_of, outputs.owner, store.path)
    deciders = Deciders(how, jobs or default_jobs())
    facts_of = store.facts.facts_of
    after: str | None = None
    try:
        with progress.stage("screened", unit="patients") as bar:
            while rows := store.screen_rows(after, CHUNK):
                after = rows[-1][0]
                need = screen.need(rows, usable)
                for done_rows, decided in deciders.submit(rows, need, facts_of):
                    screen.chunk(done_rows, decided)  # type: ignore[arg-type]
                    bar.update(len(done_rows))  # type: ignore[arg-type]
            for done_rows, decided in deciders.results():
                screen.chunk(done_rows, decided)  # type: ignore[arg-type]
                bar.update(len(done_rows))  # type: ignore[arg-type]
    finally:
        deciders.close()
    store.cache.drop_unused_lines()
    stats = screen.stats
    stats.gone = store.ledger.digest_count() - stats.kept
    stats.changes += stats.gone
    log.info(
        "screened %d patients: %d evaluated, %d cached decisions reused",
        stats.patients,
        stats.evaluated,
        stats.reused,
        extra={"event": {"screened": stats.patients, "evaluated": stats.evaluated}},
    )
    return stats
