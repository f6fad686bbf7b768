"""State Pension dates worked out by hand from the contract, for the spec and property tests."""

# (birth date, State Pension date) at each edge of the UK timetable (clinical-codes.md,
# default-ruleset.md "State Pension date"), worked out by hand from the contract's text.
STATE_PENSION_DATES = [
    ("1960-04-05", "2026-04-05"),  # last birth at 66
    ("1960-04-06", "2026-05-06"),  # 6 Apr - 5 May 1960: 66 years 1 month
    ("1960-05-05", "2026-06-05"),
    ("1960-05-06", "2026-07-06"),  # 66y 2m
    ("1960-06-05", "2026-08-05"),
    ("1960-06-06", "2026-09-06"),  # 66y 3m
    ("1960-07-05", "2026-10-05"),
    ("1960-07-06", "2026-11-06"),  # 66y 4m
    ("1960-07-26", "2026-11-26"),  # (fixture 20: reaches it on T)
    ("1960-08-05", "2026-12-05"),
    ("1960-08-06", "2027-01-06"),  # 66y 5m
    ("1960-09-05", "2027-02-05"),
    ("1960-09-06", "2027-03-06"),  # 66y 6m
    ("1960-10-05", "2027-04-05"),
    ("1960-10-06", "2027-05-06"),  # 66y 7m
    ("1960-11-05", "2027-06-05"),
    ("1960-11-06", "2027-07-06"),  # 66y 8m
    ("1960-12-05", "2027-08-05"),
    ("1960-12-06", "2027-09-06"),  # 66y 9m
    ("1961-01-05", "2027-10-05"),
    ("1961-01-06", "2027-11-06"),  # 66y 10m
    ("1961-02-05", "2027-12-05"),
    ("1961-02-06", "2028-01-06"),  # 66y 11m
    ("1961-03-05", "2028-02-05"),  # last birth at 66y 11m
    ("1961-03-06", "2028-03-06"),  # first birth at 67
    ("1977-04-05", "2044-04-05"),  # last birth at 67
    ("1977-04-06", "2045-04-06"),  # 68 (phase-in approximated)
    # month ends: 66 years, then calendar months (last day of a shorter month)
    ("1960-07-31", "2026-11-30"),  # 66y 4m: 31 July 2026 + 4 months
    ("1960-12-31", "2027-09-30"),  # 66y 9m
    ("1961-01-31", "2027-11-30"),  # 66y 10m
    # 29 February: a year older on 1 March in non-leap years
    ("1960-02-29", "2026-03-01"),
    ("1964-02-29", "2031-03-01"),
    ("1980-02-29", "2048-02-29"),  # 2048 is a leap year
]
