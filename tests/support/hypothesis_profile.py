"""The Hypothesis profile every generative test runs under (loaded by tests/conftest.py).

Runs are derandomized, so CI sees the same examples every time, and there is no example database
(nothing is written into the checkout). IPS_SCREEN_HYPOTHESIS_EXAMPLES sets the number of
examples a property test tries (default `DEFAULT_EXAMPLES`, the bound CI runs with); a long run
by hand tries many more:

    IPS_SCREEN_HYPOTHESIS_EXAMPLES=5000 scripts/test -m property

A test whose examples cost more asks for a share of the count with `examples(share)`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = "ips-screen"
ENV = "IPS_SCREEN_HYPOTHESIS_EXAMPLES"
DEFAULT_EXAMPLES = 200


class BadExampleCount(ValueError):
    """IPS_SCREEN_HYPOTHESIS_EXAMPLES is not a positive whole number."""


def example_count(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    text = environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_EXAMPLES
    if not text.isdigit() or int(text) < 1:
        raise BadExampleCount(f"{ENV} must be a positive whole number, not {text!r}")
    return int(text)


def register_profile(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Register and load the profile with the example count from the environment."""
    settings.register_profile(
        PROFILE,
        max_examples=example_count(environ),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    settings.load_profile(PROFILE)


def examples(share: float) -> int:
    """`share` of the loaded profile's example count, at least 10."""
    return max(10, round(settings().max_examples * share))
