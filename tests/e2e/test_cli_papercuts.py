"""Small things a user meets at the command line (issue 8, point 6): a closed pipe ends quietly,
global options work after the command, `serve` on a taken port says so in one line with its own
exit code, the screen's last line names every output it wrote, and a past as-of date is said to
be one beside the date the proposals carry."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ips_screen.cli.main import build_parser, main
from ips_screen.errors import EXIT_CODES, OUTPUT_CLOSED, PortInUse
from ips_screen.outputs.registry import filenames
from tests.support.cds import ISS, public_jwks
from tests.support.closed_pipe import run_into_closed_pipe
from tests.support.paths import FIXTURES

AS_OF = ["--as-of", "2026-11-26"]
ONE = str(FIXTURES / "patients")
FIRST = str(FIXTURES / "patients" / "01-unemployed-recent.json")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_closed_pipe_ends_quietly():
    done = run_into_closed_pipe("explain", ONE, "--patient", "fx-01", *AS_OF, "-q")
    stderr = done.stderr.decode()
    assert done.returncode == OUTPUT_CLOSED, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert stderr == ""


def test_global_options_work_before_and_after_the_command(capsys, tmp_path: Path):
    screen = ["screen", FIRST, *AS_OF, "--out", str(tmp_path)]
    code, out, err = run(capsys, *screen)
    assert code == 0 and " INFO " in err
    for argv in (["-q", *screen], [*screen, "-q"], [screen[0], "--quiet", *screen[1:]]):
        code, quiet_out, err = run(capsys, *argv)
        assert (code, quiet_out, err) == (0, out, ""), argv
    code, _, err = run(capsys, *screen, "--log-format", "json")
    assert code == 0 and err and all(json.loads(line)["message"] for line in err.splitlines())
    args = build_parser().parse_args(["review", "list", "--server", "http://x", "-v", "-q"])
    assert (args.verbose, args.quiet, args.log_format) == (True, True, "text")  # after an action


def _serve_config(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    config = tmp_path / "serve.toml"
    config.write_text(
        'public_base_url = "http://127.0.0.1:8080"\n'
        f"state_dir = {json.dumps(str(tmp_path / 'state'))}\n"
        '[fhir]\nbase_url = "http://127.0.0.1:9/fhir"\n'
        "[ehr_auth]\n[[ehr_auth.issuers]]\n"
        f"iss = {json.dumps(ISS)}\n"
        f"jwks = {{ keys = [{', '.join(_inline(k) for k in public_jwks(key)['keys'])}] }}\n"
    )
    return config


def test_serve_with_a_damaged_database_says_so_in_one_line(capsys, tmp_path: Path):
    """The service's database overwritten (or its disk damaged): what it is and what to do,
    before anything listens."""
    config = _serve_config(tmp_path)
    (tmp_path / "state").mkdir(mode=0o700)
    database = tmp_path / "state" / "service.sqlite"
    database.write_bytes(b"not a database, " * 512)
    database.chmod(0o600)
    with socket.socket() as probe:  # a port free a moment ago: nothing listens on it anyway
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run(capsys, "serve", "--config", str(config), "--port", str(port))
    assert code == 4, err
    assert err.startswith(
        f"ips-screen: error: state_dir: the service's database {database} cannot be read "
        "(file is not a database). Move it aside"
    ), err
    assert len(err.splitlines()) == 1 and out == ""


def test_serve_on_a_port_in_use_says_so_in_one_line(capsys, tmp_path: Path):
    config = _serve_config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run(capsys, "serve", "--config", str(config), "--port", str(port))
    assert code == PortInUse.exit_code == 10, err
    assert err == (
        f"ips-screen: error: 127.0.0.1:{port} is already in use: stop the other server or "
        "choose another --port\n"
    )
    assert out == "" and 10 in EXIT_CODES
    assert "  10  serve: the address and port are already in use" in build_parser().format_help()


def _inline(table: dict) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + " }"


@pytest.mark.slow
def test_the_screens_last_line_names_every_output_and_a_past_or_future_as_of_date(
    capsys, tmp_path: Path, frozen_clock
):
    code, out, err = run(capsys, "screen", str(FIXTURES), *AS_OF, "--out", str(tmp_path))
    assert code == 0, err
    first, *_, last = out.strip().splitlines()
    written = [name for name in filenames() if (tmp_path / name).is_file()]
    assert "worklist.csv" in written and len(written) == 5
    assert last == f"Outputs in {tmp_path}/: {', '.join(written)}"
    # The frozen clock's today is the as-of day: not called past.
    assert first.startswith("Screened 45 patients on records up to 26 November 2026 with ")
    code, out, err = run(
        capsys, "screen", str(FIXTURES), "--as-of", "2026-11-01", "--out", str(tmp_path)
    )
    assert out.startswith(
        "Screened 45 patients on records up to 1 November 2026 (a past date: proposals are "
        "dated today, 26 November 2026) with "
    )
    code, out, err = run(  # e.g. a mistyped year
        capsys, "screen", str(FIXTURES), "--as-of", "2027-11-26", "--out", str(tmp_path)
    )
    assert out.startswith(
        "Screened 45 patients on records up to 26 November 2027 (a future date: ages and time "
        "windows as of then; today is 26 November 2026) with "
    )


def test_an_incremental_files_night_with_an_empty_folder_has_no_changes(capsys, tmp_path: Path):
    """A quiet day's folder of changes is empty: the night still screens everyone as of its date
    (decisions change with time alone). The first night, a full load, needs files."""
    data = tmp_path / "changes"
    data.mkdir()
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{data}"\nincremental = true\n'
        f'[output]\nstate_dir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    night = ["nightly", "--config", str(config), "--as-of"]
    code, _, err = run(capsys, *night, "2026-11-26")
    assert code == 3 and "no FHIR input files" in err  # nothing to load in full
    shutil.copytree(FIXTURES, data, dirs_exist_ok=True)
    assert run(capsys, *night, "2026-11-26")[0] == 0
    for item in list(data.iterdir()):
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    code, out, err = run(capsys, *night, "2026-11-27")
    assert code == 0, err
    assert "45 patients screened" in out and "no errors" in out


def test_counts_of_one_are_said_in_the_singular(capsys, tmp_path: Path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(FIXTURES / "patients" / "01-unemployed-recent.json", one)
    code, out, err = run(capsys, "screen", str(one), "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert out.startswith("Screened 1 patient on records up to "), out
    assert " INFO read 5 resources from 1 file: 1 patient\n" in err, err  # the log lines too
    config = tmp_path / "practice.toml"
    config.write_text(
        f'[source]\nkind = "files"\npath = "{one}"\n[screen]\nwrite = false\n'
        f'[output]\nstate_dir = "{tmp_path / "state"}"\n',
        encoding="utf-8",
    )
    code, out, err = run(capsys, "nightly", "--config", str(config), "--as-of", "2026-11-26")
    assert code == 0, err
    assert (
        "1 patient screened, 1 to propose; 0 new proposals written, 0 open; 1 change since the "
        "last run; no errors."
    ) in out
    assert " INFO screened 1 patient: 1 evaluated, 0 cached decisions reused (0 lines " in err
    assert "): 1 patient, 0 new proposals, 0 open, 1 change, 0 errors\n" in err, err


def test_an_output_folder_that_cannot_be_one_is_said_in_one_line(capsys, tmp_path: Path):
    """`--out` naming a file, or a folder inside a file, is refused before anything is read,
    naming it, instead of a traceback after the screen (exit 2)."""
    taken = tmp_path / "taken"
    taken.write_text("someone's file\n")
    for out, why in (
        (taken, "a file is there, not a folder"),
        (taken / "out", "cannot make the output folder (Not a directory)"),
    ):
        for args in (("screen", ONE, *AS_OF), ("synth", "--patients", "2")):
            code, _, err = run(capsys, *args, "--out", str(out), "-q")
            assert code == 2, err
            assert err.startswith(f"ips-screen: error: {out}: {why}"), err
            assert len(err.splitlines()) == 1, err
    assert taken.read_text() == "someone's file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing left behind


def test_a_nightly_config_with_an_empty_path_stops_before_anything_is_written(
    capsys, tmp_path: Path
):
    """`state_dir = ""` was read as the config's own folder (store and runs beside it), and
    `path = ""` as that folder's files for records (another run's proposals.json among them)."""
    config = tmp_path / "practice.toml"
    for source, state in (('""', '"state"'), (json.dumps(ONE), '""')):
        config.write_text(
            f'[source]\nkind = "files"\npath = {source}\n[output]\nstate_dir = {state}\n'
        )
        code, _, err = run(capsys, "nightly", "--config", str(config), *AS_OF, "-q")
        assert code == 4, err
        assert err.endswith(': an empty path; write "." for the config file\'s own folder\n'), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["practice.toml"]


def test_a_nightly_config_value_of_the_wrong_type_is_refused_not_converted(capsys, tmp_path: Path):
    """TOML says what type a value is: `keep_runs = true` was read as 1 (every run folder but
    the last pruned), `write = 1` as true (proposals written to the server), `"3"` and `3.0` as
    3. practice.toml is now checked as serve.toml is: the key and the type it needs, exit 4."""
    config = tmp_path / "practice.toml"
    integer, boolean = "Input should be a valid integer", "Input should be a valid boolean"
    for table, setting, says in (
        ("output", "keep_runs = true", f"[output] keep_runs: {integer}"),
        ("output", 'keep_runs = "3"', f"[output] keep_runs: {integer}"),
        ("output", "keep_runs = 3.0", f"[output] keep_runs: {integer}"),
        ("screen", "write = 1", f"[screen] write: {boolean}"),
        ("source", 'incremental = "yes"', f"[source] incremental: {boolean}"),
        ("export", 'max_parallel_downloads = "4"', f"[export] max_parallel_downloads: {integer}"),
        ("output", "state_dir = 5", "[output] state_dir: a path is written as text, in quotes"),
        ("source", 'path = ["in"]', "[source] path: a path is written as text, in quotes"),
    ):
        tables = {"source": {"kind": '"files"', "path": json.dumps(ONE)}}
        tables["output"] = {"state_dir": '"state"'}
        key, value = setting.split(" = ")
        tables.setdefault(table, {})[key] = value
        config.write_text(
            "".join(
                f"[{t}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                for t, keys in tables.items()
            )
        )
        code, _, err = run(capsys, "nightly", "--config", str(config), *AS_OF, "-q")
        assert code == 4, (setting, err)
        assert says in err and len(err.splitlines()) == 1, (setting, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["practice.toml"]
