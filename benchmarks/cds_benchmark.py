"""CDS Hooks patient-view benchmark: the time the service takes to answer one call with prefetch.

Run from the project root::

    .venv/bin/python benchmarks/cds_benchmark.py [--calls 500] [--warmup 50]
        [--transport uvicorn|testclient|serve] [--workers 2] [--filler 400] [--no-write]

1. The request: fixture patient 01 (a `propose` patient: the service builds a full card), plus
   --filler unrelated records spread over the prefetch searches (blood pressures, weights,
   medication reviews, letters ... with codes the ruleset does not use), as a GP record of a
   patient with a long history gives. Prefetch values are searchset Bundles as an EHR sends them.
2. The service: `create_app` with EHR authentication ON (an RS384 key made here, its JWKS inline
   in the configuration). Every call carries a fresh JWT (new jti, the replay cache would refuse a
   reused one); the tokens are signed before timing, since the EHR signs them, not the service.
   The shared state (replay cache, cards) is in a temporary state_dir, as in production.
3. Transport: a real uvicorn on 127.0.0.1 (default; one keep-alive HTTP/1.1 connection, httpx),
   FastAPI's in-process TestClient, or `serve`: a real `ips-screen serve --workers N` process
   (the same configuration as a TOML file), each call on a new connection so that the kernel
   spreads the calls over the workers (the connection set-up is inside the timing). --warmup
   calls first, then --calls timed calls, one after another. Printed: median, p95, mean and max
   in ms, the goal (p95 < 100 ms; CDS Hooks clients expect answers within about 500 ms), and the
   machine.
4. Unless --no-write, the figures are appended to docs/benchmarks.md under the heading
   "CDS Hooks patient-view" (added once; other sections of that file are left alone).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine_facts, machine_line  # noqa: E402 (benchmarks/machine.py, beside this script)

from ips_screen import __version__  # noqa: E402
from ips_screen.service.app import create_app  # noqa: E402
from ips_screen.service.config import parse_config  # noqa: E402
from ips_screen.service.prefetch import SEARCH_TYPES  # noqa: E402

PUBLIC = "https://cds.bench.example"
ISS = "https://ehr.bench.example"
KID = "bench-1"
PATH = "/cds-services/ips-screen"
GOAL_P95_MS = 100.0
DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## CDS Hooks patient-view"
FIXTURE = ROOT / "fhir_fixtures" / "patients" / "01-unemployed-recent.json"
LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
FILLER_CODES = {  # codes no codelist of the ruleset holds
    "Observation": [(LOINC, "8480-6", "Systolic blood pressure"), (LOINC, "29463-7", "Weight")],
    "Condition": [(SNOMED, "38341003", "Hypertension"), (SNOMED, "195967001", "Asthma")],
    "Procedure": [(SNOMED, "182836005", "Review of medication")],
    "DocumentReference": [(LOINC, "11488-4", "Consult note")],
    "ServiceRequest": [(SNOMED, "306206005", "Referral to service")],
}


def filler(patient_id: str, n: int) -> list[dict[str, Any]]:
    """n unrelated records of the patient, spread over the types as a GP record has them."""
    share = {
        "Observation": 0.6,
        "Condition": 0.15,
        "Procedure": 0.1,
        "DocumentReference": 0.1,
        "ServiceRequest": 0.05,
    }
    out = []
    for rtype, part in share.items():
        for i in range(int(n * part)):
            system, code, display = FILLER_CODES[rtype][i % len(FILLER_CODES[rtype])]
            concept = {"coding": [{"system": system, "code": code, "display": display}]}
            day = f"20{10 + i % 16:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
            resource: dict[str, Any] = {
                "resourceType": rtype,
                "id": f"{patient_id}-{rtype.lower()}-{i}",
                "subject": {"reference": f"Patient/{patient_id}"},
            }
            if rtype == "Observation":
                resource.update(
                    status="final",
                    code=concept,
                    effectiveDateTime=day,
                    valueQuantity={"value": 120 + i % 30, "unit": "mm[Hg]"},
                )
            elif rtype == "Condition":
                resource.update(code=concept, onsetDateTime=day)
            elif rtype == "Procedure":
                resource.update(status="completed", code=concept, performedDateTime=day)
            elif rtype == "DocumentReference":
                resource.update(
                    status="current",
                    type=concept,
                    date=f"{day}T10:00:00Z",
                    content=[{"attachment": {"contentType": "text/plain"}}],
                )
            else:
                resource.update(status="completed", intent="order", code=concept, authoredOn=day)
            out.append(resource)
    return out


def prefetch(n_filler: int) -> tuple[str, dict[str, Any], int]:
    bundle = orjson.loads(FIXTURE.read_bytes())
    resources = [entry["resource"] for entry in bundle["entry"]]
    (patient,) = [r for r in resources if r["resourceType"] == "Patient"]
    resources += filler(patient["id"], n_filler)
    out: dict[str, Any] = {"patient": patient}
    for key, rtype in SEARCH_TYPES.items():
        found = [r for r in resources if r["resourceType"] == rtype]
        out[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"fullUrl": f"{rtype}/{r['id']}", "resource": r} for r in found],
        }
    count = 1 + sum(len(v["entry"]) for k, v in out.items() if k != "patient")
    return patient["id"], out, count


def tokens(key: rsa.RSAPrivateKey, n: int) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {
                "iss": ISS,
                "sub": "ehr",
                "aud": PUBLIC + PATH,
                "iat": now,
                "exp": now + 600,
                "jti": str(uuid.uuid4()),
            },
            key,
            algorithm="RS384",
            headers={"kid": KID},
        )
        for _ in range(n)
    ]


def config_for(key: rsa.RSAPrivateKey, state_dir: str) -> dict[str, Any]:
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": KID, "alg": "RS384"}
    return {
        "public_base_url": PUBLIC,
        "state_dir": state_dir,
        "ehr_fhir_servers": ["https://ehr.bench.example/fhir"],
        "fhir": {"base_url": "https://fhir.bench.example/R4"},
        "ehr_auth": {"issuers": [{"iss": ISS, "jwks": {"keys": [jwk]}}]},
    }


def app_for(key: rsa.RSAPrivateKey, state_dir: str):
    return create_app(parse_config(config_for(key, state_dir)), environ={})


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return orjson.dumps(value).decode()


class _Serve:
    """`ips-screen serve --workers N` in a subprocess, for the length of a `with`."""

    def __init__(self, key: rsa.RSAPrivateKey, folder: Path, workers: int) -> None:
        import socket

        config = config_for(key, str(folder / "state"))
        issuer = config["ehr_auth"]["issuers"][0]
        path = folder / "serve.toml"
        path.write_text(
            f"public_base_url = {_toml(config['public_base_url'])}\n"
            f"state_dir = {_toml(config['state_dir'])}\n"
            f"ehr_fhir_servers = {_toml(config['ehr_fhir_servers'])}\n"
            f"[fhir]\nbase_url = {_toml(config['fhir']['base_url'])}\n"
            f"[ehr_auth]\n[[ehr_auth.issuers]]\niss = {_toml(issuer['iss'])}\n"
            f"jwks = {_toml(issuer['jwks'])}\n"
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.argv = [
            str(Path(sys.executable).with_name("ips-screen")),
            "--quiet",
            "serve",
            "--config",
            str(path),
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.log = folder / "serve.log"

    def __enter__(self) -> str:
        import subprocess

        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"ips-screen serve did not start: {self.log.read_text()}")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(30)


class _Uvicorn:
    """uvicorn on 127.0.0.1 in a thread, for the length of a `with`."""

    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def run(args: argparse.Namespace) -> dict[str, Any]:
    facts = machine_facts()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    patient_id, data, count = prefetch(args.filler)
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": patient_id},
        "prefetch": data,
    }
    payload = orjson.dumps(body)
    signed = tokens(key, args.warmup + args.calls)
    folder = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    times: list[float] = []

    def timed(client: Any, n: int, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        started = time.perf_counter()
        response = client.post(PATH, content=payload, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200 or len(response.json()["cards"]) != 1:
            raise RuntimeError(f"call {n}: HTTP {response.status_code}: {response.text[:200]}")
        if n >= args.warmup:
            times.append(elapsed)

    if args.transport == "serve":
        with _Serve(key, folder, args.workers) as base:
            fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection per call
            with httpx.Client(base_url=base, timeout=30, limits=fresh) as client:
                for n, token in enumerate(signed):
                    timed(client, n, token)
    elif args.transport == "uvicorn":
        app = app_for(key, str(folder / "state"))
        with _Uvicorn(app) as base, httpx.Client(base_url=base, timeout=30) as client:
            for n, token in enumerate(signed):
                timed(client, n, token)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fastapi.testclient import TestClient
        with TestClient(app_for(key, str(folder / "state"))) as client:
            for n, token in enumerate(signed):
                timed(client, n, token)
    shutil.rmtree(folder, ignore_errors=True)
    times.sort()
    workers = args.workers if args.transport == "serve" else 1
    return {
        "transport": f"ips-screen serve --workers {workers}"
        if args.transport == "serve"
        else args.transport,
        "calls": len(times),
        "warmup": args.warmup,
        "resources": count,
        "bytes": len(payload),
        "median": statistics.median(times),
        "p95": times[max(0, round(0.95 * len(times)) - 1)],
        "mean": statistics.fmean(times),
        "max": times[-1],
        "load_average": facts["load_average_at_start"],
        "git": facts["git"],
    }


def report(result: dict[str, Any]) -> list[str]:
    ok = result["p95"] < GOAL_P95_MS
    return [
        f"- {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, ips-screen {__version__}, "
        f"{result['transport']}: {result['calls']} calls after {result['warmup']} warm-up, "
        f"prefetch of {result['resources']} resources ({result['bytes'] / 1024:.0f} KiB), "
        "JWT verified on every call"
        + (", a new connection per call" if result["transport"].startswith("ips-screen") else "")
        + ", replay cache and cards in the SQLite state_dir",
        f"  - median {result['median']:.1f} ms, p95 {result['p95']:.1f} ms, "
        f"mean {result['mean']:.1f} ms, max {result['max']:.1f} ms",
        f"  - goal p95 < {GOAL_P95_MS:.0f} ms: {'met' if ok else 'NOT met'}",
        f"  - machine: {machine_line()}; load average at start "
        f"{' '.join(str(x) for x in result['load_average'])} (a shared machine); "
        f"commit {result['git']}",
    ]


def append(lines: list[str]) -> None:
    """Add to the end of the "CDS Hooks patient-view" section of docs/benchmarks.md (the section,
    with its note, is made at the end of the file the first time); other sections are left alone.
    """
    existing = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    if HEADING not in existing:
        note = (
            "`benchmarks/cds_benchmark.py`: POST /cds-services/ips-screen with prefetch for one "
            "`propose` patient (fixture 01 plus unrelated GP-record filler), EHR JWT verified on "
            "every call, one call at a time. Goal: p95 under 100 ms (CDS Hooks clients expect "
            "about 500 ms for the whole round trip)."
        )
        existing = existing.rstrip("\n") + f"\n\n\n{HEADING}\n\n{note}\n"
    start = existing.index(HEADING)
    following = existing.find("\n## ", start + len(HEADING))
    end = len(existing) if following < 0 else following
    section = existing[start:end].rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    rest = existing[end:]
    DOC.write_text(existing[:start] + section + ("\n\n" + rest.lstrip("\n") if rest else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--filler", type=int, default=400, help="unrelated records in prefetch")
    parser.add_argument(
        "--transport", choices=["uvicorn", "testclient", "serve"], default="uvicorn"
    )
    parser.add_argument("--workers", type=int, default=2, help="with --transport serve")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    result = run(args)
    lines = report(result)
    print("CDS Hooks patient-view")
    print("\n".join(lines))
    if not args.no_write:
        append(lines)
        print(f"appended to {DOC.relative_to(ROOT)}")
    return 0 if result["p95"] < GOAL_P95_MS else 1


if __name__ == "__main__":
    sys.exit(main())
