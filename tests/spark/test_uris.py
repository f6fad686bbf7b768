"""A SOURCE with a URI scheme (file://, hdfs://, s3a://, abfss://, gs://, ...) is read through
Spark itself (binaryFiles), so a cluster reads object storage: tested with file:// URIs, which
give the same files as the local path; problems name the URI and the line."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from ips_screen.cli.main import main
from ips_screen.synth import write_bulk
from tests.support.paths import FIXTURES, FROZEN_NOW
from tests.support.spark import AS_OF, SOCKETS_LEFT_OPEN, screen_both

pytestmark = SOCKETS_LEFT_OPEN


def test_the_fixtures_from_a_file_uri_give_the_same_files(spark, capsys, tmp_path: Path):
    screen_both(capsys, tmp_path, FIXTURES, spark_sources=[FIXTURES.as_uri()])


def test_a_bulk_export_from_a_file_uri_gives_the_same_files(spark, capsys, tmp_path: Path):
    """Plain and gzipped NDJSON files, one of them named as a file URI of its own beside a local
    folder (a local path among URIs is read through Spark too)."""
    data = tmp_path / "synth"
    write_bulk(data, 40, 5, FROZEN_NOW.date())
    for path in sorted(data.rglob("Condition*.ndjson")):  # gzip some files
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    extra = tmp_path / "extra" / "Patient.900.ndjson"
    extra.parent.mkdir()
    extra.write_bytes(b'{"resourceType":"Patient","id":"late","birthDate":"1970-01-01"}\n')
    screen_both(capsys, tmp_path, data, extra, spark_sources=[data.as_uri() + "/", str(extra)])


def bad_export(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    lines = [
        orjson.dumps({"resourceType": "Patient", "id": f"p{n}", "birthDate": "1980-01-01"})
        for n in range(20)
    ]
    (data / "Patient.000.ndjson").write_bytes(b"\n".join([*lines, b"{not json"]) + b"\n")
    return data


def test_a_bad_line_is_named_by_its_uri_and_line(spark, capsys, tmp_path: Path):
    data = bad_export(tmp_path)
    uri = data.as_uri()
    out = tmp_path / "out"
    code = main(["screen", uri, *AS_OF, "--out", str(out), "--engine", "spark"])
    _, err = capsys.readouterr()
    assert code == 3
    assert err.startswith(f"ips-screen: error: {uri}/Patient.000.ndjson:21: not valid JSON"), err
    assert err.count("\n") == 1 and not out.exists()
    args = ["screen", uri, *AS_OF, "--out", str(out), "--engine", "spark", "--skip-invalid"]
    assert main(args) == 0
    capsys.readouterr()
    summary = (out / "summary.json").read_text()
    assert f"{uri}/Patient.000.ndjson:21" in summary


def test_a_missing_uri_is_a_one_line_error(spark, capsys, tmp_path: Path):
    uri = (tmp_path / "nowhere").as_uri()
    code = main(["screen", uri, *AS_OF, "--out", str(tmp_path / "o"), "--engine", "spark"])
    _, err = capsys.readouterr()
    assert code == 3
    assert err == f"ips-screen: error: {uri}: no such file or folder\n"
