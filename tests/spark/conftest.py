"""One Spark session (local[2], two partitions, no UI, bound to 127.0.0.1) for every Spark test of
the run, and a real FHIR test server for the write-back test. Skipped when pyspark or Java is
missing (`scripts/spark-deps` installs both; `scripts/test` runs it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from ips_screen.devtools.testserver import FhirTestServer
from tests.fhir_support import running_test_server

SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.default.parallelism": "2",
    "spark.sql.shuffle.partitions": "2",
    "spark.executor.memory": "512m",
}


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    pytest.importorskip("pyspark", reason="pyspark not installed (scripts/spark-deps)")
    if shutil.which("java") is None:
        pytest.skip("no java (scripts/spark-deps installs openjdk-17-jre-headless)")
    from ips_screen.spark.session import new_session

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = new_session("local[2]", SPARK_CONF)
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirTestServer]:
    with running_test_server() as server:
        yield server
