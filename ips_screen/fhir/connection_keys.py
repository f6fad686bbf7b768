"""The FHIR connection keys of ips-screen 0.1, read into the `[fhir]` shape until 0.2.

Before `FhirConnection`, the practice config and the service config described a FHIR server each
their own way. Their old keys still load (`upgrade_practice_keys`, `upgrade_serve_keys`): the
loader logs one deprecation line per file (`log_deprecations`), naming the file and each new
key, and the old keys are removed in ips-screen 0.3.

    practice.toml                           serve.toml
    [source] base_url   -> [fhir] base_url  [fhir] auth = "..."     -> [fhir.auth] method
    [auth] ...          -> [fhir.auth] ...  [fhir] token_env, client_id, kid, scope, token_url
    [export] page_size  -> [fhir] page_size                         -> [fhir.auth] (same names)
                                            [fhir] private_key      -> [fhir.auth] private_key_file
                                            [fhir] timeout_seconds  -> [fhir] read_timeout_seconds

Errors in a value given under an old key name the old key (`old_key_label`), as the user wrote it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ips_screen.errors import ConfigError
from ips_screen.secret_values import env_name_problem

log = logging.getLogger("ips_screen.config")

READ_UNTIL = "0.2"  # the last minor version that reads the old keys
_SERVE_AUTH_KEYS = {
    "token_env": "token_env",
    "client_id": "client_id",
    "private_key": "private_key_file",
    "kid": "kid",
    "scope": "scope",
    "token_url": "token_url",
}
_warned: set[str] = set()


@dataclass(frozen=True)
class Moved:
    """An old key and where its value now is."""

    old: str  # as the file names it: "[auth]", "[source] base_url", "fhir.private_key"
    new: str  # the key to write instead: "[fhir.auth]", "fhir.auth.private_key_file"
    loc: tuple[str, ...]  # the new location in the data: ("fhir", "auth")


def upgrade_practice_keys(data: dict[str, Any]) -> tuple[dict[str, Any], list[Moved]]:
    """A practice config's data with the 0.1 connection keys moved into `[fhir]`."""
    data = {**data}
    moved: list[Moved] = []
    fhir = data.get("fhir")
    fhir = dict(fhir) if isinstance(fhir, dict) else fhir
    source = data.get("source")
    if isinstance(source, dict) and "base_url" in source:
        source = dict(source)
        fhir = _put(fhir, "base_url", source.pop("base_url"), "[source] base_url")
        data["source"] = source
        moved.append(Moved("[source] base_url", "[fhir] base_url", ("fhir", "base_url")))
    files = isinstance(source, dict) and source.get("kind") == "files"
    export = data.get("export")
    if isinstance(export, dict) and "page_size" in export:
        export = dict(export)
        page_size = export.pop("page_size")
        data["export"] = export
        if files:  # 0.1 ignored it when reading files
            moved.append(Moved("[export] page_size", "nothing (files are not paged)", ()))
        else:
            fhir = _put(fhir, "page_size", page_size, "[export] page_size")
            moved.append(Moved("[export] page_size", "[fhir] page_size", ("fhir", "page_size")))
    if "auth" in data:
        auth = data.pop("auth")
        if files:  # 0.1 ignored it when reading files
            moved.append(Moved("[auth]", "nothing (files need no credentials)", ()))
        else:
            if isinstance(auth, dict):
                auth = {"method": "none", **auth}
            fhir = _put(fhir, "auth", auth, "[auth]")
            moved.append(Moved("[auth]", "[fhir.auth]", ("fhir", "auth")))
    if fhir is not None:
        data["fhir"] = fhir
    return data, moved


def upgrade_serve_keys(data: dict[str, Any]) -> tuple[dict[str, Any], list[Moved]]:
    """A service config's data with the 0.1 `[fhir]` keys moved into the `[fhir]` shape."""
    fhir = data.get("fhir")
    if not isinstance(fhir, dict):
        return data, []
    fhir = dict(fhir)
    moved: list[Moved] = []
    old_auth = {k: fhir.pop(k) for k in _SERVE_AUTH_KEYS if k in fhir}
    if isinstance(fhir.get("auth"), str) or old_auth:
        method = fhir.pop("auth", "none")
        if method is not None and not isinstance(method, str):
            raise ConfigError(
                "fhir.auth: a table (method = ...), or the deprecated method name",
                key=("fhir", "auth"),
            )
        if method is not None:
            moved.append(Moved("fhir.auth", "fhir.auth.method", ("fhir", "auth", "method")))
        auth: dict[str, Any] = {"method": method}
        for old, value in old_auth.items():
            problem = env_name_problem(value) if isinstance(value, str) else None
            if (
                old == "token_env" and problem is not None
            ):  # never repeats the value: it may be the token itself
                raise ConfigError(f"fhir.token_env: {problem}", key=("fhir", "token_env"))
            auth[_SERVE_AUTH_KEYS[old]] = value
            new = f"fhir.auth.{_SERVE_AUTH_KEYS[old]}"
            moved.append(Moved(f"fhir.{old}", new, ("fhir", "auth", _SERVE_AUTH_KEYS[old])))
        fhir["auth"] = auth
    if "timeout_seconds" in fhir:
        if "read_timeout_seconds" in fhir:
            raise ConfigError(
                "fhir.timeout_seconds: give only fhir.read_timeout_seconds",
                key=("fhir", "timeout_seconds"),
            )
        fhir["read_timeout_seconds"] = fhir.pop("timeout_seconds")
        loc = ("fhir", "read_timeout_seconds")
        moved.append(Moved("fhir.timeout_seconds", "fhir.read_timeout_seconds", loc))
    return {**data, "fhir": fhir}, moved


def _put(fhir: Any, key: str, value: Any, old: str) -> dict[str, Any]:
    table = {} if fhir is None else fhir
    if not isinstance(table, dict):
        return {key: value}  # the new [fhir] is not a table: its own error follows
    if key in table:
        new = "[fhir.auth]" if key == "auth" else f"[fhir] {key}"
        raise ConfigError(
            f"{old}: also given as {new}; keep only {new} ({old} is deprecated)",
            key=label_keys(old),
        )
    return {**table, key: value}


def old_key_label(loc: tuple[str, ...], moved: Sequence[Moved]) -> str | None:
    """How the file names the value at `loc`, when it was given under an old key; else None."""
    within = [m for m in moved if m.loc and loc[: len(m.loc)] == m.loc]
    best = max(within, key=lambda m: len(m.loc), default=None)
    if best is None:
        return None
    rest = ".".join(loc[len(best.loc) :])
    if not rest:
        return best.old
    return f"{best.old} {rest}" if best.old.endswith("]") else f"{best.old}.{rest}"


def old_key_path(loc: Sequence[str | int], moved: Sequence[Moved]) -> tuple[str | int, ...]:
    """The keys of the value at `loc` as the file writes them: under its old key when it was
    given under one (see `old_key_label`), else `loc` itself."""
    within = [m for m in moved if m.loc and tuple(loc[: len(m.loc)]) == m.loc]
    best = max(within, key=lambda m: len(m.loc), default=None)
    if best is None:
        return tuple(loc)
    return (*label_keys(best.old), *loc[len(best.loc) :])


def label_keys(label: str) -> tuple[str, ...]:
    """The keys a label names: "[source] base_url", "[auth]", "fhir.private_key"."""
    if label.startswith("["):
        table, _, key = label[1:].partition("]")
        return (*table.split("."), *key.split())
    return tuple(label.split("."))


def log_deprecations(path: Path, moved: list[Moved]) -> None:
    """One warning line naming the file and the new keys, once per file in this process."""
    key = str(path)
    if not moved or key in _warned:
        return
    _warned.add(key)
    renames = "; ".join(f"{m.old} -> {m.new}" for m in moved)
    log.warning(
        "%s: deprecated keys, read until ips-screen %s: %s (see docs/%s.example.toml)",
        path,
        READ_UNTIL,
        renames,
        "serve" if any(m.old.startswith("fhir.") for m in moved) else "practice",
    )
