"""One FHIR connection: the command-line options, practice.toml and serve.toml describe a server
the same way (`FhirConnection`) and get the same client from `open_client`; the 0.1 keys still
load, with one deprecation line naming the file and the new keys; errors name the file and key."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ips_screen.cli import server_args
from ips_screen.errors import ConfigError, UserError
from ips_screen.fhir import auth as fhir_auth
from ips_screen.fhir import connection
from ips_screen.fhir.client import FhirClient
from ips_screen.fhir.connection import FhirConnection, open_client
from ips_screen.nightly.config import load_config as load_practice
from ips_screen.service.app import create_app
from ips_screen.service.config import load_config as load_serve

BASE = "https://fhir.example.org/R4"
TOKEN_URL = "https://auth.example.org/token"
SCOPE = "system/Patient.rs system/Task.cruds"
SERVE_HEAD = 'public_base_url = "http://127.0.0.1:8080"\n[ehr_auth]\ndisabled = true\n'
PRACTICE_TAIL = '[export]\nmode = "rest"\n[output]\nstate_dir = "state"\n'


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    server_args.add_server_args(parser)
    return parser.parse_args(argv)


def fhir_tables(auth: str) -> str:
    return (
        f'[fhir]\nbase_url = "{BASE}"\nread_timeout_seconds = 60\npage_size = 200\n'
        f"[fhir.auth]\n{auth}\n"
    )


def client_shape(client: FhirClient) -> dict[str, Any]:
    """What makes two clients the same: where, how patiently, which credentials, which headers."""
    auth = client.auth
    shape = {
        "base_url": client.base_url,
        "timeout": client.timeout,
        "prefer": client.prefer_header(),
        "auth": type(auth).__name__,
    }
    if isinstance(auth, fhir_auth.SmartBackendAuth):
        shape |= {
            "client_id": auth.client_id,
            "kid": auth.kid,
            "scope": auth.scope,
            "token_url": auth.configured_token_url,
            "algorithm": auth.algorithm,
        }
    if isinstance(auth, fhir_auth.BearerTokenAuth):
        shape |= {"header": auth.authorization()}
    return shape


def three_clients(tmp_path: Path, auth_toml: str, argv: list[str], environ: dict[str, str]):
    practice = write(
        tmp_path, "practice.toml", '[source]\nkind = "server"\n' + fhir_tables(auth_toml)
    )
    practice.write_text(practice.read_text() + PRACTICE_TAIL)
    serve = write(tmp_path, "serve.toml", SERVE_HEAD + fhir_tables(auth_toml))
    from_practice = load_practice(practice).server
    from_serve = load_serve(serve).fhir
    from_cli = server_args.connection_from_args(cli_args(*argv, "--page-size", "200"), BASE)
    assert from_cli == from_practice == from_serve
    service = create_app(load_serve(serve), environ=environ).state.service
    with (
        server_args.client_from_args(cli_args(*argv), environ, BASE) as cli,
        open_client(from_practice, environ) as nightly,
        service.backend as backend,
    ):
        return client_shape(cli), client_shape(nightly), client_shape(backend)


def test_the_three_entry_points_build_the_same_smart_client(tmp_path: Path, key_file: Path):
    auth = (
        f'method = "smart"\nclient_id = "ips"\nprivate_key_file = "{key_file.name}"\n'
        f'kid = "k1"\nscope = "{SCOPE}"\ntoken_url = "{TOKEN_URL}"'
    )
    argv = ["--auth", "smart", "--client-id", "ips", "--private-key", str(key_file)]
    argv += ["--kid", "k1", "--scope", SCOPE, "--token-url", TOKEN_URL]
    cli, nightly, service = three_clients(tmp_path, auth, argv, {})
    assert cli == nightly == service
    assert cli["auth"] == "SmartBackendAuth" and cli["timeout"] == (5.0, 60.0)
    assert cli["prefer"] == "handling=strict"


def test_the_three_entry_points_build_the_same_bearer_client(tmp_path: Path):
    environ = {"PRACTICE_TOKEN": "tok-1"}
    argv = ["--auth", "bearer", "--token-env", "PRACTICE_TOKEN"]
    auth = 'method = "bearer"\ntoken_env = "PRACTICE_TOKEN"'
    cli, nightly, service = three_clients(tmp_path, auth, argv, environ)
    assert cli == nightly == service
    assert cli["header"] == "Bearer tok-1"


@responses.activate
def test_a_request_carries_the_connections_credentials_only(tmp_path: Path):
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    bearer = {"method": "bearer", "token_env": "T"}
    conn = FhirConnection.model_validate({"base_url": BASE + "/", "auth": bearer})
    with open_client(conn, {"T": "tok-2"}) as client:
        client.read("Patient", "p1")
    sent = responses.calls[0].request.headers
    assert (sent["Authorization"], sent["Prefer"]) == ("Bearer tok-2", "handling=strict")


def test_module_defaults_match_the_auth_module_and_the_options():
    assert connection.DEFAULT_TOKEN_ENV == fhir_auth.DEFAULT_TOKEN_ENV
    assert connection.DEFAULT_SCOPE == fhir_auth.DEFAULT_SCOPE == server_args.DEFAULT_SCOPE
    assert connection.AUTH_METHODS == server_args.AUTH_CHOICES


# -- the 0.1 keys --------------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def warned() -> Iterator[list[str]]:
    """The warning lines of the `ips_screen.config` logger, however the CLI set up logging."""
    handler = _Lines()
    logger = logging.getLogger("ips_screen.config")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def test_old_practice_keys_load_with_one_deprecation_line(
    tmp_path: Path, key_file: Path, warned: list[str]
):
    old = write(
        tmp_path,
        "old.toml",
        f'[source]\nkind = "server"\nbase_url = "{BASE}/"\n'
        f'[auth]\nmethod = "smart"\nclient_id = "ips"\nprivate_key_file = "{key_file.name}"\n'
        'kid = "k1"\n[export]\nmode = "rest"\npage_size = 200\n[output]\nstate_dir = "state"\n',
    )
    auth = f'method = "smart"\nclient_id = "ips"\nprivate_key_file = "{key_file.name}"\nkid = "k1"'
    new = write(
        tmp_path,
        "new.toml",
        f'[source]\nkind = "server"\n[fhir]\nbase_url = "{BASE}"\npage_size = 200\n'
        f"[fhir.auth]\n{auth}\n{PRACTICE_TAIL}",
    )
    assert load_practice(old) == load_practice(new)
    load_practice(old)  # logged once per file
    [line] = warned
    assert str(old) in line and "\n" not in line
    assert "[auth] -> [fhir.auth]" in line and "[source] base_url -> [fhir] base_url" in line
    assert "[export] page_size -> [fhir] page_size" in line and "until ips-screen 0.2" in line


def test_old_practice_keys_of_a_files_source_are_ignored_as_before(
    tmp_path: Path, warned: list[str]
):
    path = write(
        tmp_path,
        "files.toml",
        '[source]\nkind = "files"\npath = "data"\n[auth]\nmethod = "none"\n'
        '[export]\npage_size = 50\n[output]\nstate_dir = "state"\n',
    )
    assert load_practice(path).fhir is None
    [line] = warned
    assert "[auth] -> nothing" in line


def test_old_serve_keys_load_with_one_deprecation_line(
    tmp_path: Path, key_file: Path, warned: list[str]
):
    old = write(
        tmp_path,
        "old.toml",
        f'{SERVE_HEAD}[fhir]\nbase_url = "{BASE}"\nauth = "smart"\nclient_id = "ips"\n'
        f'private_key = "{key_file.name}"\nkid = "k1"\ntimeout_seconds = 7\n',
    )
    auth = f'method = "smart"\nclient_id = "ips"\nprivate_key_file = "{key_file.name}"\nkid = "k1"'
    new = write(
        tmp_path,
        "new.toml",
        f'{SERVE_HEAD}[fhir]\nbase_url = "{BASE}"\nread_timeout_seconds = 7\n[fhir.auth]\n{auth}\n',
    )
    assert load_serve(old) == load_serve(new)
    assert load_serve(old).fhir.read_timeout_seconds == 7
    [line] = warned
    assert str(old) in line
    assert "fhir.private_key -> fhir.auth.private_key_file" in line
    assert "fhir.auth -> fhir.auth.method" in line
    assert "fhir.timeout_seconds -> fhir.read_timeout_seconds" in line


def test_the_service_keeps_its_own_defaults(tmp_path: Path, key_file: Path):
    auth = f'method = "smart"\nclient_id = "i"\nprivate_key_file = "{key_file.name}"\nkid = "k"'
    path = write(
        tmp_path, "s.toml", f'{SERVE_HEAD}[fhir]\nbase_url = "{BASE}"\n[fhir.auth]\n{auth}\n'
    )
    config = load_serve(path).fhir
    assert config.read_timeout_seconds == 20
    assert isinstance(config.auth, connection.SmartAuthSettings)
    assert "system/Task.cruds" in config.auth.scope


# -- errors name the file and the key ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fhir", "line", "message"),
    [
        (
            f'base_url = "{BASE}"\n[fhir.auth]\nmethod = "smart"\nclient_id = "c"',
            5,  # the table
            "[fhir.auth]: method = 'smart' needs private_key_file, kid",
        ),
        (
            f'base_url = "{BASE}"\n[fhir.auth]\nmethod = "bearer"\ntokn_env = "X"',
            7,
            "[fhir.auth] tokn_env: unknown key",
        ),
        (f'base_url = "{BASE}"\npage_size = 0', 5, "[fhir] page_size: "),
        (
            f'base_url = "{BASE}"\n[fhir.auth]\ntoken_env = "X"',
            5,  # no method: its table
            "[fhir.auth]: method must be one of 'none', 'bearer' or 'smart'",
        ),
        (
            f'base_url = "{BASE}"\n[fhir.auth]\nmethod = "oauth"',
            6,  # the method written
            "[fhir.auth]: method must be one of 'none', 'bearer' or 'smart'",
        ),
        ('base_url = "http://f.example/R4"\n[fhir.auth]\nmethod = "bearer"', 3, "without https"),
        ('base_url = "ftp://f.example/R4"', 4, "[fhir] base_url: "),
    ],
)
def test_practice_errors_name_the_file_line_and_key(
    tmp_path: Path, fhir: str, line: int, message: str
):
    path = write(tmp_path, "p.toml", f'[source]\nkind = "server"\n[fhir]\n{fhir}\n{PRACTICE_TAIL}')
    with pytest.raises(ConfigError) as raised:
        load_practice(path)
    assert str(raised.value).startswith(f"{path}:{line}: ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ('[source]\nkind = "server"\n', "", "[fhir] base_url is required when [source] kind"),
        (
            f'[source]\nkind = "server"\nbase_url = "{BASE}"\n[fhir]\nbase_url = "{BASE}"\n',
            ":3",  # the old key
            "[source] base_url: also given as [fhir] base_url; keep only [fhir] base_url",
        ),
        (
            f'[source]\nkind = "files"\npath = "d"\n[fhir]\nbase_url = "{BASE}"\n',
            "",  # a rule across sections: it names its keys itself
            "[fhir] only applies when [source] kind = 'server'",
        ),
    ],
)
def test_practice_source_and_connection_must_agree(
    tmp_path: Path, text: str, where: str, message: str
):
    path = write(tmp_path, "p.toml", text + '[output]\nstate_dir = "s"\n')
    with pytest.raises(ConfigError, match=f"^{path}{where}: .*") as raised:
        load_practice(path)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("fhir", "line", "message"),
    [
        ('[fhir.auth]\nmethod = "smart"\nclient_id = "c"', 6, "fhir.auth: method = 'smart' needs"),
        ('[fhir.auth]\nmethod = "none"\ntoken_env = "X"', 8, "fhir.auth.token_env: unknown key"),
        ('private_key = "k.pem"\n', 6, "fhir.private_key: "),  # an old key, named as written
    ],
)
def test_serve_errors_name_the_file_line_and_key(
    tmp_path: Path, fhir: str, line: int, message: str
):
    path = write(tmp_path, "s.toml", f'{SERVE_HEAD}[fhir]\nbase_url = "{BASE}"\n{fhir}\n')
    with pytest.raises(ConfigError) as raised:
        load_serve(path)
    assert str(raised.value).startswith(f"{path}:{line}: ")
    assert message in str(raised.value)


EMPTY = 'an empty path; write "." for the config file\'s own folder'


@pytest.mark.parametrize(
    ("name", "text", "line", "where"),
    [
        (
            "p.toml",
            '[source]\nkind = "files"\npath = ""\n[output]\nstate_dir = "s"\n',
            3,
            "[source] path",
        ),
        (
            "p.toml",
            '[source]\nkind = "files"\npath = "d"\n[output]\nstate_dir = " "\n',
            5,
            "[output] state_dir",
        ),
        (
            "p.toml",
            f'[source]\nkind = "files"\npath = "d"\n[screen]\nrules = ""\n{PRACTICE_TAIL}',
            5,
            "[screen] rules",
        ),
        (
            "p.toml",
            f'[source]\nkind = "server"\n[fhir]\nbase_url = "{BASE}"\n[fhir.auth]\n'
            f'method = "smart"\nclient_id = "c"\nkid = "k"\nprivate_key_file = ""\n{PRACTICE_TAIL}',
            9,
            "[fhir.auth] private_key_file",
        ),
        ("s.toml", f'state_dir = ""\n{SERVE_HEAD}[fhir]\nbase_url = "{BASE}"\n', 1, "state_dir"),
        ("s.toml", f'rules = ""\n{SERVE_HEAD}[fhir]\nbase_url = "{BASE}"\n', 1, "rules"),
        (
            "s.toml",
            f'{SERVE_HEAD}[fhir]\nbase_url = "{BASE}"\n[review_page]\nusers_file = ""\n',
            7,
            "review_page.users_file",
        ),
    ],
)
def test_an_empty_path_is_refused_not_read_as_this_folder(
    tmp_path: Path, name: str, text: str, line: int, where: str
):
    """pydantic reads "" as ".": a practice whose state_dir or source path was left empty
    would keep its store beside the config, or read the config's folder as its records."""
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as raised:
        (load_practice if name == "p.toml" else load_serve)(path)
    assert str(raised.value) == f"{path}:{line}: {where}: {EMPTY}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://ips:s3cret-pw@f.example/R4", "holds no user name or password"),
        ("https://f.example/R4?access_token=s3cret-pw", "has no query or fragment"),
        ("https://f.example/R4#s3cret-pw", "has no query or fragment"),
        ("ftp://ips:s3cret-pw@f.example/R4", "starts with http:// or https://"),
    ],
)
def test_a_base_url_with_a_credential_in_it_is_refused_without_repeating_it(
    tmp_path: Path, capsys, url: str, message: str
):
    """A password in the URL would go out as Basic auth and be kept wherever the URL is named
    (the store, the locks, messages); a token in a query string likewise. Refused in
    practice.toml, serve.toml and on the command line alike, the URL shown without them."""
    from ips_screen.cli.main import main

    practice = write(
        tmp_path,
        "p.toml",
        f'[source]\nkind = "server"\n[fhir]\nbase_url = "{url}"\n{PRACTICE_TAIL}',
    )
    serve = write(tmp_path, "s.toml", f'{SERVE_HEAD}[fhir]\nbase_url = "{url}"\n')
    for path, load in ((practice, load_practice), (serve, load_serve)):
        with pytest.raises(ConfigError, match=message) as raised:
            load(path)
        assert "s3cret" not in str(raised.value) and "f.example/R4" in str(raised.value)
    if url.startswith("https"):  # (another scheme is a path or a Spark URI on the command line)
        assert main(["screen", url, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "s3cret" not in err, err


def test_cli_errors_name_the_option():
    with pytest.raises(UserError, match=r"^--token-env: this looks like a secret"):
        server_args.connection_from_args(
            cli_args("--auth", "bearer", "--token-env", "ghp_" + "a" * 36), BASE
        )


def test_a_nightly_run_with_old_keys_works_and_says_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from ips_screen.cli.main import main
    from tests.support.paths import FIXTURES

    path = write(
        tmp_path,
        "practice.toml",
        f'[source]\nkind = "files"\npath = "{FIXTURES}"\n[auth]\nmethod = "none"\n'
        '[export]\npage_size = 100\n[screen]\nwrite = false\n[output]\nstate_dir = "state"\n',
    )
    argv = ["nightly", "--config", str(path), "--as-of", "2026-11-26"]
    assert main(argv, {}) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]
    assert len(err) == 1
    assert f"{path}: deprecated keys" in err[0] and "[auth] -> nothing" in err[0]
