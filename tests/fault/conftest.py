"""Fixtures every fault test may use: `mock`, the `responses` mock that answers for the servers
(a request nothing was registered for fails), and `delays`, where a client built with
`sleep=delays.append` records every wait instead of sleeping. The fake servers and exporters are
in tests/support/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def delays() -> list[float]:
    return []
