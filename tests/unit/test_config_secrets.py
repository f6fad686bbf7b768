"""Secrets where a NAME is expected are refused and never repeated (stderr, logs, the run ledger);
SMART client ids, however token-like, are accepted, also from a variable or a file."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ips_screen.cli.main import main
from ips_screen.errors import ConfigError
from ips_screen.fhir.connection import open_client
from ips_screen.nightly.config import load_config
from ips_screen.secret_values import env_name_problem, looks_random, redact, secret_kind
from ips_screen.store import StateStore
from tests.support.paths import FROZEN_NOW

GITHUB = "ghp_" + "Zq8rT2vN5xK1mB7wL4yH9cJ3dF6gS0aP2eU8"
JWT = "eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJpcHMtc2NyZWVuIn0.c2lnbmF0dXJlX2J5dGVz"
RANDOM = "Xk9qP2wZ7rT4vB8nM3yL6cJ1hG5dF0sA"
AWS = "AKIA" + "Z7Q4R2N8T6W1X3Y5"
SECRETS = [GITHUB, JWT, RANDOM, AWS, "xoxb-1234-5678-abcdefghijkl", "sk-" + "a1B2c3D4e5F6g7H8i9J0"]
# A JWT-shaped client id, as the SMART reference Bulk Data server issues them.
CLIENT_ID = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJqd2tzX3VybCI6Imh0dHA6Ly8xMjcuMC4wLjEifQ."
    "bm90LWEtc2VjcmV0LWp1c3QtYW4taWQ"
)


def practice_toml(folder: Path, auth: str) -> Path:
    path = folder / "practice.toml"
    path.write_text(
        '[source]\nkind = "server"\n[fhir]\nbase_url = "http://127.0.0.1:9/fhir"\n'
        f"[fhir.auth]\n{auth}\n"
        '[export]\nmode = "rest"\n[output]\nstate_dir = "state"\n'
    )
    return path


def assert_nowhere(secret: str, *texts: str, folder: Path | None = None) -> None:
    for text in texts:
        assert secret not in text
        assert secret[:12] not in text  # not even its start
    if folder is not None and folder.exists():
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("secret", SECRETS)
def test_the_checker_names_the_kind_never_the_value(secret: str):
    problem = env_name_problem(secret)
    assert problem is not None and "looks like a secret" in problem
    assert secret not in problem and secret[:8] not in problem
    assert "[redacted]" in redact(f"environment variable {secret} is not set") or (
        secret == RANDOM  # high entropy only counts where a name is expected
    )


@pytest.mark.parametrize(
    "name",
    ["IPS_SCREEN_FHIR_TOKEN", "PRACTICE_A81001_TOKEN_2026", "PracticeA81001FhirToken", "tok"],
)
def test_variable_names_are_not_secrets(name: str):
    assert env_name_problem(name) is None
    assert secret_kind(name) is None and not looks_random(name)


@pytest.mark.parametrize("secret", SECRETS)
def test_nightly_with_a_token_as_token_env_never_echoes_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    secret: str,
):
    config = practice_toml(tmp_path, f'method = "bearer"\ntoken_env = "{secret}"')
    caplog.set_level(logging.DEBUG, logger="ips_screen")
    code = main(["-v", "nightly", "--config", str(config), "--as-of", "2026-11-26"], {})
    captured = capsys.readouterr()
    assert code == 4
    assert "[fhir.auth] token_env: this looks like a secret" in captured.err
    assert_nowhere(secret, captured.out, captured.err, caplog.text, folder=tmp_path / "state")
    assert config.read_text().count(secret) == 1  # (the file itself still holds it)


def test_screen_with_a_token_as_token_env_flag_never_echoes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="ips_screen")
    args = ["screen", "http://127.0.0.1:9/fhir", "--auth", "bearer", "--token-env", GITHUB]
    code = main([*args, "--out", str(tmp_path / "out")], {})
    captured = capsys.readouterr()
    assert code == 2
    assert "--token-env: this looks like a secret (a GitHub token)" in captured.err
    assert_nowhere(GITHUB, captured.out, captured.err, caplog.text)


@pytest.mark.parametrize(
    ("section", "key"), [("fhir", "token_env"), ("review_page", "session_secret_env")]
)
def test_serve_config_with_a_token_as_a_variable_name_never_echoes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, key: str
):
    fhir = 'base_url = "http://127.0.0.1:9/fhir"\nauth = "bearer"\n'
    fhir += f'token_env = "{GITHUB}"\n' if key == "token_env" else ""
    page = (
        f'users_file = "users.txt"\nsession_secret_env = "{GITHUB if section != "fhir" else "S"}"'
    )
    (tmp_path / "users.txt").write_text("")
    config = tmp_path / "serve.toml"
    config.write_text(
        'public_base_url = "http://127.0.0.1:8080"\n[ehr_auth]\ndisabled = true\n'
        f"[fhir]\n{fhir}[review_page]\n{page}\n"
    )
    code = main(["serve", "--config", str(config)], {"S": "x" * 40})
    captured = capsys.readouterr()
    assert code == 4
    assert f"{section}.{key}: " in captured.err
    assert "this looks like a secret (a GitHub token)" in captured.err
    assert_nowhere(GITHUB, captured.out, captured.err)


def test_the_ledger_stores_messages_with_secrets_redacted(tmp_path: Path):
    with StateStore(tmp_path / "store.sqlite") as store:
        run = store.ledger.start_run(
            started=FROZEN_NOW, as_of=FROZEN_NOW.date(), ruleset="r@1", mode="full"
        )
        store.ledger.finish_run(
            run,
            finished=datetime.now(tz=FROZEN_NOW.tzinfo),
            status="failed",
            counts={},
            new_proposals=0,
            errors=[f"environment variable {GITHUB} is not set", f"bearer {JWT}"],
        )
        errors = store.ledger.recent_runs(1)[0]["errors"]
    assert errors == ["environment variable [redacted] is not set", "bearer [redacted]"]


# -- SMART client ids are not secrets ------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.mark.parametrize("how", ["inline", "env", "file"])
def test_a_jwt_shaped_client_id_is_accepted_inline_from_a_variable_or_a_file(
    tmp_path: Path, key_file: Path, how: str
):
    (tmp_path / "client-id.txt").write_text(f"{CLIENT_ID}\n")
    given = {
        "inline": f'client_id = "{CLIENT_ID}"',
        "env": 'client_id_env = "BULK_CLIENT_ID"',
        "file": 'client_id_file = "client-id.txt"',
    }[how]
    config = load_config(
        practice_toml(
            tmp_path, f'method = "smart"\n{given}\nprivate_key_file = "key.pem"\nkid = "k1"'
        )
    )
    with open_client(config.server, {"BULK_CLIENT_ID": CLIENT_ID}) as client:
        assert client.auth.client_id == CLIENT_ID  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("auth", "environ", "message"),
    [
        (
            'client_id = "a"\nclient_id_env = "B"',
            {},
            "[fhir.auth]: give one of client_id, client_id_env or client_id_file",
        ),
        ('client_id_env = "BULK_CLIENT_ID"', {}, "environment variable BULK_CLIENT_ID is not set"),
        ('client_id_file = "missing.txt"', {}, "[fhir.auth] client_id_file: cannot read"),
        (f'client_id_env = "{GITHUB}"', {}, "[fhir.auth] client_id_env: this looks like a secret"),
    ],
)
def test_client_id_settings_errors(
    tmp_path: Path, key_file: Path, auth: str, environ: dict[str, str], message: str
):
    path = practice_toml(
        tmp_path, f'method = "smart"\n{auth}\nprivate_key_file = "key.pem"\nkid = "k"'
    )
    with pytest.raises(ConfigError) as raised:
        open_client(load_config(path).server, environ).close()
    assert message in str(raised.value)
    assert GITHUB not in str(raised.value)
