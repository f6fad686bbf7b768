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
        """The record `to_dict` gave (every field by name, as the store keeps it; a key that is
        no field is a TypeError). Field by field, positionally: the store's readers decode a
        million of these in a full night."""
        if not data.keys() <= _RECORD_FIELDS:
            raise TypeError(f"not Record fields: {sorted(data.keys() - _RECORD_FIELDS)}")
        get = data.get
        day, abatement, changed = get("date"), get("abatement"), get("changed")
        components = get("components")
        return cls(
            data["ref"],
            data["resource_type"],
            tuple(map(tuple, get("codes", ()))),
            date.fromisoformat(day) if day else None,
            get("status"),
            get("clinical_status"),
            date.fromisoformat(abatement) if abatement else None,
            get("abatement_undated", False),
            tuple(map(tuple, get("values", ()))),
            tuple(
                (tuple(map(tuple, codes)), tuple(map(tuple, values)))
                for codes, values in components
            )
            if components
            else (),
            get("intent"),
            tuple(map(tuple, get("identifiers", ()))),
            get("focus"),
            date.fromisoformat(changed) if changed else None,
            tuple(map(tuple, get("status_reason", ()))),
            get("display"),
        )


_RECORD_FIELDS = frozenset(Record.__slots__)


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
    def from_dict(cls, data: dict, records: tuple[Record, ...] | None = None) -> PatientFacts:
        """The facts `to_dict` gave; `records`: these instead of the dict's (the store keeps a
        patient's records in rows of their own)."""
        if records is None:
            records = tuple(Record.from_dict(r) for r in data.get("records", ()))
        return cls(
            id=data["id"],
            birth_date=date.fromisoformat(data["birth_date"]) if data.get("birth_date") else None,
            deceased=bool(data.get("deceased")),
            deceased_date=(
                date.fromisoformat(data["deceased_date"]) if data.get("deceased_date") else None
            ),
            general_practitioners=tuple(data.get("general_practitioners", ())),
            records=records,
        )
