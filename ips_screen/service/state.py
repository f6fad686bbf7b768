"""What the service's routes share: configuration, ruleset, clients, clock, and the shared store
(cards shown, EHR token ids, review-page sessions and sign-in failures; see store.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

import orjson

from ips_screen.dates import today_london
from ips_screen.engine import Decision
from ips_screen.fhir.client import FhirClient
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.service.config import ServeConfig, UserEntry
from ips_screen.service.ehr_auth import EhrVerifier
from ips_screen.service.store import ServiceStore

__all__ = ["BadRequest", "CardState", "Cards", "ServiceState"]


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

    def to_json(self) -> bytes:
        data = asdict(self)
        data["decision"] = self.decision.to_dict() if self.decision is not None else None
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> CardState:
        data = orjson.loads(raw)
        decision = data.pop("decision")
        return cls(**data, decision=Decision.from_dict(decision) if decision else None)


class Cards:
    """Card uuid -> CardState, in the shared store: any worker, and the same worker after a
    restart, can act on feedback for a card shown in the last day (`CARD_RETENTION_SECONDS`)."""

    def __init__(self, store: ServiceStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def put(self, uuid: str, state: CardState) -> None:
        self._store.put_card(uuid, state.to_json(), self._clock().timestamp())

    def get(self, uuid: str) -> CardState | None:
        raw = self._store.get_card(uuid, self._clock().timestamp())
        return CardState.from_json(raw) if raw is not None else None


@dataclass
class ServiceState:
    config: ServeConfig
    ruleset: CompiledRuleset
    backend: FhirClient
    verifier: EhrVerifier | None  # None: EHR authentication disabled (loopback demo only)
    clock: Callable[[], datetime]
    environ: Mapping[str, str]
    store: ServiceStore
    users: dict[str, UserEntry] = field(default_factory=dict)
    session_secret: str | None = None  # derives the CSRF token of a visitor not signed in
    cards: Cards = field(init=False)

    def __post_init__(self) -> None:
        self.cards = Cards(self.store, self.clock)

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return today_london(self.clock())

    def url(self, path: str) -> str:
        """An absolute public URL for a path of this service."""
        return self.config.endpoint(path)
