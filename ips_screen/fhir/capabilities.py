"""What a server's CapabilityStatement says it can search (a hint, not a promise: servers often
misstate it; `FhirClient.capabilities()` reads the statement)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def capability_search_params(
    statement: Mapping[str, Any] | None, resource_type: str
) -> frozenset[str]:
    """Search parameter names a CapabilityStatement declares for a type; empty when it says
    nothing usable (a missing or malformed statement is not an error)."""
    names: set[str] = set()
    rests = statement.get("rest") if statement else None
    for rest in rests if isinstance(rests, list) else []:
        resources = rest.get("resource") if isinstance(rest, dict) else None
        for entry in resources if isinstance(resources, list) else []:
            if not isinstance(entry, dict) or entry.get("type") != resource_type:
                continue
            params = entry.get("searchParam")
            for param in params if isinstance(params, list) else []:
                if isinstance(param, dict) and isinstance(param.get("name"), str):
                    names.add(param["name"])
    return frozenset(names)
