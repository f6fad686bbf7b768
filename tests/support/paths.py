"""Where things are, and when the tests run: the repository, its fixture patients, the shared
Synthea data beside the checkout, and the instant tests/conftest.py freezes the clock at."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ips_screen.dates import LONDON

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "fhir_fixtures"
FROZEN_NOW = datetime(2026, 11, 26, 9, 30, tzinfo=LONDON)
