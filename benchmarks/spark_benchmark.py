"""Spark benchmark: the same screen on one process and on Spark local[2], at several sizes.

Run from the project root (needs `scripts/spark-deps`)::

    .venv/bin/python benchmarks/spark_benchmark.py [--patients 100000 1000000] [--work DIR]
        [--master local[2]] [--keep]

1. Build: for each --patients N, a synthetic practice population (`ips-screen synth --patients N
   --seed 1`, Bulk NDJSON, docs/synthetic-population.md) in <work>/synth-N, reused when kept.
   Not timed.
2. Measures, each a fresh `ips-screen screen` process over the same files, every output written:
   - single: the default engine (`screen`, reading on every core with the default `--jobs`,
     deciding in one process; its per-core rate is over all the machine's cores);
   - spark: `--engine spark --master local[2]` (the JVM start is inside the timing), with
     `spark.driver.memory=4g` (in local mode the heap of the driver and the executors) and
     every `--spark-conf KEY=VALUE` given (repeatable, over the defaults).
   Each measure's stderr (the screen's log, Spark's and the JVM's messages) is kept in
   <work>/out-ENGINE-N.log, so that a failure can be read after the run.
   While each runs, its process tree is sampled every 0.2 s from /proc: the peak resident memory
   of the driver (the ips-screen Python process), of the JVM (Spark's driver and, in local mode,
   its executors) and of the Python workers together (the executors' Python side).
3. Checks that decisions.ndjson is byte-identical between the two, and prints one table: patients,
   resources, seconds, patients/s, patients/s per core, peak memory. docs/scale.md quotes it.

The work folder (default benchmarks/work/, git-ignored) is deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
from machine import machine_line  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK = ROOT / "benchmarks" / "work"
AS_OF = "2026-11-26"
CLI = [sys.executable, "-m", "ips_screen", "-q"]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _kind(pid: int, root: int) -> str:
    if pid == root:
        return "driver"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "other"
    return "jvm" if b"java" in cmd.split(b"\0", 1)[0] else "workers"


class Sampler(threading.Thread):
    """Peak memory (MB) of a process tree by kind: driver, jvm, workers (summed)."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.done = root, threading.Event()
        self.peak = {"driver": 0.0, "jvm": 0.0, "workers": 0.0}

    def run(self) -> None:
        while not self.done.is_set():
            tree, pending, seen = _children(), [self.root], []
            while pending:
                pid = pending.pop()
                seen.append(pid)
                pending.extend(tree.get(pid, ()))
            now = {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
            for pid in seen:
                kind = _kind(pid, self.root)
                if kind == "workers":
                    now[kind] += _status_kb(pid, "VmRSS") / 1024
                elif kind in now:
                    now[kind] = max(now[kind], _status_kb(pid, "VmHWM") / 1024)
            for kind, value in now.items():
                self.peak[kind] = max(self.peak[kind], value)
            time.sleep(0.2)


def timed(argv: list[str], log: Path) -> dict:
    start = time.perf_counter()
    with log.open("wb") as err:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        sampler = Sampler(process.pid)
        sampler.start()
        process.wait()
    seconds = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    if process.returncode != 0:
        tail = log.read_bytes()[-2000:].decode(errors="replace")
        raise SystemExit(f"{' '.join(argv)} failed (stderr in {log}):\n{tail}")
    return {"seconds": seconds, **{f"{k}_mb": v for k, v in sampler.peak.items()}}


def build(work: Path, patients: int) -> Path:
    folder = work / f"synth-{patients}"
    if not (folder / "Patient.000.ndjson").exists():
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run(
            [*CLI, "synth", "--patients", str(patients), "--seed", "1", "--out", str(folder)],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"built {patients} patients in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


SPARK_CONF = {"spark.ui.enabled": "false", "spark.driver.memory": "4g"}


def measure(work: Path, patients: int, master: str, conf: dict[str, str]) -> list[dict]:
    data = build(work, patients)
    rows = []
    outs = {}
    for engine in ("single", "spark"):
        out = work / f"out-{engine}-{patients}"
        shutil.rmtree(out, ignore_errors=True)
        argv = [*CLI, "screen", str(data), "--as-of", AS_OF, "--out", str(out)]
        if engine == "spark":
            argv += ["--engine", "spark", "--master", master]
            for key, value in {**SPARK_CONF, **conf}.items():
                argv += ["--spark-conf", f"{key}={value}"]
        figures = timed(argv, work / f"out-{engine}-{patients}.log")
        summary = orjson.loads((out / "summary.json").read_bytes())
        # One machine reads on every core (`screen --jobs`, default all) and decides in one.
        cores = (os.cpu_count() or 1) if engine == "single" else _cores(master)
        rows.append(
            {
                "engine": f"one machine, --jobs {cores}"
                if engine == "single"
                else f"spark {master}",
                "patients": summary["patients"],
                "resources": summary["input"]["resources"],
                "cores": cores,
                **figures,
            }
        )
        outs[engine] = out
        print(_row(rows[-1]), flush=True)
    same = (outs["single"] / "decisions.ndjson").read_bytes() == (
        outs["spark"] / "decisions.ndjson"
    ).read_bytes()
    print(f"decisions.ndjson byte-identical: {same}", flush=True)
    if not same:
        raise SystemExit("the Spark decisions differ from the single-machine ones")
    return rows


def _cores(master: str) -> int:
    inside = master.partition("[")[2].rstrip("]")
    return int(inside) if inside.isdigit() else os.cpu_count() or 1


HEADER = "| engine | patients | resources | seconds | patients/s | per core | driver MB | JVM MB | workers MB |"  # noqa: E501


def _row(r: dict) -> str:
    rate = r["patients"] / r["seconds"]
    return (
        f"| {r['engine']} | {r['patients']:,} | {r['resources']:,} | {r['seconds']:,.0f} | "
        f"{rate:,.0f} | {rate / r['cores']:,.0f} | {r['driver_mb']:,.0f} | "
        f"{r['jvm_mb']:,.0f} | {r['workers_mb']:,.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting for the Spark measure (repeatable; over spark.driver.memory=4g)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the populations and outputs")
    args = parser.parse_args(argv)
    conf = dict(pair.split("=", 1) for pair in args.spark_conf)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for patients in args.patients:
            rows.extend(measure(args.work, patients, args.master, conf))
    finally:
        if not args.keep:
            for path in args.work.glob("*-*"):
                if path.name.startswith(("synth-", "out-")) and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
    print()
    print(machine_line())
    print(HEADER)
    print("|" + "---|" * 9)
    for row in rows:
        print(_row(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
