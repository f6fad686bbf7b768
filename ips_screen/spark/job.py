"""The screen as a Spark job: parts of files -> facts -> merged by patient -> decisions -> outputs.

    parts of the input        spark.read: the single machine's fast reader (sources.chunks), many
                              tasks per large file; URIs read through Spark (binaryFiles)
      -> patients, records    reduceByKey(latest): the state from the part read last wins
      -> groups of patients   groupByKey, partition = crc32(patient id) % partitions
      -> decisions            screen_patients: the engine, one patient at a time
      -> out/spark/decisions/part-NNNNN   the partition's decisions.ndjson lines, sorted
      -> out/spark/proposals/part-NNNNN   the partition's proposals, one transaction Bundle
      -> out/summary.json                 always (counted in Spark, by summary key)
      -> out/decisions.ndjson, proposals.json, report.html, worklist.csv
                                           when there are at most `gather_limit` patients: the
                                           decisions streamed to the driver in patient order
                                           through the single-machine writers (byte-identical)

Nothing is computed twice: the parts' facts and the screened patients are persisted
(memory, then disk) while the job runs, and released by `SparkScreen.close`.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from ips_screen import __version__
from ips_screen.engine import Decision
from ips_screen.facts.extract import CodeIndex
from ips_screen.outputs.folder import OutputFolder
from ips_screen.presentation.counts import counted
from ips_screen.proposals.build import build_transaction
from ips_screen.reading import ReadReport
from ips_screen.ruleset.loader import CompiledRuleset
from ips_screen.sources.chunks import ReadOptions
from ips_screen.spark.read import read_stage
from ips_screen.spark.reduce import KEPT, UNLINKED, PatientResult, latest, screen_patients

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import SparkSession

log = logging.getLogger("ips_screen.spark")

DEFAULT_GATHER_LIMIT = 2_000_000  # patients; above it only summary.json and the partitions
PARTITIONS_DIR = "spark"  # out/spark/decisions, out/spark/proposals


def patient_partition(pid: str) -> int:
    """The partition hash of a patient id: crc32, the same on every machine and run."""
    return zlib.crc32(pid.encode())


@dataclass
class SparkScreen:
    """A finished Spark screen: its summary, and its results still held by Spark (for
    `--write`) until `close`."""

    summary: dict
    out_dir: Path
    gathered: bool  # the single-machine files were written too
    results: RDD
    held: list[RDD]

    def proposed(self) -> Iterator[Decision]:
        """The proposed patients' decisions in patient order, one partition at a time."""
        ordered = (
            self.results.filter(lambda r: r.decision is not None)
            .map(lambda r: (r.patient, r.decision))
            .sortByKey()
            .values()
        )
        return ordered.toLocalIterator()

    def close(self) -> None:
        for rdd in self.held:
            rdd.unpersist()


def screen_with_spark(
    spark: SparkSession,
    sources: list[str | Path],
    ruleset: CompiledRuleset,
    *,
    as_of: date,
    out_dir: Path,
    now: datetime,
    skip_invalid: bool = False,
    owner: str | None = None,
    partitions: int | None = None,
    gather_limit: int = DEFAULT_GATHER_LIMIT,
) -> SparkScreen:
    """Screen the files under `sources` (paths, or URIs read through Spark) on Spark; outputs
    in out_dir (see the module)."""
    from pyspark import StorageLevel

    sc = spark.sparkContext
    report = ReadReport(skip_invalid=skip_invalid)
    options = ReadOptions(CodeIndex(ruleset.codelists.values()), skip_invalid)
    stage = read_stage(sc, sources, options, report, partitions, skip=(out_dir,))
    events, held, parts = stage.events, stage.held, stage.partitions
    rules = sc.broadcast(ruleset)
    try:
        records = (
            events.filter(lambda e: e[0] == "record")
            .map(lambda e: (e[1], e[2]))
            .reduceByKey(latest, parts)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        held.append(records)
        screened = _screen(events, records, rules, as_of, parts)
        screened = screened.persist(StorageLevel.MEMORY_AND_DISK)
        held.append(screened)
        results = screened.filter(lambda e: e[0] == "patient").map(lambda e: e[1])
        small = screened.filter(lambda e: e[0] != "patient").collect()
        orphans = dict(sorted(item for kind, item in small if kind == "orphan"))
        by_key: Counter = Counter()
        for kind, item in small:
            if kind == "keys":
                by_key.update(item)
        keys = list(by_key.items())
        unlinked = records.filter(lambda kv: kv[1].state == UNLINKED).count()
        patients = sum(times for _, times in keys)
        read, files = report.resources_read, report.files_read
        log.info(
            "read %s from %s: %s in %s",
            counted(read, "resource"),
            counted(files, "file"),
            counted(patients, "patient"),
            counted(parts, "partition"),
        )
        _write_partitions(results, out_dir, rules, now=now, owner=owner)
        gathered = patients <= gather_limit
        folder = OutputFolder(
            out_dir,
            ruleset,
            as_of=as_of,
            now=now,
            owner=owner,
            formats=None if gathered else ["summary"],
        )
        try:
            if gathered:
                ordered = results.map(lambda r: (r.patient, r)).sortByKey(numPartitions=parts)
                for result in ordered.values().toLocalIterator():
                    folder.add(result.patient, result.line, result.key, result.decision)
            else:
                log.info("%d patients: more than --gather-limit, only summary.json", patients)
                for key, times in keys:
                    folder.counter.add_key(key, times)
        except BaseException:
            folder.discard()
            raise
        summary = folder.finish(read_report=report.to_dict(), orphans=orphans, unlinked=unlinked)
    except BaseException:
        for rdd in held:
            rdd.unpersist()
        raise
    log.info("wrote %s", out_dir)
    return SparkScreen(summary, out_dir, gathered, results, held)


def _screen(events: RDD, records: RDD, rules: object, as_of: date, parts: int) -> RDD:
    """Merge the files' events by patient and screen every patient (tagged results)."""
    patients = (
        events.filter(lambda e: e[0] == "patient")
        .map(lambda e: (e[1], e[2]))
        .reduceByKey(latest, parts)
        .map(lambda kv: (kv[0], (0, kv[1])))
    )
    kept = records.filter(lambda kv: kv[1].state == KEPT).map(
        lambda kv: (kv[1].patient, (1, kv[1].record))
    )
    grouped = patients.union(kept).groupByKey(parts, partitionFunc=patient_partition)

    def screen(items: Iterator) -> Iterator:
        groups = (
            (pid, ([v for tag, v in values if tag == 0], [v for tag, v in values if tag == 1]))
            for pid, values in items
        )
        return screen_patients(groups, rules.value, as_of)  # type: ignore[attr-defined]

    return grouped.mapPartitions(screen, preservesPartitioning=True)


def _write_partitions(
    results: RDD, out_dir: Path, rules: object, *, now: datetime, owner: str | None
) -> None:
    """out/spark/decisions and out/spark/proposals, one part file per partition, written by
    the executors into a temporary folder, then moved into place; owner-only permissions."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = out_dir / f".{PARTITIONS_DIR}-{uuid.uuid4().hex}.tmp"
    try:
        results.map(lambda r: r.line.decode()).saveAsTextFile(
            (stage / "decisions").resolve().as_uri()
        )

        def bundle(items: Iterator[PatientResult]) -> Iterator[str]:
            proposed = [r.decision for r in items if r.decision is not None]
            if proposed:
                ruleset = rules.value  # type: ignore[attr-defined]
                tx = build_transaction(
                    proposed, ruleset, now=now, owner=owner, tool_version=__version__
                )
                yield orjson.dumps(tx, option=orjson.OPT_SORT_KEYS).decode()

        results.mapPartitions(bundle).saveAsTextFile((stage / "proposals").resolve().as_uri())
        _owner_only(stage)
        final = out_dir / PARTITIONS_DIR
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _owner_only(folder: Path) -> None:
    """Folders 0700, files 0600, as every output of a screen; the local file system's checksum
    files (.part-NNNNN.crc, binary) are dropped: the outputs are the part files."""
    folder.chmod(0o700)
    for path in folder.rglob("*"):
        if path.is_file() and path.name.startswith(".") and path.name.endswith(".crc"):
            path.unlink()
        else:
            path.chmod(0o700 if path.is_dir() else 0o600)
