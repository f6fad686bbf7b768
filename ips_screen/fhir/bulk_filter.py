"""A Bulk Data export's `_typeFilter`, checked again by the client on the files it downloads.

Servers may ignore `_typeFilter` (it is optional in the Bulk Data spec), so output of a filtered
type is filtered again here, for the token parameters the client can check itself (`_id`, `code`,
`status`, ...: `system|code`, `code` or `system|` values, comma-separated values ORed). A query
with any other parameter, or a modifier, is left to the server: it matches everything here.
Several queries for one type are ORed, as in the spec.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

log = logging.getLogger("ips_screen.fhir.bulk")

# Search parameters the client can check again itself: token parameters -> element names.
_TOKEN_PARAMS: Mapping[str, tuple[str, ...]] = {
    "_id": ("id",),
    "code": ("code", "medicationCodeableConcept"),
    "status": ("status",),
    "intent": ("intent",),
    "category": ("category",),
    "clinical-status": ("clinicalStatus",),
    "verification-status": ("verificationStatus",),
}
Criterion = tuple[tuple[str, tuple[str, ...]], ...] | None  # None: cannot be checked here


def parse_type_filters(filters: Sequence[str]) -> dict[str, list[Criterion]]:
    """_typeFilter queries by resource type; a query with a parameter (or modifier) the client
    cannot check becomes None (left to the server)."""
    parsed: dict[str, list[Criterion]] = {}
    for text in filters:
        rtype, _, query = text.partition("?")
        pairs = parse_qsl(query, keep_blank_values=True)
        criterion: Criterion = tuple((name, tuple(value.split(","))) for name, value in pairs)
        if not pairs or any(name not in _TOKEN_PARAMS for name, _ in pairs):
            log.info("a _typeFilter for %s is left to the server (not checkable here)", rtype)
            criterion = None
        parsed.setdefault(rtype, []).append(criterion)
    return parsed


def matches(resource: Mapping[str, Any], criteria: Sequence[Criterion]) -> bool:
    """True when any criterion matches (None always does): _typeFilter queries are ORed."""
    return any(
        criterion is None
        or all(_param_matches(resource, name, values) for name, values in criterion)
        for criterion in criteria
    )


def _param_matches(resource: Mapping[str, Any], name: str, values: tuple[str, ...]) -> bool:
    tokens = [t for element in _TOKEN_PARAMS[name] for t in _tokens(resource.get(element))]
    for value in values:
        system, bar, code = value.rpartition("|")
        for token_system, token_code in tokens:
            if not bar and token_code == code:
                return True
            if bar and (token_system or "") == system and (not code or token_code == code):
                return True
    return False


# A list of CodeableConcepts (list, concept, coding list, coding) is the deepest token element;
# anything nested deeper is malformed and holds no tokens.
_MAX_TOKEN_DEPTH = 4


def _tokens(value: object, depth: int = 0) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, str):
        yield None, value
    elif depth >= _MAX_TOKEN_DEPTH:
        return
    elif isinstance(value, list):
        for item in value:
            yield from _tokens(item, depth + 1)
    elif isinstance(value, dict):
        if "coding" in value:
            yield from _tokens(value["coding"], depth + 1)
        elif isinstance(value.get("code"), str):
            system = value.get("system")
            yield (system if isinstance(system, str) else None), value["code"]
