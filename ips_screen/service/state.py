"""What the service's routes share: configuration, ruleset, clients, clock, and the cards shown."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from ips_screen.dates import today_london
from ips_screen.engine import Decision
from ips_screen.fhir.client import FhirClient
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.service.config import ServeConfig, UserEntry
from ips_screen.service.ehr_auth import EhrVerifier

MAX_CARDS = 10_000


class BadRequest(Exception):
    """A malformed request: answered 400 with this message."""


@dataclass(frozen=True)
class CardState:
    """What feedback on a card needs: the card was for `task_id`'s proposal, or live."""

    patient_id: str
    suggestion: str  # the suggestion's uuid
    task_id: str | None
    user_id: str | None  # context.userId of the call that showed the card
    iss: str | None  # the EHR that asked (None when EHR authentication is disabled)
    decision: Decision | None  # the live decision (None for a pending proposal)


class CardMemory:
    """Card uuid -> CardState, in process, bounded: the oldest entries are dropped first.

    Lost on restart and not shared between worker processes: feedback for a card this process
    did not show is logged and ignored (see docs/serve.example.toml)."""

    def __init__(self, max_entries: int = MAX_CARDS) -> None:
        self._max = max_entries
        self._cards: OrderedDict[str, CardState] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, uuid: str, state: CardState) -> None:
        with self._lock:
            self._cards[uuid] = state
            self._cards.move_to_end(uuid)
            while len(self._cards) > self._max:
                self._cards.popitem(last=False)

    def get(self, uuid: str) -> CardState | None:
        with self._lock:
            return self._cards.get(uuid)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cards)


@dataclass
class ServiceState:
    config: ServeConfig
    ruleset: CompiledRuleset
    backend: FhirClient
    verifier: EhrVerifier | None  # None: EHR authentication disabled (loopback demo only)
    clock: Callable[[], datetime]
    environ: Mapping[str, str]
    users: dict[str, UserEntry] = field(default_factory=dict)
    cards: CardMemory = field(default_factory=CardMemory)

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return today_london(self.clock())

    def url(self, path: str) -> str:
        """An absolute public URL for a path of this service."""
        return self.config.endpoint(path)
