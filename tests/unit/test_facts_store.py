"""The facts store: a full load screens like `collect`; updates and deletions applied to the store
screen like one full read of the updated data; fingerprint; ledger."""

from __future__ import annotations

import copy
import csv
import gzip
import io
import shutil
import tempfile
from collections.abc import Iterable
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ips_screen.engine import evaluate
from ips_screen.facts.extract import CODE_FIELD, SUBJECT_FIELD, patient_of
from ips_screen.facts.model import PatientFacts
from ips_screen.ruleset.loader import DEFAULT_RULESET, CompiledRuleset, load_ruleset
from ips_screen.sources import collect, discover, iter_resources
from ips_screen.sources.population import Population, PopulationBuilder
from ips_screen.store import StateStore, ruleset_fingerprint
from ips_screen.store.ledger import decision_digest
from tests.helpers import default_ruleset
from tests.support.hypothesis_profile import examples
from tests.support.paths import FIXTURES, FROZEN_NOW

AS_OF = date(2026, 11, 26)
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


@pytest.fixture(scope="module")
def ruleset() -> CompiledRuleset:
    return load_ruleset(None)


@lru_cache(maxsize=1)
def _fixtures() -> dict[str, dict]:
    """Every fixture resource the rules could read, by "Type/id" (no urn: references in them)."""
    out: dict[str, dict] = {}
    for resource, _, resolve in iter_resources(discover([FIXTURES])):
        assert resolve is None
        if resource["resourceType"] in SUBJECT_FIELD or resource["resourceType"] == "Patient":
            out[f"{resource['resourceType']}/{resource['id']}"] = resource
    return out


@pytest.fixture
def fixture_resources() -> dict[str, dict]:
    return dict(_fixtures())


@pytest.fixture
def state(tmp_path: Path):
    with StateStore(tmp_path / "store.sqlite") as opened:
        yield opened


@pytest.fixture
def store(state: StateStore):
    return state.facts


@pytest.fixture
def ledger(state: StateStore):
    return state.ledger


def screen(patients: Iterable[PatientFacts], ruleset: CompiledRuleset) -> list[dict]:
    decisions = [evaluate(ruleset, facts, AS_OF) for facts in patients]
    return [d.to_dict() for d in sorted(decisions, key=lambda d: d.patient)]


def full_read(resources: Iterable[dict], ruleset: CompiledRuleset) -> Population:
    """One read of the data as it now stands (the reference the store must agree with)."""
    builder = PopulationBuilder(ruleset)
    for resource in resources:
        builder.add(resource, "memory")
    return builder.finish()


def items(resources: Iterable[dict]):
    return ((r, "memory", None) for r in resources)


def write_ndjson(path: Path, resources: Iterable[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path


def write_deleted(path: Path, refs: list[str], *, per_bundle: int = 2) -> Path:
    """A Bulk `deleted` file: NDJSON of Bundles of DELETE entries."""
    lines = []
    for start in range(0, len(refs), per_bundle):
        entries = [{"request": {"method": "DELETE", "url": r}} for r in refs[start : start + 2]]
        lines.append(orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_full_load_round_trips_and_screens_like_collect(tmp_path: Path, state, store, ruleset):
    stats = store.apply(iter_resources(discover([FIXTURES])), ruleset)
    population = collect([FIXTURES], ruleset)
    assert (stats.patients, stats.records) == (45, 120)
    assert list(store.iter_patients()) == list(population.patients.values())
    assert screen(store.iter_patients(), ruleset) == screen(population, ruleset)
    assert store.orphans() == population.orphans == {}
    assert store.unlinked() == population.unlinked == 0
    assert store.get_patient("fx-07") == population.patients["fx-07"]
    assert store.get_patient("nobody") is None
    state.close()
    with StateStore(tmp_path / "store.sqlite") as reopened:  # durable
        assert list(reopened.facts.iter_patients()) == list(population.patients.values())
        assert reopened.facts.counts() == {"patients": 45, "records": 120}
        assert reopened.size_bytes() > 0
    assert (tmp_path / "store.sqlite").stat().st_mode & 0o077 == 0


def test_patients_are_streamed_in_id_order_without_sorting_everything(store):
    plan = store.sql.execute(
        "EXPLAIN QUERY PLAN SELECT p.id, p.data, r.data FROM patients p "
        "LEFT JOIN records r ON r.patient_id = p.id ORDER BY p.id"
    ).fetchall()
    assert not any("TEMP B-TREE" in str(row) for row in plan)


def _changed(resource: dict, **fields) -> dict:
    out = copy.deepcopy(resource)
    out.update(fields)
    return out


def test_updates_and_deletions_screen_like_a_full_read_of_the_new_data(
    tmp_path: Path, store, ruleset, fixture_resources
):
    store.apply(items(fixture_resources.values()), ruleset)
    before = {d["patient"]: d for d in screen(store.iter_patients(), ruleset)}
    data = dict(fixture_resources)

    pain = {"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]}
    updates = [
        # a changed Condition: joint pain becomes chronic pain
        _changed(data["Condition/fx-29-cond-2"], code=pain, onsetDateTime="2026-01-10"),
        # a record now entered-in-error
        _changed(
            data["Condition/fx-01-cond-1"],
            verificationStatus={"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]},
        ),
        # a new fit note
        _changed(
            data["Observation/fx-33-obs-2"], id="fx-33-obs-new", effectiveDateTime="2026-10-05"
        ),
    ]
    deleted = ["Observation/fx-30-obs-2", "Patient/fx-02"]
    store.apply(iter_resources([write_ndjson(tmp_path / "Condition.ndjson", updates)]), ruleset)
    removed = store.apply_deleted_files([write_deleted(tmp_path / "deleted.ndjson", deleted)])
    assert removed >= 3  # the Observation, fx-02 and fx-02's records

    for resource in updates:
        data[f"{resource['resourceType']}/{resource['id']}"] = resource
    del data["Observation/fx-30-obs-2"]
    data = {k: r for k, r in data.items() if k != "Patient/fx-02" and patient_of(r) != "fx-02"}
    reference = full_read(data.values(), ruleset)

    after = screen(store.iter_patients(), ruleset)
    assert after == screen(reference, ruleset)
    assert list(store.iter_patients()) == list(reference.patients.values())
    assert store.orphans() == reference.orphans
    by_patient = {d["patient"]: d for d in after}
    assert "Patient/fx-02" not in by_patient
    changed = {p for p, d in by_patient.items() if d["outcome"] != before[p]["outcome"]}
    assert {"Patient/fx-29", "Patient/fx-01", "Patient/fx-33"} <= changed
    assert by_patient["Patient/fx-29"]["outcome"] == "propose"
    assert by_patient["Patient/fx-01"]["reasons"] == ["no-chronic-pain"]


def test_deleted_files_accept_gzip_full_urls_and_history(tmp_path: Path, store, ruleset):
    store.apply(iter_resources(discover([FIXTURES])), ruleset)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": "https://x.test/R4/Condition/fx-30-cond-1"}},
            {"request": {"method": "PUT", "url": "Patient/fx-31"}},  # not a deletion
            {"request": {"method": "DELETE", "url": "Patient/fx-32/_history/3"}},
        ],
    }
    path = tmp_path / "deleted.ndjson.gz"
    path.write_bytes(gzip.compress(orjson.dumps(bundle) + b"\n"))
    store.apply_deleted_files([path])
    ids = [p.id for p in store.iter_patients()]
    assert "fx-32" not in ids and "fx-31" in ids
    fx30 = store.get_patient("fx-30")
    assert fx30 is not None
    assert "Condition/fx-30-cond-1" not in [r.ref for r in fx30.records]


def test_records_of_an_absent_patient_are_orphans_and_unlinked_ones_counted(store, ruleset):
    resources = [
        {
            "resourceType": "Condition",
            "id": "c1",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]},
            "subject": {"reference": "Patient/ghost"},
        },
        {
            "resourceType": "Condition",
            "id": "c2",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]},
        },
    ]
    store.apply(items(resources), ruleset)
    reference = full_read(resources, ruleset)
    assert store.orphans() == reference.orphans == {"ghost": 1}
    assert store.unlinked() == reference.unlinked == 1
    assert list(store.iter_patients()) == []


def _pain(rid: str, owner: str) -> dict:
    code = {"coding": [{"system": "http://snomed.info/sct", "code": "82423001"}]}
    return {"resourceType": "Condition", "id": rid, "code": code, "subject": {"reference": owner}}


def test_orphan_counts_follow_each_change_and_survive_reopening(tmp_path: Path, ruleset):
    path = tmp_path / "store.sqlite"
    with StateStore(path) as state:
        state.facts.apply(items([{"resourceType": "Patient", "id": "p1"}]), ruleset)  # full load
        state.facts.apply(
            items([_pain("c1", "Patient/ghost"), _pain("c2", "Patient/ghost")]), ruleset
        )
        assert state.facts.orphans() == {"ghost": 2}
        # a record moves from the absent patient to a present one, and one to another absent one
        moved = [_pain("c1", "Patient/p1"), _pain("c3", "Patient/p1")]
        state.facts.apply(items([*moved, _pain("c3", "Patient/gone")]), ruleset)
        assert state.facts.orphans() == {"ghost": 1, "gone": 1}
        # a record kept for an absent patient deleted
        state.facts.apply_deleted_files([write_deleted(tmp_path / "c.ndjson", ["Condition/c2"])])
        assert state.facts.orphans() == {"gone": 1}
        # an absent patient arrives: no longer absent
        state.facts.apply(items([_pain("c2", "Patient/ghost")]), ruleset)
        assert state.facts.orphans() == {"ghost": 1, "gone": 1}
        state.facts.apply(items([{"resourceType": "Patient", "id": "ghost"}]), ruleset)
        assert state.facts.orphans() == {"gone": 1}
        # deleting an absent patient takes the records kept for them
        state.facts.apply_deleted_files([write_deleted(tmp_path / "d.ndjson", ["Patient/gone"])])
        state.facts.apply(items([_pain("c4", "Patient/later")]), ruleset)  # not counted yet
    with StateStore(path) as state:  # the changes noted survive the connection
        assert state.facts.orphans() == {"later": 1}
        present = [{"resourceType": "Patient", "id": i} for i in ("p1", "ghost")]
        kept = [
            _pain("c1", "Patient/p1"),
            _pain("c2", "Patient/ghost"),
            _pain("c4", "Patient/later"),
        ]
        assert state.facts.orphans() == full_read(present + kept, ruleset).orphans


# -- random updates and deletions ---------------------------------------------------------------

OPS = (
    "retire",
    "recode",
    "redate",
    "delete",
    "delete-patient",
    "copy",
    "restore",
    "move",  # a record to another patient, or to one the input has no Patient for
    "restore-patient",
)
_op = st.tuples(st.sampled_from(OPS), st.integers(0, 10_000), st.integers(0, 10_000), st.booleans())


def _retired(resource: dict) -> dict:
    if resource["resourceType"] == "Condition":
        status = {"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]}
        return _changed(resource, verificationStatus=status)
    return _changed(resource, status="entered-in-error")


@settings(max_examples=examples(0.3))  # each example is many store transactions
@given(ops=st.lists(_op, max_size=25))
def test_random_updates_and_deletions_keep_the_store_equal_to_a_full_read(ops, monkeypatch):
    monkeypatch.setattr("ips_screen.store.facts_store.BATCH_ROWS", 7)  # many transactions
    ruleset = default_ruleset()
    original = _fixtures()
    records = sorted(k for k in original if not k.startswith("Patient/"))
    patients = sorted(k[8:] for k in original if k.startswith("Patient/"))
    data = dict(original)
    with tempfile.TemporaryDirectory() as tmp, StateStore(Path(tmp) / "s.sqlite") as state:
        store = state.facts
        store.apply(items(original.values()), ruleset)
        pending: list[dict] = []
        deletions: list[str] = []
        for n, (op, i, j, flush) in enumerate(ops):
            key = records[i % len(records)]
            resource = data.get(key, original[key])
            if op == "retire":
                pending.append(_retired(resource))
            elif op == "recode":
                other = original[records[j % len(records)]]
                field = CODE_FIELD.get(resource["resourceType"])
                source = CODE_FIELD.get(other["resourceType"])
                if field and source and source in other:
                    pending.append(_changed(resource, **{field: other[source]}))
            elif op == "redate" and resource["resourceType"] in ("Condition", "Observation"):
                field = (
                    "onsetDateTime"
                    if resource["resourceType"] == "Condition"
                    else ("effectiveDateTime")
                )
                day = date(2024, 1, 1).toordinal() + j % 1100
                pending.append(_changed(resource, **{field: date.fromordinal(day).isoformat()}))
            elif op == "delete":
                deletions.append(key)
            elif op == "delete-patient":
                deletions.append(f"Patient/{patients[j % len(patients)]}")
            elif op == "copy" and resource["resourceType"] != "Task":
                subject = {"reference": f"Patient/{patients[j % len(patients)]}"}
                pending.append(_changed(resource, id=f"copy-{n}", subject=subject))
            elif op == "restore":
                pending.append(original[key])
            elif op == "move":
                field = SUBJECT_FIELD[resource["resourceType"]]
                owner = patients[j % len(patients)] if j % 3 else f"ghost-{j % 2}"
                pending.append(_changed(resource, **{field: {"reference": f"Patient/{owner}"}}))
            elif op == "restore-patient":
                pending.append(original[f"Patient/{patients[j % len(patients)]}"])
            if flush or n == len(ops) - 1:
                # one night's export: output files, then deleted files
                ndjson = write_ndjson(Path(tmp) / f"out-{n}.ndjson", pending)
                store.apply(iter_resources([ndjson]), ruleset)
                store.apply_deleted_files([write_deleted(Path(tmp) / f"del-{n}.ndjson", deletions)])
                for changed in pending:
                    data[f"{changed['resourceType']}/{changed['id']}"] = changed
                for ref in deletions:
                    data.pop(ref, None)
                    if ref.startswith("Patient/"):
                        gone = ref[8:]
                        data = {k: r for k, r in data.items() if patient_of(r) != gone}
                pending, deletions = [], []
                # counted after every night: the counts kept up to date, not counted afresh
                assert state.facts.orphans() == full_read(data.values(), ruleset).orphans
        reference = full_read(data.values(), ruleset)
        assert list(store.iter_patients()) == list(reference.patients.values())
        assert screen(store.iter_patients(), ruleset) == screen(reference, ruleset)
        assert store.orphans() == reference.orphans
        assert store.unlinked() == reference.unlinked


# -- fingerprint and ledger -----------------------------------------------------------------------


def test_fingerprint_follows_ruleset_version_and_codelists(tmp_path: Path, store, ruleset):
    assert not store.fingerprint_matches(ruleset)  # a new store: load everything
    store.apply(iter_resources(discover([FIXTURES])), ruleset)
    store.reset(ruleset, source="files:x")
    assert store.fingerprint_matches(ruleset)
    assert store.counts() == {"patients": 0, "records": 0}
    assert store.get_meta("source") == "files:x"

    rules = tmp_path / "rules"
    shutil.copytree(DEFAULT_RULESET.parent, rules)
    yaml_path = rules / DEFAULT_RULESET.name
    text = yaml_path.read_text()
    yaml_path.write_text(text.replace("version: ", "version: 9", 1))
    bumped = load_ruleset(yaml_path)
    assert bumped.version != ruleset.version
    assert ruleset_fingerprint(bumped) != ruleset_fingerprint(ruleset)
    assert not store.fingerprint_matches(bumped)

    yaml_path.write_text(text)
    codelist = next(iter(sorted((rules / "codelists").glob("*.csv"))))
    rows = list(csv.reader(io.StringIO(codelist.read_text())))
    rows[1][2] += " (edited)"  # a display changed: the file's sha256 changes
    with codelist.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    edited = load_ruleset(yaml_path, check_pins=False)
    assert ruleset_fingerprint(edited) != ruleset_fingerprint(ruleset)

    store.set_since("2026-11-25T01:00:00Z")
    store.reset(ruleset)
    assert store.get_since() is None


def test_ledger_records_runs_oldest_first(ledger):
    first = ledger.start_run(started=FROZEN_NOW, as_of=AS_OF, ruleset="r@1", mode="full")
    ledger.finish_run(
        first,
        finished=FROZEN_NOW,
        status="ok",
        counts={"propose": 3, "patients": 10},
        new_proposals=3,
        errors=[],
    )
    second = ledger.start_run(
        started=datetime(2026, 11, 27, 1, 0, tzinfo=FROZEN_NOW.tzinfo),
        as_of=date(2026, 11, 27),
        ruleset="r@1",
        mode="incremental",
    )
    assert second == first + 1
    runs = ledger.recent_runs(14)
    assert [r["id"] for r in runs] == [first, second]
    assert runs[0]["counts"] == {"patients": 10, "propose": 3}
    assert (runs[0]["status"], runs[0]["new_proposals"], runs[0]["mode"]) == ("ok", 3, "full")
    assert (runs[1]["status"], runs[1]["finished"], runs[1]["counts"]) == ("running", None, {})
    ledger.finish_run(
        second,
        finished=FROZEN_NOW,
        status="errors",
        counts={},
        new_proposals=0,
        errors=["Patient/x not written: HTTP 500"],
        mode="full",
    )
    latest = ledger.recent_runs(1)
    assert [(r["id"], r["mode"], r["errors"]) for r in latest] == [
        (second, "full", ["Patient/x not written: HTTP 500"])
    ]


def test_decision_digests_ignore_the_date_and_trace(ledger, ruleset):
    population = collect([FIXTURES], ruleset)
    facts = population.patients["fx-01"]
    today = evaluate(ruleset, facts, AS_OF)
    tomorrow = evaluate(ruleset, facts, date(2026, 11, 27))
    assert today.as_of != tomorrow.as_of
    assert decision_digest(today) == decision_digest(tomorrow)
    other = evaluate(ruleset, population.patients["fx-29"], AS_OF)
    assert decision_digest(other) != decision_digest(today)
    ledger.replace_decision_digests({"fx-01": decision_digest(today)})
    ledger.replace_decision_digests({"fx-29": decision_digest(other)})
    assert ledger.decision_digests() == {"fx-29": decision_digest(other)}


def test_the_three_parts_share_one_file_and_keep_to_their_own_tables(state, ruleset):
    """Facts, decision cache and ledger: a reset of the facts empties the cache (the decisions
    were made from those facts) but keeps the runs and the last digests."""
    facts, cache, ledger = state.facts, state.cache, state.ledger
    facts.reset(ruleset)
    facts.apply(iter_resources(discover([FIXTURES])), ruleset)
    run = ledger.start_run(started=FROZEN_NOW, as_of=AS_OF, ruleset="r@1", mode="full")
    ledger.replace_decision_digests({"fx-01": "d1"})
    assert not cache.prepare("fingerprint-1")  # a new fingerprint: nothing usable yet
    cache.put([("fx-01", "2026-11-26", "2027-01-01", "d1", b"[]", b"{}", None, None)], 3)
    rows = state.screen_rows(None, 2)
    assert [row[0] for row in rows] == ["fx-01", "fx-02"]
    assert rows[0][3] == "d1" and rows[0][6] == "d1"  # cached digest, digest after the last run
    assert rows[0][10] == 3  # the generation of the screen that cached it
    assert rows[1][1:] == (None,) * 9 + (0,)  # neither cached nor in the ledger (nor plain)
    assert cache.prepare("fingerprint-1")
    facts.reset(ruleset)
    assert not cache.has_rows() and facts.counts() == {"patients": 0, "records": 0}
    assert [r["id"] for r in ledger.recent_runs(5)] == [run]
    assert ledger.decision_digests() == {"fx-01": "d1"}
    assert cache.prepare("fingerprint-1")  # the fingerprint is the cache's, kept with it
    assert state.path.stat().st_mode & 0o077 == 0
