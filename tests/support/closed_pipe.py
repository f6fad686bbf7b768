"""Run the CLI with its stdout a pipe whose reader has already gone, as `ips-screen ... | head`
leaves it once head has its lines: the first write fails with EPIPE, every time (no race)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from tests.support.paths import ROOT


def run_into_closed_pipe(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "ips_screen", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=None if env is None else {**os.environ, **env},
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
