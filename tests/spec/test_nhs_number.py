"""NHS numbers (ips_screen.presentation.nhs_number): the modulus 11 check, the 3 3 4 display, and
the patient identity the clinician screens show (ips_screen.writeback.patient_identity)."""

from __future__ import annotations

from datetime import date

import pytest

from ips_screen.presentation.nhs_number import (
    NHS_NUMBER_SYSTEM,
    check_digit,
    formatted,
    is_valid,
    nhs_number_of,
)
from ips_screen.writeback.patient_identity import identity_of


@pytest.mark.parametrize(
    "value", ["9434765919", "943 476 5919", "943-476-5919", " 9434765919 ", "9990000018"]
)
def test_valid_numbers(value):
    assert is_valid(value)


@pytest.mark.parametrize(
    "value",
    [
        "9434765918",  # wrong check digit
        "943476591",  # nine digits
        "94347659190",  # eleven
        "943476591X",
        "",
        "1000000010",  # remainder gives 10: no NHS number has these nine digits
        "９４３４７６５９１９",  # full-width digits are not ASCII digits
    ],
)
def test_invalid_numbers(value):
    assert not is_valid(value)


def test_check_digit_eleven_is_zero_and_ten_is_none():
    assert check_digit("999000001") == 8
    assert check_digit("000000000") == 0  # sum 0: 11 - 0 = 11 -> 0
    assert check_digit("100000001") is None  # 10 + 2 = 12; 11 - 1 = 10: no check digit
    with pytest.raises(ValueError):
        check_digit("12345678")


def test_formatted_as_three_three_four():
    assert formatted("9434765919") == "943 476 5919"
    assert formatted("943 476-5919") == "943 476 5919"
    assert formatted(" 12345 ") == "12345"  # not ten digits: as given


def patient(**fields):
    return {"resourceType": "Patient", "id": "p1", **fields}


def test_identity_shows_name_birth_date_age_and_checked_number():
    shown = identity_of(
        "Patient/p1",
        patient(
            name=[
                {"use": "old", "family": "Old", "given": ["Name"]},
                {"use": "official", "family": "Okafor", "given": ["Ada", "Grace"]},
            ],
            birthDate="1980-02-29",
            identifier=[
                {"system": "https://example.org/mrn", "value": "X1"},
                {"system": NHS_NUMBER_SYSTEM, "value": "9990000018"},
            ],
        ),
        date(2026, 2, 28),
    )
    assert shown.name == "OKAFOR, Ada Grace"
    assert (shown.birth_date, shown.age) == ("1980-02-29", 45)  # 46 on 1 March in 2026
    assert (shown.nhs_number, shown.nhs_number_valid) == ("999 000 0018", True)


def test_identity_flags_an_invalid_number_and_handles_missing_parts():
    shown = identity_of(
        "Patient/p1",
        patient(identifier=[{"system": NHS_NUMBER_SYSTEM, "value": "9990000019"}]),
        date(2026, 11, 26),
    )
    assert (shown.nhs_number, shown.nhs_number_valid) == ("999 000 0019", False)
    assert (shown.name, shown.birth_date, shown.age) == (None, None, None)
    assert identity_of("Patient/x", None, date(2026, 11, 26)).found is False
    assert nhs_number_of(patient()) is None


def test_search_matches_name_words_or_the_number_with_spaces():
    shown = identity_of(
        "Patient/p1",
        patient(
            name=[{"family": "Okafor", "given": ["Ada"]}],
            identifier=[{"system": NHS_NUMBER_SYSTEM, "value": "9990000018"}],
        ),
        date(2026, 11, 26),
    )
    found = ("okafor", "Ada OKAFOR", "okafor, ada", "999 000 0018", "9990000018", "999 000", "")
    for query in found:
        assert shown.matches(query), query
    for query in ("smith", "999 000 0026", "99", "ada smith"):
        assert not shown.matches(query), query
