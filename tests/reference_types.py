"""Check every Reference in a FHIR resource against the target types R4 allows for its element.

fhir.resources accepts a Reference to any type anywhere; its field metadata lists the allowed
targets (`json_schema_extra["enum_reference_types"]`, "Resource" meaning any). The resource is
parsed with the R4B models and walked; each Reference's target type comes from `Reference.type`,
its relative or absolute URL ("Type/id", ".../Type/id/_history/n"), or, for a `urn:uuid:`, the
resource type of the Bundle entry with that fullUrl. A reference that cannot be typed is a
problem too (nothing could check it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel

__all__ = ["reference_type_problems"]


def reference_type_problems(
    resource: Mapping, full_urls: Mapping[str, str] | None = None
) -> list[str]:
    """Problems ("ServiceRequest.reasonReference -> Procedure/x: allowed Condition, ...") of every
    Reference in `resource` (a Bundle: of every entry, resolving urn:uuid fullUrls). Empty: all
    references point at types R4 allows there. `full_urls` maps further fullUrls to types."""
    if resource.get("resourceType") == "Bundle":
        entries = [e for e in resource.get("entry") or () if isinstance(e.get("resource"), dict)]
        known = dict(full_urls or {})
        for entry in entries:
            if "fullUrl" in entry:
                known[entry["fullUrl"]] = entry["resource"]["resourceType"]
        return [p for e in entries for p in reference_type_problems(e["resource"], known)]
    model = get_fhir_model_class(resource["resourceType"])
    parsed = model.model_validate(dict(resource))
    problems = []
    for path, allowed, reference in _references(parsed, resource["resourceType"]):
        target = _target_type(reference, full_urls or {})
        if target is None:
            problems.append(f"{path} -> {reference.reference!r}: target type unknown")
        elif "Resource" not in allowed and target not in allowed:
            problems.append(
                f"{path} -> {target} ({reference.reference}): allowed {', '.join(allowed)}"
            )
    return problems


def _references(
    model: FHIRAbstractModel, path: str
) -> Iterator[tuple[str, list[str], FHIRAbstractModel]]:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        allowed = extra.get("enum_reference_types")
        here = f"{path}.{field.alias or name}"
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, FHIRAbstractModel):
                continue
            if allowed is not None and item.get_resource_type() == "Reference":
                yield here, list(allowed), item
            yield from _references(item, here)


def _target_type(reference: FHIRAbstractModel, full_urls: Mapping[str, str]) -> str | None:
    if reference.type:
        return reference.type
    url = reference.reference
    if not url:
        return None
    if url.startswith("urn:"):
        return full_urls.get(url)
    parts = url.split("?", 1)[0].split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-2] if len(parts) >= 2 else None
