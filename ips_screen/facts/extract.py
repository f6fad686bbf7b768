"""Reduce FHIR resources (plain dicts) to `Record`s, keeping only what the ruleset can use.

This is the hot path of a screen: most resources are dropped after a look at `resourceType`, and
a clinical resource is kept only when one of its codings (code, value or component) is in one of
the ruleset's codelists. Resources the ruleset ignores everywhere (entered-in-error, refuted,
cancelled, not-done, superseded) are dropped here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ips_screen.code_keys import ICD_SYSTEMS
from ips_screen.dates import parse_fhir_date
from ips_screen.facts.model import Coding, Component, Record

if TYPE_CHECKING:  # facts sit below the ruleset: its codelists are only handed in
    from ips_screen.ruleset.codelists import Codelist

# Resource types that can carry evidence, and the field that names their patient.
SUBJECT_FIELD = {
    "Condition": "subject",
    "Observation": "subject",
    "Procedure": "subject",
    "DocumentReference": "subject",
    "ServiceRequest": "subject",
    "Task": "for",
}
CODE_FIELD = {
    "Condition": "code",
    "Observation": "code",
    "Procedure": "code",
    "DocumentReference": "type",
    "ServiceRequest": "code",
}
IGNORED_STATUS = {
    "Observation": frozenset({"entered-in-error", "cancelled"}),
    "Procedure": frozenset({"entered-in-error", "not-done"}),
    "DocumentReference": frozenset({"entered-in-error", "superseded"}),
    "ServiceRequest": frozenset({"entered-in-error"}),
    "Task": frozenset({"entered-in-error"}),
}
IGNORED_VERIFICATION = frozenset({"refuted", "entered-in-error"})
RELEVANT_TYPES = frozenset(SUBJECT_FIELD) | {"Patient"}


class CodeIndex:
    """The union of a ruleset's codelists, for a fast "could this coding matter?" test."""

    def __init__(self, codelists: Iterable[Codelist]) -> None:
        exact: set[Coding] = set()
        prefixes: dict[str, set[str]] = {}
        for codelist in codelists:
            exact |= codelist.exact_keys()
            for system, found in codelist.prefix_keys().items():
                prefixes.setdefault(system, set()).update(found)
        self.exact = frozenset(exact)
        self.prefixes = {s: tuple(p) for s, p in prefixes.items()}

        self._raw: dict[tuple[object, object], bool] = {}  # raw (system, code) -> relevant

    def __contains__(self, key: Coding) -> bool:
        if key in self.exact:
            return True
        return any(key[1].startswith(p) for p in self.prefixes.get(key[0], ()))

    def any_raw(self, concept: object) -> bool:
        """Whether a CodeableConcept has a coding in the index, without building tuples.

        The hot path: most resources are irrelevant, and the same few hundred raw codings recur,
        so each raw (system, code) pair is normalised once and its answer cached.
        """
        if not isinstance(concept, dict):
            return False
        cache = self._raw
        for coding in _items(concept.get("coding")):
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            if type(system) is not str or type(code) is not str:
                continue
            key = (system, code)
            hit = cache.get(key)
            if hit is None:
                hit = _normalise(system, code) in self
                if len(cache) < 1_000_000:
                    cache[key] = hit
            if hit:
                return True
        return False


def _items(value: object) -> list | tuple:
    """A JSON array's items; nothing for any other value (malformed input)."""
    return value if isinstance(value, list) else ()


def _text(value: object) -> str | None:
    """A JSON string, or None for any other value (malformed input)."""
    return value if isinstance(value, str) else None


def _normalise(system: str, code: str) -> Coding:
    system = system.strip()
    code = code.strip().upper()
    if system in ICD_SYSTEMS:
        code = code.replace(".", "")
    return system, code


def _relevant(resource: dict, concept: object, index: CodeIndex, observation: bool) -> bool:
    if index.any_raw(concept):
        return True
    if not observation:
        return False
    if index.any_raw(resource.get("valueCodeableConcept")):
        return True
    for component in _items(resource.get("component")):
        if isinstance(component, dict) and (
            index.any_raw(component.get("code"))
            or index.any_raw(component.get("valueCodeableConcept"))
        ):
            return True
    return False


_SHARED_MAX = 1_000_000
_SHARED: dict = {}  # one object for equal values met again and again (see `_share`)
_CODINGS: dict[tuple[str, str], Coding] = {}  # raw (system, code) -> its normalised coding


def _share(value):
    """One object for all equal immutable values (codings, tuples of them, statuses, terms): the
    records of a population repeat a few thousand of them, so sharing keeps the facts small
    (and the parsed line's strings are not kept alive by them)."""
    if len(_SHARED) >= _SHARED_MAX:
        return value
    return _SHARED.setdefault(value, value)


def _coding(system: str, code: str) -> Coding:
    key = (system, code)
    found = _CODINGS.get(key)
    if found is None:
        found = _share(_normalise(system, code))
        if len(_CODINGS) < _SHARED_MAX:
            _CODINGS[key] = found
    return found


def codings(concept: object) -> tuple[Coding, ...]:
    """Normalised (system, code) pairs of a CodeableConcept (or a list of them)."""
    if type(concept) is dict:  # the usual concept, of one coding: its answer is cached
        items = concept.get("coding")
        if type(items) is list and len(items) == 1 and type(items[0]) is dict:
            key = (items[0].get("system"), items[0].get("code"))
            if type(key[0]) is str and type(key[1]) is str:
                found = _ONE_CODING.get(key)
                if found is None:
                    found = _codings(concept)
                    if len(_ONE_CODING) < _SHARED_MAX:
                        _ONE_CODING[key] = found
                return found
    return _codings(concept)


_ONE_CODING: dict[tuple[str, str], tuple[Coding, ...]] = {}  # raw (system, code) -> codings


def _codings(concept: object) -> tuple[Coding, ...]:
    if isinstance(concept, list):
        return _share(tuple(c for item in concept if isinstance(item, dict) for c in codings(item)))
    if not isinstance(concept, dict):
        return ()
    out = []
    for coding in _items(concept.get("coding")):
        if not isinstance(coding, dict):
            continue
        system, code = coding.get("system"), coding.get("code")
        if type(system) is str and type(code) is str:
            out.append(_coding(system, code))
        elif isinstance(system, str) and isinstance(code, str):
            out.append(_normalise(system, code))
    return _share(tuple(out))


def _status_code(concept: object) -> str | None:
    if isinstance(concept, dict):
        for coding in _items(concept.get("coding")):
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                return coding["code"]
    return None


def _display(concept: object) -> str | None:
    if not isinstance(concept, dict):
        return None
    for coding in _items(concept.get("coding")):
        if isinstance(coding, dict) and isinstance(coding.get("display"), str):
            return coding["display"].strip()
    text = concept.get("text")
    return text if isinstance(text, str) else None


def _period_start(period: object) -> object:
    return period.get("start") if isinstance(period, dict) else None


def record_date(resource: dict, rtype: str):
    """The date of a record as default-ruleset.md defines it (London day), or None."""
    get = resource.get
    if rtype == "Condition":
        value = get("onsetDateTime") or _period_start(get("onsetPeriod")) or get("recordedDate")
    elif rtype == "Observation":
        value = (
            get("effectiveDateTime")
            or get("effectiveInstant")
            or _period_start(get("effectivePeriod"))
            or get("issued")
        )
    elif rtype == "Procedure":
        value = get("performedDateTime") or _period_start(get("performedPeriod"))
    elif rtype == "DocumentReference":
        context = get("context")
        value = _period_start(context.get("period")) if isinstance(context, dict) else None
        value = value or get("date")
    else:  # ServiceRequest, Task
        value = get("authoredOn")
    return parse_fhir_date(value)


Resolver = Callable[[str], str | None]


def reference_to(value: object, resolve: Resolver | None = None) -> str | None:
    """A Reference (or reference string) as "Type/id"; resolves urn:uuid via `resolve`."""
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not ref:
        return None
    if ref.startswith("urn:"):
        return resolve(ref) if resolve else None
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2:
        return None
    return f"{parts[-2]}/{parts[-1]}"


def patient_of(resource: dict, resolve: Resolver | None = None) -> str | None:
    """The id of the Patient a clinical resource is about, or None."""
    field_name = SUBJECT_FIELD.get(resource.get("resourceType", ""))
    ref = reference_to(resource.get(field_name), resolve) if field_name else None
    if ref and ref.startswith("Patient/"):
        return ref[8:]
    return None


def _components(resource: dict) -> tuple[Component, ...]:
    out = []
    for component in _items(resource.get("component")):
        if isinstance(component, dict):
            values = codings(component.get("valueCodeableConcept"))
            out.append(_share((codings(component.get("code")), values)))
    return _share(tuple(out))


@dataclass(frozen=True, slots=True)
class PatientInfo:
    id: str
    birth_date: object
    deceased: bool
    deceased_date: object
    general_practitioners: tuple[str, ...]


def extract_patient(resource: dict, resolve: Resolver | None = None) -> PatientInfo:
    gps = tuple(
        ref
        for ref in (reference_to(gp, resolve) for gp in _items(resource.get("generalPractitioner")))
        if ref
    )
    return PatientInfo(
        id=str(resource.get("id")),
        birth_date=parse_fhir_date(resource.get("birthDate")),
        deceased=resource.get("deceasedBoolean") is True,
        deceased_date=parse_fhir_date(resource.get("deceasedDateTime")),
        general_practitioners=gps,
    )


def extract_record(
    resource: dict, index: CodeIndex, resolve: Resolver | None = None
) -> Record | None:
    """The `Record` for a clinical resource, or None when the rules cannot use it."""
    rtype = resource.get("resourceType")
    if rtype not in SUBJECT_FIELD:
        return None
    status = _share(_text(resource.get("status")))
    if status in IGNORED_STATUS.get(rtype, ()):
        return None
    ref = f"{rtype}/{resource.get('id')}"

    if rtype == "Task":
        focus = reference_to(resource.get("focus"), resolve)
        if not focus or not focus.startswith("ServiceRequest/"):
            return None
        return Record(
            ref=ref,
            resource_type=rtype,
            date=parse_fhir_date(resource.get("authoredOn")),
            status=status,
            intent=_text(resource.get("intent")),
            focus=focus,
            changed=parse_fhir_date(resource.get("lastModified") or resource.get("authoredOn")),
            status_reason=codings(resource.get("statusReason")),
        )

    concept = resource.get(CODE_FIELD[rtype])
    if not _relevant(resource, concept, index, rtype == "Observation"):
        return None
    codes = codings(concept)
    values: tuple[Coding, ...] = ()
    components: tuple[Component, ...] = ()
    if rtype == "Observation":
        values = codings(resource.get("valueCodeableConcept"))
        if resource.get("component"):
            components = _components(resource)

    if rtype == "Condition":
        verification = _status_code(resource.get("verificationStatus"))
        if verification in IGNORED_VERIFICATION:
            return None
        abatement = resource.get("abatementDateTime") or _period_start(
            resource.get("abatementPeriod")
        )
        return Record(
            ref=ref,
            resource_type=rtype,
            codes=codes,
            date=record_date(resource, rtype),
            clinical_status=_share(_status_code(resource.get("clinicalStatus"))),
            abatement=parse_fhir_date(abatement),
            abatement_undated=abatement is None
            and (resource.get("abatementBoolean") is True or "abatementString" in resource),
            display=_share(_display(concept)),
        )
    if rtype == "ServiceRequest":
        identifiers = tuple(
            (str(i.get("system", "")), str(i.get("value", "")))
            for i in _items(resource.get("identifier"))
            if isinstance(i, dict)
        )
        meta = resource.get("meta")
        updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
        return Record(
            ref=ref,
            resource_type=rtype,
            codes=codes,
            date=record_date(resource, rtype),
            status=status,
            intent=_text(resource.get("intent")),
            identifiers=identifiers,
            changed=parse_fhir_date(updated or resource.get("authoredOn")),
            display=_share(_display(concept)),
        )
    return Record(
        ref=ref,
        resource_type=rtype,
        codes=codes,
        date=record_date(resource, rtype),
        status=status,
        values=values,
        components=components,
        display=_share(_display(concept)),
    )
