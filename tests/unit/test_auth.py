"""Authentication strategies: the SMART client assertion, token caching and renewal, and the
origin check that keeps credentials on the FHIR server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ips_screen.errors import ConfigError, ServerError
from ips_screen.fhir.auth import (
    ASSERTION_TYPE,
    BearerTokenAuth,
    NoAuth,
    SmartBackendAuth,
    load_private_key,
    origin_of,
)

BASE = "https://fhir.example.org/r4"
TOKEN_URL = "https://auth.example.org/oauth2/token"
DISCOVERY = f"{BASE}/.well-known/smart-configuration"
NOW = 1_900_000_000.0


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_key(
    path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None = None
) -> Path:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def smart_auth(key_path: Path, clock: FakeClock | None = None, **options) -> SmartBackendAuth:
    return SmartBackendAuth(
        BASE,
        client_id="ips-screen-practice-1",
        private_key_path=key_path,
        kid="key-2026",
        clock=clock or FakeClock(),
        **options,
    )


# -- the client assertion -------------------------------------------------------------------------


@pytest.mark.parametrize(("key_name", "alg"), [("rsa_key", "RS384"), ("ec_key", "ES384")])
def test_client_assertion_header_and_claims(mock, tmp_path, request, key_name, alg):
    key = request.getfixturevalue(key_name)
    mock.get(
        DISCOVERY,
        json={"token_endpoint": TOKEN_URL, "grant_types_supported": ["client_credentials"]},
    )
    auth = smart_auth(write_key(tmp_path / "key.pem", key))
    assert auth.algorithm == alg

    assertion = auth.client_assertion()

    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": alg, "kid": "key-2026", "typ": "JWT"}
    claims = jwt.decode(
        assertion,
        key.public_key(),
        algorithms=[alg],
        audience=TOKEN_URL,
        options={"verify_exp": False},  # the claims were made at the fake clock's time
    )
    assert claims["iss"] == claims["sub"] == "ips-screen-practice-1"
    assert claims["aud"] == TOKEN_URL
    assert NOW < claims["exp"] <= NOW + 300
    assert set(claims) == {"iss", "sub", "aud", "exp", "jti"}
    assert (
        claims["jti"]
        != jwt.decode(
            auth.client_assertion(),
            key.public_key(),
            algorithms=[alg],
            audience=TOKEN_URL,
            options={"verify_exp": False},
        )["jti"]
    )


def test_assertion_lifetime_never_exceeds_five_minutes(mock, tmp_path, ec_key):
    auth = smart_auth(
        write_key(tmp_path / "key.pem", ec_key), token_url=TOKEN_URL, assertion_lifetime=3600
    )
    mock.get(DISCOVERY, status=404)
    claims = jwt.decode(auth.client_assertion(), options={"verify_signature": False})
    assert claims["exp"] == NOW + 300


def test_token_url_falls_back_to_configured_one(mock, tmp_path, ec_key):
    mock.get(DISCOVERY, status=404, body="not here")
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key), token_url=TOKEN_URL)
    assert auth.token_url == TOKEN_URL


def test_discovered_token_url_wins(mock, tmp_path, ec_key):
    discovered = "https://login.example.org/token"
    mock.get(DISCOVERY, json={"token_endpoint": discovered})
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key), token_url=TOKEN_URL)
    assert auth.token_url == discovered


def test_no_token_url_at_all(mock, tmp_path, ec_key):
    mock.get(DISCOVERY, body=requests.exceptions.ConnectionError("refused"))
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key))
    with pytest.raises(ServerError, match="cannot find the token endpoint"):
        auth.access_token()


def test_plain_http_token_endpoint_is_refused(mock, tmp_path, ec_key):
    mock.get(DISCOVERY, json={"token_endpoint": "http://auth.example.org/token"})
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key))
    with pytest.raises(ServerError, match="without https"):
        auth.access_token()
    assert len(mock.calls) == 1  # nothing was posted


# -- keys -----------------------------------------------------------------------------------------


def test_key_type_picks_the_algorithm(tmp_path, rsa_key, ec_key):
    assert load_private_key(write_key(tmp_path / "r.pem", rsa_key))[1] == "RS384"
    assert load_private_key(write_key(tmp_path / "e.pem", ec_key))[1] == "ES384"


def test_wrong_curve_is_a_config_error(tmp_path):
    path = write_key(tmp_path / "p256.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="P-384"):
        load_private_key(path)


def test_encrypted_or_missing_key_is_a_config_error(tmp_path, ec_key):
    with pytest.raises(ConfigError, match="unencrypted PEM"):
        load_private_key(write_key(tmp_path / "enc.pem", ec_key, password=b"pw"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_private_key(tmp_path / "absent.pem")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="unencrypted PEM"):
        load_private_key(tmp_path / "junk.pem")


# -- tokens ---------------------------------------------------------------------------------------


def test_token_request_and_renewal_before_expiry(mock, tmp_path, ec_key):
    clock = FakeClock()
    mock.get(DISCOVERY, json={"token_endpoint": TOKEN_URL})
    mock.post(TOKEN_URL, json={"access_token": "first", "token_type": "Bearer", "expires_in": 300})
    mock.post(TOKEN_URL, json={"access_token": "second", "token_type": "Bearer", "expires_in": 300})
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key), clock=clock)

    assert auth.access_token() == "first"
    clock.now = NOW + 239  # still more than 60 s before expiry: cached
    assert auth.access_token() == "first"
    clock.now = NOW + 240  # within the 60 s margin: renewed
    assert auth.access_token() == "second"
    assert auth.authorization() == "Bearer second"

    posts = [c.request for c in mock.calls if c.request.method == "POST"]
    assert len(posts) == 2
    form = {k: v[0] for k, v in parse_qs(posts[0].body).items()}
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "system/*.rs"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "key-2026"
    assert "Authorization" not in posts[0].headers


def test_short_lived_token_renews_at_half_its_life(mock, tmp_path, ec_key):
    clock = FakeClock()
    mock.get(DISCOVERY, json={"token_endpoint": TOKEN_URL})
    mock.post(TOKEN_URL, json={"access_token": "a", "token_type": "bearer", "expires_in": 60})
    mock.post(TOKEN_URL, json={"access_token": "b", "token_type": "bearer", "expires_in": 60})
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key), clock=clock)
    assert auth.access_token() == "a"
    clock.now = NOW + 29
    assert auth.access_token() == "a"
    clock.now = NOW + 30
    assert auth.access_token() == "b"


def test_reauthenticate_drops_the_cached_token(mock, tmp_path, ec_key):
    mock.get(DISCOVERY, json={"token_endpoint": TOKEN_URL})
    mock.post(TOKEN_URL, json={"access_token": "a", "token_type": "bearer", "expires_in": 300})
    mock.post(TOKEN_URL, json={"access_token": "b", "token_type": "bearer", "expires_in": 300})
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key))
    assert auth.access_token() == "a"
    assert auth.reauthenticate() is True
    assert auth.access_token() == "b"


def test_refused_token_request(mock, tmp_path, ec_key):
    mock.get(DISCOVERY, json={"token_endpoint": TOKEN_URL})
    mock.post(
        TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "unknown kid"}
    )
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key))
    with pytest.raises(ServerError, match=r"HTTP 401: invalid_client \(unknown kid\)"):
        auth.access_token()


def test_token_endpoint_redirect_is_not_followed(mock, tmp_path, ec_key):
    mock.get(DISCOVERY, json={"token_endpoint": TOKEN_URL})
    mock.post(TOKEN_URL, status=307, headers={"Location": "https://evil.example.com/token"})
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key))
    with pytest.raises(ServerError, match="HTTP 307"):
        auth.access_token()
    assert [c.request.url for c in mock.calls] == [DISCOVERY, TOKEN_URL]


def test_token_response_without_access_token(mock, tmp_path, ec_key):
    mock.get(DISCOVERY, json={"token_endpoint": TOKEN_URL})
    mock.post(TOKEN_URL, json={"token_type": "bearer"})
    auth = smart_auth(write_key(tmp_path / "key.pem", ec_key))
    with pytest.raises(ServerError, match="no access_token"):
        auth.access_token()


# -- the origin check -----------------------------------------------------------------------------


def prepared(url: str, authorization: str | None = None) -> requests.PreparedRequest:
    headers = {"Authorization": authorization} if authorization else {}
    return requests.Request("GET", url, headers=headers).prepare()


@pytest.mark.parametrize(
    ("url", "attached"),
    [
        (f"{BASE}/Patient", True),
        ("https://FHIR.example.org:443/r4/metadata", True),
        ("https://fhir.example.org/other/path", True),  # same origin, other path
        ("http://fhir.example.org/r4/Patient", False),
        ("https://fhir.example.org:8443/r4/Patient", False),
        ("https://fhir.example.org.evil.example/r4/Patient", False),
        ("https://auth.example.org/token", False),
    ],
)
def test_bearer_token_only_for_the_fhir_origin(url, attached):
    auth = BearerTokenAuth(BASE, environ={"IPS_SCREEN_FHIR_TOKEN": "tok"})
    request = auth(prepared(url, authorization="Basic smuggled"))
    assert request.headers.get("Authorization") == ("Bearer tok" if attached else None)


def test_bearer_token_env_var(monkeypatch):
    monkeypatch.setenv("MY_FHIR_TOKEN", "  abc  ")
    auth = BearerTokenAuth(BASE, env_var="MY_FHIR_TOKEN")
    assert auth.authorization() == "Bearer abc"
    assert "abc" not in repr(auth)
    assert auth.reauthenticate() is False
    monkeypatch.delenv("MY_FHIR_TOKEN")
    with pytest.raises(ConfigError, match="MY_FHIR_TOKEN"):
        BearerTokenAuth(BASE, env_var="MY_FHIR_TOKEN")


def test_no_auth_strips_any_authorization():
    assert "Authorization" not in NoAuth(BASE)(prepared(f"{BASE}/Patient", "Bearer x")).headers


def test_origin_of_fills_default_ports():
    assert origin_of("https://Example.org/fhir") == ("https", "example.org", 443)
    assert origin_of("http://example.org:8080") == ("http", "example.org", 8080)
    with pytest.raises(ValueError):
        origin_of("/relative/path")
