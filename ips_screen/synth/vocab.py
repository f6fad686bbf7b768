"""The codes the synthetic records use, with relative weights for drawing them.

Screen-relevant codes come only from rules/codelists/*.csv (and the shared clinical-codes notes);
filler codes (unrelated conditions, encounter types, vital signs) are ones that appear in the
shared Synthea data. No code is made up here.
"""

from __future__ import annotations

from ips_screen.codes import IPS_REFERRAL, SNOMED, VOCATIONAL_REHAB

LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
NHS_DD = "https://fhir.nhs.uk/STU3/CodeSystem/DCH-EmploymentStatus-1"
UCUM = "http://unitsofmeasure.org"

# (system, code, display, weight)
Code = tuple[str, str, str, float]


def sct(code: str, display: str, weight: float = 1.0) -> Code:
    return (SNOMED, code, display, weight)


def loinc(code: str, display: str, weight: float = 1.0) -> Code:
    return (LOINC, code, display, weight)


# rules/codelists/chronic-pain.csv (UK practice: SNOMED and WHO ICD-10 only, no US ICD-10-CM).
CHRONIC_PAIN = (
    sct("82423001", "Chronic pain", 30),
    sct("278860009", "Chronic low back pain", 18),
    sct("134407002", "Chronic back pain", 10),
    sct("203082005", "Fibromyalgia", 10),
    sct("373621006", "Chronic pain syndrome", 5),
    sct("1121000119107", "Chronic neck pain", 3),
    sct("274665008", "Chronic intractable pain", 2),
    sct("95417003", "Primary fibromyalgia syndrome", 2),
    sct("128200000", "Complex regional pain syndrome", 1),
    sct("193184006", "Chronic painful diabetic neuropathy", 2),
    sct("714252004", "Post-mastectomy chronic pain syndrome", 0.5),
    (ICD10, "R52.2", "Other chronic pain", 3),
    (ICD10, "M79.7", "Fibromyalgia", 1),
)
# rules/codelists/persistent-pain.csv
OSTEOARTHRITIS = (
    sct("396275006", "Osteoarthritis", 4),
    sct("239873007", "Osteoarthritis of knee", 4),
    sct("239872002", "Osteoarthritis of hip", 2),
)
LOW_BACK_PAIN = ((ICD10, "M54.5", "Low back pain", 1.0),)
PAIN_REVIEW = sct("860381000000107", "Chronic pain review")
PAIN_CLINIC_REFERRAL = sct("306109009", "Referral to pain management service")

# rules/codelists/fit-notes.csv, by class; eMED3 new statements are the common case.
FIT_NOTES: dict[str, tuple[Code, ...]] = {
    "not-fit": (
        sct("751481000000104", "eMED3 (2010) new statement issued, not fit for work", 45),
        sct("751491000000102", "eMED3 (2010) new statement issued, not fit for work", 35),
        sct("751621000000103", "eMED3 (2010) duplicate issued, not fit for work", 3),
        sct("751631000000101", "eMED3 (2010) duplicate issued, not fit for work", 2),
        sct("751731000000106", "MED3 (2010) issued by hand, not fit for work", 6),
        sct("751741000000102", "MED3 (2010) issued by hand, not fit for work", 4),
        sct("160910001", "Unfit for work", 2),
    ),
    "may-be-fit": (
        sct("751601000000107", "eMED3 (2010) new statement issued, may be fit for work", 20),
        sct("751611000000109", "eMED3 (2010) new statement issued, may be fit for work", 15),
        sct("751641000000105", "eMED3 (2010) duplicate issued, may be fit for work", 1),
        sct("751751000000104", "MED3 (2010) issued by hand, may be fit for work", 3),
        sct(
            "775281000000100", "MED3 (2010) certificate issued - recommend phased return to work", 8
        ),
        sct("775291000000103", "MED3 (2010) issued - recommend phased return to work", 6),
        sct("775301000000104", "MED3 (2010) certificate issued - recommend altered hours", 5),
        sct("775311000000102", "MED3 (2010) issued - recommend altered hours", 4),
        sct("775321000000108", "MED3 (2010) certificate issued - recommend amended duties", 5),
        sct("775331000000105", "MED3 (2010) issued - recommend amended duties", 4),
        sct(
            "775351000000103", "MED3 (2010) certificate issued - recommend workplace adaptation", 3
        ),
        sct("775361000000100", "MED3 (2010) issued - recommend workplace adaptation", 2),
        sct("225891002", "Fit for work with restrictions", 1),
    ),
    "unspecified": (
        sct("775241000000108", "MED3 (2010) certificate issued to patient", 3),
        sct("775251000000106", "MED3 (2010) issued to patient", 2),
        sct("1331000000103", "Med3 certificate issued to patient", 3),
    ),
    "back-to-work": (sct("14241000000101", "Med3 certificate issued - back to work"),),
}
FIT_NOTE_WORDS = {
    "not-fit": "not fit for work",
    "may-be-fit": "may be fit for work",
    "unspecified": "fit note issued",
    "back-to-work": "back to work",
}
SICK_LEAVE = sct("224459001", "On sick leave from work")  # context only, not a fit note

# rules/codelists/employment-status.csv: how each true status can be written down.
# SNOMED findings (none exists for student); PRAPARE 67875-5 answers; NHS Data Dictionary codes.
STATUS_SNOMED: dict[str, tuple[Code, ...]] = {
    "employed": (
        sct("160903007", "Full-time employment", 6),
        sct("160904001", "Part-time employment", 3),
        sct("224363007", "Employed", 2),
        sct("160906004", "Self employed", 1),
    ),
    "unemployed": (sct("73438004", "Unemployed", 4), sct("160895006", "Stopped work", 1)),
    "long-term-sick": (sct("741062008", "Not in labor force"),),
    "homemaker": (sct("741062008", "Not in labor force"),),
    "other-inactive": (sct("741062008", "Not in labor force"),),
    "retired": (sct("105493001", "Retired"),),
}
STATUS_PRAPARE: dict[str, tuple[Code, ...]] = {
    "employed": (
        loinc("LA30136-8", "Full-time work", 2),
        loinc("LA30138-4", "Part-time or temporary work", 1),
    ),
    "unemployed": (loinc("LA17956-6", "Unemployed"),),
}
PRAPARE_INACTIVE = loinc(
    "LA30137-6",
    "Otherwise unemployed but not seeking work (ex: student, retired, disabled, unpaid primary "
    "care giver)",
)
PRAPARE_NO_ANSWER = loinc("LA30122-8", "I choose not to answer this question")
STATUS_NHS_DD: dict[str, tuple[Code, ...]] = {
    "employed": ((NHS_DD, "1", "Employed", 1),),
    "unemployed": ((NHS_DD, "2", "Unemployed and seeking work", 1),),
    "student": ((NHS_DD, "3", "Student", 1),),
    "long-term-sick": ((NHS_DD, "4", "Long-term sick or disabled", 1),),
    "homemaker": ((NHS_DD, "5", "Homemaker", 1),),
    "other-inactive": (
        (NHS_DD, "6", "Not receiving benefits and not seeking work", 2),
        (NHS_DD, "7", "Unpaid voluntary work", 1),
    ),
    "retired": ((NHS_DD, "8", "Retired", 1),),
}
PRAPARE_PANEL = loinc(
    "93025-5",
    "Protocol for Responding to and Assessing Patients' Assets, Risks, and Experiences [PRAPARE]",
)
EMPLOYMENT_QUESTION = loinc("67875-5", "Employment status - current")
# Another PRAPARE question and answer, as in the Synthea panels (irrelevant to the screen).
PRAPARE_SAFE = loinc(
    "93026-3", "Do you feel physically and emotionally safe where you currently live?"
)
ANSWER_YES = loinc("LA33-6", "Yes")

# rules/codelists/palliative-care.csv
PALLIATIVE_CONDITION = sct("162608008", "Terminal illness - late stage")
PALLIATIVE_REGISTER = sct("526631000000108", "On end of life care register")
PALLIATIVE_PROCEDURES = (
    sct("103735009", "Palliative care", 4),
    sct("306237005", "Referral to palliative care service", 3),
    sct("182964004", "Terminal care", 1),
    sct("514591000000108", "Completion of DS1500 terminal illness medical report", 1),
)

# rules/codelists/ips-referral.csv, via ips_screen.codes
IPS_CODES = (IPS_REFERRAL, VOCATIONAL_REHAB)

# Filler, as seen in the shared Synthea data.
FILLER_CONDITIONS = (
    sct("59621000", "Essential hypertension (disorder)", 6),
    sct("15777000", "Prediabetes", 3),
    sct("444814009", "Viral sinusitis (disorder)", 5),
    sct("195662009", "Acute viral pharyngitis (disorder)", 5),
    sct("10509002", "Acute bronchitis (disorder)", 3),
    sct("73595000", "Stress (finding)", 4),
    sct("271737000", "Anemia (disorder)", 2),
    sct("162864005", "Body mass index 30+ - obesity (finding)", 4),
    sct("40055000", "Chronic sinusitis (disorder)", 1),
    sct("55822004", "Hyperlipidemia", 3),
    sct("44054006", "Diabetes mellitus type 2 (disorder)", 2),
    sct("44465007", "Sprain of ankle", 1),
    sct("57676002", "Joint pain (finding)", 2),  # acute symptom: not chronic pain
    sct("68962001", "Muscle pain (finding)", 2),  # acute symptom: not chronic pain
)
ENCOUNTER_TYPES = (
    sct("185349003", "Encounter for check up (procedure)", 3),
    sct("185347001", "Encounter for problem (procedure)", 3),
    sct("185345009", "Encounter for symptom (procedure)", 2),
    sct("390906007", "Follow-up encounter (procedure)", 1),
    sct("448337001", "Telemedicine consultation with patient (procedure)", 1),
)
CHILD_ENCOUNTER = sct("410620009", "Well child visit (procedure)")
FILLER_PROCEDURES = (
    sct("430193006", "Medication reconciliation (procedure)", 3),
    sct("171207006", "Depression screening (procedure)", 2),
    sct("710824005", "Assessment of health and social care needs (procedure)", 1),
    sct("710841007", "Assessment of anxiety (procedure)", 1),
)
BP_PANEL = loinc("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = loinc("8480-6", "Systolic Blood Pressure")
DIASTOLIC = loinc("8462-4", "Diastolic Blood Pressure")
WEIGHT = loinc("29463-7", "Body Weight")
HEIGHT = loinc("8302-2", "Body Height")
BMI = loinc("39156-5", "Body mass index (BMI) [Ratio]")
HEART_RATE = loinc("8867-4", "Heart rate")
PAIN_SCORE = loinc("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")

# Names: common in England, for readability only.
FEMALE = ("Olivia", "Amelia", "Isla", "Ava", "Mia", "Grace", "Sophie", "Emily", "Ruth", "Aisha")
MALE = ("Oliver", "George", "Harry", "Noah", "Jack", "Leo", "Arthur", "David", "Peter", "Omar")
GIVEN = {"female": FEMALE, "male": MALE}
FAMILY = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel")
FAMILY += ("Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Khan")
