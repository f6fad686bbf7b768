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

from ips_screen.engine import Decision, evaluate
from ips_screen.engine.horizon import valid_until
from ips_screen.facts.model import PatientFacts
from ips_screen.nightly.progress import Progress
from ips_screen.nightly.steps import ProposalTally
from ips_screen.outputs.folder import OutputFolder
from ips_screen.outputs.summary import SummaryKey
from ips_screen.presentation.trace import step_line
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.store.decision_cache import CacheRow, ScreenRow
from ips_screen.store.ledger import decision_digest
from ips_screen.store.rows import ruleset_fingerprint
from ips_screen.store.state import StateStore

log = logging.getLogger("ips_screen.nightly")

CHUNK = 2_000  # patients read from the store at a time
CACHE_FORMAT = "2"  # bump when what is cached per decision changes (2: typed evidence)
_SORTED = orjson.OPT_SORT_KEYS


def decisions_fingerprint(ruleset: CompiledRuleset, owner: str | None) -> str:
    """What a cached decision (and proposal) depends on besides the facts and the date: the
    facts' fingerprint (ruleset id and version, codelists, tool version), the whole ruleset as
    loaded (an edited ruleset file re-evaluates everyone even without a new version) and the
    configured Task owner of proposals."""
    head = f"{CACHE_FORMAT}\n{ruleset_fingerprint(ruleset)}\n{owner or ''}\n"
    digest = hashlib.sha256(head.encode())
    digest.update(ruleset.model.model_dump_json().encode())
    return digest.hexdigest()


@lru_cache(maxsize=64)
def _prefix(day: str) -> bytes:
    """How every cached line starts (sorted keys: as_of comes first)."""
    return b'{"as_of":"' + day.encode() + b'"'


def reusable(row: ScreenRow, day: str) -> bool:
    """Whether a patient's cached decision holds on `day` (ISO dates compare as strings)."""
    cached_day, until, data = row[1], row[2], row[5]
    if cached_day is None or until is None or data is None:
        return False
    return cached_day <= day < until and data.startswith(_prefix(cached_day))


def _same_decision(data: bytes, row: ScreenRow) -> bool:
    """Whether a decision's line is the cached one but for the as-of date."""
    cached_day, cached = row[1], row[5]
    if cached_day is None or cached is None:
        return False
    start = len(_prefix(cached_day))
    return data[start:] == cached[start:] and cached.startswith(_prefix(cached_day))


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

    def chunk(self, rows: list[ScreenRow], reuse: bool) -> None:
        need = {row[0] for row in rows if not (reuse and reusable(row, self.day))}
        facts = {f.id: f for f in self.store.facts.facts_of(need)} if need else {}
        cached: list[CacheRow] = []
        staged: list[tuple[str, str]] = []
        for row in rows:
            pid, previous = row[0], row[6]
            if pid in need:
                digest = self.evaluate(pid, facts[pid], cached, row if reuse else None)
            else:
                digest = self.reuse(pid, row)
            if digest != previous:
                staged.append((pid, digest))
            if previous is not None:
                self.stats.kept += 1
        self.store.cache.put(cached)
        self.store.ledger.stage_digests(staged)
        self.stats.patients += len(rows)
        self.stats.changes += len(staged)

    def evaluate(
        self, pid: str, facts: PatientFacts, cached: list[CacheRow], row: ScreenRow | None
    ) -> str:
        """Decide from the facts; `row`: the patient's cache row, whose proposal entries are
        reused when the decision is the same as the cached one (but for the date)."""
        decision = evaluate(self.ruleset, facts, self.as_of)
        data = orjson.dumps(decision.to_dict(step_line), option=_SORTED)
        key = self.outputs.counter.key(decision)
        counts = ProposalTally.count(facts)
        until = valid_until(self.ruleset, facts, self.as_of).isoformat()
        digest = decision_digest(decision)
        proposal = None
        if decision.outcome == "propose":
            if row is not None and _same_decision(data, row):
                proposal = row[7]
            proposal = proposal or self.outputs.proposal(decision)
        summary = orjson.dumps([*key, *counts])
        cached.append((pid, self.day, until, digest, summary, data, proposal))
        self.stats.tally.add_counts(counts)
        self.stats.evaluated += 1
        self.outputs.add(decision.patient, data, key, decision, proposal)
        return digest

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


def screen_all(
    store: StateStore,
    ruleset: CompiledRuleset,
    as_of: date,
    progress: Progress,
    outputs: OutputFolder,
    *,
    reuse: bool = True,
) -> ScreenStats:
    """Every patient in the store decided as of `as_of`, into `outputs`; the tool's proposals
    counted; the decisions whose digest differs from the last run's staged for the ledger."""
    fingerprint = decisions_fingerprint(ruleset, outputs.owner)
    usable = store.cache.prepare(fingerprint) and reuse
    store.ledger.clear_staged_digests()
    screen = _Screen(store, ruleset, as_of, outputs)
    after: str | None = None
    with progress.stage("screened", unit="patients") as bar:
        while rows := store.screen_rows(after, CHUNK):
            after = rows[-1][0]
            screen.chunk(rows, usable)
            bar.update(len(rows))
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
