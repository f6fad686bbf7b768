"""The CDS card reads in ten seconds (issue 8, point 1): for every fixture patient that gets a
card, live and as a pending proposal, the detail is at most 60 words, holds no internal code
(reason or flag names, criterion ids, codelist displays such as "eMED3 (2010) new statement
issued"), repeats no sentence, has no "none recorded" line, and asks to confirm the employment
status only when it is unconfirmed. The proposal's note and the review Task's description carry
no code either."""

from __future__ import annotations

import re
import warnings

import pytest

from ips_screen.kinds.registry import walk_criteria
from ips_screen.proposals.build import build_proposal
from ips_screen.ruleset.loader import CompiledRuleset
from tests.helpers import decide, default_ruleset
from tests.support.cds import (
    call,
    check_card,
    fixture_resources,
    hook_request,
    prefetch_of,
    with_pending_proposal,
)
from tests.support.paths import FIXTURES, FROZEN_NOW

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

MAX_WORDS = 60
# Codelists whose displays are codes for people (the pain terms are the clinical words shown).
CODED_LISTS = ("fit-notes", "employment-status", "employment-questions", "ips-referral")
FIXTURE_NAMES = sorted(p.name[:2] for p in (FIXTURES / "patients").glob("*.json"))


def forbidden_tokens(ruleset: CompiledRuleset) -> set[str]:
    """Words that must never reach a clinician's card: the ruleset's names and coded displays."""
    model = ruleset.model
    names = {e.reason for e in model.exclusions} | {c.fail_reason for c in model.criteria}
    for top in [*model.exclusions, *model.criteria]:
        for rule in walk_criteria(top.rule):
            names.add(rule.id)
            names |= {getattr(rule, "stale_flag", None), getattr(rule, "missing_reason", None)}
            otherwise = getattr(rule, "otherwise", None)
            if otherwise is not None:
                names |= {otherwise.flag, otherwise.fail_reason}
            names |= set((getattr(rule, "fail_reasons", None) or {}).values())
    names = {n for n in names if n and "-" in n}  # "deceased" is a word; "ips-declined" a code
    names |= set(model.texts.flags) | set(model.texts.flag_actions)
    displays = {row.display for name in CODED_LISTS for row in ruleset.codelists[name].rows}
    coded = {d for d in displays if len(d.split()) >= 3 or re.search(r"\d", d)}  # not "Retired"
    return names | coded | {"zero exclusion", "none recorded", "http"}


def plain_words(markdown: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", re.sub(r"[*_\\]", "", markdown))


def check_words(text: str, ruleset: CompiledRuleset, *, unconfirmed: bool) -> None:
    for token in forbidden_tokens(ruleset):
        assert token.lower() not in text.lower(), (token, text)
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", text) if s.strip()]
    assert len(sentences) == len(set(sentences)), text  # nothing said twice
    asks = "please confirm" in text.lower() or "please ask" in text.lower()
    assert asks == unconfirmed, text


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()[0]


def carded() -> list[str]:
    return [name for name in FIXTURE_NAMES if decide(fixture_resources(name)).outcome == "propose"]


def test_some_fixtures_get_a_card_and_some_do_not():
    assert 10 <= len(carded()) < len(FIXTURE_NAMES)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_card_is_short_plain_and_codeless(client: TestClient, ehr_key, name: str):
    ruleset = default_ruleset()
    resources = fixture_resources(name)
    decision = decide(resources)
    patient_id = decision.patient.removeprefix("Patient/")
    response = call(client, ehr_key, hook_request(patient_id, prefetch_of(resources)))
    cards = response.json()["cards"]
    if decision.outcome != "propose":
        assert cards == []
        return
    (card,) = cards
    check_card(card)
    detail = card["detail"]
    assert len(plain_words(detail)) <= MAX_WORDS, detail
    unconfirmed = "employment-status-unconfirmed" in decision.flags
    check_words(detail, ruleset, unconfirmed=unconfirmed)
    assert "IPS is voluntary" in detail
    assert ("please" in card["summary"]) == unconfirmed

    # The note and the review Task the screen writes carry the same plain words.
    _, request, task, _ = build_proposal(decision, ruleset, now=FROZEN_NOW, tool_version="t")
    (note,) = request["note"]
    check_words(note["text"], ruleset, unconfirmed=unconfirmed)
    brief = note["text"].split("\n\n")[0].split("\n")
    assert [f"- {line}" for line in brief] == detail.split("\n")[: len(brief)]
    for token in forbidden_tokens(ruleset):
        assert token not in task["description"]

    # The card of the proposal awaiting review says the same, with one more sentence.
    pending = with_pending_proposal(resources)
    response = call(client, ehr_key, hook_request(patient_id, prefetch_of(pending)))
    (card,) = response.json()["cards"]
    assert len(plain_words(card["detail"])) <= MAX_WORDS, card["detail"]
    check_words(card["detail"], ruleset, unconfirmed=unconfirmed)
    assert card["detail"].startswith(detail.rsplit("\n\n", 1)[0])
