"""Screen benchmark: the screen over a 10,000-patient NDJSON population, beside its baselines.

Run from the project root::

    .venv/bin/python benchmarks/screen_benchmark.py [--patients 10000] [--work DIR] [--keep]

1. Build: the Synthea patients in ../shared/data (synthea-bulk-10 NDJSON and the
   synthea-california transaction Bundles, flattened with their urn:uuid references resolved to
   "Type/id") are grouped by patient and copied, cycling through them, until there are
   --patients patients. Copy n of a patient gets every resource id of that patient's resources
   rewritten to "<orig id>-c<n>", and every reference to them with it. Resources that belong to
   no patient (Organization, Practitioner, PractitionerRole, Location) are written once,
   unchanged. The files are a FHIR Bulk Data layout, <work>/<Type>.000.ndjson. The build time is
   printed on its own; it is not part of any measure.
2. Measures, each in a fresh subprocess (so peak RSS is that measure's own), over the same files:
   - orjson parse-only: orjson.loads of every line of every file (the baseline; best of --repeat);
   - screen: sources.collect + pipeline.decide_all + outputs.summary.summarise, nothing written
     (best of --repeat);
   - screen + outputs: pipeline.screen_files with every output written to a temporary folder;
   - fhir.resources: orjson.loads + fhir.resources.R4B model_validate of a sample (--sample
     resources, the same mix of resource types as the population), since validating everything
     would take too long.
   Timings start after imports and the ruleset load.
3. Goals: the screen at no less than half the speed of orjson parse-only, and at least 20 times
   the speed of fhir.resources validation (resources/s).

The work folder (default benchmarks/work/, git-ignored) is deleted afterwards unless --keep; a kept
folder built for the same --patients from the same data is reused by the next run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
from machine import machine_facts, vm_hwm_mb  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_WORK = ROOT / "benchmarks" / "work"
BULK = "synthea-bulk-10"
CALIFORNIA = "synthea-california"
MANIFEST = "benchmark-manifest.txt"  # not *.json: the work folder must hold only FHIR input
BUILD_FORMAT = 1  # bump when the build changes, so a kept work folder is rebuilt
AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GOAL_VS_ORJSON = 0.5
GOAL_VS_FHIR = 20.0
# A token that could be a FHIR id ([A-Za-z0-9\-\.]{1,64}); UUID ids are always whole tokens.
_TOKEN = re.compile(rb"[A-Za-z0-9.\-]+")
# Put after every id to rewrite in a template; orjson escapes control characters in strings, so
# the byte never occurs in its output.
_MARK = b"\x01"


# --- build -----------------------------------------------------------------------------------


@dataclass
class SourcePatient:
    """One source patient: its resources as NDJSON per type, with _MARK after every own id."""

    key: str
    templates: dict[str, bytearray] = field(default_factory=dict)
    resources: Counter[str] = field(default_factory=Counter)


@dataclass
class Sources:
    patients: list[SourcePatient]
    shared: dict[str, list[bytes]]  # type -> lines, written once
    multi_patient: int = 0  # resources naming more than one patient (kept with the first)
    foreign_refs: int = 0  # references to another patient's resources (not rewritten)


def _references(value: object, out: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                out.append(item)
            else:
                _references(item, out)
    elif isinstance(value, list):
        for item in value:
            _references(item, out)


def _resolve(value: object, urls: dict[str, str]) -> None:
    """Replace urn: references found in `urls` by "Type/id", in place."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                if item in urls:
                    value[key] = urls[item]
            else:
                _resolve(item, urls)
    elif isinstance(value, list):
        for item in value:
            _resolve(item, urls)


def _bulk_resources(folder: Path) -> Iterator[dict]:
    for path in sorted(folder.glob("*.ndjson")):
        with path.open("rb") as lines:
            for line in lines:
                if line.strip():
                    yield orjson.loads(line)


def _bundle_groups(folder: Path) -> Iterator[list[dict]]:
    """Each Bundle's resources, urn:uuid references resolved to "Type/id"."""
    for path in sorted(folder.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        entries = [e for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict)]
        urls = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in entries
            if str(e.get("fullUrl", "")).startswith("urn:") and e["resource"].get("id")
        }
        resources = [e["resource"] for e in entries]
        for res in resources:
            _resolve(res, urls)
        yield resources


def load_sources(data: Path) -> Sources:
    """The source patients, grouped, with their own ids marked for rewriting."""
    groups: dict[str, list[dict]] = {}
    shared: dict[str, list[bytes]] = {}
    multi = 0

    def patient_refs(res: dict) -> list[str]:
        refs: list[str] = []
        _references(res, refs)
        return sorted({r[len("Patient/") :] for r in refs if r.startswith("Patient/")})

    # Bulk: a resource belongs to the patient it references.
    for res in _bulk_resources(data / BULK):
        if res["resourceType"] == "Patient":
            groups.setdefault(f"{BULK}:{res['id']}", []).append(res)
            continue
        pids = patient_refs(res)
        multi += len(pids) > 1
        if pids:
            groups.setdefault(f"{BULK}:{pids[0]}", []).append(res)
        else:
            shared.setdefault(res["resourceType"], []).append(orjson.dumps(res))
    # Bundles: a patient's Bundle holds that patient's resources (Medication too); the hospital
    # and practitioner Bundles hold no Patient and are shared.
    for resources in _bundle_groups(data / CALIFORNIA):
        patients = [r for r in resources if r["resourceType"] == "Patient"]
        if len(patients) == 1:
            groups.setdefault(f"{CALIFORNIA}:{patients[0]['id']}", []).extend(resources)
        else:
            for res in resources:
                shared.setdefault(res["resourceType"], []).append(orjson.dumps(res))

    sources = Sources(patients=[], shared=shared, multi_patient=multi)
    all_own: dict[bytes, str] = {}
    for key, resources in groups.items():
        for res in resources:
            all_own[res["id"].encode()] = key
    for key in sorted(groups):
        own = {res["id"].encode() for res in groups[key]}
        patient = SourcePatient(key)

        def mark(match: re.Match[bytes], own: set[bytes] = own, key: str = key) -> bytes:
            token = match[0]
            if token in own:
                return token + _MARK
            if all_own.get(token, key) != key:
                sources.foreign_refs += 1
            return token

        for res in groups[key]:
            line = _TOKEN.sub(mark, orjson.dumps(res)) + b"\n"
            rtype = res["resourceType"]
            patient.templates.setdefault(rtype, bytearray()).extend(line)
            patient.resources[rtype] += 1
        sources.patients.append(patient)
    return sources


def _fingerprint(data: Path) -> str:
    digest = hashlib.sha256(f"format {BUILD_FORMAT}".encode())
    for folder in (BULK, CALIFORNIA):
        for path in sorted((data / folder).iterdir()):
            stat = path.stat()
            digest.update(f"{folder}/{path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build(data: Path, work: Path, patients: int) -> dict:
    """Write the population to `work`; returns the manifest (also saved in the folder)."""
    started = time.perf_counter()
    sources = load_sources(data)
    n_src = len(sources.patients)
    counts: Counter[str] = Counter()
    handles = {}

    def out(rtype: str):
        if rtype not in handles:
            handles[rtype] = (work / f"{rtype}.000.ndjson").open("wb", buffering=1 << 20)
        return handles[rtype]

    try:
        for rtype, lines in sources.shared.items():
            out(rtype).write(b"\n".join(lines) + b"\n")
            counts[rtype] += len(lines)
        for i in range(patients):
            source = sources.patients[i % n_src]
            suffix = b"-c%d" % (i // n_src)
            for rtype, template in source.templates.items():
                out(rtype).write(template.replace(_MARK, suffix))
            counts.update(source.resources)
    finally:
        for handle in handles.values():
            handle.close()
    files = sorted(f"{rtype}.000.ndjson" for rtype in counts)
    manifest = {
        "fingerprint": _fingerprint(data),
        "patients": patients,
        "source_patients": n_src,
        "copies": -(-patients // n_src),
        "resources": sum(counts.values()),
        "shared_resources": sum(len(v) for v in sources.shared.values()),
        "multi_patient_resources": sources.multi_patient,
        "foreign_references": sources.foreign_refs,
        "lines": {f"{rtype}.000.ndjson": counts[rtype] for rtype in sorted(counts)},
        "bytes": sum((work / name).stat().st_size for name in files),
        "files": files,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (work / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def prepare(data: Path, work: Path, patients: int) -> tuple[dict, bool]:
    """The manifest of a usable population in `work`, and whether it was reused."""
    manifest_path = work / MANIFEST
    if manifest_path.exists():
        old = orjson.loads(manifest_path.read_bytes())
        intact = all((work / name).is_file() for name in old.get("files", []))
        if (
            intact
            and old.get("patients") == patients
            and old.get("fingerprint") == _fingerprint(data)
        ):
            return old, True
        remove_population(work, rmdir=False)
    work.mkdir(parents=True, exist_ok=True)
    strangers = [p.name for p in work.iterdir()]
    if strangers:
        raise SystemExit(
            f"{work}: not empty and not a benchmark work folder ({', '.join(strangers[:5])}); "
            "choose another --work"
        )
    return build(data, work, patients), False


def remove_population(work: Path, rmdir: bool = True) -> None:
    """Delete the files a build wrote (nothing else), and the folder if it is then empty."""
    manifest_path = work / MANIFEST
    if manifest_path.exists():
        for name in orjson.loads(manifest_path.read_bytes()).get("files", []):
            (work / name).unlink(missing_ok=True)
        manifest_path.unlink()
    if rmdir and work.is_dir() and not any(work.iterdir()):
        work.rmdir()


# --- measures (each runs in its own process) --------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_orjson(files: list[Path], manifest: dict, sample: int) -> dict:
    loads = orjson.loads
    started = time.perf_counter()
    count = 0
    for path in files:
        with path.open("rb") as lines:
            for line in lines:
                loads(line)
                count += 1
    seconds = time.perf_counter() - started
    return {"resources": count, "patients": manifest["patients"], "seconds": seconds}


def _ruleset():
    from ips_screen.ruleset.loader import load_ruleset

    return load_ruleset()


def measure_screen(files: list[Path], manifest: dict, sample: int) -> dict:
    from ips_screen.outputs.summary import summarise
    from ips_screen.pipeline import decide_all
    from ips_screen.sources import collect

    ruleset = _ruleset()
    started = time.perf_counter()
    population = collect(files, ruleset)
    decisions = decide_all(ruleset, population.patients.values(), AS_OF)
    summary = summarise(
        decisions,
        ruleset,
        read_report=population.report.to_dict(),
        orphans=population.orphans,
        unlinked=population.unlinked,
        as_of=AS_OF,
    )
    seconds = time.perf_counter() - started
    return {
        "resources": population.report.resources_read,
        "patients": len(population.patients),
        "seconds": seconds,
        "outcomes": summary["outcomes"],
    }


def measure_screen_outputs(files: list[Path], manifest: dict, sample: int) -> dict:
    from ips_screen.pipeline import screen_files

    ruleset = _ruleset()
    with tempfile.TemporaryDirectory(prefix="ips-screen-bench-") as tmp:
        out_dir = Path(tmp) / "out"
        started = time.perf_counter()
        result = screen_files(files, ruleset, as_of=AS_OF, out_dir=out_dir, now=NOW)
        seconds = time.perf_counter() - started
        written = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    return {
        "resources": result.summary["input"]["resources"],
        "patients": result.summary["patients"],
        "seconds": seconds,
        "outcomes": result.summary["outcomes"],
        "output_mb": round(written / 1e6, 1),
    }


def _sample_lines(files: list[Path], manifest: dict, sample: int) -> list[bytes]:
    """About `sample` lines, the first of each file in proportion to its share of the input."""
    total = manifest["resources"]
    lines: list[bytes] = []
    for path in files:
        want = round(sample * manifest["lines"][path.name] / total)
        if want == 0:
            continue
        with path.open("rb") as handle:
            for n, line in enumerate(handle):
                if n >= want:
                    break
                lines.append(line)
    return lines


def measure_fhir_resources(files: list[Path], manifest: dict, sample: int) -> dict:
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    lines = _sample_lines(files, manifest, sample)
    started = time.perf_counter()
    classes = {}
    for line in lines:  # import and build every model class first: not part of the rate
        rtype = orjson.loads(line)["resourceType"]
        if rtype not in classes:
            classes[rtype] = get_fhir_model_class(rtype)
    import_seconds = time.perf_counter() - started
    invalid: Counter[str] = Counter()
    started = time.perf_counter()
    for line in lines:
        obj = orjson.loads(line)
        try:
            classes[obj["resourceType"]].model_validate(obj)
        except ValidationError:
            invalid[obj["resourceType"]] += 1
    seconds = time.perf_counter() - started
    rate = len(lines) / seconds
    return {
        "resources": len(lines),
        # patients/s estimated from the population's resources per patient
        "patients_estimate": rate * manifest["patients"] / manifest["resources"],
        "seconds": seconds,
        "import_seconds": round(import_seconds, 2),
        "invalid": dict(sorted(invalid.items())),
    }


MEASURES = {
    "orjson": ("orjson parse-only", measure_orjson),
    "screen": ("screen (collect+decide+summary)", measure_screen),
    "screen_outputs": ("screen_files + outputs", measure_screen_outputs),
    "fhir_resources": ("fhir.resources validate (sample)", measure_fhir_resources),
}


def child(name: str, work: Path, sample: int, data: Path, patients: int) -> None:
    if name == "build":
        manifest, reused = prepare(data, work, patients)
        figures = {"manifest": manifest, "reused": reused}
    else:
        manifest = orjson.loads((work / MANIFEST).read_bytes())
        files = [work / name for name in manifest["files"]]
        figures = MEASURES[name][1](files, manifest, sample)
    figures["peak_rss_mb"] = _peak_rss_mb()
    figures["vm_hwm_mb"] = vm_hwm_mb()
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")


class ChildFailed(Exception):
    pass


def run_child(name: str, args: argparse.Namespace) -> dict:
    """Run one step in a fresh interpreter; the parent stays small, so that the child's
    ru_maxrss (which on Linux starts from the parent's RSS at fork) is the child's own."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name]
    command += ["--work", str(args.work), "--sample", str(args.sample)]
    command += ["--data", str(args.data), "--patients", str(args.patients)]
    done = subprocess.run(command, check=False, stdout=subprocess.PIPE, cwd=ROOT)
    if done.returncode != 0:
        raise ChildFailed(f"{name} failed (exit code {done.returncode})")
    return orjson.loads(done.stdout.splitlines()[-1])


# --- report -----------------------------------------------------------------------------------


def _rate_row(key: str, label: str, fig: dict) -> list[str]:
    rate = fig["resources"] / fig["seconds"]
    if "patients_estimate" in fig:
        patients = f"~{fig['patients_estimate']:,.0f}"
    else:
        patients = f"{fig['patients'] / fig['seconds']:,.0f}"
    return [
        label,
        f"{fig['resources']:,}",
        f"{fig['seconds']:.2f}",
        f"{rate:,.0f}",
        patients,
        f"{fig['peak_rss_mb']:,.0f}",
    ]


HEADER = ["measure", "resources", "seconds", "resources/s", "patients/s", "peak RSS MB"]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    print(line(HEADER))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000, help="population size")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="folder for the NDJSON")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the work folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="../shared/data")
    parser.add_argument("--repeat", type=int, default=3, help="runs of orjson and screen (best)")
    parser.add_argument("--sample", type=int, default=20_000, help="fhir.resources sample size")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--child", choices=["build", *MEASURES], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work = work = args.work.resolve()
    args.data = args.data.resolve()

    if args.child:
        child(args.child, work, args.sample, args.data, args.patients)
        return 0
    if args.patients < 1 or args.repeat < 1 or args.sample < 1:
        parser.error("--patients, --repeat and --sample must be at least 1")
    missing = [f for f in (BULK, CALIFORNIA) if not (args.data / f).is_dir()]
    if missing:
        print(f"SKIP: {args.data} has no {' or '.join(missing)}: nothing to benchmark.")
        print("(This needs the external FHIR test data in ../shared/data; see its README.)")
        return 0

    facts = machine_facts(("orjson", "fhir.resources", "pydantic", "ips-screen"))
    print(f"python {facts['python']} on {facts['platform']}")
    print(f"{facts['cpu_count']} CPUs: {facts['cpu_model']}; memory {facts['memory_gb']} GB")
    print(f"load average (1, 5, 15 min): {facts['load_average_at_start']}")
    try:
        built = run_child("build", args)
        manifest, reused = built["manifest"], built["reused"]
        mb = manifest["bytes"] / 1e6
        what = "reused (built earlier " if reused else "built ("
        print(
            f"population: {manifest['patients']:,} patients ({manifest['source_patients']} source "
            f"patients x {manifest['copies']} copies), {manifest['resources']:,} resources, "
            f"{len(manifest['files'])} files, {mb:,.0f} MB in {work}"
        )
        print(
            f"build: {what}in {manifest['build_seconds']:.1f} s, peak RSS "
            f"{built['peak_rss_mb']:,.0f} MB; not part of the measures)"
        )
        if manifest["foreign_references"] or manifest["multi_patient_resources"]:
            print(
                f"  note: {manifest['multi_patient_resources']} resources name several patients, "
                f"{manifest['foreign_references']} references point at another patient's data"
            )

        runs: dict[str, list[dict]] = {key: [] for key in MEASURES}
        for n in range(1, args.repeat + 1):
            for key in ("orjson", "screen"):
                fig = run_child(key, args)
                runs[key].append(fig)
                print(f"  {MEASURES[key][0]} run {n}: {fig['seconds']:.2f} s", flush=True)
        for key in ("screen_outputs", "fhir_resources"):
            fig = run_child(key, args)
            runs[key].append(fig)
            print(f"  {MEASURES[key][0]}: {fig['seconds']:.2f} s", flush=True)
    except ChildFailed as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            remove_population(work)

    best = {key: min(figs, key=lambda f: f["seconds"]) for key, figs in runs.items()}
    for key in ("orjson", "screen"):  # peak RSS: the largest of the runs
        best[key] = {**best[key], "peak_rss_mb": max(f["peak_rss_mb"] for f in runs[key])}
    if best["screen"]["resources"] != best["orjson"]["resources"]:
        print(
            f"WARNING: the screen read {best['screen']['resources']:,} resources, "
            f"orjson {best['orjson']['resources']:,}"
        )

    print()
    print_table([_rate_row(key, MEASURES[key][0], best[key]) for key in MEASURES])
    rate = {key: fig["resources"] / fig["seconds"] for key, fig in best.items()}
    vs_orjson = rate["screen"] / rate["orjson"]
    vs_fhir = rate["screen"] / rate["fhir_resources"]
    fhir = best["fhir_resources"]
    print(
        f"(best of {args.repeat} for orjson and screen; fhir.resources on a {fhir['resources']:,}"
        f"-resource sample, {sum(fhir['invalid'].values())} of them invalid by R4B; "
        "peak RSS: the largest of the runs)"
    )
    print()
    verdict = {True: "PASS", False: "FAIL"}
    print(
        f"screen vs orjson parse-only:    {vs_orjson:.2f} x  "
        f"(goal >= {GOAL_VS_ORJSON})  {verdict[vs_orjson >= GOAL_VS_ORJSON]}"
    )
    print(
        f"screen vs fhir.resources model: {vs_fhir:.1f} x  "
        f"(goal >= {GOAL_VS_FHIR:g})  {verdict[vs_fhir >= GOAL_VS_FHIR]}"
    )
    outputs_vs = rate["screen_outputs"] / rate["orjson"]
    print(f"(screen_files with outputs vs orjson parse-only: {outputs_vs:.2f} x, for information)")
    print(f"outcomes: {best['screen']['outcomes']}")
    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at the end: {load_end}")

    if args.json:
        report = {
            "date": date.today().isoformat(),
            "command": " ".join(["benchmarks/screen_benchmark.py", *(argv or sys.argv[1:])]),
            "machine": facts,
            "load_average_at_end": load_end,
            "population": {k: v for k, v in manifest.items() if k != "fingerprint"},
            "as_of": AS_OF.isoformat(),
            "repeat": args.repeat,
            "measures": {
                key: {
                    **best[key],
                    "label": MEASURES[key][0],
                    "resources_per_s": rate[key],
                    "runs_seconds": [f["seconds"] for f in runs[key]],
                }
                for key in MEASURES
            },
            "ratios": {
                "screen_vs_orjson": vs_orjson,
                "screen_vs_fhir_resources": vs_fhir,
                "screen_outputs_vs_orjson": outputs_vs,
            },
            "goals": {
                "screen_vs_orjson": {"goal": GOAL_VS_ORJSON, "met": vs_orjson >= GOAL_VS_ORJSON},
                "screen_vs_fhir_resources": {"goal": GOAL_VS_FHIR, "met": vs_fhir >= GOAL_VS_FHIR},
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
