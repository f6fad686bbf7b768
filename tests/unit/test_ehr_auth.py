"""EHR authentication for CDS Hooks: the bearer JWT every call carries, and the attacks on it.

Keys are generated here, tokens built with PyJWT (or by hand where PyJWT refuses to make them), time
comes from a fake clock and JWKS documents from a fake fetcher: no network, no sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ips_screen.errors import ConfigError, UserError
from ips_screen.service.ehr_auth import (
    ALLOWED_ALGORITHMS,
    AuthRejected,
    EhrAuthConfig,
    EhrVerifier,
    ReplayCache,
    ReplayCacheFull,
    TrustedIssuer,
)

NOW = 1_900_000_000.0  # 2030: far from the wall clock the test session freezes, on purpose
ISS = "https://ehr.example.org"
OTHER_ISS = "https://other-ehr.example.org"
ENDPOINT = "https://cds.example.org/cds-services/ips-screen"
JKU = "https://ehr.example.org/.well-known/jwks.json"
JWKS_URL = "https://other-ehr.example.org/jwks.json"
RSA_KID = "rsa-1"
EC_KID = "ec-1"


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeFetcher:
    """Serves JWKS documents by URL and records every fetch."""

    def __init__(self, documents: dict[str, dict[str, Any]] | None = None) -> None:
        self.documents = dict(documents or {})
        self.calls: list[str] = []

    def __call__(self, url: str) -> dict[str, Any]:
        self.calls.append(url)
        if url not in self.documents:
            raise OSError(f"404 {url}")
        return self.documents[url]


# --------------------------------------------------------------------------- keys and tokens


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


@pytest.fixture(scope="module")
def jwks(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return {"keys": [public_jwk(rsa_key, RSA_KID), public_jwk(ec_key, EC_KID)]}


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISS,
        "sub": "ehr-client-id",
        "aud": ENDPOINT,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "jti": str(uuid.uuid4()),
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    payload: dict[str, Any],
    *,
    alg: str | None = None,
    kid: str | None = RSA_KID,
    **headers: Any,
) -> str:
    algorithm = alg or ("RS384" if isinstance(key, rsa.RSAPrivateKey) else "ES384")
    extra = {"kid": kid, **headers} if kid is not None else dict(headers)
    return jwt.encode(payload, key, algorithm=algorithm, headers=extra)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj).encode())


def bearer(token: str) -> str:
    return f"Bearer {token}"


# --------------------------------------------------------------------------- verifier fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fetcher(jwks: dict[str, Any]) -> FakeFetcher:
    return FakeFetcher({JKU: jwks, JWKS_URL: jwks})


@pytest.fixture
def config(jwks: dict[str, Any]) -> EhrAuthConfig:
    return EhrAuthConfig(
        issuers=[
            TrustedIssuer(iss=ISS, jwks=jwks, jku_allowlist=(JKU,)),
            TrustedIssuer(iss=OTHER_ISS, jwks_url=JWKS_URL),
        ]
    )


@pytest.fixture
def verifier(config: EhrAuthConfig, fetcher: FakeFetcher, clock: FakeClock) -> EhrVerifier:
    return EhrVerifier(config, fetch_jwks=fetcher, clock=clock)


def rejected(verifier: EhrVerifier, header: str | None, match: str | None = None) -> AuthRejected:
    with pytest.raises(AuthRejected, match=match) as info:
        verifier.verify(header, ENDPOINT)
    return info.value


# --------------------------------------------------------------------------- accepted


def test_valid_rs384_token_is_accepted(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    payload = claims()
    result = verifier.verify(bearer(sign(rsa_key, payload)), ENDPOINT)
    assert result == payload


def test_valid_es384_token_is_accepted(
    verifier: EhrVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    payload = claims()
    result = verifier.verify(bearer(sign(ec_key, payload, kid=EC_KID)), ENDPOINT)
    assert result == payload


def test_bearer_scheme_is_case_insensitive(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier.verify(f"bearer {sign(rsa_key, claims())}", ENDPOINT)


def test_aud_list_containing_the_endpoint_is_accepted(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = sign(rsa_key, claims(aud=["https://elsewhere.example.org", ENDPOINT]))
    verifier.verify(bearer(token), ENDPOINT)


def test_expiry_within_leeway_is_accepted(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    token = sign(rsa_key, claims(iat=int(NOW) - 100, exp=int(NOW) - 10))
    verifier.verify(bearer(token), ENDPOINT)


def test_wall_clock_is_never_used(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    # The session freezes the wall clock in 2026; these claims are valid only at the fake 2030 NOW.
    token = sign(rsa_key, claims(iat=int(NOW), exp=int(NOW) + 60))
    verifier.verify(bearer(token), ENDPOINT)


# --------------------------------------------------------------------------- algorithm attacks


def test_alg_none_is_rejected(verifier: EhrVerifier) -> None:
    token = f"{b64json({'alg': 'none', 'typ': 'JWT', 'kid': RSA_KID})}.{b64json(claims())}."
    rejected(verifier, bearer(token), "alg not allowed: 'none'")


@pytest.mark.parametrize("alg", ["None", "NONE", "", None])
def test_alg_none_variants_are_rejected(verifier: EhrVerifier, alg: str | None) -> None:
    header = {"typ": "JWT", "kid": RSA_KID} | ({} if alg is None else {"alg": alg})
    token = f"{b64json(header)}.{b64json(claims())}."
    rejected(verifier, bearer(token), "alg not allowed")


def test_hs256_signed_with_the_public_key_is_rejected(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    # Classic key confusion: HMAC with the RSA public key PEM as the shared secret.
    secret = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': RSA_KID})}.{b64json(claims())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(signature)}"
    rejected(verifier, bearer(token), "alg not allowed: 'HS256'")


def test_hmac_signature_under_an_allowed_alg_is_rejected(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    # The same confusion with the header claiming RS384: the signature cannot verify.
    secret = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64json({'alg': 'RS384', 'kid': RSA_KID})}.{b64json(claims())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha384).digest()
    rejected(verifier, bearer(f"{signing_input}.{b64url(signature)}"), "verification failed")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS384", "HS384", "EdDSA"])
def test_other_algorithms_are_rejected(verifier: EhrVerifier, alg: str) -> None:
    token = f"{b64json({'alg': alg, 'kid': RSA_KID})}.{b64json(claims())}.c2ln"
    rejected(verifier, bearer(token), "alg not allowed")


def test_alg_that_does_not_fit_the_key_is_rejected(
    verifier: EhrVerifier, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    # Signed ES384 but names the RSA key's kid.
    token = sign(ec_key, claims(), kid=RSA_KID)
    rejected(verifier, bearer(token), "does not fit ES384")


def test_tampered_payload_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    header, _, signature = sign(rsa_key, claims()).split(".")
    forged = f"{header}.{b64json(claims(sub='someone-else'))}.{signature}"
    rejected(verifier, bearer(forged), "verification failed")


def test_signed_by_another_key_with_a_known_kid_is_rejected(
    verifier: EhrVerifier, attacker_key: rsa.RSAPrivateKey
) -> None:
    rejected(verifier, bearer(sign(attacker_key, claims())), "verification failed")


def test_missing_kid_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    rejected(verifier, bearer(sign(rsa_key, claims(), kid=None)), "kid header missing")


def test_crit_header_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = f"{b64json({'alg': 'RS384', 'kid': RSA_KID, 'crit': ['x']})}.{b64json(claims())}.c2ln"
    rejected(verifier, bearer(token), "crit")


# --------------------------------------------------------------------------- claims


def test_wrong_aud_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, claims(aud="https://cds.example.org/cds-services/other"))
    rejected(verifier, bearer(token), "verification failed")


@pytest.mark.parametrize(
    "aud",
    [
        ENDPOINT + "/",
        ENDPOINT.upper(),
        "https://cds.example.org/cds-services",
    ],
)
def test_aud_must_be_the_exact_endpoint(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey, aud: str
) -> None:
    rejected(verifier, bearer(sign(rsa_key, claims(aud=aud))), "Audience")


def test_aud_list_without_the_endpoint_is_rejected(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = sign(rsa_key, claims(aud=["https://a.example.org", "https://b.example.org"]))
    rejected(verifier, bearer(token), "verification failed")


def test_missing_aud_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    rejected(verifier, bearer(sign(rsa_key, claims(aud=None))), "aud")


def test_expired_token_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, claims(iat=int(NOW) - 200, exp=int(NOW) - 31))
    rejected(verifier, bearer(token), "expired")


def test_token_expires_as_the_clock_moves(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    token = sign(rsa_key, claims(exp=int(NOW) + 60))
    clock.now = NOW + 91
    rejected(verifier, bearer(token), "expired")


def test_iat_in_the_future_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, claims(iat=int(NOW) + 120, exp=int(NOW) + 300))
    rejected(verifier, bearer(token), "issued in the future")


def test_nbf_in_the_future_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, claims(nbf=int(NOW) + 120))
    rejected(verifier, bearer(token), "nbf")


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "iss"])
def test_missing_required_claim_is_rejected(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey, claim: str
) -> None:
    rejected(verifier, bearer(sign(rsa_key, claims(**{claim: None}))), claim)


def test_missing_jti_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    rejected(verifier, bearer(sign(rsa_key, claims(jti=None))), "jti")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "1900000300", True])
def test_non_numeric_exp_is_rejected(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey, value: object
) -> None:
    rejected(verifier, bearer(sign(rsa_key, claims(exp=value))), "exp claim")


def test_lifetime_too_long_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, claims(iat=int(NOW), exp=int(NOW) + 3601))
    rejected(verifier, bearer(token), "lifetime")


def test_lifetime_at_the_maximum_is_accepted(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier.verify(bearer(sign(rsa_key, claims(exp=int(NOW) + 3600))), ENDPOINT)


def test_replayed_jti_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = bearer(sign(rsa_key, claims(jti="once")))
    verifier.verify(token, ENDPOINT)
    rejected(verifier, token, "replayed jti")
    # A different token reusing the jti is a replay too.
    rejected(verifier, bearer(sign(rsa_key, claims(jti="once", sub="x"))), "replayed jti")


def test_same_jti_from_another_issuer_is_not_a_replay(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier.verify(bearer(sign(rsa_key, claims(jti="shared"))), ENDPOINT)
    verifier.verify(bearer(sign(rsa_key, claims(jti="shared", iss=OTHER_ISS))), ENDPOINT)


def test_rejected_token_does_not_consume_its_jti(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    rejected(verifier, bearer(sign(rsa_key, claims(jti="j", aud="https://x.example.org"))))
    verifier.verify(bearer(sign(rsa_key, claims(jti="j"))), ENDPOINT)


# --------------------------------------------------------------------------- issuers and keys


def test_unknown_issuer_is_rejected(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey, fetcher: FakeFetcher
) -> None:
    token = sign(rsa_key, claims(iss="https://evil.example.org"), jku=JKU)
    rejected(verifier, bearer(token), "issuer not trusted")
    assert fetcher.calls == []


def test_unknown_kid_is_rejected(verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    rejected(verifier, bearer(sign(rsa_key, claims(), kid="rsa-9")), "no key with kid 'rsa-9'")


def test_jku_outside_the_allowlist_is_rejected_and_never_fetched(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey, fetcher: FakeFetcher
) -> None:
    for jku in [
        "https://evil.example.org/jwks.json",
        JKU + "?x=1",
        JKU.replace("https", "http"),
        JWKS_URL,  # another issuer's URL
    ]:
        fetcher.documents[jku] = {"keys": []}
        rejected(verifier, bearer(sign(rsa_key, claims(), jku=jku)), "jku not in the allowlist")
    assert fetcher.calls == []


def test_jku_in_the_allowlist_is_accepted_and_cached(
    config: EhrAuthConfig, rsa_key: rsa.RSAPrivateKey, jwks: dict[str, Any], clock: FakeClock
) -> None:
    # The issuer's inline JWKS lacks the key: only the jku can supply it.
    only_jku = EhrAuthConfig(issuers=[TrustedIssuer(iss=ISS, jku_allowlist=(JKU,))])
    fetcher = FakeFetcher({JKU: jwks})
    verifier = EhrVerifier(only_jku, fetch_jwks=fetcher, clock=clock)
    verifier.verify(bearer(sign(rsa_key, claims(), jku=JKU)), ENDPOINT)
    verifier.verify(bearer(sign(rsa_key, claims(), jku=JKU)), ENDPOINT)
    assert fetcher.calls == [JKU]


def test_jku_only_issuer_without_jku_is_rejected(
    rsa_key: rsa.RSAPrivateKey, jwks: dict[str, Any], clock: FakeClock
) -> None:
    config = EhrAuthConfig(issuers=[TrustedIssuer(iss=ISS, jku_allowlist=(JKU,))])
    fetcher = FakeFetcher({JKU: jwks})
    verifier = EhrVerifier(config, fetch_jwks=fetcher, clock=clock)
    rejected(verifier, bearer(sign(rsa_key, claims())), "none was sent")
    assert fetcher.calls == []


def test_jwks_url_is_cached_for_its_ttl(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey, fetcher: FakeFetcher, clock: FakeClock
) -> None:
    def token() -> str:
        return bearer(
            sign(rsa_key, claims(iss=OTHER_ISS, iat=int(clock.now), exp=int(clock.now) + 60))
        )

    verifier.verify(token(), ENDPOINT)
    clock.now += 299
    verifier.verify(token(), ENDPOINT)
    assert fetcher.calls == [JWKS_URL]
    clock.now += 1
    verifier.verify(token(), ENDPOINT)
    assert fetcher.calls == [JWKS_URL, JWKS_URL]


def test_unknown_kid_refetches_at_most_once_per_interval(
    verifier: EhrVerifier,
    rsa_key: rsa.RSAPrivateKey,
    attacker_key: rsa.RSAPrivateKey,
    fetcher: FakeFetcher,
    clock: FakeClock,
    jwks: dict[str, Any],
) -> None:
    def token(kid: str, key: rsa.RSAPrivateKey = rsa_key) -> str:
        payload = claims(iss=OTHER_ISS, iat=int(clock.now), exp=int(clock.now) + 60)
        return bearer(sign(key, payload, kid=kid))

    verifier.verify(token(RSA_KID), ENDPOINT)
    rejected(verifier, token("rotated"), "no key with kid")
    rejected(verifier, token("rotated"), "no key with kid")
    assert fetcher.calls == [JWKS_URL]  # too soon to refetch for an unknown kid
    # The EHR rotates its key; after the minimum interval the unknown kid triggers one refetch.
    fetcher.documents[JWKS_URL] = {"keys": [*jwks["keys"], public_jwk(attacker_key, "rotated")]}
    clock.now += 60
    verifier.verify(token("rotated", attacker_key), ENDPOINT)
    assert fetcher.calls == [JWKS_URL, JWKS_URL]


def test_jwks_fetch_failure_is_rejected(
    rsa_key: rsa.RSAPrivateKey, clock: FakeClock, config: EhrAuthConfig
) -> None:
    verifier = EhrVerifier(config, fetch_jwks=FakeFetcher(), clock=clock)
    rejected(verifier, bearer(sign(rsa_key, claims(iss=OTHER_ISS))), "fetching JWKS")


@pytest.mark.parametrize(
    "document", [{"keys": []}, {"nokeys": 1}, {"keys": [{"kty": "bogus", "kid": RSA_KID}]}]
)
def test_bad_fetched_jwks_is_rejected(
    rsa_key: rsa.RSAPrivateKey, clock: FakeClock, config: EhrAuthConfig, document: dict[str, Any]
) -> None:
    verifier = EhrVerifier(config, fetch_jwks=FakeFetcher({JWKS_URL: document}), clock=clock)
    rejected(verifier, bearer(sign(rsa_key, claims(iss=OTHER_ISS))), "JWKS")


def test_key_marked_for_another_alg_is_rejected(
    rsa_key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    jwk = {**public_jwk(rsa_key, RSA_KID), "alg": "RS256"}
    config = EhrAuthConfig(issuers=[TrustedIssuer(iss=ISS, jwks={"keys": [jwk]})])
    verifier = EhrVerifier(config, fetch_jwks=FakeFetcher(), clock=clock)
    rejected(verifier, bearer(sign(rsa_key, claims())), "is for 'RS256'")


def test_encryption_key_is_rejected(rsa_key: rsa.RSAPrivateKey, clock: FakeClock) -> None:
    jwk = {**public_jwk(rsa_key, RSA_KID), "use": "enc"}
    config = EhrAuthConfig(issuers=[TrustedIssuer(iss=ISS, jwks={"keys": [jwk]})])
    verifier = EhrVerifier(config, fetch_jwks=FakeFetcher(), clock=clock)
    rejected(verifier, bearer(sign(rsa_key, claims())), "not a signing key")


# --------------------------------------------------------------------------- the header itself


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc.def.ghi",
        "Bearer a.b",
        "Bearer a.b.c.d",
        "Bearer !!!.@@@.###",
        "Bearer e30.e30.",  # {} header: no alg
        "Bearer bm90IGpzb24.e30.",  # header is not JSON
        "Bearer WyJsaXN0Il0.e30.",  # header is a JSON list
        "Bearer abc.def.ghi extra",
        "Bearer " + "a" * 9000,
    ],
)
def test_missing_or_garbled_header_is_rejected(verifier: EhrVerifier, header: str | None) -> None:
    rejected(verifier, header)


def test_token_without_the_bearer_scheme_is_rejected(
    verifier: EhrVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    rejected(verifier, sign(rsa_key, claims()), "not 'Bearer <token>'")


def test_garbled_payload_is_rejected(verifier: EhrVerifier) -> None:
    token = f"{b64json({'alg': 'RS384', 'kid': RSA_KID})}.{b64url(b'not json')}.c2ln"
    rejected(verifier, bearer(token))


def test_auth_rejected_is_not_a_user_error() -> None:
    # The HTTP layer answers 401 without detail; the CLI's UserError handling must not show it.
    assert issubclass(AuthRejected, Exception)
    assert not issubclass(AuthRejected, UserError)
    assert AuthRejected("why").reason == "why"
    assert ALLOWED_ALGORITHMS == ("RS384", "ES384")


# --------------------------------------------------------------------------- replay cache


def test_replay_cache_keeps_entries_until_expiry() -> None:
    cache = ReplayCache()
    assert cache.add(ISS, "a", expires_at=NOW + 10, now=NOW)
    assert not cache.add(ISS, "a", expires_at=NOW + 10, now=NOW + 10)
    assert cache.add(ISS, "a", expires_at=NOW + 20, now=NOW + 11)  # pruned, then re-added
    assert len(cache) == 1


def test_replay_cache_is_bounded_and_prunes() -> None:
    cache = ReplayCache(max_entries=2)
    assert cache.add(ISS, "a", expires_at=NOW + 10, now=NOW)
    assert cache.add(ISS, "b", expires_at=NOW + 100, now=NOW)
    with pytest.raises(ReplayCacheFull):
        cache.add(ISS, "c", expires_at=NOW + 100, now=NOW)
    assert cache.add(ISS, "c", expires_at=NOW + 100, now=NOW + 11)  # "a" expired, room again
    assert len(cache) == 2


def test_full_replay_cache_fails_closed(
    config: EhrAuthConfig, rsa_key: rsa.RSAPrivateKey, clock: FakeClock
) -> None:
    verifier = EhrVerifier(
        config, fetch_jwks=FakeFetcher(), clock=clock, replay_cache=ReplayCache(max_entries=1)
    )
    verifier.verify(bearer(sign(rsa_key, claims())), ENDPOINT)
    rejected(verifier, bearer(sign(rsa_key, claims())), "replay cache full")


def test_replay_cache_is_thread_safe() -> None:
    cache = ReplayCache()
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        for index in range(200):
            results.append(cache.add(ISS, f"jti-{index}", expires_at=NOW + 60, now=NOW))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 200
    assert len(cache) == 200


# --------------------------------------------------------------------------- configuration


def test_config_loads_from_a_plain_dict(jwks: dict[str, Any]) -> None:
    config = EhrAuthConfig.from_dict(
        {
            "issuers": [
                {"iss": ISS, "jwks": jwks, "jku_allowlist": [JKU]},
                {"iss": OTHER_ISS, "jwks_url": JWKS_URL},
            ],
            "leeway_seconds": 10,
        }
    )
    assert config.issuers[0].jku_allowlist == (JKU,)
    assert config.leeway_seconds == 10
    assert config.max_lifetime_seconds == 3600


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"issuers": [{"iss": ISS, "jwks_url": JWKS_URL, "jwk_url": "x"}]}, "unknown key"),
        ({"issuers": [{"iss": ISS, "jwks_url": JWKS_URL}], "leway": 5}, "unknown key"),
        ({"issuers": []}, "issuers"),
        ({"issuers": [{"iss": ISS}]}, "needs jwks, jwks_url or jku_allowlist"),
        ({"issuers": [{"iss": ISS, "jwks_url": "http://ehr.example.org/j"}]}, "https"),
        ({"issuers": [{"iss": ISS, "jku_allowlist": ["ftp://x"]}]}, "https"),
        ({"issuers": [{"iss": ISS, "jwks_url": JWKS_URL}], "leeway_seconds": "30"}, "integer"),
        ({"issuers": [{"iss": ISS, "jwks_url": JWKS_URL}], "leeway_seconds": -1}, "leeway"),
        (
            {"issuers": [{"iss": ISS, "jwks_url": JWKS_URL}, {"iss": ISS, "jwks_url": JWKS_URL}]},
            "listed twice",
        ),
        ({"issuers": [{"iss": ISS, "jwks": {"keys": []}}]}, "non-empty"),
        (
            {"issuers": [{"iss": ISS, "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}]},
            "symmetric",
        ),
    ],
)
def test_bad_config_is_a_config_error(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EhrAuthConfig.from_dict(data)


def test_private_key_in_config_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    private = RSAAlgorithm.to_jwk(rsa_key, as_dict=True)
    with pytest.raises(ConfigError, match="private key material"):
        EhrAuthConfig.from_dict(
            {"issuers": [{"iss": ISS, "jwks": {"keys": [{**private, "kid": "k"}]}}]}
        )
