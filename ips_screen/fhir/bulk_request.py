"""What a Bulk Data export asks for (`ExportRequest`): level, types, `_since`, `_typeFilter`,
checked when made, with its kick-off parameters (GET query or POST Parameters body) and a stable
key for resuming the same job. Used by `bulk` (the export) and `bulk_kickoff` (the kick-off).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

import orjson

from ips_screen.errors import ConfigError

LEVELS = ("system", "patient", "group")
INSTANT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_FILTER_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}\?\S+$")


@dataclass(frozen=True)
class ExportRequest:
    """What to export. `since` is a FHIR instant (normally the previous transactionTime)."""

    level: Literal["system", "patient", "group"] = "system"
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since: str | None = None
    type_filters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "type_filters", tuple(self.type_filters))
        if self.level not in LEVELS:
            raise ConfigError(f"export level must be one of {', '.join(LEVELS)}: {self.level!r}")
        if (self.level == "group") != (self.group_id is not None):
            raise ConfigError("a group id is needed for, and only for, a group-level export")
        if self.group_id is not None and not _ID_RE.match(self.group_id):
            raise ConfigError(f"not a FHIR id: {self.group_id!r}")
        if bad := [t for t in self.types if not _TYPE_RE.match(t)]:
            raise ConfigError(f"not a FHIR resource type: {bad[0]!r}")
        if self.since is not None and not INSTANT_RE.match(self.since):
            raise ConfigError(f"_since must be a FHIR instant with a time zone: {self.since!r}")
        for text in self.type_filters:
            if not _FILTER_RE.match(text):
                raise ConfigError(f"a _typeFilter must look like Type?param=value: {text!r}")
            if self.types and text.partition("?")[0] not in self.types:
                raise ConfigError(f"a _typeFilter for a type that _type leaves out: {text!r}")

    def key(self) -> str:
        """A stable hash of what is asked for (the order of types and filters does not matter)."""
        data = [self.level, self.group_id, sorted(self.types), self.since]
        return hashlib.sha256(orjson.dumps([*data, sorted(self.type_filters)])).hexdigest()

    def operation_path(self) -> str:
        if self.level == "group":
            return f"Group/{self.group_id}/$export"
        return "Patient/$export" if self.level == "patient" else "$export"

    def parameters(self) -> dict:
        """The kick-off parameters as a FHIR Parameters resource (the body of a POST kick-off),
        checked by the R4B model; sent as built, so `_since` stays verbatim (servers compare it
        to the transactionTime they gave)."""
        from fhir.resources.R4B.parameters import Parameters

        values: list[tuple[str, str, str]] = [
            ("_outputFormat", "valueString", "application/fhir+ndjson")
        ]
        values += [("_type", "valueString", t) for t in self.types]
        if self.since:
            values.append(("_since", "valueInstant", self.since))
        values += [("_typeFilter", "valueString", f) for f in self.type_filters]
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": name, kind: value} for name, kind, value in values],
        }
        Parameters.model_validate(body)
        return body

    def params(self) -> list[tuple[str, str]]:
        """Kick-off parameters; a comma inside one _typeFilter query is escaped (%2C) because
        the list of queries is itself comma-separated."""
        params = [("_outputFormat", "application/fhir+ndjson")]
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since:
            params.append(("_since", self.since))
        if self.type_filters:
            params.append(
                ("_typeFilter", ",".join(f.replace(",", "%2C") for f in self.type_filters))
            )
        return params
