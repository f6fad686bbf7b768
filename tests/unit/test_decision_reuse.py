"""Reusing cached decisions: nightly runs on consecutive dates, with data changes in between, give
byte-identical outputs with and without reuse, and the same decisions and proposals as a one-off
screen of the data as it stands; the outputs fed as the nightly job feeds them (cached lines,
summary keys and proposal templates) equal `pipeline.finish`'s."""

from __future__ import annotations

import copy
import os
import sqlite3
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from pathlib import Path

import orjson
import pytest

from ips_screen.dates import LONDON
from ips_screen.engine import Decision, evaluate
from ips_screen.errors import InputError
from ips_screen.facts.extract import SUBJECT_FIELD
from ips_screen.nightly import screen
from ips_screen.nightly.config import PracticeConfig
from ips_screen.nightly.last_lines import LastLines
from ips_screen.nightly.proposal_maker import ProposalMaker
from ips_screen.nightly.run import NightlyResult, run_nightly
from ips_screen.outputs.file_slice import file_stamp
from ips_screen.outputs.folder import OutputFolder
from ips_screen.outputs.formats.decisions_ndjson import decision_line
from ips_screen.outputs.formats.proposals_json import device_bytes, proposal_template
from ips_screen.outputs.formats.report_html import ReportHtml
from ips_screen.outputs.proposed import Proposed, proposed_texts
from ips_screen.outputs.registry import filenames
from ips_screen.pipeline import finish
from ips_screen.presentation.trace import step_line
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.sources import discover, iter_resources
from ips_screen.sources.population import collect_resources
from ips_screen.store import StateStore
from ips_screen.store import state as state_module
from ips_screen.synth import write_bulk
from tests.helpers import NOT_FIT, UNEMPLOYED, condition, employment, fit_note, patient
from tests.support.paths import FIXTURES

T = date(2026, 11, 26)
FILES = filenames()
CHRONIC_PAIN = "82423001"


@pytest.fixture(scope="module")
def ruleset() -> CompiledRuleset:
    return load_ruleset(None)


@pytest.fixture(params=["one-chunk", "small-chunks"])
def stretches(request, monkeypatch) -> list[bool]:
    """Whether each of the screen's stretches of plain patients had its lines taken in one
    piece (False: by id). With small chunks the screen reads the store many times a night, so
    that the summaries it learns in one chunk make patients plain in the next; in one chunk,
    patients are plain by the summaries the last screen kept. Small chunks also read the
    patients who are not plain by id only when they are at most 3 of a chunk (else the chunk
    whole again: `StateStore.screen_rows`), so that a night takes both ways."""
    if request.param == "small-chunks":
        monkeypatch.setattr(screen, "CHUNK", 16)
        monkeypatch.setattr(screen, "RUN_MAX", 5)
        monkeypatch.setattr(state_module, "ROWS_PER_QUERY", 3)
    taken: list[bool] = []
    real = LastLines.stretch

    def spy(self, *args):
        lines = real(self, *args)
        taken.append(lines is not None)
        return lines

    monkeypatch.setattr(LastLines, "stretch", spy)
    return taken


def night_of(day: date) -> datetime:
    return datetime.combine(day, time(2, 0), tzinfo=LONDON)  # GMT or BST by the day


def ndjson(folder: Path, resources: Iterable[dict], name: str = "changes.ndjson") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in resources)
    (folder / name).write_bytes(lines)


def deletions(folder: Path, refs: Iterable[str]) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": ref}} for ref in refs],
    }
    ndjson(folder / "deleted", [bundle], "del.ndjson")


def population(folder: Path) -> dict[str, dict]:
    """A small synthetic practice plus the fixture patients, by "Type/id"."""
    write_bulk(folder / "synth", 300, seed=7, as_of=T)
    out: dict[str, dict] = {}
    for resource, _, _ in iter_resources(discover([folder / "synth", FIXTURES])):
        if resource["resourceType"] in SUBJECT_FIELD or resource["resourceType"] == "Patient":
            out[f"{resource['resourceType']}/{resource['id']}"] = resource
    return out


def config(source: Path, state: Path, reuse: bool, jobs: int | None = None) -> PracticeConfig:
    return PracticeConfig.model_validate(
        {
            "source": {"kind": "files", "path": source, "incremental": True},
            "screen": {"reuse_decisions": reuse, "jobs": jobs},
            "output": {"state_dir": state, "keep_runs": 10},
        }
    )


def reference(current: dict[str, dict], ruleset: CompiledRuleset, day: date, out: Path) -> None:
    """A one-off screen of the data as it stands, written by `pipeline.finish`."""
    facts = collect_resources(list(current.values()), ruleset)
    decisions = sorted((evaluate(ruleset, f, day) for f in facts), key=lambda d: d.patient)
    finish(
        decisions,
        ruleset,
        as_of=day,
        now=night_of(day),
        out_dir=out,
        read_report={},
        orphans={},
        unlinked=0,
    )


def changes(current: dict[str, dict], day: date, n: int) -> tuple[list[dict], list[str]]:
    """Night n's changes: upserts (a new fit note, a changed employment status, new chronic
    pain, a resolved Condition, a record moved to another patient, a new patient) and
    deletions (a patient, a record)."""
    pids = sorted(ref[8:] for ref in current if ref.startswith("Patient/"))
    at = (day - timedelta(days=3)).isoformat()
    picked = pids[7 * n :: 37]
    upserts: list[dict] = [patient(f"new-{n}", "1985-05-05")]
    upserts.append(condition(CHRONIC_PAIN, onset=at, id=f"pain-{n}", subject=f"new-{n}"))
    for k, pid in enumerate(picked):
        kind = k % 4
        if kind == 0:
            upserts.append(fit_note(NOT_FIT, at, id=f"fit-{n}-{k}", subject=pid))
        elif kind == 1:
            upserts.append(employment(UNEMPLOYED, at, id=f"emp-{n}-{k}", subject=pid))
        elif kind == 2:
            upserts.append(condition(CHRONIC_PAIN, onset=at, id=f"cp-{n}-{k}", subject=pid))
    active = [
        r
        for r in current.values()
        if r["resourceType"] == "Condition"
        and "active" in orjson.dumps(r.get("clinicalStatus", {})).decode()
    ]
    for resolved in active[n :: max(1, len(active) // 5)][:5]:
        resolved = copy.deepcopy(resolved)
        resolved["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "resolved",
                }
            ]
        }
        resolved["abatementDateTime"] = at
        upserts.append(resolved)
    moved = copy.deepcopy(active[-1 - n])
    moved["subject"] = {"reference": f"Patient/{pids[-1 - n]}"}
    upserts.append(moved)
    gone = [f"Patient/{pids[3 + n]}", f"Condition/{active[2 * n + 1]['id']}"]
    return upserts, gone


def apply_changes(current: dict[str, dict], upserts: list[dict], gone: list[str]) -> None:
    for resource in upserts:
        current[f"{resource['resourceType']}/{resource['id']}"] = resource
    for ref in gone:
        current.pop(ref, None)
        if ref.startswith("Patient/"):
            for key in [k for k, r in current.items() if _subject(r) == ref]:
                del current[key]


def _subject(resource: dict) -> str | None:
    field = SUBJECT_FIELD.get(resource["resourceType"])
    value = resource.get(field) if field else None
    return value.get("reference") if isinstance(value, dict) else None


@pytest.mark.slow
def test_nights_with_and_without_reuse_give_identical_outputs(
    tmp_path: Path, ruleset, stretches: list[bool], monkeypatch: pytest.MonkeyPatch
):
    """Night a reuses decisions, and on two processes has its new proposals and its report's
    HTML made by a `ProposalMaker`; night b evaluates everyone on one process and makes them
    itself."""
    made: list[str] = []
    pages: list[str] = []
    real, real_page = ProposalMaker.template, ProposalMaker.page

    def spy(self, decision):
        made.append(decision.patient)
        return real(self, decision)

    def page_spy(self, page, cache_dir):
        pages.append(page["as_of"])
        return real_page(self, page, cache_dir)

    monkeypatch.setattr(ProposalMaker, "template", spy)
    monkeypatch.setattr(ProposalMaker, "page", page_spy)
    current = population(tmp_path / "data")
    ndjson(tmp_path / "night-0", current.values(), "all.ndjson")
    reusing = config(tmp_path / "night-0", tmp_path / "a", reuse=True, jobs=2)
    fresh = config(tmp_path / "night-0", tmp_path / "b", reuse=False, jobs=1)
    days = [T, T + timedelta(days=1), T + timedelta(days=40), T + timedelta(days=400)]
    days += [T + timedelta(days=399), T + timedelta(days=401)]  # a night earlier than the last
    results: list[tuple[NightlyResult, NightlyResult]] = []
    for n, day in enumerate(days):
        if n:
            folder = tmp_path / f"night-{n}"
            if n in (1, 3):
                upserts, gone = changes(current, day, n)
                apply_changes(current, upserts, gone)
                deletions(folder, gone)
            else:  # no change but one Patient sent again as it was
                upserts = [current[next(k for k in current if k.startswith("Patient/"))]]
            ndjson(folder, upserts)
            reusing = reusing.model_copy(
                update={"source": reusing.source.model_copy(update={"path": folder})}
            )
            fresh = fresh.model_copy(
                update={"source": fresh.source.model_copy(update={"path": folder})}
            )
        a = run_nightly(reusing, now=night_of(day), as_of=day, environ={})
        b = run_nightly(fresh, now=night_of(day), as_of=day, environ={})
        results.append((a, b))
        assert (a.mode, b.mode) == (("full", "full") if n == 0 else ("incremental",) * 2)
        for name in FILES:
            assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), (n, name)
        assert (a.patients, a.changes, a.summary) == (b.patients, b.changes, b.summary)
        assert b.reused == 0 and b.evaluated == b.patients
        expected = tmp_path / f"reference-{n}"
        reference(current, ruleset, day, expected)
        for name in ("decisions.ndjson", "proposals.json", "worklist.csv"):
            assert (a.out_dir / name).read_bytes() == (expected / name).read_bytes(), (n, name)
    outcomes = [a.summary["outcomes"]["propose"] for a, _ in results]
    assert min(outcomes) > 0 and len(set(outcomes)) > 1  # proposals, and they change
    assert results[0][0].reused == 0
    assert results[1][0].reused > 0.8 * results[1][0].patients  # T + 1 day: mostly reused
    assert results[2][0].reused > 0  # T + 40 days: still some
    earlier = results[4][0]  # T + 399 after T + 400: only decisions cached before T + 399 hold
    assert earlier.evaluated > 0.9 * earlier.patients
    assert True in stretches  # plain patients, in one chunk or many
    assert made  # new proposals of the incremental nights were made on the maker's process
    assert pages == [day.isoformat() for day in days[1:]]  # and their reports' HTML


def test_a_changed_record_invalidates_both_patients_and_a_reset_everyone(tmp_path: Path, ruleset):
    with StateStore(tmp_path / "store.sqlite") as state:
        store, cache = state.facts, state.cache
        store.reset(ruleset)
        first = [patient("a"), patient("b"), patient("c")]
        first.append(condition(CHRONIC_PAIN, id="x", subject="a"))
        store.apply([(r, "memory", None) for r in first], ruleset)
        row = ("", "2026-11-26", "2027-01-01", "d", b"[]", b"{}", None, None)
        cache.put([(pid, *row[1:]) for pid in "abc"], 1)
        moved = condition(CHRONIC_PAIN, id="x", subject="b")
        store.apply([(moved, "memory", None)], ruleset)
        assert [cache.get(p) is None for p in "abc"] == [True, True, False]
        cache.put([(pid, *row[1:]) for pid in "ab"], 1)
        store.delete(["Condition/x"])
        assert [cache.get(p) is None for p in "abc"] == [False, True, False]
        store.reset(ruleset)
        assert not cache.has_rows()


def test_cached_decisions_take_little_more_disk_than_their_bytes(tmp_path: Path):
    """A night's cached decisions (about 4.5 kB each) cost the store not much more than their
    size: on 8 kB pages each took a page and a mostly empty overflow page (1.7 times)."""
    line = orjson.dumps({"as_of": "2026-11-26", "trace": ["x" * 90] * 48})
    assert 4_000 < len(line) < 5_000
    with StateStore(tmp_path / "store.sqlite") as state:
        rows = [
            (f"p{n:05}", "2026-11-26", "2027-01-01", "d" * 64, b"[1,2]", line, None, None)
            for n in range(2_000)
        ]
        state.cache.put(rows, 1)
        sql = state.facts.sql
        try:
            [(used,)] = sql.execute(
                "SELECT SUM(pgsize) FROM dbstat WHERE name = 'decision_cache'"
            ).fetchall()
        except sqlite3.OperationalError:  # SQLite built without the dbstat table
            pytest.skip("SQLite without dbstat")
        stored = sum(sum(len(v) for v in row if v is not None) for row in rows)
        assert used < 1.25 * stored


def _night(cfg: PracticeConfig, source: Path, day: date) -> NightlyResult:
    cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"path": source})})
    return run_nightly(cfg, now=night_of(day), as_of=day, environ={})


@pytest.mark.slow
def test_reused_lines_come_from_the_last_runs_file_and_only_when_it_is_as_recorded(
    tmp_path: Path, ruleset, monkeypatch, stretches: list[bool]
):
    """An incremental night takes the lines of the decisions it reuses from the last run's
    decisions.ndjson (the store keeps only the proposed ones' lines). When that file was
    touched or removed, the patients whose line it held are evaluated again; when the last run
    failed after caching some decisions, only those (but the proposed ones, whose lines the
    store keeps). The outputs are the same as with no reuse either way."""
    current = population(tmp_path / "data")
    ndjson(tmp_path / "night-0", current.values(), "all.ndjson")
    ndjson(tmp_path / "none", [])
    reusing = config(tmp_path / "night-0", tmp_path / "a", reuse=True)
    fresh = config(tmp_path / "night-0", tmp_path / "b", reuse=False)

    def night(n: int) -> NightlyResult:
        day = T + timedelta(days=n)
        source = tmp_path / ("night-0" if n == 0 else "none")
        a, b = _night(reusing, source, day), _night(fresh, source, day)
        for name in FILES:
            assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), (n, name)
        return a

    first = night(0)
    proposed = first.summary["outcomes"]["propose"]
    assert proposed > 0 and first.evaluated == first.patients
    with sqlite3.connect(tmp_path / "a" / "store.sqlite") as sql:
        kept = sql.execute("SELECT COUNT(*) FROM decision_cache WHERE data != x''").fetchone()
    assert kept == (proposed,)  # the others' lines are in runs/1/decisions.ndjson only
    assert night(1).evaluated < 0.2 * first.patients

    last = tmp_path / "a" / "runs" / "latest" / "decisions.ndjson"
    os.utime(last, ns=(last.stat().st_atime_ns, last.stat().st_mtime_ns + 1_000_000_000))
    assert night(2).evaluated >= first.patients - proposed  # the file is not as recorded
    assert night(3).evaluated < 0.2 * first.patients  # the file of night 2 is

    last.unlink()
    assert night(4).evaluated >= first.patients - proposed

    def fail(self, done):
        raise RuntimeError("disk on fire")

    upserts, gone = changes(current, T + timedelta(days=5), 5)
    ndjson(tmp_path / "night-5", upserts)
    deletions(tmp_path / "night-5", gone)
    with monkeypatch.context() as patched:  # the run fails after the screen changed the cache
        patched.setattr(ReportHtml, "finish", fail)
        for cfg in (reusing, fresh):  # both, so that both reports list the failed run
            with pytest.raises(RuntimeError):
                _night(cfg, tmp_path / "night-5", T + timedelta(days=5))
    # Decisions the failed run cached from the changes: their lines in the last finished run's
    # file are out of date, some of them with the same digest (which leaves out the trace). The
    # others' lines are still those of the file, which the failed run left recorded.
    with sqlite3.connect(tmp_path / "a" / "store.sqlite") as sql:
        day = (T + timedelta(days=5)).isoformat()
        query = "SELECT COUNT(*) FROM decision_cache WHERE as_of = ? AND data = x''"
        cached_by_failed_run = sql.execute(query, (day,)).fetchone()[0]
    assert cached_by_failed_run > 0
    after_failure = night(5)  # run again the same day
    assert cached_by_failed_run <= after_failure.evaluated < 0.2 * first.patients
    assert night(6).evaluated < 0.2 * first.patients

    # Not expected: a file that passes the checks but lacks a line. From there on the file is not
    # read, and the patients whose line it held are evaluated there and then; the outputs are
    # still the same.
    lines = last.read_bytes().splitlines(keepends=True)
    middle = next(n for n in range(len(lines) // 2, len(lines)) if b'"excluded"' in lines[n])
    last.write_bytes(b"".join(lines[:middle] + lines[middle + 1 :]))
    with StateStore(tmp_path / "a" / "store.sqlite") as state:
        recorded = state.cache.lines_file()
        assert recorded is not None
        state.cache.remember_lines_file(replace(recorded, **_stamp(last)))
    rescued = night(7)
    assert 0.2 * first.patients < rescued.evaluated < first.patients - proposed
    assert True in stretches  # plain patients, in one chunk or many


def _stamp(path: Path) -> dict[str, int]:
    size, mtime_ns, inode = file_stamp(path)
    return {"size": size, "mtime_ns": mtime_ns, "inode": inode}


@pytest.mark.slow
def test_outputs_fed_from_the_cache_equal_pipeline_finish(tmp_path: Path, ruleset):
    """The guard that the screen and the nightly job write the same files: both go through
    `OutputFolder`, the nightly job with cached lines (split after the as-of date), summary keys,
    proposal templates and the proposed patients' words (their decisions left in their lines)."""
    resources = population(tmp_path / "data")
    facts = collect_resources(list(resources.values()), ruleset)
    for day in (T, date(2027, 6, 1)):  # GMT and BST nights
        now = night_of(day)
        decisions = sorted((evaluate(ruleset, f, day) for f in facts), key=lambda d: d.patient)
        assert sum(d.outcome == "propose" for d in decisions) > 1
        trends = [{"run": 1, "as_of": day.isoformat(), "propose": 3, "not_eligible": 1}]
        read = {"files": 2, "resources": 9, "by_type": {"Patient": 4}, "skipped_count": 0}
        kwargs = {"read_report": read, "orphans": {"x": 2}, "unlinked": 1, "trends": trends}
        expected = tmp_path / f"finish-{day}"
        finish(decisions, ruleset, as_of=day, now=now, out_dir=expected, **kwargs)
        out = tmp_path / f"stream-{day}"
        streamed = OutputFolder(out, ruleset, as_of=day, now=now, owner=None)
        counter = streamed.counter
        for d in decisions:
            line = orjson.dumps(d.to_dict(step_line), option=orjson.OPT_SORT_KEYS)
            cut = line.index(b'",') + 1  # after b'{"as_of":"YYYY-MM-DD"', as the cache splits
            head, body = line[:cut], memoryview(line)[cut:]
            proposed = d.outcome == "propose"
            template = proposal_template(d, ruleset, None) if proposed else None
            key = counter.key(d)
            texts = proposed_texts(d, ruleset)
            kept = Proposed(d.patient, key, texts, line=line, as_of=day.isoformat())
            streamed.add(d.patient, body, key, kept if proposed else None, template, head=head)
        streamed.finish(**kwargs)
        for name in FILES:
            got = (out / name).read_bytes()
            assert got == (expected / name).read_bytes(), name
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


class _NotYet(Future):
    """A Future being made elsewhere: asking for its result before it is done is waiting."""

    def result(self, timeout: float | None = None) -> bytes:
        assert self.done(), "waited for an entry still being made"
        return super().result(timeout)


def test_proposals_json_waits_for_no_entry_being_made_until_it_finishes(tmp_path: Path, ruleset):
    """An incremental night makes the Device entry and new proposals' entries on another process
    (nightly/proposal_maker.py): the proposed patients reused meanwhile wait in line, in order,
    and the file is the one written with every entry at hand."""
    resources = population(tmp_path / "data")
    facts = collect_resources(list(resources.values()), ruleset)
    now = night_of(T)
    decisions = sorted((evaluate(ruleset, f, T) for f in facts), key=lambda d: d.patient)
    proposed = [d for d in decisions if d.outcome == "propose"]
    assert len(proposed) > 2
    made: dict[str, Future] = {}
    folders = {}
    for name, device in (("at-hand", None), ("being-made", _NotYet())):
        out = OutputFolder(tmp_path / name, ruleset, as_of=T, now=now, owner=None, device=device)
        for d in decisions:
            template: bytes | Future | None = None
            if d.outcome == "propose":
                template = proposal_template(d, ruleset, None)
                if device is not None and d is proposed[1]:  # still being made
                    template = made[d.patient] = _NotYet()
            if template is None:
                out.add_decision(d)
            else:
                out.add(d.patient, decision_line(d), out.counter.key(d), d, template)
        if device is not None:
            device.set_result(device_bytes())
            made[proposed[1].patient].set_result(proposal_template(proposed[1], ruleset, None))
        read = {"files": 1, "resources": len(resources), "by_type": {}, "skipped_count": 0}
        out.finish(read_report=read, orphans={}, unlinked=0)
        folders[name] = (tmp_path / name / "proposals.json").read_bytes()
    assert folders["being-made"] == folders["at-hand"]


def _collector_on(_: object) -> bool:
    import gc

    return gc.isenabled()


def test_worker_processes_collect_garbage_though_the_screen_paused_the_collector(
    tmp_path: Path, ruleset
):
    """The screen pauses the cyclic collector in its own process; the deciding processes it
    forks meanwhile must not inherit the pause (their garbage would pile up all night)."""
    import gc
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ips_screen.nightly.deciding import Deciding, _init
    from ips_screen.reading import gc_paused

    with StateStore(tmp_path / "store.sqlite"):
        pass
    how = Deciding(ruleset, T, None, tmp_path / "store.sqlite")
    fork = multiprocessing.get_context("fork")
    with gc_paused(), ProcessPoolExecutor(1, fork, _init, (how,)) as workers:
        assert not gc.isenabled()
        assert workers.submit(_collector_on, None).result()


@pytest.mark.slow
def test_patients_removed_between_reused_ones_leave_the_outputs_as_without_reuse(
    tmp_path: Path, monkeypatch
):
    """Patients removed from the practice since the last run still have a line in its
    decisions.ndjson, between the lines of patients whose decisions are reused tonight: such a
    stretch is not taken in one piece but by id, and the outputs are those of a night without
    reuse."""
    monkeypatch.setattr(screen, "CHUNK", 16)
    monkeypatch.setattr(screen, "RUN_MAX", 50)
    taken: list[bool] = []
    real = LastLines.stretch
    monkeypatch.setattr(
        LastLines, "stretch", lambda self, *a: taken.append(bool(x := real(self, *a))) or x
    )
    current = population(tmp_path / "data")
    ndjson(tmp_path / "night-0", current.values(), "all.ndjson")
    pids = sorted(ref for ref in current if ref.startswith("Patient/"))
    gone = pids[40::25]
    apply_changes(current, [], gone)
    deletions(tmp_path / "night-1", gone)
    ndjson(tmp_path / "night-1", [])
    for reuse, state in ((True, "a"), (False, "b")):
        cfg = config(tmp_path / "night-0", tmp_path / state, reuse=reuse)
        _night(cfg, tmp_path / "night-0", T)
        results = _night(cfg, tmp_path / "night-1", T + timedelta(days=1))
        assert results.patients == len(pids) - len(gone)
    for name in FILES:
        a = (tmp_path / "a" / "runs" / "latest" / name).read_bytes()
        assert a == (tmp_path / "b" / "runs" / "latest" / name).read_bytes(), name
    assert True in taken and False in taken  # stretches taken whole, and some by id


def test_a_night_reusing_proposed_decisions_does_not_read_them_back(tmp_path: Path, monkeypatch):
    """A reused proposed patient's worklist row and report lines are cached with the decision,
    so a night that reuses them (and writes nothing to a server) reads no decision back from its
    line; the outputs are still those of a night without reuse."""
    current = population(tmp_path / "data")
    ndjson(tmp_path / "night-0", current.values(), "all.ndjson")
    ndjson(tmp_path / "none", [])
    read: list[dict] = []
    real = Decision.from_dict

    def from_dict(data: dict) -> Decision:
        read.append(data)
        return real(data)

    results = {}
    for reuse, state in ((True, "a"), (False, "b")):
        cfg = config(tmp_path / "night-0", tmp_path / state, reuse=reuse)
        _night(cfg, tmp_path / "night-0", T)
        read.clear()
        with monkeypatch.context() as patched:
            patched.setattr(Decision, "from_dict", from_dict)
            results[reuse] = _night(cfg, tmp_path / "none", T + timedelta(days=1)), list(read)
    (reusing, read_back), (fresh, _) = results[True], results[False]
    assert reusing.summary["outcomes"]["propose"] > 0 and reusing.reused > 0.8 * reusing.patients
    assert read_back == []
    for name in FILES:
        assert (reusing.out_dir / name).read_bytes() == (fresh.out_dir / name).read_bytes(), name


def test_a_store_made_before_the_cached_words_is_emptied_once_and_then_caches_them(tmp_path):
    path = tmp_path / "store.sqlite"
    with StateStore(path) as state:
        state.cache.prepare("an older fingerprint")
        state.cache.put([("a", "2026-11-26", "2027-01-01", "d", b"[]", b"", None, None)], 1)
    with sqlite3.connect(path) as sql:  # as the cache table was before the words were kept
        sql.execute("ALTER TABLE decision_cache DROP COLUMN texts")
    with StateStore(path) as state:
        assert not state.cache.prepare("fingerprint")
        assert not state.cache.has_rows()
        row = ("b", "2026-11-26", "2027-01-01", "d", b"[]", b"{}", b"{}", b'["why","lines"]')
        state.cache.put([row], 1)
        assert state.cache.get("b") == row
        assert state.cache.prepare("fingerprint")


def test_a_night_leaves_nothing_frozen_out_of_the_garbage_collector(tmp_path: Path):
    """The night keeps the collector off the objects alive when it starts (`gc.freeze`), and
    gives them back when it ends, so that a process running many nights (a test session, a
    service) can still collect them; a failed night too."""
    import gc

    frozen = gc.get_freeze_count()
    ndjson(tmp_path / "night-0", [patient("p", "1980-01-01")], "all.ndjson")
    _night(config(tmp_path / "night-0", tmp_path / "state", reuse=True), tmp_path / "night-0", T)
    assert gc.get_freeze_count() == frozen
    broken = config(tmp_path / "missing", tmp_path / "state", reuse=True)
    with pytest.raises(InputError, match="missing"):
        run_nightly(broken, now=night_of(T), as_of=T, environ={})
    assert gc.get_freeze_count() == frozen


def test_a_report_the_maker_cannot_make_fails_the_night_and_keeps_the_last_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """report.html's HTML is made on the maker's process (nightly/proposal_maker.py) and
    written when the files settle: should it fail there, no file of the night is kept, nor its
    run folder, which would count as a run kept (`keep_runs`) and push a good one out."""
    current = population(tmp_path / "data")
    ndjson(tmp_path / "night-0", current.values(), "all.ndjson")
    settings = config(tmp_path / "night-0", tmp_path / "state", reuse=True, jobs=2)
    settings = settings.model_copy(
        update={"output": settings.output.model_copy(update={"keep_runs": 2})}
    )
    first = run_nightly(settings, now=night_of(T), as_of=T, environ={})
    kept = {p.name: p.read_bytes() for p in first.out_dir.iterdir()}
    ndjson(tmp_path / "night-1", [current[next(k for k in current if k.startswith("Patient/"))]])
    later = settings.model_copy(
        update={"source": settings.source.model_copy(update={"path": tmp_path / "night-1"})}
    )

    def broken(self: ProposalMaker, page: dict, cache_dir: Path | None) -> Future[str]:
        failed: Future[str] = Future()
        failed.set_exception(RuntimeError("template missing"))
        return failed

    runs = tmp_path / "state" / "runs"
    with monkeypatch.context() as patched:
        patched.setattr(ProposalMaker, "page", broken)
        for days in (1, 2):
            day = T + timedelta(days=days)
            with pytest.raises(RuntimeError, match="template missing"):
                run_nightly(later, now=night_of(day), as_of=day, environ={})
            assert (runs / "latest").resolve() == first.out_dir.resolve()
            assert sorted(p.name for p in runs.iterdir()) == [first.out_dir.name, "latest"]
            assert {p.name: p.read_bytes() for p in first.out_dir.iterdir()} == kept
    day = T + timedelta(days=3)
    fourth = run_nightly(later, now=night_of(day), as_of=day, environ={})
    assert sorted(p.name for p in runs.iterdir()) == [
        first.out_dir.name,
        fourth.out_dir.name,
        "latest",
    ]
    assert {p.name: p.read_bytes() for p in first.out_dir.iterdir()} == kept


def test_a_store_made_before_generations_reuses_its_decisions_from_the_next_night_on(
    tmp_path: Path,
):
    """A store whose cached decisions and lines file predate the screens' generations: its
    rows count as older than any screen, and its file as holding their lines."""
    current = population(tmp_path / "data")
    ndjson(tmp_path / "night-0", current.values(), "all.ndjson")
    ndjson(tmp_path / "none", [])
    reusing = config(tmp_path / "night-0", tmp_path / "a", reuse=True)
    fresh = config(tmp_path / "night-0", tmp_path / "b", reuse=False)
    first = _night(reusing, tmp_path / "night-0", T)
    _night(fresh, tmp_path / "night-0", T)
    with sqlite3.connect(tmp_path / "a" / "store.sqlite") as sql:  # as such a store was
        sql.execute("ALTER TABLE decision_cache DROP COLUMN generation")
        sql.execute("DELETE FROM meta WHERE key = 'screen_generation'")
        (value,) = sql.execute("SELECT value FROM meta WHERE key = 'lines_file'").fetchone()
        older = {k: v for k, v in orjson.loads(value).items() if k != "generation"}
        sql.execute(
            "UPDATE meta SET value = ? WHERE key = 'lines_file'", (orjson.dumps(older).decode(),)
        )
    day = T + timedelta(days=1)
    a, b = _night(reusing, tmp_path / "none", day), _night(fresh, tmp_path / "none", day)
    assert a.evaluated < 0.2 * first.patients
    for name in FILES:
        assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), name


def test_a_night_knows_the_summaries_the_last_screen_kept_from_its_first_patient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The screen keeps the summaries of the decisions it wrote not proposed, so that the next
    night takes its first patients' lines in stretches too (`LastLines.stretch`), not by id
    (`LastLines.lines_of`), which it did for the whole first chunk (2,000 patients) before; a
    kept value another version wrote, or one that holds no summaries, is ignored."""
    current = population(tmp_path / "data")
    ndjson(tmp_path / "night-0", current.values(), "all.ndjson")
    ndjson(tmp_path / "none", [])
    reusing = config(tmp_path / "night-0", tmp_path / "a", reuse=True)
    fresh = config(tmp_path / "night-0", tmp_path / "b", reuse=False)
    by_id: list[int] = []
    real = LastLines.lines_of

    def spy(self: LastLines, pids: list[str], prefix: bytes) -> bytes | None:
        by_id.append(len(pids))
        return real(self, pids, prefix)

    monkeypatch.setattr(LastLines, "lines_of", spy)
    first = _night(reusing, tmp_path / "night-0", T)
    _night(fresh, tmp_path / "night-0", T)
    edited = {"another version's": "{}", "not summaries": '["[\\"x\\"]", "[]", "1"]'}
    for n, kept in enumerate(("as kept", *edited)):
        day = T + timedelta(days=n + 1)
        if n:
            with sqlite3.connect(tmp_path / "a" / "store.sqlite") as sql:
                update = "UPDATE meta SET value = ? WHERE key = 'plain_summaries'"
                sql.execute(update, (edited[kept],))
        by_id.clear()
        a, b = _night(reusing, tmp_path / "none", day), _night(fresh, tmp_path / "none", day)
        assert a.reused > 0.8 * first.patients, kept
        assert sum(by_id) == (0 if n == 0 else a.reused - a.summary["outcomes"]["propose"]), kept
        for name in FILES:
            assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), (kept, name)
