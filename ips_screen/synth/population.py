"""A synthetic English practice list, drawn one patient at a time.

`generate` yields each patient's FHIR R4 resources (the Patient first). Everything comes from one
`random.Random(seed)` and the as-of date, never from the clock or the OS, so the same arguments
give the same resources, ids included. Records fall in the `rates.HISTORY_YEARS` years before the
as-of date (and before the day of death). docs/synthetic-population.md describes the population.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta

from ips_screen.synth import rates, vocab
from ips_screen.synth.builders import VITAL_SIGNS, Builder, concept, new_id, pick, quantity
from ips_screen.synth.work import (
    Span,
    chance,
    day_between,
    draw_status,
    employment_records,
    fit_notes,
    record_status,
    spell_start,
)

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
TEST_DATA = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}
ACUTE = frozenset({"444814009", "195662009", "10509002", "44465007", "57676002", "68962001"})


def generate(n_patients: int, seed: int, as_of: date) -> Iterator[list[dict]]:
    """Yield `n_patients` lists of FHIR R4 resources (plain dicts), one list per patient."""
    if n_patients < 0:
        raise ValueError(f"n_patients must not be negative (got {n_patients})")
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not security)
    for _ in range(n_patients):
        yield patient_resources(rng, as_of)


def years_before(day: date, years: int) -> date:
    """The same day `years` earlier (28 February for 29 February in a non-leap year)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; fine for the small means used here)."""
    limit, count, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def nhs_number(rng: random.Random) -> str:
    """A valid (modulus 11) NHS number in the 999 range reserved for test data."""
    while True:
        digits = [9, 9, 9, *(rng.randrange(10) for _ in range(6))]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            return "".join(map(str, digits)) + str(check % 11)


def patient_resources(rng: random.Random, as_of: date) -> list[dict]:
    """One patient: the Patient and all their records."""
    pid = new_id(rng)
    sex = "female" if chance(rng, rates.FEMALE_SHARE) else "male"
    band = rng.choices(rates.AGE_BANDS, weights=[b[2] for b in rates.AGE_BANDS])[0]
    age = rng.randint(band[0], band[1])
    birth = years_before(as_of, age) - timedelta(days=rng.randrange(365))
    window = max(years_before(as_of, rates.HISTORY_YEARS), birth)
    died = None
    if chance(rng, rates.by_age(rates.DECEASED, age)):
        died = day_between(rng, window, as_of)
    end = died or as_of
    b = Builder(rng, pid)
    patient: dict = {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"security": [TEST_DATA]},
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number(rng)}],
        "name": [
            {
                "use": "official",
                "family": rng.choice(vocab.FAMILY),
                "given": [rng.choice(vocab.GIVEN[sex])],
            }
        ],
        "gender": sex,
        "birthDate": birth.isoformat(),
    }
    if died is not None:
        if chance(rng, rates.DECEASED_BOOLEAN_SHARE):
            patient["deceasedBoolean"] = True
        else:
            patient["deceasedDateTime"] = b.stamp(died)

    span = Span(window, end)
    pain = _pain(b, span, age)
    if age >= rates.WORKING_AGE[0]:
        _work(b, Span(max(window, years_before(birth, -16)), end), age, pain, died is not None)
    _palliative(b, span, age, died is not None)
    _filler(b, span, age, sex, bool(pain))
    return [patient, *b.resources]


def _pain(b: Builder, span: Span, age: int) -> list[dict]:
    """Chronic pain and persistent pain Conditions, pain reviews and pain clinic referrals."""
    rng = b.rng
    if age < rates.WORKING_AGE[0]:
        return []
    chronic: list[dict] = []
    onsets: list[date] = []
    if chance(rng, rates.by_age(rates.CHRONIC_PAIN, age)):
        onset = day_between(rng, span.start, span.end)
        abatement = None
        if onset < span.end and chance(rng, rates.CHRONIC_PAIN_RESOLVED):
            abatement = day_between(rng, onset + timedelta(days=1), span.end)
        chronic.append(b.condition(pick(rng, vocab.CHRONIC_PAIN), onset, abatement=abatement))
        onsets.append(onset)
        if chance(rng, rates.CHRONIC_PAIN_SECOND_CODE):
            second = day_between(rng, onset, span.end)
            chronic.append(b.condition(pick(rng, vocab.CHRONIC_PAIN), second))
    persistent: list[dict] = []
    for table, codes in (
        (rates.OSTEOARTHRITIS, vocab.OSTEOARTHRITIS),
        (rates.LOW_BACK_PAIN, vocab.LOW_BACK_PAIN),
    ):
        if chance(rng, rates.by_age(table, age)):
            onset = day_between(rng, span.start, span.end)
            persistent.append(b.condition(pick(rng, codes), onset))
            onsets.append(onset)
    if onsets and chance(rng, rates.PAIN_REVIEW):
        for _ in range(rng.randint(1, 4)):
            when = day_between(rng, min(onsets), span.end)
            if chance(rng, 0.7):
                b.procedure(vocab.PAIN_REVIEW, when)
            else:
                b.observation(vocab.PAIN_REVIEW, when)
    if chronic and chance(rng, rates.PAIN_CLINIC_REFERRAL):
        status = rng.choice(("active", "completed", "completed"))
        when = day_between(rng, onsets[0], span.end)
        b.service_request(
            (vocab.PAIN_CLINIC_REFERRAL,), when, status=status, intent="order", reasons=chronic[:1]
        )
    return chronic + persistent


def _work(b: Builder, span: Span, age: int, pain: list[dict], deceased: bool) -> None:
    """Employment status (true and recorded), fit notes, and IPS referrals or declines."""
    rng = b.rng
    status = draw_status(rng, age, bool(pain))
    spell = spell_start(rng, span.end) if status in rates.OUT_OF_WORK else None
    employment_records(b, status, span, spell, age)
    if age >= rates.WORKING_AGE[1]:
        return
    fit_notes(b, status, span, spell, bool(pain))
    if not pain or deceased or status not in rates.OUT_OF_WORK or span.start >= span.end:
        return
    if chance(rng, rates.IPS_REFERRAL):
        if chance(rng, rates.IPS_REFERRAL_COMPLETED):
            when = day_between(rng, span.start, span.end - timedelta(days=120))
            b.service_request(
                vocab.IPS_CODES, when, status="completed", intent="order", reasons=pain[:1]
            )
            back = when + timedelta(days=180)
            if back <= span.end and chance(rng, rates.IPS_BACK_IN_WORK):
                record_status(b, "employed", day_between(rng, back, span.end))
        else:
            when = day_between(rng, max(span.start, span.end - timedelta(days=365)), span.end)
            b.service_request(
                vocab.IPS_CODES, when, status="active", intent="order", reasons=pain[:1]
            )
    elif chance(rng, rates.IPS_DECLINE):
        first = max(span.start, span.end - timedelta(days=3 * 365))
        proposed = day_between(rng, first, span.end - timedelta(days=7))
        declined = day_between(rng, proposed + timedelta(days=3), proposed + timedelta(days=30))
        declined = min(declined, span.end)
        request = b.service_request(
            vocab.IPS_CODES,
            proposed,
            status="revoked",
            intent="proposal",
            reasons=pain[:1],
            updated=declined,
        )
        b.declined_review(request, proposed, declined)


def _palliative(b: Builder, span: Span, age: int, deceased: bool) -> None:
    rng = b.rng
    p = rates.by_age(rates.PALLIATIVE, age)
    if deceased and age >= 50:
        p = max(p, rates.PALLIATIVE_IF_DECEASED)
    if not chance(rng, p):
        return
    when = day_between(rng, max(span.start, span.end - timedelta(days=540)), span.end)
    if chance(rng, 0.5):
        b.condition(vocab.PALLIATIVE_CONDITION, when)
    else:
        b.observation(vocab.PALLIATIVE_REGISTER, when)
    if chance(rng, 0.6):
        b.procedure(pick(rng, vocab.PALLIATIVE_PROCEDURES), day_between(rng, when, span.end))


def _filler(b: Builder, span: Span, age: int, sex: str, pain: bool) -> None:
    """Records the screen must skip: consultations, vital signs, unrelated conditions."""
    rng = b.rng
    years = (span.end - span.start).days / 365.25
    mean = rates.by_age(rates.ENCOUNTERS_PER_YEAR, age) * years
    if pain:
        mean *= rates.ENCOUNTERS_CHRONIC_PAIN
    adult = age >= rates.WORKING_AGE[0]
    for _ in range(poisson(rng, mean)):
        when = day_between(rng, span.start, span.end)
        b.encounter(pick(rng, vocab.ENCOUNTER_TYPES) if adult else vocab.CHILD_ENCOUNTER, when)
        if chance(rng, rates.VITALS_AT_ENCOUNTER):
            _vitals(b, when, age, sex)
        if pain and chance(rng, rates.PAIN_SCORE_AT_ENCOUNTER):
            score = quantity(rng.randint(2, 9), "{score}")
            b.observation(vocab.PAIN_SCORE, when, category=VITAL_SIGNS, valueQuantity=score)
        if adult and chance(rng, rates.PROCEDURE_AT_ENCOUNTER):
            b.procedure(pick(rng, vocab.FILLER_PROCEDURES), when)
    if not adult:
        return
    for _ in range(poisson(rng, rates.FILLER_CONDITIONS)):
        code = pick(rng, vocab.FILLER_CONDITIONS)
        onset = day_between(rng, span.start, span.end)
        abatement = None
        if code[1] in ACUTE:
            abatement = min(onset + timedelta(days=rng.randint(5, 30)), span.end)
        b.condition(code, onset, abatement=abatement if abatement != onset else None)


def _vitals(b: Builder, when: date, age: int, sex: str) -> None:
    rng = b.rng
    if age < 16:
        weight = round(max(3.0, rng.normalvariate(4 + 3.2 * age, 2 + age / 2)), 1)
        height = round(max(50.0, rng.normalvariate(55 + 6.5 * age, 4)), 1)
    else:
        male = sex == "male"
        weight = round(max(40.0, rng.normalvariate(84 if male else 71, 14)), 1)
        height = round(rng.normalvariate(176 if male else 163, 7), 1)
    b.observation(vocab.WEIGHT, when, category=VITAL_SIGNS, valueQuantity=quantity(weight, "kg"))
    b.observation(vocab.HEIGHT, when, category=VITAL_SIGNS, valueQuantity=quantity(height, "cm"))
    bmi = round(weight / (height / 100) ** 2, 1)
    b.observation(vocab.BMI, when, category=VITAL_SIGNS, valueQuantity=quantity(bmi, "kg/m2"))
    if age < 16:
        return
    systolic = round(rng.normalvariate(122 + age / 4, 14))
    diastolic = round(rng.normalvariate(78, 9))
    components = [
        {"code": concept(vocab.DIASTOLIC), "valueQuantity": quantity(diastolic, "mm[Hg]")},
        {"code": concept(vocab.SYSTOLIC), "valueQuantity": quantity(systolic, "mm[Hg]")},
    ]
    b.observation(vocab.BP_PANEL, when, category=VITAL_SIGNS, component=components)
    rate = quantity(round(rng.normalvariate(72, 10)), "/min")
    b.observation(vocab.HEART_RATE, when, category=VITAL_SIGNS, valueQuantity=rate)
