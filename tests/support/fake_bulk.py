"""A fake Bulk Data exporter for the nightly job: the fixture patients, each resource with the
tick it last changed at; an export writes the NDJSON files (and a deleted-resources Bundle) of
what changed since the `_since` it is given, as a real exporter's download would leave them. No
HTTP: it plugs into the job as its `BulkApi`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import orjson

from ips_screen.nightly.config import PracticeConfig
from ips_screen.nightly.sync import BulkApi
from ips_screen.sources import discover, iter_resources
from tests.support.paths import FIXTURES


class FakeUnsupported(Exception):
    """The fake exporter's "this server cannot export"."""


@dataclass(frozen=True)
class FakeRequest:
    """An export request as the nightly job builds one."""

    level: str = "system"
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since: str | None = None
    type_filters: tuple[str, ...] = ()


class FakeBulkServer:
    """Resources with the tick they last changed at; an export returns those changed since."""

    def __init__(self) -> None:
        self.tick = 1
        self.resources: dict[str, tuple[dict, int]] = {}
        self.deleted: dict[str, int] = {}
        self.requests: list[FakeRequest] = []
        self.errors: list[str] = []
        for resource, _, _ in iter_resources(discover([FIXTURES])):
            self.resources[f"{resource['resourceType']}/{resource['id']}"] = (resource, 1)

    def put(self, resource: dict) -> None:
        self.tick += 1
        key = f"{resource['resourceType']}/{resource['id']}"
        self.resources[key] = (resource, self.tick)
        self.deleted.pop(key, None)

    def remove(self, key: str) -> None:
        self.tick += 1
        del self.resources[key]
        self.deleted[key] = self.tick

    def current(self) -> list[dict]:
        return [resource for resource, _ in self.resources.values()]

    def export(self, client, request: FakeRequest, work_dir: Path, **options) -> SimpleNamespace:
        self.requests.append(request)
        since = int(request.since.removeprefix("tick-")) if request.since else 0
        work_dir.mkdir(parents=True, exist_ok=True)
        by_type: dict[str, list[dict]] = {}
        for resource, tick in self.resources.values():
            if tick > since and resource["resourceType"] in request.types:
                by_type.setdefault(resource["resourceType"], []).append(resource)
        files = []
        for rtype, found in sorted(by_type.items()):
            path = work_dir / f"{rtype}.ndjson"
            path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in found))
            files.append((rtype, path))
        gone = [key for key, tick in self.deleted.items() if tick > since and request.since]
        deleted = []
        if gone:
            entries = [{"request": {"method": "DELETE", "url": key}} for key in gone]
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            deleted.append(work_dir / "del.ndjson")
            deleted[0].write_bytes(orjson.dumps(bundle) + b"\n")
        return SimpleNamespace(
            transaction_time=f"tick-{self.tick}",
            files=files,
            deleted=deleted,
            errors=list(self.errors),
            manifest={},
            resumed=False,
        )

    def api(self) -> BulkApi:
        return BulkApi(lambda client, level: True, self.export, FakeRequest, FakeUnsupported)


def fake_config(tmp_path: Path, rules: Path | None = None) -> PracticeConfig:
    """A practice config for Bulk mode whose server is never contacted (the fake exports)."""
    return PracticeConfig.model_validate(
        {
            "source": {"kind": "server"},
            "fhir": {"base_url": "http://127.0.0.1:9/fhir"},
            "export": {"mode": "bulk"},
            "screen": {"write": False, "rules": rules},
            "output": {"state_dir": tmp_path / "state", "keep_runs": 3},
        }
    )
