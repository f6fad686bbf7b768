"""Screen the store: every patient's decision brought up to date as of tonight, evaluating only
the patients who need it.

Decisions change with time alone, so every night gives every patient a decision as of that night.
A patient's cached decision (store/decision_cache.py) is reused, with only `as_of` replaced, when

- their facts have not changed since it was made (any change removes the cached row),
- it was made with the same ruleset, codelists and tool version (`decisions_fingerprint`), and
- tonight falls within its horizon: cached as_of <= as_of < valid_until, where valid_until
  (`engine.horizon.valid_until`) is a day no later than the first day on which the decision could
  differ with the same facts (property-tested in tests/property/test_horizon.py).

A reused decision is not loaded as facts, nor evaluated: its decisions.ndjson line is its line
of the last run's decisions.ndjson (nightly/last_lines.py; cached in the store when proposed) with
the as-of date replaced, and its summary counts, proposal counts, digest and (when proposed)
proposals.json entries are cached beside it. Each screen has a generation, one more than the
last's, and caches its decisions with it: the file holds the lines of the decisions of its
screen's generation or older, so after a run that failed having cached some decisions, only
those are evaluated again (but the proposed ones). When the file cannot be vouched for (moved
or edited), the patients whose line it held are evaluated again. Everyone else is evaluated
from their facts (loaded by id, ROWS_PER_QUERY at a time) and their cache row replaced.
`[screen] reuse_decisions = false` evaluates everyone (the cache is still refreshed). Either
way the outputs are the same, byte for byte.

Most reused decisions are plain: not proposed, with the same digest as after the last run, and a
summary the screen has met (`_learn`): tonight, or in the last finished screen, which keeps the
summaries of the decisions it wrote not proposed (`DecisionCache.plain_summaries`), so that
the first patients of a night are plain too. The store gives such a patient's id and
their summary's number, and nothing more (`StateStore.screen_rows`), and the screen gathers plain
patients in a row into a stretch known by its first and last id and its count: one piece of the
last run's file (`LastLines.stretch`), counted by summary number, without a Python value per
cached column or per patient beyond their id.

Patients are visited in id order, CHUNK at a time, and each decision goes straight to the outputs
(`OutputFolder`), so memory does not grow with the practice (beyond the proposed patients). The
cyclic garbage collector is paused meanwhile: decisions hold no cycles, and its full passes over
the proposed patients' decisions, which grow with the practice, cost more than the rest.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache, partial

import orjson

from ips_screen.nightly.deciding import Decided, Deciders, Deciding, Need, Reuse, date_prefix
from ips_screen.nightly.last_lines import LastLines
from ips_screen.nightly.progress import Progress
from ips_screen.nightly.proposal_maker import ProposalMaker
from ips_screen.nightly.steps import ProposalTally
from ips_screen.outputs.folder import OutputFolder
from ips_screen.outputs.proposed import Proposed
from ips_screen.outputs.summary import SummaryKey
from ips_screen.presentation.counts import counted
from ips_screen.reading import gc_paused
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.sources.parallel import default_jobs
from ips_screen.store.decision_cache import CacheRow, PlainRow, ScreenRow
from ips_screen.store.rows import ruleset_fingerprint
from ips_screen.store.state import StateStore

log = logging.getLogger("ips_screen.nightly")

CHUNK = 2_000  # patients read from the store at a time
WRITE_ROWS = 20_000  # cache rows and digests written to the store at a time
RUN_MAX = 2_000  # reused decisions in a row whose lines are taken at a time (about 9 MB)
CACHE_FORMAT = "4"  # bump when what is cached per decision changes (4: the proposed ones' words)


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
    """Whether a patient's cached decision holds on `day` (ISO dates compare as strings), as far
    as the row tells (b"": a line the store does not keep, checked where it is read:
    nightly/last_lines.py)."""
    cached_day, until, data = row[1], row[2], row[5]
    if cached_day is None or until is None or data is None:
        return False
    return cached_day <= day < until and (not data or data.startswith(_prefix(cached_day)))


@dataclass
class ScreenStats:
    patients: int = 0
    evaluated: int = 0
    reused: int = 0
    changes: int = 0  # patients whose decision digest differs from the last run's
    kept: int = 0  # patients screened who had a digest after the last run
    gone: int = 0  # patients with a digest after the last run who are no longer in the store
    generation: int = 0  # the screen's (`DecisionCache.next_generation`)
    tally: ProposalTally = field(default_factory=ProposalTally)


class _Screen:
    def __init__(
        self,
        store: StateStore,
        ruleset: CompiledRuleset,
        as_of: date,
        outputs: OutputFolder,
        last: LastLines | None = None,
    ) -> None:
        self.store, self.ruleset, self.as_of, self.outputs = store, ruleset, as_of, outputs
        self.last = last
        self.generation = 0  # this screen's (`DecisionCache.next_generation`)
        self.lines_generation = -1  # the cached decisions of this or older are in `last`
        self.rescue: Callable[[list[str]], list[Decided]] = lambda pids: []  # see screen_all
        self.day = as_of.isoformat()
        self.new_prefix = _prefix(self.day)
        self.stats = ScreenStats()
        self.summaries: dict[bytes, tuple[SummaryKey, tuple[int, int, int]]] = {}
        self.cached: list[CacheRow] = []  # written by `flush`
        self.staged: list[tuple[str, str]] = []
        self.run: list[Reused] = []  # reused, not proposed, not yet written (`_write_run`)
        self.plain = _Stretch()  # plain patients in a row, not yet written (`_write_plain`)
        self.plain_keys: dict[int, tuple[SummaryKey, tuple[int, int, int]]] = {}  # by number
        self.learned: dict[bytes, int] = {}  # summary -> the number the store gave it
        self.written: set[bytes] = set()  # summaries of decisions not proposed (`kept_summaries`)
        self.plain_used: set[int] = set()  # ... and the numbers of those written as plain
        self.listed_numbers: set[int] = set()  # ... of decisions with data-quality notes

    def need(self, rows: list[ScreenRow | PlainRow], reuse: bool) -> Need:
        """The chunk's patients who are evaluated tonight, in id order, each with what of their
        cached decision may be reused (its proposal entries). A reusable decision's line is the
        cached one when proposed, else the last run's decisions.ndjson's: without that file, the
        patient is evaluated, as is one whose decision is younger than the file. A plain patient
        (see `StateStore.screen_rows`) is reused."""
        lines = self.lines_generation
        return [
            (row[0], _cached_proposal(row) if reuse else None)
            for row in rows
            if len(row) != 2  # not a `PlainRow`
            and not (reuse and reusable(row, self.day) and (row[5] or (row[10] or 0) <= lines))
        ]

    def chunk(self, rows: list[ScreenRow | PlainRow], decided: list[Decided]) -> None:
        """Write and cache the chunk's decisions: those `decided` tonight, the others reused."""
        by_pid = {d.pid: d for d in decided}
        run, summaries, plain = self.run, self.summaries, self.plain
        for row in rows:
            pid = row[0]
            if len(row) == 2:  # a `PlainRow`, the common case, kept short
                number = row[1]
                if run:
                    self._write_run()
                if not plain.count:
                    plain.first = pid
                plain.last = pid
                plain.count += 1
                plain.numbers[number] = plain.numbers.get(number, 0) + 1
                if number in self.listed_numbers:
                    plain.listed.append((pid, number))
                if plain.count >= RUN_MAX:
                    self._write_plain()
                continue
            self._write_plain()
            digest, summary, previous = row[3], row[4], row[6]
            done = by_pid.get(pid)
            if done is not None:
                self._write_run()
                self._count(pid, self.evaluated(done), previous)
                continue
            assert digest is not None and summary
            known = summaries.get(summary)  # few distinct summaries: each decoded once
            if known is None:
                known = summaries[summary] = _summary(summary)
            if known[0].outcome == "propose":
                self._write_run()
                self._count(pid, self.reuse_proposed(row, *known), previous)
            else:
                run.append((pid, known[0], known[1], digest, previous))
                self.written.add(summary)
                if digest == previous and summary not in self.learned and self.last is not None:
                    self._learn(summary, known)
                if len(run) >= RUN_MAX:
                    self._write_run()
        if len(self.cached) + len(self.staged) >= WRITE_ROWS:
            self.flush()

    def learn_kept(self, summaries: list[bytes]) -> None:
        """Learn (`_learn`) the summaries the last screen kept, before the first rows are read,
        but those of proposed decisions and those that are not summaries (neither expected: a
        store edited by hand); their patients' rows teach them as before."""
        for summary in summaries:
            try:
                known = self.summaries.get(summary) or _summary(summary)
            except (ValueError, TypeError, IndexError):
                continue
            if known[0].outcome != "propose" and summary not in self.learned:
                self.summaries[summary] = known
                self._learn(summary, known)

    def kept_summaries(self) -> set[bytes]:
        """The summaries of tonight's decisions not proposed, for the next screen."""
        numbers = {number: summary for summary, number in self.learned.items()}
        return self.written | {numbers[n] for n in self.plain_used}

    def _learn(self, summary: bytes, known: tuple[SummaryKey, tuple[int, int, int]]) -> None:
        """Have the store mark as plain, from the next rows on, the reused decisions with this
        summary (not proposed)."""
        number = self.learned[summary] = self.store.learn_plain(summary)
        self.plain_keys[number] = known
        if known[0].quality:
            self.listed_numbers.add(number)

    def _write_plain(self) -> None:
        """Write the plain patients gathered: their lines taken from the last run's file in one
        piece (`LastLines.stretch`), their summaries counted by number. Should the file hold
        other lines between theirs, they are written as any other reused patients, by id."""
        plain = self.plain
        if not plain.count:
            return
        assert self.last is not None
        self.plain_used.update(plain.numbers)
        first, last, count = plain.first, plain.last, plain.count
        lines = self.last.stretch(first, last, count, self.new_prefix)
        if lines is None:
            self._write_run()
            keys = self.plain_keys
            for pid, number in self._plain_between(first, last, count):
                key, counts = keys[number]
                self.run.append((pid, key, counts, "", ""))  # digest as after the last run
            plain.clear()
            self._write_run()
            return
        stats, tally, keys = self.stats, self.stats.tally, self.plain_keys
        counted: dict[SummaryKey, int] = {}
        for number, times in plain.numbers.items():
            key, counts = keys[number]
            counted[key] = counted.get(key, 0) + times
            if counts != NO_PROPOSALS:
                tally.add_counts(tuple(c * times for c in counts))  # type: ignore[arg-type]
        stats.patients += count
        stats.kept += count
        stats.reused += count
        listed = [(f"Patient/{pid}", keys[number][0]) for pid, number in plain.listed]
        patients = _Patients(count, partial(self._patients_between, first, last, count))
        self.outputs.add_stretch(lines, counted, listed, patients)
        plain.clear()

    def _plain_between(self, first: str, last: str, count: int) -> list[tuple[str, int]]:
        """(id, summary number) of the `count` plain patients from `first` to `last`."""
        numbers = self.learned
        found = [(pid, numbers[summary]) for pid, summary in self.store.plain_between(first, last)]
        assert len(found) == count, "the store changed during the screen"
        return found

    def _patients_between(self, first: str, last: str, count: int) -> list[tuple[str, SummaryKey]]:
        keys = self.plain_keys
        return [(f"Patient/{p}", keys[n][0]) for p, n in self._plain_between(first, last, count)]

    def _count(self, pid: str, digest: str, previous: str | None) -> None:
        stats = self.stats
        stats.patients += 1
        if digest != previous:
            self.staged.append((pid, digest))
            stats.changes += 1
        if previous is not None:
            stats.kept += 1

    def _write_run(self) -> None:
        """Write the reused decisions gathered in `run`: their lines taken from the last run's
        file in one piece (`LastLines.lines_of`), or, should it not have them all, the
        patients evaluated here and now."""
        run = self.run
        if not run:
            return
        assert self.last is not None
        lines = self.last.lines_of([r[0] for r in run], self.new_prefix)
        if lines is None:  # not expected: the file was vouched for
            by_pid = {d.pid: d for d in self.rescue([r[0] for r in run])}
            for pid, *_, previous in run:
                self._count(pid, self.evaluated(by_pid[pid]), previous)
            run.clear()
            return
        stats, tally = self.stats, self.stats.tally
        for pid, _, counts, digest, previous in run:
            if counts != NO_PROPOSALS:
                tally.add_counts(counts)
            self._count(pid, digest, previous)
        stats.reused += len(run)
        self.outputs.add_run([(f"Patient/{r[0]}", r[1]) for r in run], lines)
        run.clear()

    def flush(self) -> None:
        """Write what is gathered: the reused decisions, then the cache rows and digests (a
        transaction each; proposals' entries still being made are waited for)."""
        self._write_plain()
        self._write_run()
        self.store.cache.put([_made(row) for row in self.cached], self.generation)
        self.store.ledger.stage_digests(self.staged)
        self.cached.clear()
        self.staged.clear()

    def evaluated(self, done: Decided) -> str:
        summary = orjson.dumps([*done.key, *done.counts])
        line, proposal, texts, ref = done.line, done.proposal, done.texts, f"Patient/{done.pid}"
        if texts is None:
            self.written.add(summary)
        data = line if texts is not None else b""  # others: tonight's decisions.ndjson
        row = (done.pid, self.day, done.until, done.digest, summary, data, proposal, texts)
        self.cached.append(row)
        self.stats.tally.add_counts(done.counts)
        self.stats.evaluated += 1
        kept = None if texts is None else Proposed(ref, done.key, texts, line=line, as_of=self.day)
        self.outputs.add(ref, line, done.key, kept, proposal)
        return done.digest

    def reuse_proposed(self, row: ScreenRow, key: SummaryKey, counts: tuple[int, int, int]) -> str:
        """A reused proposed decision: its line, proposals.json entries and words are cached (its
        decision is read from the line only if an output asks for it)."""
        pid, cached_day, digest, data = row[0], row[1], row[3], row[5]
        proposal, texts = row[7], row[9]
        assert cached_day is not None and digest is not None and data and texts is not None
        body = memoryview(data)[len(_prefix(cached_day)) :]
        ref = f"Patient/{pid}"
        kept = Proposed(ref, key, texts, line=data, as_of=self.day)
        if counts != NO_PROPOSALS:
            self.stats.tally.add_counts(counts)
        self.stats.reused += 1
        self.outputs.add(ref, body, key, kept, proposal, head=self.new_prefix)
        return digest


class _Stretch:
    """Plain patients in a row, as the screen gathers them: the first and last id, how many,
    how many of each summary number, and (id, number) of those with data-quality notes."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.first = self.last = ""
        self.count = 0
        self.numbers: dict[int, int] = {}
        self.listed: list[tuple[str, int]] = []


class _Patients(Sequence[tuple[str, SummaryKey]]):
    """The (reference, summary key) of a stretch's patients, read from the store only if an
    output asks for them (the built-in ones do not: they write the lines as they come)."""

    def __init__(self, count: int, load: Callable[[], list[tuple[str, SummaryKey]]]) -> None:
        self.count, self.load = count, load
        self.items: list[tuple[str, SummaryKey]] | None = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        if self.items is None:
            self.items = self.load()
        return self.items[index]


NO_PROPOSALS = (0, 0, 0)
# A reused decision waiting to be written: (patient id, summary key, proposal counts, digest,
# digest after the last run)
Reused = tuple[str, SummaryKey, tuple[int, int, int], str, str | None]


def _summary(summary: bytes) -> tuple[SummaryKey, tuple[int, int, int]]:
    values = orjson.loads(summary)
    key = SummaryKey(*(tuple(v) if isinstance(v, list) else v for v in values[:7]))
    return key, (values[7], values[8], values[9])


def _made(row: CacheRow) -> CacheRow:
    """The row with its proposal's entries, once made (nightly/proposal_maker.py)."""
    proposal = row[6]
    if not isinstance(proposal, Future):
        return row
    return (*row[:6], proposal.result(), row[7])  # type: ignore[return-value]


def _cached_proposal(row: ScreenRow) -> Reuse:
    """A cached decision's line after its date, its proposal entries and its words, when it has
    them (when proposed)."""
    cached_day, cached, proposal, texts = row[1], row[5], row[7], row[9]
    if cached_day is None or cached is None or proposal is None or texts is None:
        return None
    prefix = _prefix(cached_day)
    return (cached[len(prefix) :], proposal, texts) if cached.startswith(prefix) else None


def screen_all(
    store: StateStore,
    ruleset: CompiledRuleset,
    as_of: date,
    progress: Progress,
    outputs: OutputFolder,
    *,
    reuse: bool = True,
    jobs: int | None = None,
    maker: ProposalMaker | None = None,
) -> ScreenStats:
    """Every patient in the store decided as of `as_of`, into `outputs`; the tool's proposals
    counted; the decisions whose digest differs from the last run's staged for the ledger.
    `maker`: where the proposals' entries of patients decided in this process are made (None:
    here)."""
    fingerprint = decisions_fingerprint(ruleset, outputs.owner)
    usable = store.cache.prepare(fingerprint) and reuse
    recorded = store.cache.lines_file()
    last = LastLines.open(store.path.parent, recorded) if usable else None
    store.ledger.clear_staged_digests()
    store.forget_plain()
    screen = _Screen(store, ruleset, as_of, outputs, last)
    in_file = recorded.generation if recorded is not None else 0
    screen.generation = screen.stats.generation = store.cache.next_generation(in_file)
    if last is not None and recorded is not None:
        screen.lines_generation = recorded.generation
        screen.learn_kept(store.cache.plain_summaries())
    how = Deciding(ruleset, as_of, outputs.owner, store.path)
    last_patients = store.ledger.digest_count()  # the patients the last run screened
    deciders = Deciders(how, jobs or default_jobs(), expected=last_patients, maker=maker)
    facts_of = store.facts.facts_of
    screen.rescue = lambda pids: deciders.decide_here(pids, facts_of)
    after: str | None = None
    try:
        with gc_paused(), progress.stage("screened", unit="patients") as bar:
            while rows := store.screen_rows(after, CHUNK, screen.day, screen.lines_generation):
                after = rows[-1][0]
                need = screen.need(rows, usable)
                for done_rows, decided in deciders.submit(rows, need, facts_of, len(rows)):
                    screen.chunk(done_rows, decided)  # type: ignore[arg-type]
                    bar.update(len(done_rows))  # type: ignore[arg-type]
            for done_rows, decided in deciders.results():
                screen.chunk(done_rows, decided)  # type: ignore[arg-type]
                bar.update(len(done_rows))  # type: ignore[arg-type]
            screen.flush()
        store.cache.keep_plain_summaries(screen.kept_summaries())
    finally:
        deciders.close()
        if last is not None:
            last.close()
    stats = screen.stats
    stats.gone = last_patients - stats.kept
    stats.changes += stats.gone
    log.info(
        "screened %s: %d evaluated, %s reused (%s read from the last run's decisions.ndjson)",
        counted(stats.patients, "patient"),
        stats.evaluated,
        counted(stats.reused, "cached decision"),
        counted(0 if last is None else last.used, "line"),
        extra={"event": {"screened": stats.patients, "evaluated": stats.evaluated}},
    )
    return stats
