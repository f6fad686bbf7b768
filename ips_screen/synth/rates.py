"""The rates of the synthetic practice list, each with its source or marked as an assumption.

docs/synthetic-population.md explains every number here. The figures are approximate and rounded:
they make a plausible English practice list for testing the screen, not a statistical model.
"""

from __future__ import annotations

from collections.abc import Sequence

# Age structure of a GP practice list: share (%) of registered patients in each 5-year band.
# Source: NHS Digital, "Patients Registered at a GP Practice" (monthly, England, 5-year age bands to
# 95+), shape of the 2023-24 releases. APPROXIMATE: rounded by hand, not copied from one month's
# file; the weights are normalised when drawn. (lowest age, highest age, share %)
AGE_BANDS: tuple[tuple[int, int, float], ...] = (
    (0, 4, 5.2),
    (5, 9, 5.9),
    (10, 14, 6.2),
    (15, 19, 5.9),
    (20, 24, 6.1),
    (25, 29, 7.0),
    (30, 34, 7.4),
    (35, 39, 7.1),
    (40, 44, 6.7),
    (45, 49, 6.2),
    (50, 54, 6.6),
    (55, 59, 6.5),
    (60, 64, 5.7),
    (65, 69, 4.8),
    (70, 74, 4.4),
    (75, 79, 3.8),
    (80, 84, 2.4),
    (85, 89, 1.4),
    (90, 94, 0.6),
    (95, 99, 0.1),
)
# Same publication: slightly more women than men are registered (about 50.3%). Approximate.
FEMALE_SHARE = 0.503

# Years of records generated before the as-of date.
HISTORY_YEARS = 5
# The generator's working-age cut-off (the screen itself computes the State Pension date).
WORKING_AGE = (18, 66)

# Age-banded tables below are ((minimum age, rate), ...) in increasing age; `by_age` picks the row.
AgeTable = Sequence[tuple[int, float]]


def by_age(table: AgeTable, age: int) -> float:
    """The rate of the last row whose minimum age is <= age (0.0 below the first row)."""
    rate = 0.0
    for minimum, value in table:
        if age >= minimum:
            rate = value
    return rate


# Deceased within the history window (Patient.deceased[x]): ASSUMPTION tuned to ~1% of the list
# (deaths are ~1% of the population a year in England, ONS; practices remove most of them, so a
# list export keeps some). Rises with age.
DECEASED = ((0, 0.002), (50, 0.01), (75, 0.06))
DECEASED_BOOLEAN_SHARE = 0.2  # deceasedBoolean instead of a date (assumption)

# A CODED chronic pain Condition (chronic-pain codelist). Chronic pain affects 35-51% of UK adults
# (Fayaz et al. 2016, BMJ Open 6:e010364, meta-analysis; rises with age), but GP records code it
# far less often. ASSUMPTION: ~12% of adults, rising with age.
CHRONIC_PAIN = ((18, 0.07), (40, 0.12), (60, 0.17))
CHRONIC_PAIN_RESOLVED = 0.08  # clinicalStatus resolved with an abatement date (assumption)
CHRONIC_PAIN_SECOND_CODE = 0.15  # a second chronic-pain Condition, e.g. fibromyalgia (assumption)
# Persistent-pain codes (chronic pain only after 3 months). Osteoarthritis: 8.75 million people aged
# 45+ in the UK (about a third) have sought treatment for it (Arthritis Research UK, "Osteoarthritis
# in general practice", 2013); a coded, active OA Condition is rarer. ASSUMPTION. Low back pain
# coded M54.5: ASSUMPTION.
OSTEOARTHRITIS = ((18, 0.01), (45, 0.08), (65, 0.18))
LOW_BACK_PAIN = ((18, 0.04),)
# Chronic pain reviews (860381000000107) among people with a chronic or persistent pain code, and
# referral to a pain management service (306109009) among those with chronic pain: ASSUMPTIONS.
PAIN_REVIEW = 0.3
PAIN_CLINIC_REFERRAL = 0.12

# True employment status. Working age: ONS Labour Force Survey, 16-64 (2023-24, rounded): employment
# ~75%, unemployed ~3% of all, economically inactive ~21.5% (long-term sick ~6.5%, students ~6%,
# looking after family ~4%, retired ~2.5%, other ~3%). Age splits are ASSUMPTIONS.
STATUS_18_24 = {
    "employed": 0.55,
    "unemployed": 0.07,
    "long-term-sick": 0.03,
    "student": 0.30,
    "homemaker": 0.03,
    "retired": 0.0,
    "other-inactive": 0.02,
}
STATUS_25_59 = {
    "employed": 0.79,
    "unemployed": 0.03,
    "long-term-sick": 0.07,
    "student": 0.01,
    "homemaker": 0.05,
    "retired": 0.02,
    "other-inactive": 0.03,
}
STATUS_60_65 = {
    "employed": 0.60,
    "unemployed": 0.02,
    "long-term-sick": 0.10,
    "student": 0.0,
    "homemaker": 0.05,
    "retired": 0.20,
    "other-inactive": 0.03,
}
STATUS_PENSION_AGE = {"employed": 0.10, "retired": 0.88, "other-inactive": 0.02}
# Chronic pain shifts status towards long-term sickness. Relative weights, ASSUMPTION (long-term
# sickness is the main cause of inactivity and musculoskeletal conditions a leading cause, ONS
# 2023); applied to the table above and renormalised.
CHRONIC_PAIN_STATUS_WEIGHT = {"long-term-sick": 4.0, "unemployed": 1.7, "employed": 0.75}
OUT_OF_WORK = frozenset({"unemployed", "long-term-sick"})

# Employment status RECORDED in the GP record: a minority. The InSTEP feasibility study (HTA
# 15/108/02) found GP records seldom hold it. ASSUMPTION: 25% of adults, a little more when out
# of work (clinicians note it at benefit-related consultations).
STATUS_RECORDED = {"default": 0.22, "unemployed": 0.35, "long-term-sick": 0.40}
STATUS_TWO_RECORDS = 0.3  # an earlier record too (a change of status, or the same again)
# How a status is recorded (assumption): SNOMED finding (as a Condition, sometimes an
# Observation), PRAPARE panel 93025-5 with component 67875-5, or an NHS Data Dictionary code.
STATUS_FORMAT = {"snomed": 0.45, "prapare": 0.30, "nhs-dd": 0.25}
SNOMED_AS_OBSERVATION = 0.2
PRAPARE_DECLINED_TO_ANSWER = 0.04  # LA30122-8 "I choose not to answer"
NHS_DD_TWO_DIGIT = 0.2  # "04" rather than "4"

# Fit notes (working age). Episodes: ASSUMPTIONS informed by NHS Digital "Fit Notes Issued by GP
# Practices" (about 11 million a year in England, most "not fit"). Class of each note: evaluations
# find fewer than 10% "may be fit" (Coole et al., WDPI 2014: 91% of 827 fit notes were "not fit").
FIT_NOTE_SERIES = {"long-term-sick": 0.7, "unemployed": 0.25}  # repeat fit notes
FIT_NOTE_SERIES_ONGOING = 0.65  # the series runs up to the as-of date
FIT_NOTE_EPISODE = {"employed": 0.15, "default": 0.05}  # a short sickness absence
FIT_NOTE_EPISODE_CHRONIC_PAIN = 0.35  # employed people with chronic pain
FIT_NOTE_CLASS = {"not-fit": 0.85, "may-be-fit": 0.09, "unspecified": 0.06}
EPISODE_ENDS_MAY_BE_FIT = 0.25  # phased return, altered hours, amended duties, adaptation
EPISODE_ENDS_BACK_TO_WORK = 0.05  # 14241000000101 Med3 certificate issued - back to work
FIT_NOTE_DOCUMENT = 0.4  # a same-day DocumentReference of the fit note
SICK_LEAVE_CONTEXT = 0.1  # 224459001 On sick leave from work (not a fit note) at an episode start

# Palliative / end-of-life care codes. QOF palliative care registers hold roughly 0.5% of a list
# (NHS Digital, QOF); concentrated in older people. Rates by age ASSUMPTION, tuned to ~0.5%.
PALLIATIVE = ((50, 0.005), (65, 0.015), (75, 0.04))
PALLIATIVE_IF_DECEASED = 0.3  # deceased aged 50+ (assumption)

# IPS among working-age people with a chronic/persistent pain code who are out of work: existing
# referrals (IPS is not widely offered for pain; assumption) and declined proposals (assumption).
IPS_REFERRAL = 0.06
IPS_REFERRAL_COMPLETED = 0.5  # else active
IPS_BACK_IN_WORK = 0.4  # after a completed referral, an "employed" record later
IPS_DECLINE = 0.05

# Irrelevant filler. Consultations per year with a record in the export (assumption; real GP
# consultation rates are higher, ~5 a year): encounter count ~ Poisson(rate * HISTORY_YEARS).
ENCOUNTERS_PER_YEAR = ((0, 0.8), (18, 1.0), (65, 1.8), (80, 2.5))
ENCOUNTERS_CHRONIC_PAIN = 1.8  # multiplier
VITALS_AT_ENCOUNTER = 0.35
PAIN_SCORE_AT_ENCOUNTER = 0.3  # 72514-3 pain severity, for people with a pain code
PROCEDURE_AT_ENCOUNTER = 0.15
FILLER_CONDITIONS = 1.2  # mean count of unrelated Conditions per adult (Poisson)
