"""The command line end to end, as a practice or integrator runs it."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import orjson
import pytest

from ips_screen.cli.main import main
from tests.support.paths import FIXTURES, ROOT

AS_OF = ["--as-of", "2026-11-26"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_screen_writes_every_output(capsys, tmp_path: Path):
    code, out, err = run(capsys, "screen", str(FIXTURES), *AS_OF, "--out", str(tmp_path))
    assert code == 0, err
    for name in (
        "decisions.ndjson",
        "summary.json",
        "proposals.json",
        "report.html",
        "worklist.csv",
    ):
        assert (tmp_path / name).is_file(), name
    decisions = [
        orjson.loads(line) for line in (tmp_path / "decisions.ndjson").read_bytes().splitlines()
    ]
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    bundle = orjson.loads((tmp_path / "proposals.json").read_bytes())
    assert (
        summary["patients"] == len(decisions) == len(list((FIXTURES / "patients").glob("*.json")))
    )
    proposed = [d for d in decisions if d["outcome"] == "propose"]
    assert proposed, "the fixtures include patients to propose"
    assert f"{len(proposed)} to propose" in out
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    requests = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
    ]
    assert sorted(r["subject"]["reference"] for r in requests) == sorted(
        d["patient"] for d in proposed
    )
    for decision in decisions:
        assert set(decision) >= {"patient", "outcome", "reasons", "flags", "priority", "trace"}
        if decision["outcome"] != "propose":
            assert decision["flags"] == [] and decision["priority"] is None
    html = (tmp_path / "report.html").read_text()
    assert "<svg" in html and proposed[0]["patient"] in html
    # The practice manager reads the reasons in plain words, not the engine's trace wording.
    assert "Chronic pain, first recorded 7 February 2024. Out of work since 3 August 2026." in html
    assert "record(s) in chronic-pain" not in html and "eMED3" not in html


@pytest.mark.slow
def test_screen_twice_gives_identical_decisions_and_proposal_identifiers(capsys, tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert run(capsys, "screen", str(FIXTURES), *AS_OF, "--out", str(first))[0] == 0
    assert run(capsys, "screen", str(FIXTURES), *AS_OF, "--out", str(second))[0] == 0
    assert (first / "decisions.ndjson").read_bytes() == (second / "decisions.ndjson").read_bytes()

    def identifiers(folder: Path) -> list:
        bundle = orjson.loads((folder / "proposals.json").read_bytes())
        return [
            (e["fullUrl"], e["request"].get("ifNoneExist"), e["resource"].get("identifier"))
            for e in bundle["entry"]
        ]

    assert identifiers(first) == identifiers(second)


@pytest.mark.slow
def test_three_layouts_give_the_same_decisions(capsys, tmp_path: Path):
    """Bundles, Bulk NDJSON (plain and gzip) and single-resource files: same decisions."""
    from ips_screen.sources.files import discover, iter_resources

    ndjson, gz, single = tmp_path / "ndjson", tmp_path / "gz", tmp_path / "single"
    for folder in (ndjson, gz, single):
        folder.mkdir()
    by_type: dict[str, list[bytes]] = {}
    for resource, _, _ in iter_resources(discover([FIXTURES])):
        line = orjson.dumps(resource)
        by_type.setdefault(resource["resourceType"], []).append(line)
        (single / f"{resource['resourceType']}-{resource['id']}.json").write_bytes(line)
    for kind, lines in by_type.items():
        (ndjson / f"{kind}.000.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        (gz / f"{kind}.000.ndjson.gz").write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    outputs = []
    for source in (FIXTURES, ndjson, gz, single):
        out = tmp_path / f"out-{source.name}"
        assert run(capsys, "screen", str(source), *AS_OF, "--out", str(out))[0] == 0
        outputs.append((out / "decisions.ndjson").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2] == outputs[3]


def test_bad_input_is_one_line_naming_file_and_line(capsys, tmp_path: Path):
    bad = tmp_path / "Condition.000.ndjson"
    good = b'{"resourceType":"Patient","id":"p1","birthDate":"1980-01-01"}'
    bad.write_bytes(good + b"\n{not json\n")
    code, _, err = run(capsys, "screen", str(tmp_path), *AS_OF, "--out", str(tmp_path / "o"))
    assert code == 3
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{bad}:2" in err
    assert not (tmp_path / "o").exists(), "nothing is written when the input is refused"


def test_skip_invalid_continues_and_lists_what_was_skipped(capsys, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    bad = data / "Patient.000.ndjson"
    bad.write_bytes(
        b'{"resourceType":"Patient","id":"p1","birthDate":"1980-01-01"}\n{not json\n'
        b'{"resourceType":"Banana","id":"x"}\n'
    )
    out = tmp_path / "o"
    code, stdout, _ = run(capsys, "screen", str(data), *AS_OF, "--out", str(out), "--skip-invalid")
    assert code == 0
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["patients"] == 1
    assert summary["data_quality"]["records_skipped"] == 2
    assert [s["where"] for s in summary["data_quality"]["skipped"]] == [f"{bad}:2", f"{bad}:3"]
    assert "2 unreadable records were skipped" in stdout


def test_missing_source_and_bad_date_are_user_errors(capsys, tmp_path: Path):
    code, _, err = run(capsys, "screen", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert code == 3 and "nope" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as caught:
        main(["screen", str(FIXTURES), "--as-of", "26/11/2026", "--out", str(tmp_path)])
    assert caught.value.code == 2


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1899-12-31", "9001-01-01"])
def test_an_as_of_date_out_of_range_is_a_usage_error(capsys, tmp_path: Path, day: str):
    """The rules' windows and horizons from such a date leave the calendar (the nightly job
    stopped with a traceback)."""
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{FIXTURES}"\n[output]\nstate_dir = "{tmp_path}"\n',
        encoding="utf-8",
    )
    for argv in (
        ["screen", str(FIXTURES), "--as-of", day, "--out", str(tmp_path / "o")],
        ["nightly", "--config", str(config), "--as-of", day],
    ):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        assert (
            f"'{day}': an as-of date must be in the years 1900 to 9000" in capsys.readouterr().err
        )
    assert not (tmp_path / "o").exists() and not (tmp_path / "store.sqlite").exists()


@pytest.mark.slow
def test_as_of_defaults_to_today_in_london(capsys, tmp_path: Path, frozen_clock):
    """The frozen clock is 2026-11-26 09:30 London; in Auckland it is already evening."""
    frozen_clock.move_to("2026-11-26T23:30:00+00:00")  # 23:30 London = 12:30 next day Auckland
    assert run(capsys, "screen", str(FIXTURES), "--out", str(tmp_path))[0] == 0
    first = orjson.loads((tmp_path / "decisions.ndjson").read_bytes().splitlines()[0])
    assert first["as_of"] == "2026-11-26"


def test_explain_prints_the_trace(capsys):
    patient = next(iter(sorted((FIXTURES / "patients").glob("01-*.json"))))
    pid = next(
        e["resource"]["id"]
        for e in orjson.loads(patient.read_bytes())["entry"]
        if e["resource"]["resourceType"] == "Patient"
    )
    code, out, _ = run(capsys, "explain", str(FIXTURES), "--patient", pid, *AS_OF)
    assert code == 0
    assert out.startswith(f"Patient/{pid}: PROPOSE")
    for step in ("deceased", "working-age", "chronic-pain", "out-of-work"):
        assert f"  {step}" in out
    code, _, err = run(capsys, "explain", str(FIXTURES), "--patient", "nobody", *AS_OF)
    assert code == 3 and "Patient/nobody is not in the input" in err


@pytest.mark.slow
def test_rules_validate_test_and_pin(capsys, tmp_path: Path):
    code, out, _ = run(capsys, "rules", "validate")
    assert code == 0 and "ok: ips-chronic-pain 1.1.0" in out
    code, out, _ = run(capsys, "rules", "test")
    assert code == 0, out
    assert ", 0 failed" in out

    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    shutil.copytree(ROOT / "fhir_fixtures", tmp_path / "fhir_fixtures")
    path = rules / "ips-chronic-pain.yaml"
    text = path.read_text()
    # Flip one example's expected outcome: `rules test` must fail with its own exit code.
    marker = "expect: {outcome: propose"
    assert marker in text, "the default ruleset keeps a propose example"
    path.write_text(text.replace(marker, "expect: {outcome: excluded", 1))
    code, out, _ = run(capsys, "rules", "test", str(path))
    assert code == 8
    assert "FAIL" in out and "outcome: expected 'excluded', got 'propose'" in out

    csv = rules / "codelists" / "palliative-care.csv"
    csv.write_text(csv.read_text() + "http://snomed.info/sct,1234,x,,test\n")
    code, _, err = run(capsys, "rules", "validate", str(path))
    assert code == 4 and "palliative-care.csv" in err
    assert run(capsys, "rules", "pin", str(rules / "codelists"))[0] == 0
    assert run(capsys, "rules", "validate", str(path))[0] == 0
