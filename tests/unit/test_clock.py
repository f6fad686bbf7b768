"""Guard for the test set-up itself: the frozen clock keeps a non-UTC, non-London local zone."""

import time
from datetime import date, datetime

from ips_screen.dates import today_london


def test_local_zone_is_auckland_while_frozen():
    assert time.strftime("%Z") in ("NZDT", "NZST")
    assert datetime.now().date() == date(2026, 11, 26)  # 20:30 in Auckland


def test_today_in_london_differs_from_local_date_late_in_the_london_day(frozen_clock):
    frozen_clock.move_to("2026-11-26T23:30:00+00:00")
    assert datetime.now().date() == date(2026, 11, 27)  # Auckland is already tomorrow
    assert today_london() == date(2026, 11, 26)
