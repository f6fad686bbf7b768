"""Facts about the machine a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import compileall
import os
import platform
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _proc_value(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def git_commit() -> str | None:
    """The checked-out commit, noting uncommitted changes to tracked files."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return f"{head}{' + uncommitted changes' if dirty else ''}" if head else None


def machine_facts(packages: tuple[str, ...] = ("orjson", "ips-screen")) -> dict:
    memory = _proc_value("/proc/meminfo", "MemTotal:")
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _proc_value("/proc/cpuinfo", "model name") or platform.machine(),
        "memory_gb": round(int(memory.split()[0]) / 1024 / 1024, 1) if memory else None,
        "sqlite": sqlite3.sqlite_version,
        **{name: version(name) for name in packages},
        "git": git_commit(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def compile_package(root: Path = ROOT) -> bool:
    """Byte-compile the ips_screen of the checkout at `root` as installing its wheel does (pip
    writes every module's .pyc), so that a measured process imports it as a user's would, not
    compiling each module from source (which it does when bytecode is not written:
    PYTHONDONTWRITEBYTECODE, a read-only checkout). Returns whether every module compiled."""
    return bool(compileall.compile_dir(root / "ips_screen", quiet=1))


def machine_line() -> str:
    """One line: CPU, CPUs, OS and Python."""
    cpu = _proc_value("/proc/cpuinfo", "model name") or platform.machine()
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def vm_hwm_mb() -> float | None:
    """The kernel's high-water RSS of this process image, in MB (a check on ru_maxrss)."""
    value = _proc_value("/proc/self/status", "VmHWM:")
    return int(value.split()[0]) / 1024 if value else None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _hwm_kib(pid: int) -> int | None:
    value = _proc_value(f"/proc/{pid}/status", "VmHWM:")
    return int(value.split()[0]) if value else None


@dataclass
class Sampled:
    """A process run to its end: wall seconds, the peak RSS of it and every process it
    started (the last VmHWM seen of each, summed: an upper bound of what they held at any one
    instant), how many processes that was, its stdout and exit code."""

    seconds: float
    peak_rss_mb: float
    processes: int
    stdout: bytes
    returncode: int


def run_sampled(command: list[str], cwd: Path = ROOT, every: float = 0.02) -> Sampled:
    """Run `command`, sampling the VmHWM of its process tree every `every` seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=cwd)
    peaks: dict[int, int] = {}
    while process.poll() is None:
        tree, seen = [process.pid], 0
        while seen < len(tree):
            tree.extend(_children(tree[seen]))
            seen += 1
        for pid in tree:
            hwm = _hwm_kib(pid)
            if hwm is not None:
                peaks[pid] = max(hwm, peaks.get(pid, 0))
        time.sleep(every)
    seconds = time.perf_counter() - started
    out = process.stdout.read() if process.stdout else b""
    return Sampled(seconds, sum(peaks.values()) / 1024, len(peaks), out, process.returncode)


def warm(files: list[Path]) -> float:
    """Read every file once, so that a measure reads them from the page cache (a VM may drop
    idle file cache within a minute); the seconds it took."""
    started = time.perf_counter()
    buffer = bytearray(1 << 20)
    for path in files:
        with path.open("rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass
    return time.perf_counter() - started
