"""`screen --engine spark`: the options, their checks, and the run (ips_screen.spark)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ips_screen.cli.server_args import _positive, is_server_url, server_options_given
from ips_screen.dates import LONDON
from ips_screen.errors import UserError

if TYPE_CHECKING:
    from ips_screen.writeback.writer import WriteReport

ENGINES = ("single", "spark")
_SPARK_ONLY = {  # option attribute -> option name
    "master": "--master",
    "spark_conf": "--spark-conf",
    "partitions": "--partitions",
    "gather_limit": "--gather-limit",
    "write_to": "--write-to",
    "write_batch": "--write-batch",
}


def add_spark_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Apache Spark (--engine spark; docs/scale.md)")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="single",
        help="single: this process (default); spark: an Apache Spark job reading files and "
        "folders (Bulk NDJSON), or URIs Spark reads (hdfs://, s3a://, abfss://, gs://, "
        "file://), for populations beyond one machine (needs ips-screen[spark])",
    )
    group.add_argument("--master", help="Spark master URL (default local[*])")
    group.add_argument(
        "--spark-conf",
        action="append",
        metavar="KEY=VALUE",
        help="a Spark setting, passed through (repeatable)",
    )
    group.add_argument(
        "--partitions",
        type=_positive,
        metavar="N",
        help="patient partitions (default: one per 128 MB of input, a gzip file counted 8 times "
        "its size, at least Spark's default parallelism); part file N holds the patients "
        "whose crc32(id) %% partitions is N",
    )
    group.add_argument(
        "--gather-limit",
        type=_positive,
        metavar="N",
        help="write decisions.ndjson, proposals.json, report.html and worklist.csv only up to "
        "N patients (default 2000000); summary.json and out/spark/ are always written",
    )
    group.add_argument(
        "--write-to",
        metavar="URL",
        help="with --write: the FHIR server the proposals are written to (the server the "
        "files were exported from); the FHIR server options apply to it",
    )
    group.add_argument(
        "--write-batch",
        type=_positive,
        metavar="N",
        help="with --write: proposed patients per batch written from the driver (default 500)",
    )


def check_engine_args(args: argparse.Namespace) -> str:
    """The engine chosen; Spark's options without it are refused rather than ignored."""
    engine = getattr(args, "engine", "single")
    if engine != "spark":
        given = [name for attr, name in _SPARK_ONLY.items() if getattr(args, attr, None)]
        if given:
            raise UserError(f"{given[0]} only applies with --engine spark")
    return engine


def _check(args: argparse.Namespace) -> None:
    if any(is_server_url(s) for s in args.sources):
        raise UserError(
            "--engine spark reads files, folders and storage URIs (a Bulk export), not a FHIR "
            "server URL"
        )
    if args.write and not args.write_to:
        raise UserError("--write with --engine spark needs --write-to URL (the FHIR server)")
    if args.write_to and not args.write:
        raise UserError("--write-to only applies with --write")
    given = server_options_given(args)
    for option in ("--patient-id", "--page-size"):
        if option in given:
            raise UserError(f"{option} only applies when the source is a FHIR server URL")
    if given and not args.write_to:
        raise UserError(f"{given[0]} only applies to a FHIR server (--write-to)")
    if args.owner is not None:
        from ips_screen.writeback.writer import check_owner

        check_owner(args.owner)


def run_spark_screen(
    args: argparse.Namespace, environ: Mapping[str, str], as_of: date
) -> tuple[dict, WriteReport | None]:
    """Screen on Spark, write the proposals with --write; the summary and what was written."""
    from ips_screen.ruleset.loader import load_ruleset
    from ips_screen.spark.job import DEFAULT_GATHER_LIMIT, screen_with_spark
    from ips_screen.spark.session import parse_conf, spark_session

    _check(args)
    ruleset = load_ruleset(args.rules)
    conf = parse_conf(args.spark_conf)
    now = datetime.now(tz=LONDON)
    written = None
    with spark_session(args.master, conf) as spark:
        result = screen_with_spark(
            spark,
            list(args.sources),
            ruleset,
            as_of=as_of,
            out_dir=Path(args.out),
            now=now,
            skip_invalid=args.skip_invalid,
            owner=args.owner,
            partitions=args.partitions,
            gather_limit=args.gather_limit or DEFAULT_GATHER_LIMIT,
        )
        try:
            if args.write:
                written = _write(args, environ, result, ruleset, now)
        finally:
            result.close()
    return result.summary, written


def _write(args, environ, result, ruleset, now) -> WriteReport:
    from ips_screen.cli.server_args import client_from_args
    from ips_screen.spark.write import DEFAULT_WRITE_BATCH, write_in_batches
    from ips_screen.writeback.writer import default_lock_path

    with client_from_args(args, environ, args.write_to) as client:
        return write_in_batches(
            client,
            result.proposed(),
            ruleset,
            lock_path=default_lock_path(client.base_url, environ),
            now=now,
            owner=args.owner,
            batch=args.write_batch or DEFAULT_WRITE_BATCH,
        )
