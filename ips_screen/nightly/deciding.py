"""Deciding one patient for the nightly screen, in this process or on worker processes.

`decide` is everything the screen needs of a patient it evaluates: the decisions.ndjson line,
the summary key, the proposal counts, the decision's horizon and digest, and when proposed its
proposals.json entries and its words in the worklist and report. It is a pure function of the
facts, the ruleset, the date and the configured owner, so where it runs does not change the
outputs.

`Deciders` runs it on `jobs` processes once the night has enough patients to evaluate to be
worth it (PARALLEL_MIN: a full night's first batch; an incremental night's patients whose facts
changed or whose decisions expired are a few in each batch, so the batches so far are also taken
as a sample of the patients the last run screened, and the processes start as soon as that
foresees PARALLEL_MIN; a night that evaluates fewer stays in this process): workers read the
facts of a batch's patients from the store (a read-only connection each) and decide them, PIECE
patients at a time, and the parent takes the results in patient order, with at most IN_FLIGHT
pieces per process queued, so memory stays bounded and the outputs are the same for any number
of processes.

Most patients of a practice have no record any rule reads (no chronic pain, fit note, employment
status, referral...): their decision depends on their birth date and the few other facts of their
Patient alone. `Shared` decides such a patient once for each set of those facts, as a stand-in
patient whose id no real one can have, and gives every other patient with the same facts that
decision with their own reference in place of the stand-in's (the engine reads a patient's id only
to name them: tests/property/test_shared_decisions.py). The birth date counts only as far as the
criteria read it (`KindSpec.birth_key`: the age at T and its band), so patients of the same age
share a decision; each has their own horizon (their birthdays). A decision that names the
stand-in any other way, or proposes a referral, is not shared.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import orjson

from ips_screen.engine import evaluate
from ips_screen.engine.horizon import valid_until
from ips_screen.facts.model import PatientFacts
from ips_screen.kinds.base import BirthKey
from ips_screen.kinds.registry import birth_key_of
from ips_screen.nightly.steps import ProposalTally
from ips_screen.outputs.formats.decisions_ndjson import decision_line
from ips_screen.outputs.formats.proposals_json import proposal_template
from ips_screen.outputs.proposed import proposed_texts
from ips_screen.outputs.summary import SummaryCounter, SummaryKey
from ips_screen.reading import release_free_memory
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.sources.parallel import fork_context, in_helper, start_guarded, stop_pool
from ips_screen.store.facts_store import FactsReader
from ips_screen.store.ledger import decision_digest

if TYPE_CHECKING:
    from ips_screen.nightly.proposal_maker import ProposalMaker

PARALLEL_MIN = 1_000  # patients to evaluate (so far in the night) before workers are used
PIECE = 250  # patients a worker decides at a time
IN_FLIGHT = 4  # pieces per process queued or running before the parent waits for the oldest
SHARED_MAX = 50_000  # sets of facts `Shared` keeps a decision for (about 300 bytes each)
STAND_IN = "\x00stand-in\x00"  # a patient id no record can name (JSON: \u0000stand-in\u0000)


@dataclass(frozen=True)
class Deciding:
    """What deciding depends on besides the facts (the same in every process), and the store
    the facts are read from."""

    ruleset: CompiledRuleset
    as_of: date
    owner: str | None
    store: Path


class Decided(NamedTuple):
    """One evaluated patient, as the screen writes and caches it (a named tuple: workers send
    thousands a second to the job, and a tuple pickles at a third of a frozen dataclass's cost)."""

    pid: str
    line: bytes  # the decisions.ndjson line
    key: SummaryKey
    counts: tuple[int, int, int]  # the tool's proposals: open, accepted, declined
    until: str  # the decision's horizon (ISO date)
    digest: str
    proposal: bytes | Future[bytes] | None  # proposed only: proposals.json entries (a Future:
    # being made by a `ProposalMaker`; never from a worker)
    texts: bytes | None  # proposed only: the worklist's and report's words (`proposed_texts`)


def decide(
    facts: PatientFacts,
    how: Deciding,
    counter: SummaryCounter,
    reusable_proposal: Reuse = None,
    maker: ProposalMaker | None = None,
) -> Decided:
    """Evaluate one patient. `reusable_proposal`: (the cached line after its as-of date, the
    cached proposal entries, the cached words) of the patient's cached decision when proposed;
    the entries and words are reused when the new line is the same but for the date. New
    entries are made by `maker` when given (nightly/proposal_maker.py)."""
    decision = evaluate(how.ruleset, facts, how.as_of)
    line = decision_line(decision)
    key = counter.key(decision)
    until = valid_until(how.ruleset, facts, how.as_of).isoformat()
    proposal = texts = None
    if decision.outcome == "propose":
        if reusable_proposal is not None and after_date(line) == reusable_proposal[0]:
            proposal, texts = reusable_proposal[1], reusable_proposal[2]
        else:
            if maker is None:
                proposal = proposal_template(decision, how.ruleset, how.owner)
            else:
                proposal = maker.template(decision)
            texts = proposed_texts(decision, how.ruleset)
    counts = ProposalTally.count(facts)
    return Decided(facts.id, line, key, counts, until, decision_digest(decision), proposal, texts)


# What a shared decision keeps: its line cut where the stand-in's reference was, the summary key
# and the digest (False: not shared).
Known = tuple[tuple[bytes, ...], SummaryKey, str]


class Shared:
    """Decisions shared by the patients with no records (see the module)."""

    _REF = orjson.dumps(f"Patient/{STAND_IN}")  # where a shared line names its patient
    _ID = orjson.dumps(STAND_IN)[1:-1]

    def __init__(self) -> None:
        self.known: dict[tuple, Known | bool] = {}
        self.lines: dict[tuple[bytes, ...], tuple[bytes, ...]] = {}  # identical lines kept once
        self.birth: tuple[tuple[object, BirthKey], ...] | None = None  # see `_birth_key`

    def decide(self, facts: PatientFacts, how: Deciding, counter: SummaryCounter) -> Decided | None:
        """The patient's decision, when it may be shared (None: decide them in full)."""
        if facts.records:
            return None
        birth = self._birth_key(facts.birth_date, how)
        key = (birth, facts.deceased, facts.deceased_date, facts.general_practitioners)
        known = self.known.get(key)
        if known is None:
            if len(self.known) >= SHARED_MAX:
                return None
            known = self.known[key] = self._learn(replace(facts, id=STAND_IN), how, counter)
        if known is False:
            return None
        parts, summary_key, digest = known  # type: ignore[misc]
        line = orjson.dumps(facts.ref).join(parts)
        counts = ProposalTally.count(facts)
        until = valid_until(how.ruleset, facts, how.as_of).isoformat()  # the birthdays: their own
        return Decided(facts.id, line, summary_key, counts, until, digest, None, None)

    def _birth_key(self, birth: date | None, how: Deciding) -> tuple:
        """What the ruleset's criteria read of a birth date as of T (`KindSpec.birth_key`: the
        age and its band), in place of the date: patients born on different days share a
        decision when their criteria find the same."""
        if self.birth is None:
            self.birth = tuple(
                (rule, key) for rule in how.ruleset.criteria if (key := birth_key_of(rule))
            )
        return tuple(key(rule, birth, how.as_of) for rule, key in self.birth)

    def _learn(
        self, stand_in: PatientFacts, how: Deciding, counter: SummaryCounter
    ) -> Known | bool:
        done = decide(stand_in, how, counter)
        parts = tuple(done.line.split(self._REF))
        if done.texts is not None or any(self._ID in part for part in parts):
            return False
        return self.lines.setdefault(parts, parts), done.key, done.digest


def date_prefix(day: str) -> bytes:
    """How every decisions.ndjson line starts (sorted keys: as_of comes first)."""
    return b'{"as_of":"' + day.encode() + b'"'


def after_date(line: bytes) -> bytes | None:
    """The line after its leading as-of date (None: a line not shaped so)."""
    head = date_prefix("0000-00-00")
    if not line.startswith(head[:10]) or len(line) < len(head) or line[len(head) - 1] != 0x22:
        return None
    return line[len(head) :]


Reuse = tuple[bytes, bytes, bytes] | None  # see `decide`
Need = list[tuple[str, Reuse]]  # the patients to decide, in id order
FactsOf = Callable[[Iterable[str]], Iterator[PatientFacts]]


class Deciders:
    """Decides batches of patients, in order, on `jobs` processes once a batch is large enough
    (see the module); `submit` then `results` in the same order."""

    def __init__(
        self, how: Deciding, jobs: int, expected: int = 0, maker: ProposalMaker | None = None
    ) -> None:
        """`maker`: where the patients decided in this process have their proposals' entries
        made (None: here)."""
        self.how, self.jobs, self.maker = how, jobs, maker
        self.expected = expected  # patients the night will visit, as far as known (0: unknown)
        self.visited = 0  # patients visited so far, of whom `asked` are evaluated
        self.counter = SummaryCounter(how.ruleset)
        self.shared = Shared()
        self.executor: ProcessPoolExecutor | None = None
        self.pending: deque[tuple[object, list[Future] | list[Decided]]] = deque()
        self.in_flight = 0
        self.asked = 0  # patients submitted so far

    def submit(
        self, tag: object, batch: Need, facts_of: FactsOf, visited: int = 0
    ) -> Iterator[tuple[object, list[Decided]]]:
        """Queue a batch of the `visited` patients the screen has just gone through (`tag`
        comes back with its results; `facts_of` reads facts in this process); yields the
        batches done so far that may be taken, in the order given."""
        self.asked += len(batch)
        self.visited += visited
        if self.jobs > 1 and self.executor is None and self._worth_it():
            release_free_memory()  # before the workers inherit it
            self.executor = ProcessPoolExecutor(
                self.jobs,
                mp_context=fork_context(),
                initializer=start_guarded,
                initargs=(_init, self.how),
            )
        if self.executor is not None and batch:
            pieces = [batch[n : n + PIECE] for n in range(0, len(batch), PIECE)]
            futures = [self.executor.submit(in_helper, _decide_batch, piece) for piece in pieces]
            self.pending.append((tag, futures))
            self.in_flight += len(futures)
        else:
            done = _decide(batch, facts_of, self.how, self.counter, self.shared, self.maker)
            self.pending.append((tag, done))
        while self.pending and (
            self.in_flight > IN_FLIGHT * self.jobs or not _futures(self.pending[0][1])
        ):
            yield self._take()

    def _worth_it(self) -> bool:
        """Whether the night evaluates, or will by the batches so far, PARALLEL_MIN patients."""
        foreseen = self.asked * self.expected >= PARALLEL_MIN * self.visited > 0
        return self.asked >= PARALLEL_MIN or foreseen

    def decide_here(self, pids: list[str], facts_of: FactsOf) -> list[Decided]:
        """Decide these patients in this process, now."""
        asked = [(pid, None) for pid in pids]
        return _decide(asked, facts_of, self.how, self.counter, self.shared, self.maker)

    def results(self) -> Iterator[tuple[object, list[Decided]]]:
        """The batches still queued, in order."""
        while self.pending:
            yield self._take()

    def _take(self) -> tuple[object, list[Decided]]:
        tag, done = self.pending.popleft()
        if not _futures(done):
            return tag, done  # type: ignore[return-value]
        self.in_flight -= len(done)
        return tag, [d for future in done for d in future.result()]  # type: ignore[union-attr]

    def close(self) -> None:
        if self.executor is not None:
            stop_pool(self.executor)
            self.executor = None


def _futures(done: list) -> bool:
    return bool(done) and isinstance(done[0], Future)


def _decide(
    batch: Need,
    facts_of: FactsOf,
    how: Deciding,
    counter: SummaryCounter,
    shared: Shared,
    maker: ProposalMaker | None = None,
) -> list[Decided]:
    reuse = dict(batch)
    return [
        shared.decide(facts, how, counter) or decide(facts, how, counter, reuse[facts.id], maker)
        for facts in facts_of(reuse)
    ]


_HOW: Deciding | None = None
_COUNTER: SummaryCounter | None = None
_READER: FactsReader | None = None
_SHARED: Shared | None = None


def _init(how: Deciding) -> None:
    global _HOW, _COUNTER, _READER, _SHARED
    _HOW, _COUNTER, _READER = how, SummaryCounter(how.ruleset), FactsReader(how.store)
    _SHARED = Shared()
    gc.freeze()  # the ruleset and modules: never collected, never scanned again
    gc.enable()  # forked from a screen that paused it (nightly/screen.py)


def _decide_batch(batch: Need) -> list[Decided]:  # in a worker process
    assert _HOW is not None and _COUNTER is not None and _READER is not None
    assert _SHARED is not None
    return _decide(batch, _READER.facts_of, _HOW, _COUNTER, _SHARED)
