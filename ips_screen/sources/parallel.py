"""Read input files into a `Population` on several processes, with outputs that never depend on
how many.

The input is cut into parts (`chunks.plan`: whole files, or ranges of large NDJSON files; the cut
does not depend on the number of processes), each part is read into its facts by any process
(`chunks.read_chunk`), and the parts are merged in input order (`merge`): the last copy of a
resource read wins, as when reading alone. Problems are raised, or skipped and counted, in input
order, each with its file and line.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from ips_screen.errors import InputError, terminating
from ips_screen.facts.extract import CodeIndex
from ips_screen.limits import DEFAULT_MAX_LINE
from ips_screen.reading import MAX_SKIPPED, HasCodelists, ReadReport, Skipped, gc_paused
from ips_screen.sources.chunks import (
    Chunk,
    ChunkFacts,
    ReadOptions,
    id_of,
    plan,
    read_chunk,
    release_buffer,
)
from ips_screen.sources.files import discover
from ips_screen.sources.population import Population, PopulationBuilder

log = logging.getLogger("ips_screen.sources")
T = TypeVar("T")


def default_jobs() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class HelperStartFailed(RuntimeError):
    """A helper process's initializer raised (a bug, or a broken installation): raised by each of
    its tasks (`in_helper`), so that the command ends on it, with the helper's traceback, and not
    on a pool broken as if the helper had been killed from outside (`errors.helper_died`)."""


_START_FAILED: BaseException | None = None  # in a helper: what its initializer raised


def start_guarded(initializer: Callable[..., None], *args: Any) -> None:
    """A pool's initializer (`initargs=(initializer, *args)`): the helper ends with its parent
    (`_die_with_parent`), and what `initializer(*args)` raises is kept for `in_helper` instead
    of ending the process (which breaks the pool)."""
    global _START_FAILED
    _die_with_parent()
    try:
        initializer(*args)
    except Exception as exc:
        _START_FAILED = exc


_PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with_parent() -> None:
    """Have the system kill this helper when its parent dies (Linux: PR_SET_PDEATHSIG): a
    parent killed outright (the out-of-memory killer, `kill -9`) cannot stop its helpers, which
    would otherwise wait for work for ever, holding the memory and the files and locks they
    inherited (the practice lock: every later night would be refused). Elsewhere nothing."""
    parent = multiprocessing.parent_process()
    if not sys.platform.startswith("linux") or parent is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent.pid:  # the parent died before the request took effect
        os._exit(1)


def in_helper(task: Callable[..., T], *args: Any) -> T:
    """`task(*args)` in a helper started by `start_guarded`; `HelperStartFailed` from what its
    initializer raised, if it did."""
    if _START_FAILED is not None:
        raise HelperStartFailed(
            f"a helper process failed as it started: {_START_FAILED!r}"
        ) from _START_FAILED
    return task(*args)


def stop_pool(executor: ProcessPoolExecutor, *, cancel: bool = True) -> None:
    """Shut a pool of helpers down: in good order (its work done, or the work not started
    cancelled when `cancel`; its processes and threads waited for), or, once a SIGTERM reached
    the command (`errors.terminating`), at once: its helpers killed and nothing waited for.
    systemd's default stop (`KillMode=control-group`) signals every process of the service
    together, so a helper may end halfway through writing a result; the pool's thread then
    waits for the rest of it for good, and a shutdown in good order with it, until systemd's
    SIGKILL. The helpers' work is not wanted then, and the command exits without joining that
    thread (`cli.main.entry_point`)."""
    if not terminating():
        executor.shutdown(wait=True, cancel_futures=cancel)
        return
    helpers = list((getattr(executor, "_processes", None) or {}).values())  # CPython's pool
    executor.shutdown(wait=False, cancel_futures=True)
    for helper in helpers:
        helper.kill()


def fork_context() -> multiprocessing.context.BaseContext:
    """How worker processes start: forked where the system can (they inherit the loaded modules
    and the ruleset instead of importing and pickling them), else the system's default."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def collect(
    paths: Iterable[Path | str],
    ruleset: HasCodelists,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
    *,
    jobs: int = 1,
    shortcuts: bool = True,
    max_line: int = DEFAULT_MAX_LINE,
    skip: Iterable[Path | str] = (),
) -> Population:
    """Read every input file under `paths` (except inside the output folders `skip`) and build each
    patient's facts, on `jobs` processes. `shortcuts=False` parses every line (the exact path;
    the outputs are the same)."""
    report = ReadReport(skip_invalid=skip_invalid)
    files = discover(paths, report, skip=skip)
    options = ReadOptions(CodeIndex(ruleset.codelists.values()), skip_invalid, max_line, shortcuts)
    chunks = plan(files)
    try:
        with gc_paused(), closing(read_parts(chunks, options, jobs)) as parts:
            return merge(parts, options, report, progress)  # (gc paused once for the read)
    finally:
        release_buffer()


def read_parts(
    chunks: list[Chunk],
    options: ReadOptions,
    jobs: int,
    convert: Callable[[ChunkFacts], T] | None = None,
) -> Generator[T, None, None]:
    """Each part's facts, in input order, read on `jobs` processes; `convert` (a module-level
    function, so that a worker process can run it) turns each part's facts into what the
    caller keeps of them, in the process that read it. Close it when done, early or not: its
    `finally` stops the processes (left to the garbage collector, that ran on whichever thread
    collected it, and failed on the process pool's own thread)."""
    jobs = max(1, min(jobs, len(chunks)))
    if jobs == 1:
        for chunk in chunks:
            part = read_chunk(chunk, options)
            yield convert(part) if convert is not None else part  # type: ignore[misc]
        return
    context = fork_context()
    # concurrent.futures, not multiprocessing.Pool: a Pool closed early (a bad line stops the
    # read) can hang for good in terminate() joining its handler threads; shutdown does not.
    executor = ProcessPoolExecutor(
        jobs, mp_context=context, initializer=start_guarded, initargs=(_init, options, convert)
    )
    try:
        yield from executor.map(partial(in_helper, _read), chunks)
    finally:
        stop_pool(executor)


_OPTIONS: ReadOptions | None = None
_CONVERT: Callable[[ChunkFacts], Any] | None = None


def _init(options: ReadOptions, convert: Callable[[ChunkFacts], Any] | None) -> None:
    global _OPTIONS, _CONVERT
    _OPTIONS, _CONVERT = options, convert
    gc.disable()  # a worker only reads parts: its facts hold no cycles


def _read(chunk: Chunk) -> Any:  # in a worker process
    assert _OPTIONS is not None
    part = read_chunk(chunk, _OPTIONS)
    return _CONVERT(part) if _CONVERT is not None else part


def merge(
    parts: Iterable[ChunkFacts],
    options: ReadOptions,
    report: ReadReport | None = None,
    progress: Callable[[int], None] | None = None,
) -> Population:
    """The population of parts read in input order (`chunks.read_chunk`,
    `chunks.read_ndjson_lines`): counts added up, problems in order (raised when `report` does
    not skip them), the last word on each patient and record kept."""
    report = report if report is not None else ReadReport(skip_invalid=options.skip_invalid)
    total = PopulationBuilder(None, report, index=options.index)
    kept: set[bytes] = set()  # the ids of every record kept so far
    lines_before: dict[str, int] = {}
    for part in parts:
        if kept and part.skipped_blob and not kept.isdisjoint(part.skipped_blob.split(b"\n")):
            # A line this part skipped may be a later copy of a kept record: read it exactly.
            log.info(
                "%s from byte %d: read again, every line parsed", part.chunk.path, part.chunk.start
            )
            part = read_chunk(part.chunk, replace(options, shortcuts=False))
        take_counts(part, lines_before, report)
        for ref in part.dropped:
            total.drop(ref)
        total.records.update(part.records)
        total.patients.update(part.patients)
        kept.update(map(id_of, part.records))
        if progress is not None:
            progress(report.resources_read)
    return total.finish()


def take_counts(part: ChunkFacts, lines_before: dict[str, int], report: ReadReport) -> None:
    """A part's problems (located in their file and line: `lines_before` holds the lines of
    each file's parts taken so far) and counts, into `report`; parts are taken in input
    order."""
    offset = lines_before.get(part.chunk.path, 0) if part.chunk.part else 0
    lines_before[part.chunk.path] = offset + part.lines
    report_problems(part, offset, report)
    report.files_read += part.files_read
    report.resources_read += part.resources_read
    report.by_type.update(part.by_type)


def report_problems(part: ChunkFacts, offset: int, report: ReadReport) -> None:
    """A part's problems, located with `offset` (the lines of the file's parts before it),
    raised as `InputError` unless `report` skips them; a fatal one is raised whatever it says."""

    def located(problem: Skipped, line: int | None) -> Skipped:
        if not offset or line is None:
            return problem
        return Skipped(f"{part.chunk.path}:{line + offset}", problem.problem)

    for problem, line in part.problems:
        problem = located(problem, line)
        if not report.skip_invalid:
            raise InputError(str(problem))
        if len(report.skipped) < MAX_SKIPPED:
            report.skipped.append(problem)
    report.skipped_count += part.problem_count
    if part.fatal is not None:
        raise InputError(str(located(*part.fatal)))
