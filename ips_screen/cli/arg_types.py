"""Argument types shared by the commands (argparse shows an `ArgumentTypeError`'s own words)."""

from __future__ import annotations

import argparse
from datetime import date

from ips_screen.dates import as_of_date


def as_of_arg(value: str) -> date:
    """--as-of: a date in the years an as-of date may be in (`dates.as_of_date`)."""
    try:
        return as_of_date(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
