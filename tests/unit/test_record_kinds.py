"""facts.record_kinds: an answer per kind of record (type and codings), asked once a kind and
asked again once forgotten; the codings it looks at include values and components."""

from __future__ import annotations

from ips_screen.facts import record_kinds
from ips_screen.facts.model import Record
from ips_screen.facts.record_kinds import PerRecordKind, all_codings

PAIN = ("http://snomed.info/sct", "82423001")
ANSWER = ("http://loinc.org", "la17956-6")


def a_record(ref: str, rtype: str = "Condition", codes=(PAIN,), **kw) -> Record:
    return Record(ref=ref, resource_type=rtype, codes=codes, **kw)


def test_records_of_one_kind_share_one_answer_and_others_get_theirs(monkeypatch):
    asked: list[str] = []

    def answer(record: Record) -> str:
        asked.append(record.ref)
        return f"{record.resource_type}:{len(record.codes)}"

    per_kind = PerRecordKind(answer)
    assert per_kind(a_record("Condition/1")) == "Condition:1"
    assert per_kind(a_record("Condition/2")) == "Condition:1"  # same type and codings
    assert per_kind(a_record("Observation/3", "Observation")) == "Observation:1"
    assert asked == ["Condition/1", "Observation/3"]
    monkeypatch.setattr(record_kinds, "KINDS_KEPT", 2)
    assert per_kind(a_record("Procedure/4", "Procedure", codes=())) == "Procedure:0"  # forgets
    assert per_kind(a_record("Condition/5")) == "Condition:1"  # asked again, same answer
    assert asked == ["Condition/1", "Observation/3", "Procedure/4", "Condition/5"]


def test_all_codings_are_codes_values_and_each_component_s():
    question = ("http://loinc.org", "67875-5")
    record = a_record(
        "Observation/1",
        "Observation",
        codes=(PAIN,),
        values=(ANSWER,),
        components=(((question,), (ANSWER,)),),
    )
    assert all_codings(record) == (PAIN, ANSWER, question, ANSWER)
