"""Review-page passwords and the users file.

hash_password(pw)    "scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>" (n=2**14, r=8, p=1, random salt)
verify_password(pw, encoded)   constant-time check
load_users(path)     {username: UserEntry}, from lines "username:scrypt$...:Practitioner/ID"
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from ips_screen.errors import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MAX_SCRYPT_N = 2**20
_PRACTITIONER = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")
_USERNAME = re.compile(r"^[A-Za-z0-9._@\-]{1,128}$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` with a random 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not a scrypt$n$r$p$salt$hash string")
    n, r, p = (int(x) for x in parts[1:4])
    if n < 2 or n > _MAX_SCRYPT_N or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("scrypt parameters out of range")
    salt = base64.b64decode(parts[4], validate=True)
    digest = base64.b64decode(parts[5], validate=True)
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("salt or hash too short")
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches the ``scrypt$...`` string (constant-time comparison)."""
    try:
        n, r, p, salt, digest = _parse_hash(encoded)
    except ValueError:
        return False
    found = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=len(digest),
        maxmem=256 * 1024 * 1024,
    )
    return hmac.compare_digest(found, digest)


@dataclass(frozen=True)
class UserEntry:
    username: str
    password_hash: str
    practitioner: str  # "Practitioner/<id>" or "PractitionerRole/<id>"


def load_users(path: Path | str) -> dict[str, UserEntry]:
    """The users file, checked line by line (`ConfigError` names the line, never a hash)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"users file {path}: cannot read: {exc.strerror}") from None
    users: dict[str, UserEntry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        where = f"users file {path}, line {number}"
        if len(parts) != 3:
            raise ConfigError(f"{where}: expected username:scrypt$...:Practitioner/ID")
        name, encoded, ref = parts
        if not _USERNAME.match(name):
            raise ConfigError(f"{where}: bad username")
        try:
            _parse_hash(encoded)
        except ValueError as exc:
            raise ConfigError(f"{where}: bad password hash ({exc})") from None
        if not _PRACTITIONER.match(ref):
            raise ConfigError(f"{where}: expected Practitioner/<id> or PractitionerRole/<id>")
        if name in users:
            raise ConfigError(f"{where}: user {name!r} is listed twice")
        users[name] = UserEntry(name, encoded, ref)
    return users
