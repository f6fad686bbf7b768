"""Nightly benchmark: full and incremental nights over synthetic practices of growing size.

Run from the project root::

    .venv/bin/python benchmarks/nightly_benchmark.py [--sizes 10000,100000,1000000] [--work DIR]
        [--keep] [--json FILE]

For each size (10,000: a practice; 100,000: a primary care network; 1,000,000: an integrated care
board):

1. Generate (not measured; its time is printed on its own): `ips_screen.synth.write_bulk` (seed
   SEED, as of AS_OF) writes <work>/<n>/population/<Type>.000.ndjson, and `write_changes` writes
   <work>/<n>/changes/: for every 100th Patient in the file (1% of patients), a new fit note, a
   changed employment status, or one of their active Conditions resolved, in turn.
2. Measures, each in a fresh interpreter after what earlier measures wrote was flushed to disk
   (`os.sync`: a real night comes a day after the last) and the files it reads were read once
   (so that they come from the page cache: a VM may drop idle file cache within a minute; for
   an incremental night its changes, the store and the last run's decisions.ndjson), timed
   around the call after the imports; peak RSS is the kernel's high-water mark (VmHWM) of the
   measure's process and of the worker processes it starts, sampled every 20 ms and summed:
   - baseline: orjson parse-only of every line of the population files;
   - full night: `nightly.run.run_nightly` with [source] kind = "files", incremental = true, into
     a fresh state folder, as of AS_OF (a first run: the store is loaded in full, everyone is
     evaluated, every output is written);
   - incremental night: the same state, [source] path = the changes folder, as of AS_OF + 1 day
     (the changes applied; decisions of unchanged patients reused where their horizon allows);
   - for sizes up to 100,000, the same incremental night with [screen] reuse_decisions = false,
     for information (what the night would cost if every patient were evaluated).
   Store size: store.sqlite (with its write-ahead log) after each night. At sizes up to
   100,000 the baseline, the full night and the incremental night are measured in 3 rounds
   (--rounds), each round's nights on a fresh state folder, and the medians are reported (with
   every round's time, and the highest peak RSS); larger sizes are measured once. Single runs
   on a shared VM vary by 10 to 20 %.
3. Goals: at 1,000,000 patients the full night in under 10 minutes, at most 3 times the orjson
   parse of the same files (issue [10]), with peak memory under 2 GB (summed over processes);
   at every size the incremental night at least 10 times faster than the full one.

The work folder (default: a new folder under the system temp folder) is deleted afterwards unless
--keep; a kept population of the same size and seed is reused. Disk space is checked first
(about 25 kB per patient for the population, the store and two nights' outputs).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
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
AS_OF = date(2026, 11, 26)
SEED = 2026
CHANGED_EVERY = 100  # 1% of patients changed before the incremental night
BYTES_PER_PATIENT = 25_000  # NDJSON ~13 kB, store ~6 kB, outputs of two nights ~6 kB
NO_REUSE_UP_TO = 100_000
ROUNDS = 3  # rounds of measures at each size up to ROUNDS_UP_TO; the medians are reported
ROUNDS_UP_TO = 100_000  # a round at 1,000,000 patients takes about 7 minutes
MEDIANS = ("baseline", "full", "incremental")  # the measures of every round
GOAL_SECONDS = 600.0  # the full night at GOAL_SIZE (issue: nightly at scale)
GOAL_PEAK_MB = 2048.0  # at GOAL_SIZE, summed over the job's processes
GOAL_RATIO = 10.0  # full / incremental night, at every size
GOAL_PARSE = 3.0  # full night / orjson parse of the same files, at GOAL_SIZE (issue [10])
GOAL_SIZE = 1_000_000
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


# --- generation (not measured) ----------------------------------------------------------------


def generate(folder: Path, patients: int) -> tuple[dict, float, bool]:
    """The population (reused when a kept one matches); its manifest, seconds, reused."""
    from ips_screen.synth import MANIFEST, write_bulk

    manifest_path = folder / MANIFEST
    if manifest_path.exists():
        old = orjson.loads(manifest_path.read_bytes())
        if (old.get("patients"), old.get("seed"), old.get("as_of")) == (
            patients,
            SEED,
            AS_OF.isoformat(),
        ):
            return old, 0.0, True
    started = time.perf_counter()
    write_bulk(folder, patients, SEED, AS_OF)
    return orjson.loads(manifest_path.read_bytes()), time.perf_counter() - started, False


def write_changes(population: Path, out: Path) -> dict:
    """The changes of 1% of patients (every CHANGED_EVERY-th Patient line): a new fit note, a
    changed employment status (recorded as practices do, by `synth.work.record_status`) or an
    active Condition resolved, in turn; a patient with no active Condition gets a fit note."""
    from ips_screen.synth import vocab
    from ips_screen.synth.builders import Builder, pick
    from ips_screen.synth.work import record_status

    rng = random.Random(SEED + 1)
    chosen: dict[str, int] = {}
    with (population / "Patient.000.ndjson").open("rb") as lines:
        for n, line in enumerate(lines):
            if n % CHANGED_EVERY == 0:
                chosen[orjson.loads(line)["id"]] = len(chosen) % 3
    resolve = {pid for pid, kind in chosen.items() if kind == 2}
    resolved: dict[str, dict] = {}
    with (population / "Condition.000.ndjson").open("rb") as lines:
        for line in lines:
            condition = orjson.loads(line)
            pid = condition["subject"]["reference"].removeprefix("Patient/")
            status = condition.get("clinicalStatus", {}).get("coding", [{}])[0].get("code")
            if pid in resolve and pid not in resolved and status == "active":
                condition["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": "resolved"}]}
                condition["abatementDateTime"] = AS_OF.isoformat()
                resolved[pid] = condition
    out.mkdir(parents=True, exist_ok=True)
    counts = {"fit_note": 0, "employment_status": 0, "resolved_condition": 0}
    resources: list[dict] = list(resolved.values())
    counts["resolved_condition"] = len(resolved)
    for pid, kind in chosen.items():
        b = Builder(rng, pid)
        if kind == 1:
            record_status(b, "unemployed", AS_OF - timedelta(days=2))
            counts["employment_status"] += 1
        elif pid not in resolved:
            code = pick(rng, vocab.FIT_NOTES["not-fit"])
            note = [{"text": "Fit note: not fit for work for 4 weeks"}]
            b.observation(code, AS_OF - timedelta(days=1), note=note)
            counts["fit_note"] += 1
        resources.extend(b.resources)
    with (out / "changes.ndjson").open("wb") as handle:
        for item in resources:
            handle.write(orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE))
    return {"patients": len(chosen), "resources": len(resources), **counts}


# --- measures (each in its own process) -------------------------------------------------------


def measure_baseline(spec: dict) -> dict:
    loads = orjson.loads
    files = sorted(Path(spec["population"]).glob("*.ndjson"))
    started = time.perf_counter()
    count = 0
    for path in files:
        with path.open("rb") as lines:
            for line in lines:
                loads(line)
                count += 1
    return {"seconds": time.perf_counter() - started, "resources": count}


def measure_night(spec: dict) -> dict:
    from ips_screen.nightly.config import PracticeConfig
    from ips_screen.nightly.run import run_nightly
    from ips_screen.store import StateStore

    config = PracticeConfig.model_validate(
        {
            "source": {"kind": "files", "path": spec["source"], "incremental": True},
            "screen": {"reuse_decisions": spec["reuse"]},
            "output": {"state_dir": spec["state"], "keep_runs": 5},
        }
    )
    as_of = date.fromisoformat(spec["as_of"])
    now = datetime.combine(as_of, datetime.min.time(), tzinfo=UTC).replace(hour=2)
    started, cpu = time.perf_counter(), time.thread_time()
    result = run_nightly(config, now=now, as_of=as_of, environ={})
    seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
    with StateStore(Path(spec["state"]) / "store.sqlite") as store:
        size = store.size_bytes()
    runs_dir = Path(spec["state"]) / "runs"
    return {
        "seconds": seconds,
        "thread_seconds": cpu,  # the CPU time of the job's own thread (not its workers')
        "mode": result.mode,
        "patients": result.patients,
        "evaluated": result.evaluated,
        "reused": result.reused,
        "changes": result.changes,
        "resources": result.summary["input"]["resources"],
        "outcomes": result.summary["outcomes"],
        "store_bytes": size,
        "outputs_bytes": sum(p.stat().st_size for p in result.out_dir.iterdir()),
        "runs_bytes": sum(p.stat().st_size for p in runs_dir.rglob("*") if p.is_file()),
        "exit_code": result.exit_code,
    }


MEASURES = {"baseline": measure_baseline, "night": measure_night}


def child(name: str, spec: dict) -> None:
    figures = MEASURES[name](spec)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["vm_hwm_mb"] = vm_hwm_mb()
    sys.stdout.write(orjson.dumps(figures).decode() + "\n")


class ChildFailed(Exception):
    pass


def night_reads(source: Path, state: Path) -> list[Path]:
    """What an incremental night reads: its changes, the store and the last run's
    decisions.ndjson (written by the night before, they may have left the page cache since)."""
    store = [state / f"store.sqlite{end}" for end in ("", "-wal")]
    last = state / "runs" / "latest" / "decisions.ndjson"
    return [p for p in (*sorted(source.rglob("*.ndjson")), *store, last) if p.is_file()]


def run_child(name: str, spec: dict, warm_files: list[Path]) -> dict:
    """One measure in a fresh interpreter, after what earlier measures wrote is on disk (a real
    night comes a day after the last, whose writes are long done) and `warm_files` were read into
    the page cache; adds the process's wall time (with its imports) and the peak RSS of it and
    its worker processes, summed (sampled every 20 ms)."""
    os.sync()
    warm(warm_files)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name]
    command += ["--spec", orjson.dumps(spec).decode()]
    done = run_sampled(command)
    if done.returncode != 0:
        raise ChildFailed(f"{name} failed (exit code {done.returncode})")
    figures = orjson.loads(done.stdout.splitlines()[-1])
    figures["process_seconds"] = done.seconds
    figures["own_peak_rss_mb"] = figures["peak_rss_mb"]
    figures["peak_rss_mb"] = max(done.peak_rss_mb, figures["peak_rss_mb"])
    figures["processes"] = done.processes
    return figures


# --- the run ----------------------------------------------------------------------------------


def bench_size(n: int, work: Path, rounds: int) -> dict:
    folder = work / str(n)
    population, changes = folder / "population", folder / "changes"
    manifest, gen_seconds, reused = generate(population, n)
    started = time.perf_counter()
    shutil.rmtree(changes, ignore_errors=True)
    changed = write_changes(population, changes)
    gen_seconds += time.perf_counter() - started
    what = "reused" if reused else f"generated in {gen_seconds:.1f} s"
    size_mb = sum(p.stat().st_size for p in population.glob("*.ndjson")) / 1e6
    print(
        f"\n== {n:,} patients: {sum(manifest['counts'].values()):,} resources, {size_mb:,.0f} MB "
        f"NDJSON ({what}; changes: {changed['patients']:,} patients, "
        f"{changed['resources']:,} resources; not measured)",
        flush=True,
    )
    out: dict = {"patients": n, "generation_seconds": gen_seconds, "changes": changed}
    files = sorted(population.glob("*.ndjson"))
    full_state = folder / "state"
    copy = folder / "state-no-reuse"
    runs: dict[str, list[dict]] = {}
    for round_ in range(rounds):
        print(f"  round {round_ + 1} of {rounds}:" if rounds > 1 else "  one round:", flush=True)
        fig = run_child("baseline", {"population": str(population)}, files)
        runs.setdefault("baseline", []).append(fig)
        print(f"    baseline (orjson parse-only): {fig['seconds']:.1f} s", flush=True)
        shutil.rmtree(full_state, ignore_errors=True)
        nights = [("full", population, AS_OF, full_state, True)]
        nights.append(("incremental", changes, AS_OF + timedelta(days=1), full_state, True))
        if n <= NO_REUSE_UP_TO and round_ == 0:  # for information: once
            nights.append(("incremental_no_reuse", changes, AS_OF + timedelta(days=1), copy, False))
        for key, source, day, state, reuse in nights:
            spec = {"source": str(source), "state": str(state), "as_of": day.isoformat()}
            spec["reuse"] = reuse
            read = files if key == "full" else night_reads(source, state)
            fig = run_child("night", spec, read)
            runs.setdefault(key, []).append(fig)
            print(
                f"    {key} night: {fig['seconds']:.1f} s ({fig['mode']}; {fig['evaluated']:,} "
                f"evaluated, {fig['reused']:,} reused), peak RSS {fig['peak_rss_mb']:,.0f} MB, "
                f"store {fig['store_bytes'] / 1e6:,.0f} MB",
                flush=True,
            )
            if key == "full" and n <= NO_REUSE_UP_TO and round_ == 0:  # as the full night left it
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(full_state, copy, ignore=shutil.ignore_patterns("runs"))
        shutil.rmtree(copy, ignore_errors=True)
    for key, figs in runs.items():
        out[key] = median_of(figs)
    return out


def median_of(figs: list[dict]) -> dict:
    """The figures of the run with the median time (of an even number, the slower middle one),
    with every run's time and the highest peak RSS of them all."""
    ordered = sorted(figs, key=lambda f: f["seconds"])
    fig = dict(ordered[len(ordered) // 2])
    fig["runs_seconds"] = [round(f["seconds"], 3) for f in figs]
    fig["peak_rss_mb"] = max(f["peak_rss_mb"] for f in figs)
    return fig


def row(label: str, fig: dict, resources: int, patients: int) -> list[str]:
    seconds = fig["seconds"]
    store = fig.get("store_bytes")
    return [
        label,
        f"{resources:,}",
        f"{seconds:,.1f}",
        f"{resources / seconds:,.0f}",
        f"{patients / seconds:,.0f}",
        f"{fig['peak_rss_mb']:,.0f}",
        f"{store / 1e6:,.0f}" if store is not None else "",
    ]


HEADER = ["measure", "resources", "seconds", "resources/s", "patients/s", "peak MB", "store MB"]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for cells in [HEADER, ["-" * w for w in widths], *rows]:
        first = cells[0].ljust(widths[0])
        print("  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]))


def report(results: list[dict]) -> dict:
    rows = []
    goals: dict = {}
    verdict = {True: "PASS", False: "FAIL"}
    for res in results:
        n = res["patients"]
        base = res["baseline"]
        rows.append(row(f"{n:,}: orjson parse-only", base, base["resources"], n))
        for key in ("full", "incremental", "incremental_no_reuse"):
            if key in res:
                fig = res[key]
                rows.append(row(f"{n:,}: {key.replace('_', ' ')} night", fig, fig["resources"], n))
    print()
    print_table(rows)
    print("(resources: read by that measure; patients/s: the practice's patients over the time)")
    print()
    for res in results:
        n, full, inc = res["patients"], res["full"], res["incremental"]
        ratio = full["seconds"] / inc["seconds"]
        vs_base = full["seconds"] / res["baseline"]["seconds"]
        peak = max(full["peak_rss_mb"], inc["peak_rss_mb"])
        checks = {"incremental_speedup": (ratio, GOAL_RATIO, ratio >= GOAL_RATIO)}
        if n >= GOAL_SIZE:
            checks["full_seconds"] = (full["seconds"], GOAL_SECONDS, full["seconds"] < GOAL_SECONDS)
            checks["peak_mb"] = (peak, GOAL_PEAK_MB, peak < GOAL_PEAK_MB)
            checks["full_vs_parse"] = (vs_base, GOAL_PARSE, vs_base <= GOAL_PARSE)
        print(
            f"{n:,}: full / incremental = {ratio:.1f} x (goal >= {GOAL_RATIO:g}) "
            f"{verdict[ratio >= GOAL_RATIO]}; full night / parse-only = {vs_base:.1f} x; "
            f"peak {peak:,.0f} MB"
        )
        if len(full.get("runs_seconds", ())) > 1:
            times = {k: ", ".join(f"{x:.2f}" for x in res[k]["runs_seconds"]) for k in MEDIANS}
            print("  medians of " + "; ".join(f"{k} {v} s" for k, v in times.items()))
        if "incremental_no_reuse" in res:
            slow = res["incremental_no_reuse"]["seconds"] / inc["seconds"]
            print(f"  (incremental night without reuse_decisions: {slow:.1f} x slower)")
        if n >= GOAL_SIZE:
            ok = checks["full_seconds"][2]
            print(f"  full night {full['seconds']:.0f} s (goal < {GOAL_SECONDS:.0f}) {verdict[ok]}")
            ok = checks["peak_mb"][2]
            print(f"  peak RSS {peak:,.0f} MB (goal < {GOAL_PEAK_MB:.0f}) {verdict[ok]}")
            ok = checks["full_vs_parse"][2]
            goal = f"goal <= {GOAL_PARSE:g}"
            print(f"  full night / parse-only {vs_base:.1f} x ({goal}) {verdict[ok]}")
        goals[str(n)] = {k: {"value": v, "goal": g, "met": m} for k, (v, g, m) in checks.items()}
    return goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated")
    parser.add_argument("--work", type=Path, help="work folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the work folder")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"rounds of measures at each size up to {ROUNDS_UP_TO:,} (the medians are "
        f"reported; default {ROUNDS}); larger sizes are measured once",
    )
    parser.add_argument("--child", choices=list(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, orjson.loads(args.spec))
        return 0
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < CHANGED_EVERY:
        parser.error(f"--sizes: each at least {CHANGED_EVERY}")
    work = (args.work or Path(tempfile.mkdtemp(prefix="ips-nightly-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    need = max(sizes) * BYTES_PER_PATIENT
    free = shutil.disk_usage(work).free
    if free < need * 1.2:
        print(f"ERROR: {work}: {free / 1e9:.1f} GB free, about {need / 1e9:.1f} GB needed")
        return 1
    facts = machine_facts(("orjson", "ips-screen"))
    facts["bytecode_compiled"] = compile_package()  # as an installed wheel has it
    print(f"python {facts['python']} on {facts['platform']}; SQLite {facts['sqlite']}")
    print(f"{facts['cpu_count']} CPUs: {facts['cpu_model']}; memory {facts['memory_gb']} GB")
    print(f"load average (1, 5, 15 min): {facts['load_average_at_start']}; work folder {work}")
    results = []
    try:
        for n in sizes:
            results.append(bench_size(n, work, args.rounds if n <= ROUNDS_UP_TO else 1))
            if not args.keep:
                shutil.rmtree(work / str(n), ignore_errors=True)
    except ChildFailed as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    goals = report(results)
    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at the end: {load_end}")
    if args.json:
        data = {
            "date": date.today().isoformat(),
            "command": " ".join(["benchmarks/nightly_benchmark.py", *(argv or sys.argv[1:])]),
            "machine": facts,
            "load_average_at_end": load_end,
            "as_of": AS_OF.isoformat(),
            "seed": SEED,
            "results": results,
            "goals": goals,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"figures written to {args.json}")
    return 0 if all(g["met"] for size in goals.values() for g in size.values()) else 2


if __name__ == "__main__":
    sys.exit(main())
