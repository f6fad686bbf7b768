"""`FakeFhir`: just enough of a FHIR server, in memory, for review accept/decline, CDS Hooks
feedback and the proposal writer. It applies transactions as a real server does (all or nothing,
conditional creates, If-Match, urn:uuid references), so a second identical write can be seen to
change nothing."""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import orjson

from ips_screen.errors import ConflictError, ServerError
from tests.support.paths import FROZEN_NOW
from tests.support.people import people

with warnings.catch_warnings():  # starlette warns that httpx (not httpx2) is installed
    warnings.simplefilter("ignore")


class FakeFhir:
    """Just enough FHIR for review accept/decline and the proposal writer, in memory."""

    base_url = "https://fhir.example.org/R4"

    def __init__(self, resources: list[dict] = ()) -> None:
        self.store: dict[str, dict] = {}
        self.transactions = 0
        self._ids = itertools.count(1)
        for resource in [*people(), *resources]:  # the clinician and IPS service a decision names
            self._put(copy.deepcopy(resource))

    def _put(self, resource: dict) -> dict:
        resource.setdefault("id", f"fake-{next(self._ids)}")
        key = f"{resource['resourceType']}/{resource['id']}"
        old = self.store.get(key)
        version = int(old["meta"]["versionId"]) + 1 if old else 1
        resource["meta"] = {"versionId": str(version), "lastUpdated": FROZEN_NOW.isoformat()}
        self.store[key] = resource
        return resource

    def read(self, rtype: str, rid: str) -> tuple[dict, str]:
        found = self.store.get(f"{rtype}/{rid}")
        if found is None:
            raise ServerError(f"HTTP 404 Not Found from GET /{rtype}/{rid}")
        return copy.deepcopy(found), found["meta"]["versionId"]

    def _matches(self, resource: dict, params: dict[str, str]) -> bool:
        for name, value in params.items():
            if name == "identifier":
                system, _, code = value.partition("|")
                ids = resource.get("identifier") or []
                if not any(i.get("system") == system and i.get("value") == code for i in ids):
                    return False
            elif name in ("focus", "patient", "subject"):
                field = {"focus": "focus", "patient": "for", "subject": "subject"}[name]
                ref = (resource.get(field) or resource.get("subject") or {}).get("reference")
                if ref != value and ref != f"Patient/{value}":
                    return False
        return True

    def search(self, rtype: str, params: Any = None) -> Iterator[dict]:
        params = dict(params or {})
        params = {k: v for k, v in params.items() if k in ("identifier", "focus", "patient")}
        for key, resource in list(self.store.items()):
            if key.startswith(f"{rtype}/") and self._matches(resource, params):
                yield copy.deepcopy(resource)

    def transaction(self, bundle: dict, *, retry: bool = False) -> dict:
        """All or nothing: conflicts are checked before anything is stored."""
        self.transactions += 1
        urls: dict[str, str] = {}
        plan: list[tuple[str, dict]] = []
        for entry in bundle["entry"]:
            request, resource = entry["request"], copy.deepcopy(entry["resource"])
            rtype = resource["resourceType"]
            if request["method"] == "PUT":
                current = self.store.get(request["url"])
                wanted = request.get("ifMatch", "").removeprefix('W/"').rstrip('"')
                if current is None or (wanted and current["meta"]["versionId"] != wanted):
                    raise ConflictError("the transaction conflicted with the server's data")
                plan.append(("200 OK", resource))
                continue
            key, _, value = (request.get("ifNoneExist") or "").partition("=")
            existing = list(self.search(rtype, {key: unquote(value)})) if key else []
            if existing:
                resource, status = existing[0], "exists"
            else:
                resource["id"], status = f"fake-{next(self._ids)}", "201 Created"
            urls[entry.get("fullUrl", "")] = f"{rtype}/{resource['id']}"
            plan.append((status, resource))
        out = []
        for status, resource in plan:
            if status == "exists":
                stored, status = resource, "200 OK"
            else:
                stored = self._put(orjson.loads(_resolve(orjson.dumps(resource).decode(), urls)))
            location = f"{stored['resourceType']}/{stored['id']}/_history/1"
            out.append({"resource": stored, "response": {"status": status, "location": location}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}

    def of_type(self, rtype: str) -> list[dict]:
        return [r for k, r in self.store.items() if k.startswith(f"{rtype}/")]

    def close(self) -> None:
        pass


def _resolve(text: str, urls: dict[str, str]) -> str:
    for urn, ref in urls.items():
        if urn.startswith("urn:"):
            text = text.replace(f'"{urn}"', f'"{ref}"')
    return text
