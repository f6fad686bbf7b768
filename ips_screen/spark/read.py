"""The Spark job's read stage: the input cut into parts, each part read by the single machine's
fast reader in a task, the parts' states for the merge by patient.

    local paths    `chunks.plan`: whole files, large NDJSON files cut into line-aligned byte
                   ranges (many tasks per large file); each read with `chunks.read_chunk`
    URIs           (file://, hdfs://, s3a://, abfss://, gs://, ...) listed and read by Spark
                   itself (`binaryFiles`: a cluster reads object storage), each file whole,
                   NDJSON.gz decompressed in the task (`parts.read_uri_file`)
    outlines       each part's counts and problems (no facts) collected to the driver and merged
                   in input order by `parallel.merge`: lines made absolute, the first problem
                   raised (without --skip-invalid), as on one machine
    exactness      a part whose skipped lines' ids match a record an EARLIER part kept is read
                   again with every line parsed (the rule of `parallel.merge`): found with a join
                   of the skipped ids on the kept ids' first part; needed only when some part
                   skipped lines after a part that kept records
    states         `parts.states` of every part, for `reduceByKey(latest)` (`spark.job`)
    partitions     unless given (`--partitions`), one patient partition per PARTITION_BYTES of
                   input (a gzip file counted GZIP_RATIO times its size), at least Spark's
                   default parallelism: a partition's results are what the driver holds at once
                   when it gathers them (`toLocalIterator`), and its proposals one Bundle
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ips_screen.errors import InputError
from ips_screen.reading import ReadReport
from ips_screen.sources.chunks import Chunk, ReadOptions, plan, read_chunk
from ips_screen.sources.files import NOT_DATA, discover
from ips_screen.sources.parallel import merge
from ips_screen.spark.parts import (
    Outline,
    UriFile,
    exact,
    file_kind_of,
    is_uri,
    kept_ids,
    needs_exact,
    outline,
    read_uri_file,
    skipped_ids,
    states,
)

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext

log = logging.getLogger("ips_screen.spark")

TASKS_PER_PARTITION = 4  # read tasks per patient partition (at most one per part)
PARTITION_BYTES = 128 * 2**20  # input per patient partition by default (Spark's file split)
GZIP_RATIO = 8  # what a gzip NDJSON file holds, about, per byte stored
_SUPPORTED = "*.json, *.ndjson or *.ndjson.gz"


@dataclass
class ReadStage:
    """The read stage's result: every part's states, and the RDDs to release at the end."""

    events: RDD
    held: list[RDD]
    partitions: int  # patient partitions: as given, else by the size of the input


def default_partitions(input_bytes: int, parallelism: int) -> int:
    """One patient partition per PARTITION_BYTES of input, at least `parallelism`."""
    return max(parallelism, math.ceil(input_bytes / PARTITION_BYTES))


def _stored_size(name: str, size: int) -> int:
    return size * GZIP_RATIO if name.endswith(".gz") else size


def _chunk_bytes(chunk: Chunk) -> int:
    if chunk.end is not None:
        return chunk.end - chunk.start
    try:
        return _stored_size(chunk.path, os.path.getsize(chunk.path) - chunk.start)
    except OSError:
        return 0  # reading it reports the problem


def read_stage(
    sc: SparkContext,
    sources: Sequence[str | Path],
    options: ReadOptions,
    report: ReadReport,
    partitions: int | None = None,
    skip: Sequence[Path] = (),
) -> ReadStage:
    """Read `sources` (paths, or URIs read through Spark); the counts and problems into `report`
    (`InputError` for the first problem without --skip-invalid, before anything is written).
    `partitions`: the patient partitions, default by the size of the input (see the module).
    `skip`: local output folders not read (`sources.files.discover`)."""
    from pyspark import StorageLevel

    given = [str(source) for source in sources]
    if any(is_uri(source) for source in given):
        # Every source through Spark: a local path among URIs is read as its file:// URI.
        uris = [s if is_uri(s) else Path(s).resolve().as_uri() for s in given]
        files = list_uris(sc, uris, report)
        size = sum(_stored_size(f.name, f.size) for f in files)
        partitions = partitions or default_partitions(size, sc.defaultParallelism)
        read = _uri_reader(sc, files, partitions)
    else:
        chunks = plan(discover(given, report, skip=skip))
        size = sum(_chunk_bytes(chunk) for chunk in chunks)
        partitions = partitions or default_partitions(size, sc.defaultParallelism)
        read = _chunk_reader(sc, chunks, partitions)
    opts = sc.broadcast(options)
    held: list[RDD] = []
    try:
        facts = read(None, opts).persist(StorageLevel.MEMORY_AND_DISK)
        held.append(facts)
        outlines = dict(facts.map(lambda kv: (kv[0], outline(*kv))).collect())
        redo = _later_copies(facts, outlines.values(), partitions)
        if redo:
            log.info(
                "%d part(s) read again with every line parsed (a later copy of a kept record)",
                len(redo),
            )
            again = read(redo, sc.broadcast(exact(options))).persist(StorageLevel.MEMORY_AND_DISK)
            held.append(again)
            outlines.update(again.map(lambda kv: (kv[0], outline(*kv))).collect())
            facts = facts.filter(lambda kv: kv[0] not in redo).union(again)
        merge((outlines[i].part for i in sorted(outlines)), options, report)
    except BaseException:
        for rdd in held:
            rdd.unpersist()
        raise
    return ReadStage(facts.flatMap(lambda kv: states(*kv)), held, partitions)


Reader = Callable[[set[int] | None, object], "RDD"]  # (only these parts, options) -> facts


def _chunk_reader(sc: SparkContext, chunks: list[Chunk], partitions: int) -> Reader:
    def read(only: set[int] | None, opts) -> RDD:
        items = [(i, c) for i, c in enumerate(chunks) if only is None or i in only]
        tasks = min(len(items), TASKS_PER_PARTITION * partitions)
        return sc.parallelize(items, max(1, tasks)).map(
            lambda item: (item[0], read_chunk(item[1], opts.value))
        )

    return read


def _uri_reader(sc: SparkContext, files: list[UriFile], partitions: int) -> Reader:
    def read(only: set[int] | None, opts) -> RDD:
        chosen = {f.key: (i, f) for i, f in enumerate(files) if only is None or i in only}
        where = sc.broadcast(chosen)

        def one(item: tuple[str, bytes]):
            index, file = where.value[item[0]]
            return index, read_uri_file(file, item[1], opts.value)

        # binaryFiles combines small files into one task; at least this many tasks
        tasks = min(len(chosen), TASKS_PER_PARTITION * partitions)
        return sc.binaryFiles(",".join(chosen), tasks).map(one)

    return read


def list_uris(sc: SparkContext, uris: list[str], report: ReadReport) -> list[UriFile]:
    """The NDJSON files under each URI (a file, or a folder listed recursively, in sorted order
    as `sources.files.discover` lists a local folder), through Spark's Hadoop file systems.
    Other files are ignored and counted; a URI given must exist."""
    jvm, conf = sc._jvm, sc._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    found: list[UriFile] = []
    seen: set[str] = set()
    ignored = 0
    for uri in uris:
        path = jvm.org.apache.hadoop.fs.Path(uri)
        try:
            fs = path.getFileSystem(conf)
            exists = fs.exists(path)
        except Exception as exc:  # py4j's error: no file system for the scheme, no access
            raise InputError(f"{uri}: cannot be read ({_java_message(exc)})") from None
        if not exists:
            raise InputError(f"{uri}: no such file or folder")
        root = fs.getFileStatus(path)
        listed: list[tuple[tuple[str, ...], str]] = []
        if root.isDirectory():
            base = root.getPath().toString().rstrip("/")
            entries = fs.listFiles(path, True)
            while entries.hasNext():
                entry = entries.next()
                key = entry.getPath().toString()
                relative = key[len(base) :].lstrip("/")
                listed.append((PurePosixPath(relative).parts, key, entry.getLen()))
            for parts, key, size in sorted(listed):
                name = uri.rstrip("/") + "/" + "/".join(parts)
                kind = file_kind_of(name)
                if kind is None or parts[-1] in NOT_DATA:
                    ignored += 1
                elif key not in seen:
                    seen.add(key)
                    found.append(UriFile(key, name, size))
        else:
            key = root.getPath().toString()
            if file_kind_of(uri) is None:
                raise InputError(f"{uri}: unsupported file type (expected {_SUPPORTED})")
            if key not in seen:
                seen.add(key)
                found.append(UriFile(key, uri, root.getLen()))
    report.files_ignored += ignored
    if not found:
        extra = f"; {ignored} other file(s) ignored" if ignored else ""
        raise InputError(f"{', '.join(uris)}: no FHIR input files ({_SUPPORTED}) found{extra}")
    return found


def _java_message(exc: Exception) -> str:
    java = getattr(exc, "java_exception", None)
    text = java.toString() if java is not None else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _later_copies(facts: RDD, outlines: Iterable[Outline], partitions: int) -> set[int]:
    """The parts that skipped a line whose id is the id of a record an earlier part kept."""
    first = needs_exact(outlines)
    if first is None:
        return set()
    kept = (
        facts.filter(lambda kv: kv[1].records)
        .flatMap(lambda kv: ((rid, kv[0]) for rid in kept_ids(kv[1])))
        .reduceByKey(min, partitions)
    )
    skipped = facts.filter(lambda kv: kv[0] > first and kv[1].skipped_blob).flatMap(
        lambda kv: ((rid, kv[0]) for rid in skipped_ids(kv[1]))
    )
    later = skipped.join(kept, partitions).filter(lambda kv: kv[1][0] > kv[1][1])
    return set(later.map(lambda kv: kv[1][0]).distinct().collect())
