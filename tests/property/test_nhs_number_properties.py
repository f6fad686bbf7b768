"""Properties of the NHS number helpers (ips_screen.presentation.nhs_number)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ips_screen.presentation.nhs_number import check_digit, digits_of, formatted, is_valid

nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)


@given(nine_digits)
def test_a_number_with_its_check_digit_is_valid_and_every_other_last_digit_is_not(first):
    check = check_digit(first)
    valid = [d for d in range(10) if is_valid(f"{first}{d}")]
    assert valid == ([] if check is None else [check])


@given(nine_digits, st.integers(0, 8), st.integers(1, 9))
def test_changing_one_digit_makes_a_valid_number_invalid(first, position, change):
    check = check_digit(first)
    if check is None:
        return
    digits = list(first)
    digits[position] = str((int(digits[position]) + change) % 10)
    assert not is_valid("".join(digits) + str(check))


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_formatting_keeps_the_digits_and_validity(number):
    shown = formatted(number)
    assert [len(part) for part in shown.split(" ")] == [3, 3, 4]
    assert digits_of(shown) == number
    assert is_valid(shown) == is_valid(number)


@given(st.text(max_size=20))
def test_never_raises_on_any_text(text):
    assert isinstance(is_valid(text), bool)
    assert isinstance(formatted(text), str)
