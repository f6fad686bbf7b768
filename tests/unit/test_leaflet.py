"""The patient's leaflet (issue 8, point 2): the explanation each proposal carries for the patient
(ServiceRequest.patientInstruction) reads at a reading age of 9 to 11 (Flesch reading ease at
least 70, no sentence over 20 words), and still says that IPS is voluntary and that saying no
changes nothing about their care. The printed page is checked on the review page
(tests/unit/test_review_page.py)."""

from __future__ import annotations

import pytest

from ips_screen.proposals.build import build_proposal
from tests.helpers import decide, default_ruleset
from tests.support.cds import fixture_resources
from tests.support.paths import FROZEN_NOW
from tests.support.readability import readability, sentences, syllables

MIN_EASE = 70
MAX_SENTENCE = 20


def test_the_syllable_count_is_close_enough_to_trust():
    # Hyphenation points undercount a little ("about": 1, "individual": 4): within one.
    truth = {"work": 1, "about": 2, "paid": 1, "support": 2, "individual": 5, "employment": 3}
    for word, count in truth.items():
        assert abs(syllables(word) - count) <= 1, word
    assert readability("The cat sat on the mat.").reading_ease > 100
    hard = "Individual placement and support constitutes an evidence-based vocational intervention."
    assert readability(hard).reading_ease < 30
    assert sentences("One two. Three!\nFour") == [["One", "two"], ["Three"], ["Four"]]


@pytest.mark.parametrize("fixture", ["01", "04"])
def test_the_patient_instruction_reads_at_age_9_to_11(fixture: str):
    ruleset = default_ruleset()
    decision = decide(fixture_resources(fixture))
    _, request, _, _ = build_proposal(decision, ruleset, now=FROZEN_NOW, tool_version="t")
    text = request["patientInstruction"]
    score = readability(text)
    assert score.reading_ease >= MIN_EASE, score
    assert score.longest_sentence <= MAX_SENTENCE, score
    lower = " ".join(text.lower().split())
    assert "ips is voluntary: it is your choice" in lower and "you can say no" in lower
    assert "saying no will not change the care you get" in lower
    assert "Individual Placement and Support" in text  # the service's name, said once
