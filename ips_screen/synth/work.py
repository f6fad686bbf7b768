"""Work and fitness for work: a person's true employment status, whether and how the practice
recorded it, and the fit notes they were given. Rates in `rates`, codes in `vocab`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from ips_screen.synth import rates, vocab
from ips_screen.synth.builders import SOCIAL_HISTORY, SURVEY, Builder, concept, pick


@dataclass(frozen=True, slots=True)
class Span:
    """The days a person can have records: from `start` (the later of the history window and
    their 16th birthday, for work records) to `end` (the as-of date, or the day they died)."""

    start: date
    end: date


def chance(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def day_between(rng: random.Random, first: date, last: date) -> date:
    """A day from `first` to `last`, both included (`last` when the range is empty)."""
    days = (last - first).days
    return last if days <= 0 else first + timedelta(days=rng.randint(0, days))


def draw_status(rng: random.Random, age: int, chronic_pain: bool) -> str:
    """The person's true employment status at the as-of date."""
    low, high = rates.WORKING_AGE
    if age >= high:
        table = rates.STATUS_PENSION_AGE
    elif age < 25:
        table = rates.STATUS_18_24
    elif age < 60:
        table = rates.STATUS_25_59
    else:
        table = rates.STATUS_60_65
    names = list(table)
    weights = [table[n] for n in names]
    if chronic_pain and low <= age < high:
        weights = [
            w * rates.CHRONIC_PAIN_STATUS_WEIGHT.get(n, 1.0)
            for n, w in zip(names, weights, strict=True)
        ]
    return rng.choices(names, weights=weights)[0]


def spell_start(rng: random.Random, as_of: date) -> date:
    """When an out-of-work spell began: 1 month to 8 years before the as-of date."""
    return as_of - timedelta(days=rng.randint(30, 8 * 365))


def record_status(b: Builder, status: str, day: date, abatement: date | None = None) -> None:
    """Write a status down the way practices do: SNOMED finding, PRAPARE panel or NHS DD code."""
    rng = b.rng
    formats = list(rates.STATUS_FORMAT)
    how = rng.choices(formats, weights=[rates.STATUS_FORMAT[f] for f in formats])[0]
    if how == "snomed" and status not in vocab.STATUS_SNOMED:
        how = "nhs-dd"  # no SNOMED finding for a student
    if how == "snomed":
        code = pick(rng, vocab.STATUS_SNOMED[status])
        if chance(rng, rates.SNOMED_AS_OBSERVATION):
            b.observation(code, day, category=SOCIAL_HISTORY)
        else:
            b.condition(code, day, abatement=abatement)
    elif how == "prapare":
        if chance(rng, rates.PRAPARE_DECLINED_TO_ANSWER):
            answer = vocab.PRAPARE_NO_ANSWER
        else:
            answer = pick(rng, vocab.STATUS_PRAPARE.get(status, (vocab.PRAPARE_INACTIVE,)))
        components = [
            {
                "code": concept(vocab.PRAPARE_SAFE),
                "valueCodeableConcept": concept(vocab.ANSWER_YES),
            },
            {"code": concept(vocab.EMPLOYMENT_QUESTION), "valueCodeableConcept": concept(answer)},
        ]
        b.observation(vocab.PRAPARE_PANEL, day, category=SURVEY, component=components)
    else:
        system, code, display, weight = pick(rng, vocab.STATUS_NHS_DD[status])
        if chance(rng, rates.NHS_DD_TWO_DIGIT):
            code = code.zfill(2)
        b.observation((system, code, display, weight), day, category=SOCIAL_HISTORY)


def employment_records(b: Builder, status: str, span: Span, spell: date | None, age: int) -> None:
    """The recorded status (for a minority), sometimes with an earlier record before it."""
    rng = b.rng
    p = rates.STATUS_RECORDED.get(status, rates.STATUS_RECORDED["default"])
    if span.start > span.end or not chance(rng, p):
        return
    latest = day_between(rng, max(span.start, spell or span.start), span.end)
    record_status(b, status, latest)
    if latest > span.start and chance(rng, rates.STATUS_TWO_RECORDS):
        earlier = day_between(rng, span.start, latest - timedelta(days=1))
        before = status
        if spell is not None and earlier < spell:
            before = "employed"  # in work before this spell out of work
        elif status == "retired" and age < rates.WORKING_AGE[1] + 3:
            before = "employed"
        record_status(b, before, earlier, abatement=latest if before != status else None)


def _fit_note(b: Builder, day: date, weeks: int, fitness: str) -> date:
    """One fit note covering `weeks` weeks from `day`; returns the last day it covers."""
    rng = b.rng
    until = day + timedelta(days=7 * weeks - 1)
    code = pick(rng, vocab.FIT_NOTES[fitness])
    words = vocab.FIT_NOTE_WORDS[fitness]
    if fitness in ("not-fit", "may-be-fit"):
        words = f"{words} for {weeks} week{'s' if weeks > 1 else ''}"
    b.observation(code, day, note=[{"text": f"Fit note: {words}"}])
    if chance(rng, rates.FIT_NOTE_DOCUMENT):
        b.fit_note_document(code, day, until, words)
    return until


def _fitness(rng: random.Random) -> str:
    classes = list(rates.FIT_NOTE_CLASS)
    return rng.choices(classes, weights=[rates.FIT_NOTE_CLASS[c] for c in classes])[0]


def fit_notes(b: Builder, status: str, span: Span, spell: date | None, chronic_pain: bool) -> None:
    """Repeat fit notes for people out of work through sickness; short episodes for others."""
    rng = b.rng
    if span.start > span.end:
        return
    if spell is not None and chance(rng, rates.FIT_NOTE_SERIES.get(status, 0.0)):
        first = max(span.start, spell)
        if first > span.end:
            return
        last = span.end if chance(rng, rates.FIT_NOTE_SERIES_ONGOING) else None
        last = last or day_between(rng, first, span.end)
        if status == "unemployed":
            last = min(last, first + timedelta(days=180))
        day = first
        while day <= last:
            until = _fit_note(b, day, rng.choice((2, 4, 4, 8, 8, 13)), _fitness(rng))
            day = until + timedelta(days=1 + rng.randrange(0, 15))
        return
    p = rates.FIT_NOTE_EPISODE.get(status, rates.FIT_NOTE_EPISODE["default"])
    if chronic_pain and status == "employed":
        p = rates.FIT_NOTE_EPISODE_CHRONIC_PAIN
    if not chance(rng, p):
        return
    day = day_between(rng, span.start, span.end)
    if chance(rng, rates.SICK_LEAVE_CONTEXT):
        b.observation(vocab.SICK_LEAVE, day)
    count = rng.randint(1, 3)
    for n in range(count):
        if day > span.end:
            break
        fitness = "not-fit"
        if n == count - 1 and count > 1 and chance(rng, rates.EPISODE_ENDS_MAY_BE_FIT):
            fitness = "may-be-fit"
        elif n == count - 1 and chance(rng, rates.EPISODE_ENDS_BACK_TO_WORK):
            fitness = "back-to-work"
        day = _fit_note(b, day, rng.choice((1, 2, 2, 4)), fitness) + timedelta(days=1)
