"""The incremental night of two checkouts compared, interleaved, many times over.

Run from the project root::

    .venv/bin/python benchmarks/incremental_ab.py --candidate ../other-checkout
        [--baseline .] [--patients 10000] [--rounds 40] [--work DIR] [--keep] [--json FILE]

A change of a few per cent to the incremental night cannot be seen in the three rounds of
`nightly_benchmark.py`: on the 2-CPU VM of docs/benchmarks.md single nights of the same code vary
by 10 to 20 %, and the medians of 15 nights of the same code measured one after the other
differed by 7 %. This script measures the two checkouts' nights in turn (A B A B ...), each from
the same state, so that whatever slows the machine down for a while slows both:

1. the population and its changes of `nightly_benchmark.py` (same seed; a kept one is reused);
2. one full night with each checkout's code into <work>/<n>/ab-state-A and -B, and a copy of
   each store (each its own: what a full night caches, such as each decision's horizon, is the
   checkout's; with one full night for both, a change to it would not show);
3. each round: a checkout's store put back as its full night left it (its contents, in place:
   the last run's decisions.ndjson keeps the inode the store recorded) and later runs' folders
   removed, then its incremental night, the baseline's then the candidate's, each in a fresh
   interpreter with that checkout first on PYTHONPATH (its modules byte-compiled first), after
   the files it reads were read once (`nightly_benchmark.night_reads`), timed as
   `nightly_benchmark.measure_night` times it.

It prints each checkout's median, quartiles and the job thread's CPU time, and the difference of
the medians with a 95 % bootstrap interval: an interval that holds 0 means no difference that
this many rounds can show. `--candidate` the same as `--baseline` measures the noise itself.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
from machine import compile_package, machine_line, warm  # benchmarks/machine.py
from nightly_benchmark import AS_OF, ROOT, generate, night_reads, write_changes

STATE = "ab-state"  # -A, -B
BOOTSTRAP = 2_000  # resamples for the interval of the difference
SEED = 10


def night(checkout: Path, spec: dict, reads: list[Path]) -> dict:
    """One night in a fresh interpreter running `checkout`'s ips_screen (not sampled for memory,
    as `nightly_benchmark.run_child` does: the sampling takes CPU from the night)."""
    os.sync()
    warm(reads)
    command = [sys.executable, str(ROOT / "benchmarks" / "nightly_benchmark.py"), "--child"]
    command += ["night", "--spec", orjson.dumps(spec).decode()]
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the night of {checkout} failed (exit code {done.returncode})")
    return orjson.loads(done.stdout.splitlines()[-1])


def put_back(state: Path, saved: Path, first_run: str) -> None:
    """The state folder as the full night left it: the store's contents written over it in
    place, the later runs' folders removed, runs/latest naming the full night's run."""
    for extra in ("store.sqlite-wal", "store.sqlite-shm"):
        (state / extra).unlink(missing_ok=True)
    shutil.copyfile(saved, state / "store.sqlite")
    runs = state / "runs"
    for run in runs.iterdir():
        if run.name not in (first_run, "latest"):
            shutil.rmtree(run)
    latest = runs / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(first_run)


def interval(a: list[float], b: list[float]) -> tuple[float, float]:
    """95 % bootstrap interval of median(b) - median(a)."""
    draw = random.Random(SEED)
    diffs = sorted(
        statistics.median(draw.choices(b, k=len(b))) - statistics.median(draw.choices(a, k=len(a)))
        for _ in range(BOOTSTRAP)
    )
    return diffs[int(0.025 * BOOTSTRAP)], diffs[int(0.975 * BOOTSTRAP) - 1]


def describe(name: str, figs: list[dict]) -> str:
    wall = [f["seconds"] * 1000 for f in figs]
    cpu = [f["thread_seconds"] * 1000 for f in figs]
    q1, _, q3 = statistics.quantiles(wall, n=4)
    return (
        f"{name}: median {statistics.median(wall):.0f} ms (quartiles {q1:.0f}-{q3:.0f}), "
        f"job thread CPU {statistics.median(cpu):.0f} ms, {figs[0]['evaluated']:,} evaluated"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=ROOT, help="checkout A (default: this)")
    parser.add_argument("--candidate", type=Path, required=True, help="checkout B")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "nightly")
    parser.add_argument("--keep", action="store_true", help="keep the state folders")
    parser.add_argument("--json", type=Path, help="also write every night's figures here")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds: at least 2")
    checkouts = {"A": args.baseline, "B": args.candidate}
    for checkout in checkouts.values():
        if not (checkout / "ips_screen" / "__init__.py").is_file():
            parser.error(f"{checkout} is not a checkout of ips-screen (no ips_screen/)")
        compile_package(checkout)  # as an installed wheel has it (see machine.compile_package)
    folder = args.work / str(args.patients)
    population, changes = folder / "population", folder / "changes"
    generate(population, args.patients)
    shutil.rmtree(changes, ignore_errors=True)
    write_changes(population, changes)
    states = {name: folder / f"{STATE}-{name}" for name in checkouts}
    saved = {name: folder / f"ab-store-{name}.sqlite" for name in checkouts}
    first_runs: dict[str, str] = {}
    print(machine_line(), flush=True)
    for name, checkout in checkouts.items():
        state = states[name]
        shutil.rmtree(state, ignore_errors=True)
        full = {"source": str(population), "state": str(state), "as_of": AS_OF.isoformat()}
        done = night(checkout, {**full, "reuse": True}, sorted(population.glob("*.ndjson")))
        first_runs[name] = os.readlink(state / "runs" / "latest")
        shutil.copyfile(state / "store.sqlite", saved[name])
        print(f"full night ({name}): {done['seconds']:.2f} s", flush=True)
    day = (AS_OF + timedelta(days=1)).isoformat()
    figures: dict[str, list[dict]] = {"A": [], "B": []}
    try:
        for round_ in range(args.rounds):
            for name, checkout in checkouts.items():
                state = states[name]
                put_back(state, saved[name], first_runs[name])
                spec = {"source": str(changes), "state": str(state), "reuse": True, "as_of": day}
                figures[name].append(night(checkout, spec, night_reads(changes, state)))
            a, b = figures["A"][-1], figures["B"][-1]
            line = f"  round {round_ + 1}: A {a['seconds']:.3f} s, B {b['seconds']:.3f} s"
            print(line, flush=True)
    finally:
        for name in checkouts:
            saved[name].unlink(missing_ok=True)
            if not args.keep:
                shutil.rmtree(states[name], ignore_errors=True)
    a_wall = [f["seconds"] * 1000 for f in figures["A"]]
    b_wall = [f["seconds"] * 1000 for f in figures["B"]]
    low, high = interval(a_wall, b_wall)
    change = statistics.median(b_wall) - statistics.median(a_wall)
    print(f"\n{describe('A ' + str(args.baseline), figures['A'])}")
    print(describe("B " + str(args.candidate), figures["B"]))
    verdict = "no difference shown" if low <= 0 <= high else ("B slower" if low > 0 else "B faster")
    print(f"B - A: {change:+.0f} ms (95 % interval {low:+.0f} to {high:+.0f} ms): {verdict}")
    if args.json:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
