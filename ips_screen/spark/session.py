"""The Spark session a screen runs in: the one already active (a notebook in a managed Spark
workspace, spark-submit, the test session), else a new one on `--master` with the `--spark-conf`
settings. pyspark is an optional extra (`pip install 'ips-screen[spark]'`); without it, or
without Java, the screen stops with a one-line message."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ips_screen.errors import UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("ips_screen.spark")

DEFAULT_MASTER = "local[*]"
APP_NAME = "ips-screen"
INSTALL_HINT = "--engine spark needs pyspark and Java 17: pip install 'ips-screen[spark]'"


def parse_conf(pairs: list[str] | None) -> dict[str, str]:
    """`--spark-conf key=value` options as a dict (the last of a repeated key wins)."""
    conf: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--spark-conf expects key=value, not {pair!r}")
        conf[key.strip()] = value
    return conf


@contextmanager
def spark_session(
    master: str | None = None, conf: Mapping[str, str] | None = None
) -> Iterator[SparkSession]:
    """The active session if there is one (then `master` and `conf` must not be given: they
    cannot change it), else a new one, stopped on exit."""
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    active = SparkSession.getActiveSession()
    if active is None and SparkContext._active_spark_context is not None:  # another thread's
        active = SparkSession.builder.getOrCreate()
    if active is not None:
        if master or conf:
            log.warning("a Spark session is active: --master and --spark-conf are not applied")
        yield active
        return
    session = new_session(master or DEFAULT_MASTER, conf or {})
    try:
        yield session
    finally:
        session.stop()


def new_session(master: str, conf: Mapping[str, str]) -> SparkSession:
    """A new Spark session named ips-screen on `master` with the settings `conf`."""
    from pyspark.sql import SparkSession

    # The executors' Python is this one (with ips-screen installed) unless the cluster says.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(APP_NAME).master(master)
    builder = builder.config("spark.ui.showConsoleProgress", "false")  # logs, not a bar
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # pyspark's own error when Java is missing or fails
        if type(exc).__module__.startswith("pyspark"):
            raise UserError(f"cannot start Spark ({exc}); {INSTALL_HINT}") from None
        raise
