"""A full load of the nightly store from input read in parts (`nightly.part_load`, written by
`store.full_load.FullLoad` in key order at the end) keeps exactly what the store keeps when the
same input is applied resource by resource: the last copy of a resource wins, and a later copy
the rules cannot use (one the byte prefilter skips unparsed) removes the record. Nothing is in
the store if the load fails, and the staging file never outlives the load."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ips_screen.nightly import sync
from ips_screen.nightly.config import PracticeConfig
from ips_screen.nightly.part_load import RefFilter, ref_hashes
from ips_screen.nightly.progress import NoProgress
from ips_screen.nightly.run import run_nightly
from ips_screen.nightly.sync import sync_files
from ips_screen.ruleset.loader import CompiledRuleset, load_ruleset
from ips_screen.sources import chunks, discover, iter_resources
from ips_screen.store import StateStore
from ips_screen.store.full_load import stage_path
from ips_screen.synth import write_bulk
from tests.support.hypothesis_profile import examples
from tests.support.paths import FROZEN_NOW

SNOMED = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def ruleset() -> CompiledRuleset:
    return load_ruleset(None)


def pain(cid: str, pid: str, onset: str = "2025-01-01", code: str | None = "82423001") -> dict:
    coded = {"coding": [{"system": SNOMED, "code": code}]} if code else {"text": "a cold"}
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": f"Patient/{pid}"},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": coded,
        "onsetDateTime": onset,
    }


def ndjson(path: Path, resources: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Two folders read in turn (sorted paths): the later holds later copies of earlier
    resources. Files are cut into parts of about 2 kB (`small_parts`)."""
    folder = tmp_path / "data"
    patients = [
        {"resourceType": "Patient", "id": f"p{n}", "birthDate": "1980-01-01"} for n in range(6)
    ]
    filler = [pain(f"f{n}", f"p{n % 6}", code=None) for n in range(30)]  # skipped unparsed
    ndjson(folder / "a" / "Patient.000.ndjson", patients)
    ndjson(
        folder / "a" / "Condition.000.ndjson",
        [pain("c1", "p1"), pain("c2", "p2"), pain("c3", "p3"), *filler, pain("c4", "p4")],
    )
    later = [
        {"resourceType": "Patient", "id": "p5", "birthDate": "1990-06-01"},  # replaces p5
        {"resourceType": "Patient", "id": "p6", "birthDate": "1975-03-03"},  # a new one
    ]
    ndjson(folder / "b" / "Patient.000.ndjson", later)
    ndjson(
        folder / "b" / "Condition.000.ndjson",
        [
            *filler[:10],
            pain("c1", "p1", code=None),  # its code removed: c1 is gone
            pain("c2", "p2", onset="2024-02-02"),  # c2 replaced
            pain("c3", "p4"),  # c3 moved to p4
            pain("c5", "p5"),  # a new record
        ],
    )
    return folder


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks, "RANGE_BYTES", 2000)


def facts_applied(folder: Path, ruleset: CompiledRuleset, tmp_path: Path) -> list:
    """The reference: every resource applied one by one, in input order."""
    with StateStore(tmp_path / "reference.sqlite") as state:
        state.facts.apply(iter_resources(discover([folder])), ruleset)
        return list(state.facts.iter_patients())


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_load_in_parts_keeps_what_applying_each_resource_keeps(
    data: Path, ruleset: CompiledRuleset, tmp_path: Path, caplog: pytest.LogCaptureFixture, jobs
):
    assert len([c for c in chunks.plan(discover([data])) if "Condition" in c.path]) > 2
    store_path = tmp_path / "state" / "store.sqlite"
    with caplog.at_level(logging.INFO, "ips_screen"), StateStore(store_path) as state:
        synced = sync_files(state.facts, ruleset, data, NoProgress(), jobs=jobs)
        loaded = list(state.facts.iter_patients())
        counts = state.facts.counts()
    assert loaded == facts_applied(data, ruleset, tmp_path)
    assert counts == {"patients": 7, "records": 4}  # c2, c3, c4, c5
    refs = {r.ref: (f.id, r.date) for f in loaded for r in f.records}
    assert "Condition/c1" not in refs
    assert refs["Condition/c3"][0] == "p4"
    assert str(refs["Condition/c2"][1]) == "2024-02-02"
    assert synced.stats.removed == 1  # c1
    # c1's unusable copy was skipped unparsed: its part was read again, every line parsed
    assert any("read again, every line parsed" in r.getMessage() for r in caplog.records)
    assert not stage_path(store_path).exists()


def test_a_failed_load_leaves_the_store_empty_and_no_staging_file(
    tmp_path: Path, ruleset: CompiledRuleset
):
    store_path = tmp_path / "store.sqlite"
    stage_path(store_path).write_bytes(b"left by a load that was killed")
    with StateStore(store_path) as state:
        with pytest.raises(RuntimeError), state.facts.full_load() as load:
            load.put([("p1", b'{"b":"1980-01-01"}')], [("Condition/c1", "p1", b"{}")], [])
            raise RuntimeError("the input could not be read")
        assert state.facts.is_empty()
        assert not stage_path(store_path).exists()
        with state.facts.full_load() as load:  # the next load starts afresh
            load.put([("p1", b'{"b":"1980-01-01"}')], [], [])
        assert state.facts.counts() == {"patients": 1, "records": 0}
    assert not stage_path(store_path).exists()


def test_the_last_row_given_for_a_ref_wins(tmp_path: Path):
    with StateStore(tmp_path / "store.sqlite") as state:
        with state.facts.full_load(threads=2) as load:
            first = [("R/a", "p1", b'{"v":1}'), ("R/b", "p1", b'{"v":1}')]
            load.put([("p1", b'{"v":1}')], first, [])
            load.put([("p1", b'{"v":2}')], [("R/a", "p2", b'{"v":2}')], ["R/b", "R/c"])
            load.put([], [("R/c", None, b'{"v":3}')], [])
        rows = state.facts.sql.execute("SELECT ref, patient_id, data FROM records").fetchall()
        patient = state.facts.sql.execute("SELECT data FROM patients").fetchall()
        stats = load.stats
    assert rows == [("R/a", "p2", b'{"v":2}'), ("R/c", None, b'{"v":3}')]
    assert patient == [(b'{"v":2}',)]
    assert (stats.removed, stats.unlinked) == (1, 1)


@given(
    kept=st.lists(st.text(min_size=1, max_size=12), max_size=2000, unique=True),
    other=st.lists(st.text(min_size=1, max_size=12), max_size=60),
)
@settings(max_examples=examples(0.5), deadline=None)
def test_the_ref_filter_never_says_certainly_not_of_a_kept_ref(kept, other):
    refs = RefFilter()
    for start in range(0, len(kept), 7):  # added a few at a time: the filter grows
        refs.add(ref_hashes(f"Condition/{k}" for k in kept[start : start + 7]))
    for k in kept:
        assert refs.may_hold_any([f"Observation/{k}", f"Condition/{k}"])
    assert not refs.may_hold_any([])
    unseen = [f"Procedure/{o}" for o in other]
    assert not refs.may_hold_any(unseen)  # a false "may": about 4e-8 a ref


def test_the_ref_filter_grows_and_still_knows_every_ref():
    refs = RefFilter()
    kept = [f"Observation/o{n}" for n in range(5000)]
    for start in range(0, len(kept), 300):
        refs.add(ref_hashes(kept[start : start + 300]))
    assert len(refs.bits) * 8 >= 5000 * 64 > 1 << 16  # built again, larger
    assert all(refs.may_hold_any([ref]) for ref in kept)
    assert sum(refs.may_hold_any([f"Condition/o{n}"]) for n in range(5000)) == 0


def test_a_staging_file_left_by_a_killed_load_is_removed_by_the_next_night(
    data: Path, tmp_path: Path
):
    """A load killed mid-way leaves store.sqlite-load (patients' facts) in the state folder;
    the next night removes it even when it loads nothing in full (here: an incremental night)."""
    state = tmp_path / "state"
    config = PracticeConfig.model_validate(
        {
            "source": {"kind": "files", "path": str(data), "incremental": True},
            "output": {"state_dir": str(state)},
        }
    )
    first = run_nightly(config, now=FROZEN_NOW, as_of=FROZEN_NOW.date(), environ={})
    assert first.mode == "full" and not stage_path(state / "store.sqlite").exists()
    stale = stage_path(state / "store.sqlite")
    stale.write_bytes(b"facts of a load that was killed")
    later = run_nightly(config, now=FROZEN_NOW, as_of=FROZEN_NOW.date(), environ={})
    assert later.mode == "incremental"
    assert not stale.exists()


def test_a_load_that_fails_half_way_has_stopped_its_reading_processes_when_it_raises(
    tmp_path: Path, ruleset: CompiledRuleset, monkeypatch: pytest.MonkeyPatch
):
    """Stopped there, in the thread that raised, not when the garbage collector got to the
    parts' generator: on the process pool's own thread (a SIGTERM mid-load) that printed
    "Exception ignored ... cannot join current thread" after the one-line message."""
    write_bulk(tmp_path / "data", 300, seed=7, as_of=FROZEN_NOW.date())

    def first_part_then_fail(store, parts, *args, **kwargs):
        next(iter(parts))
        raise RuntimeError("stopped half-way")

    monkeypatch.setattr(sync, "load_parts", first_part_then_fail)
    with StateStore(tmp_path / "store.sqlite") as state:
        with pytest.raises(RuntimeError) as failed:
            sync_files(state.facts, ruleset, tmp_path / "data", NoProgress(), jobs=2)
        assert multiprocessing.active_children() == []
        del failed
