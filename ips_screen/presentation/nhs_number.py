"""NHS numbers: the identifier system, the modulus 11 check and the 3 3 4 display.

An NHS number is 10 digits; the last is a check digit: multiply the first nine by 10, 9, ..., 2,
sum, take 11 minus the remainder mod 11; 11 becomes 0 and 10 means the number is not valid
(NHS Data Dictionary, "NHS NUMBER"). Shown to people as 3 3 4 digits ("943 476 5919"). These are
pure helpers; nothing here logs.
"""

from __future__ import annotations

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def digits_of(text: str) -> str:
    """The text with spaces and hyphens taken out ("943 476 5919" -> "9434765919")."""
    return "".join(text.split()).replace("-", "")


def check_digit(first_nine: str) -> int | None:
    """The modulus 11 check digit of nine digits; None when there is none (remainder gives 10)."""
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise ValueError(f"expected nine digits, not {first_nine!r}")
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid(value: str) -> bool:
    """Whether the value (spaces and hyphens allowed) is ten digits with a right check digit."""
    number = digits_of(value)
    if len(number) != 10 or not number.isascii() or not number.isdigit():
        return False
    return check_digit(number[:9]) == int(number[9])


def formatted(value: str) -> str:
    """Ten digits as "3 3 4" ("9434765919" -> "943 476 5919"); anything else as given, trimmed."""
    number = digits_of(value)
    if len(number) == 10 and number.isascii() and number.isdigit():
        return f"{number[:3]} {number[3:6]} {number[6:]}"
    return value.strip()


def nhs_number_of(patient: dict) -> str | None:
    """The value of the Patient's first identifier in the NHS number system, if any."""
    for identifier in patient.get("identifier") or ():
        if isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER_SYSTEM:
            value = identifier.get("value")
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None
