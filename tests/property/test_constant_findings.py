"""Findings the same for every patient (`kinds.context.constant`): a kind that finds nothing of
what it reads gives one kept finding, whose trace step and decisions.ndjson JSON are made once,
and a criterion whose records (`KindSpec.reads`) the patient has none of is not evaluated at all
(`kinds.unread`). The claim: a decision (and its line) made of kept findings is exactly the one
each kind gives when evaluated afresh for the patient (`made_afresh`), for any patient, on any
as-of date, after any patients before them (the kept findings outlive each example, as they
outlive each patient)."""

from __future__ import annotations

from functools import cache

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ips_screen.engine import evaluate
from ips_screen.engine.evaluate import is_constant_step
from ips_screen.kinds.context import made_afresh
from ips_screen.outputs.formats.decisions_ndjson import decision_line
from ips_screen.presentation.trace import step_line
from tests.helpers import (
    CHRONIC_PAIN,
    MAY_BE_FIT,
    NOT_FIT,
    UNSPECIFIED_FIT_NOTE,
    condition,
    facts_from,
    fit_note,
    patient,
)
from tests.helpers import default_ruleset as load_default
from tests.support.generators import (
    AS_OF_CHOICES,
    clinical_record,
    dates_around,
    random_patient,
    referral,
    review_task,
)


@cache
def ruleset():
    return load_default()  # one ruleset, whose kept findings every example meets


@st.composite
def with_referrals(draw) -> tuple:
    """A patient with referrals and review Tasks (rare in `random_patient`), and a few records."""
    t = draw(st.sampled_from(AS_OF_CHOICES))
    requests = draw(st.lists(referral(t), min_size=1, max_size=3))
    tasks = [
        draw(review_task(t, r["id"])) for r in requests for _ in range(draw(st.integers(0, 2)))
    ]
    records = draw(st.lists(clinical_record(t), max_size=3))
    return t, [patient(), *records, *requests, *tasks]


@st.composite
def with_fit_notes(draw) -> tuple:
    """A patient with fit notes and no employment status (rare in `random_patient`): the
    employment criterion falls back to the fit notes, whose finding differs by patient."""
    t = draw(st.sampled_from(AS_OF_CHOICES))
    notes = [
        fit_note(
            draw(st.sampled_from([NOT_FIT, MAY_BE_FIT, UNSPECIFIED_FIT_NOTE])),
            draw(dates_around(t)).isoformat(),
            resource_type=draw(st.sampled_from(["Observation", "DocumentReference"])),
        )
        for _ in range(draw(st.integers(1, 4)))
    ]
    pain = [condition(CHRONIC_PAIN)] if draw(st.booleans()) else []
    return t, [patient(), *pain, *notes]


@given(case=st.one_of(random_patient(), with_referrals(), with_fit_notes()))
def test_a_decision_of_kept_findings_is_the_one_made_afresh(case):
    t, resources = case
    rs = ruleset()
    facts = facts_from(resources, rs)
    kept = evaluate(rs, facts, t)
    line = decision_line(kept)
    with made_afresh():
        fresh = evaluate(rs, facts, t)
        assert not any(is_constant_step(step) for step in fresh.trace)
    assert kept == fresh
    assert line == orjson.dumps(fresh.to_dict(step_line), option=orjson.OPT_SORT_KEYS)


def test_patients_with_nothing_a_criterion_reads_share_its_step():
    rs = ruleset()
    t = AS_OF_CHOICES[0]
    first = evaluate(rs, facts_from([patient(id="a")], rs), t)
    second = evaluate(rs, facts_from([patient(id="b", birth="1970-05-05")], rs), t)
    pain = evaluate(rs, facts_from([patient(id="c"), condition(CHRONIC_PAIN, subject="c")], rs), t)
    assert first.step("chronic-pain") is second.step("chronic-pain")
    assert is_constant_step(first.step("chronic-pain"))
    assert not is_constant_step(pain.step("chronic-pain"))  # it found the patient's Condition
    assert not is_constant_step(first.step("working-age"))  # names the patient, and their age
    end_of_life = first.step("end-of-life")  # any-of: constant when each part is
    assert is_constant_step(end_of_life) and end_of_life is pain.step("end-of-life")
    with made_afresh():
        again = evaluate(rs, facts_from([patient(id="a")], rs), t)
    assert again.step("chronic-pain") == first.step("chronic-pain")
    assert again.step("chronic-pain") is not first.step("chronic-pain")
    assert decision_line(again) == decision_line(first)
