"""Value objects for per-patient facts.

A `Record` is one clinical resource reduced to the fields the rule kinds read. Records are
immutable, hashable and cheap; they can be stored (see `to_dict`/`from_dict`) and evaluated
anywhere, because the engine is a pure function of `PatientFacts` and the as-of date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

Coding = tuple[str, str]  # (system, normalised code)
Component = tuple[tuple[Coding, ...], tuple[Coding, ...]]  # (component codes, value codes)


@dataclass(frozen=True, slots=True)
class Record:
    ref: str  # "Condition/abc"
    resource_type: str
    codes: tuple[Coding, ...] = ()  # code / type (DocumentReference) codings, normalised
    date: date | None = None  # date of the record (default-ruleset.md "Date of a record")
    status: str | None = None  # resource status (not Condition)
    clinical_status: str | None = None  # Condition only
    abatement: date | None = None  # Condition abatement date
    abatement_undated: bool = False  # abatementBoolean / abatementString present
    values: tuple[Coding, ...] = ()  # Observation.valueCodeableConcept
    components: tuple[Component, ...] = ()
    intent: str | None = None  # ServiceRequest / Task
    identifiers: tuple[tuple[str, str], ...] = ()  # ServiceRequest (system, value)
    focus: str | None = None  # Task.focus reference, resolved to "Type/id"
    changed: date | None = None  # Task lastModified; ServiceRequest meta.lastUpdated
    status_reason: tuple[Coding, ...] = ()  # Task.statusReason codings, normalised
    display: str | None = None  # the clinical term, for explanations

    def to_dict(self) -> dict:
        out: dict = {"ref": self.ref, "resource_type": self.resource_type}
        for name in Record.__slots__:
            if name in out:
                continue
            value = getattr(self, name)
            if value in (None, (), False):
                continue
            out[name] = value.isoformat() if isinstance(value, date) else value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        kwargs = dict(data)
        for name in ("date", "abatement", "changed"):
            if kwargs.get(name):
                kwargs[name] = date.fromisoformat(kwargs[name])
        for name in ("codes", "values", "identifiers", "status_reason"):
            if name in kwargs:
                kwargs[name] = tuple(tuple(c) for c in kwargs[name])
        if "components" in kwargs:
            kwargs["components"] = tuple(
                (tuple(tuple(c) for c in codes), tuple(tuple(v) for v in values))
                for codes, values in kwargs["components"]
            )
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class PatientFacts:
    id: str
    birth_date: date | None = None
    deceased: bool = False  # deceasedBoolean true
    deceased_date: date | None = None
    general_practitioners: tuple[str, ...] = ()  # "Practitioner/x", "Organization/y", ...
    records: tuple[Record, ...] = field(default=())

    @property
    def ref(self) -> str:
        return f"Patient/{self.id}"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "deceased": self.deceased,
            "deceased_date": self.deceased_date.isoformat() if self.deceased_date else None,
            "general_practitioners": list(self.general_practitioners),
            "records": [r.to_dict() for r in self.records],
        }

    @classmethod
    def from_dict(cls, data: dict) -> PatientFacts:
        return cls(
            id=data["id"],
            birth_date=date.fromisoformat(data["birth_date"]) if data.get("birth_date") else None,
            deceased=bool(data.get("deceased")),
            deceased_date=(
                date.fromisoformat(data["deceased_date"]) if data.get("deceased_date") else None
            ),
            general_practitioners=tuple(data.get("general_practitioners", ())),
            records=tuple(Record.from_dict(r) for r in data.get("records", ())),
        )
