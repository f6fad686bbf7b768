"""Screen benchmark: the screen as users run it, beside what merely parsing the input costs.

Run from the project root::

    .venv/bin/python benchmarks/screen_benchmark.py [--patients 10000] [--work DIR] [--keep]

1. Build: the Synthea patients in ../shared/data (synthea-bulk-10 NDJSON and the
   synthea-california transaction Bundles, flattened with their urn:uuid references resolved to
   "Type/id") are grouped by patient and copied, cycling through them, until there are
   --patients patients. Copy n of a patient gets every resource id of that patient's resources
   rewritten to "<orig id>-c<n>", and every reference to them with it. Every Synthea type is
   kept (Claim and ExplanationOfBenefit too); resources that belong to no patient (Organization,
   Practitioner, PractitionerRole, Location) are written once, unchanged. The files are a FHIR
   Bulk Data layout, <work>/<Type>.000.ndjson. The build is not part of any measure.
2. Measures, each a fresh process over the same files, interleaved round by round (--repeat
   rounds, median reported), with the page cache warmed (every file read) before each:
   - screen (CLI): the whole command `ips-screen screen WORK --out OUT` (every output written,
     default --jobs: all cores), wall time of the process, start-up and imports included;
   - screen (CLI) --jobs 1, for information;
   - orjson needed types: orjson.loads of every line of the files of the types the default
     ruleset reads (Patient, Condition, Observation, Procedure, DocumentReference,
     ServiceRequest, Task), timed after the imports: the goal's baseline;
   - orjson every file, for information;
   - DuckDB: `SELECT count(*) FROM read_json(...)` over the needed types' files (duckdb is an
     optional benchmark dependency: `pip install '.[bench]'`; skipped when absent), as a
     reference.
   Peak RSS: the kernel's high-water mark (VmHWM) of every process of the measure (the command
   and the processes it starts), sampled every 20 ms and summed.
3. Goals: the screen (CLI) at most 2.0 times the orjson parse of the needed types; its peak RSS
   summed over processes no higher than 540 MB at 10,000 patients.

The work folder (default benchmarks/work/, git-ignored) is deleted afterwards unless --keep; a kept
folder built for the same --patients from the same data is reused by the next run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
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
from machine import (  # benchmarks/machine.py
    compile_package,
    machine_facts,
    run_sampled,
    vm_hwm_mb,
    warm,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_WORK = ROOT / "benchmarks" / "work"
BULK = "synthea-bulk-10"
CALIFORNIA = "synthea-california"
MANIFEST = "benchmark-manifest.txt"  # not *.json: the work folder must hold only FHIR input
BUILD_FORMAT = 1  # bump when the build changes, so a kept work folder is rebuilt
AS_OF = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GOAL_RATIO = 2.0  # screen (CLI) / orjson parse of the needed types
GOAL_RSS_MB = 540  # at 10,000 patients, summed over processes
NEEDED_TYPES = (
    "Patient", "Condition", "Observation", "Procedure", "DocumentReference", "ServiceRequest",
    "Task",
)  # fmt: skip
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


# --- measures (each a fresh process) -----------------------------------------------------------


def _needed(files: list[Path]) -> list[Path]:
    return [p for p in files if p.name.split(".", 1)[0] in NEEDED_TYPES]


def child_orjson(files: list[Path]) -> dict:
    """In a fresh interpreter: orjson.loads of every line of `files`, timed after the imports."""
    loads = orjson.loads
    started = time.perf_counter()
    count = 0
    for path in files:
        with path.open("rb") as lines:
            for line in lines:
                loads(line)
                count += 1
    return {"resources": count, "inner_seconds": time.perf_counter() - started}


def child_duckdb(files: list[Path]) -> dict:
    import duckdb

    started = time.perf_counter()
    paths = [str(p) for p in files]
    query = (
        "SELECT count(*) FROM read_json(?, format = 'newline_delimited', "
        "columns = {resourceType: 'VARCHAR'})"
    )
    count = duckdb.connect().execute(query, [paths]).fetchone()[0]
    return {"resources": count, "inner_seconds": time.perf_counter() - started}


def run_measured(command: list[str]) -> dict:
    """Run `command`; its wall time and the peak RSS of it and every process it starts (the last
    VmHWM seen of each, summed), sampled every 20 ms."""
    done = run_sampled(command)
    if done.returncode != 0:
        raise ChildFailed(f"{' '.join(command)} failed (exit code {done.returncode})")
    return {
        "seconds": done.seconds,
        "peak_rss_mb": done.peak_rss_mb,
        "processes": done.processes,
        "stdout": done.stdout,
    }


class ChildFailed(Exception):
    pass


def measure(key: str, args: argparse.Namespace, files: list[Path], out: Path) -> dict:
    script = [sys.executable, str(Path(__file__).resolve()), "--work", str(args.work)]
    if key.startswith("cli"):
        command = [sys.executable, "-m", "ips_screen", "-q", "screen", str(args.work)]
        command += ["--out", str(out), "--as-of", AS_OF.isoformat()]
        if key == "cli_jobs1":
            command += ["--jobs", "1"]
        fig = run_measured(command)
        summary = orjson.loads((out / "summary.json").read_bytes())
        fig["resources"] = summary["input"]["resources"]
        fig["outcomes"] = summary["outcomes"]
    else:
        fig = run_measured([*script, "--child", key, "--patients", str(args.patients)])
        fig.update(orjson.loads(fig["stdout"].splitlines()[-1]))
    del fig["stdout"]
    return fig


MEASURES = {
    "cli": "screen (CLI, all cores)",
    "cli_jobs1": "screen (CLI, --jobs 1)",
    "orjson_needed": "orjson parse, needed types",
    "orjson_all": "orjson parse, every file",
    "duckdb": "DuckDB read_json count, needed types",
}


def child(name: str, work: Path, data: Path, patients: int) -> None:
    if name == "build":
        manifest, reused = prepare(data, work, patients)
        figures = {"manifest": manifest, "reused": reused}
    else:
        manifest = orjson.loads((work / MANIFEST).read_bytes())
        files = [work / name for name in manifest["files"]]
        if name == "orjson_all":
            figures = child_orjson(files)
        elif name == "orjson_needed":
            figures = child_orjson(_needed(files))
        else:
            figures = child_duckdb(_needed(files))
    figures["vm_hwm_mb"] = vm_hwm_mb()
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")


def run_build(args: argparse.Namespace) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "build"]
    command += ["--work", str(args.work), "--data", str(args.data)]
    command += ["--patients", str(args.patients)]
    done = subprocess.run(command, check=False, stdout=subprocess.PIPE, cwd=ROOT)
    if done.returncode != 0:
        raise ChildFailed(f"build failed (exit code {done.returncode})")
    return orjson.loads(done.stdout.splitlines()[-1])


# --- report -----------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


HEADER = ["measure", "resources", "median s", "runs s", "x orjson needed", "peak RSS MB", "procs"]


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
    parser.add_argument("--repeat", type=int, default=3, help="rounds of measures (median)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--measures",
        default=",".join(MEASURES),
        help=f"comma-separated, of {', '.join(MEASURES)} (default: all; cli and orjson_needed "
        "are always run)",
    )
    parser.add_argument("--child", choices=["build", "orjson_needed", "orjson_all", "duckdb"])
    args = parser.parse_args(argv)
    args.work = work = args.work.resolve()
    args.data = args.data.resolve()

    if args.child:
        child(args.child, work, args.data, args.patients)
        return 0
    if args.patients < 1 or args.repeat < 1:
        parser.error("--patients and --repeat must be at least 1")
    missing = [f for f in (BULK, CALIFORNIA) if not (args.data / f).is_dir()]
    if missing:
        print(f"SKIP: {args.data} has no {' or '.join(missing)}: nothing to benchmark.")
        print("(This needs the external FHIR test data in ../shared/data; see its README.)")
        return 0
    wanted = {"cli", "orjson_needed", *args.measures.split(",")}
    if wanted - set(MEASURES):
        parser.error(f"--measures: unknown {', '.join(sorted(wanted - set(MEASURES)))}")
    keys = [k for k in MEASURES if k in wanted]
    try:
        import duckdb  # noqa: F401
    except ImportError:
        keys = [k for k in keys if k != "duckdb"]
        print("note: duckdb is not installed (pip install '.[bench]'): no DuckDB reference")

    facts = machine_facts(("orjson", "ips-screen"))
    facts["bytecode_compiled"] = compile_package()  # as an installed wheel has it
    print(f"python {facts['python']} on {facts['platform']}")
    print(f"{facts['cpu_count']} CPUs: {facts['cpu_model']}; memory {facts['memory_gb']} GB")
    print(f"load average (1, 5, 15 min): {facts['load_average_at_start']}")
    runs: dict[str, list[dict]] = {key: [] for key in keys}
    loads: list[list[float]] = []
    try:
        built = run_build(args)
        manifest, reused = built["manifest"], built["reused"]
        files = [work / name for name in manifest["files"]]
        needed_mb = sum(p.stat().st_size for p in _needed(files)) / 1e6
        print(
            f"population: {manifest['patients']:,} patients ({manifest['source_patients']} source "
            f"patients x {manifest['copies']} copies), {manifest['resources']:,} resources, "
            f"{len(files)} files ({', '.join(n.split('.')[0] for n in manifest['files'])}), "
            f"{manifest['bytes'] / 1e6:,.0f} MB ({needed_mb:,.0f} MB of the needed types) "
            f"in {work}; {'reused' if reused else 'built'}, not measured"
        )
        with tempfile.TemporaryDirectory(prefix="ips-screen-bench-") as tmp:
            for n in range(1, args.repeat + 1):
                for key in keys:
                    warm(files)
                    out = Path(tmp) / f"{key}-{n}"
                    fig = measure(key, args, files, out)
                    runs[key].append(fig)
                    loads.append([round(x, 2) for x in os.getloadavg()])
                    print(
                        f"  round {n}: {MEASURES[key]}: {fig['seconds']:.2f} s, peak RSS "
                        f"{fig['peak_rss_mb']:,.0f} MB over {fig['processes']} process(es)",
                        flush=True,
                    )
    except ChildFailed as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            remove_population(work)

    median = {key: _median([f["seconds"] for f in figs]) for key, figs in runs.items()}
    peak = {key: max(f["peak_rss_mb"] for f in figs) for key, figs in runs.items()}
    base = median["orjson_needed"]
    rows = [
        [
            MEASURES[key],
            f"{runs[key][0]['resources']:,}",
            f"{median[key]:.2f}",
            " ".join(f"{f['seconds']:.1f}" for f in runs[key]),
            f"{median[key] / base:.2f}",
            f"{peak[key]:,.0f}",
            str(max(f["processes"] for f in runs[key])),
        ]
        for key in keys
    ]
    print()
    print_table(rows)
    ratio = median["cli"] / base
    verdict = {True: "PASS", False: "FAIL"}
    print()
    print(f"screen (CLI) / orjson needed types: {ratio:.2f} x (goal <= {GOAL_RATIO}) "
          f"{verdict[ratio <= GOAL_RATIO]}")  # fmt: skip
    rss_goal = f"(goal <= {GOAL_RSS_MB} MB at 10,000 patients)"
    print(f"screen (CLI) peak RSS summed over processes: {peak['cli']:,.0f} MB {rss_goal}")
    clis = [k for k in ("cli", "cli_jobs1") if k in runs]
    first = runs["cli"][0]["outcomes"]
    same = all(f["outcomes"] == first for k in clis for f in runs[k])
    print(f"outcomes: {first} ({'the same' if same else 'DIFFERENT'} in every run)")
    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"load average after each measure: {loads}")
    print(f"load average at the end: {load_end}")

    if args.json:
        report = {
            "date": date.today().isoformat(),
            "command": " ".join(["benchmarks/screen_benchmark.py", *(argv or sys.argv[1:])]),
            "machine": facts,
            "load_average_after_each": loads,
            "population": {k: v for k, v in manifest.items() if k != "fingerprint"},
            "as_of": AS_OF.isoformat(),
            "repeat": args.repeat,
            "measures": {
                key: {
                    "label": MEASURES[key],
                    "median_seconds": median[key],
                    "runs": runs[key],
                    "peak_rss_mb": peak[key],
                    "vs_orjson_needed": median[key] / base,
                }
                for key in keys
            },
            "goals": {
                "cli_vs_orjson_needed": {"goal": GOAL_RATIO, "value": ratio},
                "cli_peak_rss_mb": {"goal": GOAL_RSS_MB, "value": peak["cli"]},
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
