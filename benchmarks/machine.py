"""Facts about the machine a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
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
