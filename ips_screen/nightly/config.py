"""The practice config file of the nightly job (TOML), as strict pydantic models.

Every setting is documented by its `description` here and in docs/practice.example.toml. Unknown
keys are errors, and so is anything that looks like a secret written into the file: credentials
are only ever named (an environment variable, a key file), never inlined, and a value that looks
like a secret is refused without being repeated (`ips_screen.secret_values`). A SMART client id
is not a secret (the SMART reference Bulk server issues JWT-shaped ones): it may be written in,
or read from an environment variable or a file. Relative paths are relative to the folder
holding the config file.

The server and its credentials are a `FhirConnection` (`[fhir]` and `[fhir.auth]`, the same shape
as in the service's serve.toml; ips_screen/fhir/connection.py). The 0.1 keys `[source] base_url`,
`[auth]` and `[export] page_size` still load, with one deprecation line naming the new keys
(ips_screen/fhir/connection_keys.py), until ips-screen 0.2.

Errors are one line naming the file, the line and the key ("practice.toml:12: [export] mode:
..."); `tomllib` gives no positions for the keys of a document it parsed, so the line is found
by `ips_screen.toml_lines` (a required key left out names its table's line, or none).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ips_screen.errors import ConfigError
from ips_screen.fhir.connection import (
    BearerAuthSettings,
    ConfigPath,
    FhirConnection,
    SmartAuthSettings,
    error_key,
    error_location,
    error_message,
)
from ips_screen.fhir.connection_keys import (
    Moved,
    log_deprecations,
    old_key_label,
    old_key_path,
    upgrade_practice_keys,
)
from ips_screen.secret_values import env_name_problem, secret_kind
from ips_screen.toml_lines import located
from ips_screen.writeback.followup import FOLLOWUP_WEEKS
from ips_screen.writeback.referral_config import ReferralConfig

_SECRET_KEY = re.compile(r"(^|_)(token|secret|password|passwd|passphrase|api_?key|credentials?)$")
_NAMED_SECRETS = frozenset({"token_env", "token_url", "private_key_file"})  # names, not secrets
_ENV_NAME_KEYS = frozenset({"token_env", "client_id_env"})  # hold the NAME of a variable
_NOT_SECRETS = frozenset({"client_id", "kid"})  # identifiers, however random they look
_SECTIONS = (
    "source",
    "fhir",
    "export",
    "screen",
    "output",
    "referral",
    "followup",
    "auth",
)  # "auth": the 0.1 name
_TABLES = frozenset({*((name,) for name in _SECTIONS), ("fhir", "auth")})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Section):
    kind: Literal["server", "files"] = Field(
        description="where the records come from: 'server' (the FHIR R4 server of [fhir], read "
        "by Bulk export or REST search) or 'files' (a folder of FHIR JSON/NDJSON, reloaded in "
        "full every run unless incremental; for demos and benchmarks)"
    )
    path: ConfigPath | None = Field(None, description="files: the folder (or file) to read")
    incremental: bool = Field(
        False,
        description="files: true applies the folder's resources as the changes since the last "
        "run (upserts; Bulk-style deleted files in its deleted/ subfolder remove resources) "
        "instead of reloading the store from it (no input file in it: no changes); the first "
        "run, or one after a ruleset change, loads it in full",
    )
    max_line_mib: int = Field(
        64,
        ge=1,
        le=4096,
        description="the longest NDJSON line (one resource) accepted, in MiB, in input files "
        "and Bulk export downloads; a longer line stops the run (files: exit 3; Bulk: the "
        "night's export is not applied, exit 9)",
    )

    jobs: int | None = Field(
        None,
        ge=1,
        le=256,
        description="processes that read the files (or the Bulk export's files) of a full "
        "load, in parts (default: all cores); a load of changes is read in this process. The "
        "store and the outputs are the same for any number",
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> SourceConfig:
        if self.kind == "server":
            if self.path is not None:
                raise ValueError("path only applies when kind = 'files'")
            if self.incremental:
                raise ValueError("incremental only applies when kind = 'files'")
        elif self.path is None:
            raise ValueError("path is required when kind = 'files'")
        return self


class ExportConfig(_Section):
    mode: Literal["auto", "bulk", "rest"] = Field(
        "auto",
        description="'auto' (Bulk export when the server offers it, else REST search), 'bulk' "
        "(Bulk export only: a server without it is an error) or 'rest' (search every night; the "
        "store is reloaded in full, as REST has no _since)",
    )
    level: Literal["system", "patient", "group"] = Field(
        "system", description="Bulk export level: system ($export), patient or group"
    )
    group_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9\-.]{1,64}$",
        description="level = 'group': the id of the Group of the practice's patients",
    )
    max_parallel_downloads: int = Field(
        2, ge=1, le=16, description="Bulk export files downloaded at once"
    )
    poll_max_wait_seconds: float = Field(
        3600.0,
        gt=0,
        le=86_400,
        description="how long to wait for the server to finish preparing a Bulk export",
    )
    kickoff: Literal["get", "post"] = Field(
        "get",
        description="how a Bulk export is started: 'get' (query parameters) or 'post' (a FHIR "
        "Parameters body, Bulk Data 2.0; a server answering 404, 405 or 501 is asked with GET)",
    )

    @model_validator(mode="after")
    def _group(self) -> ExportConfig:
        if (self.level == "group") != (self.group_id is not None):
            raise ValueError("group_id is required with level = 'group', and only then")
        return self


class ScreenConfig(_Section):
    rules: ConfigPath | None = Field(
        None, description="the ruleset file (default: the built-in rules/ips-chronic-pain.yaml)"
    )
    owner: str | None = Field(
        None,
        pattern=r"^(Organization|PractitionerRole|Practitioner)/[A-Za-z0-9\-.]{1,64}$",
        description="Task owner of proposals: Organization/<id>, PractitionerRole/<id> or "
        "Practitioner/<id> (default: each patient's general practitioner)",
    )
    write: bool = Field(
        True,
        description="write proposals (ServiceRequest, review Task, Provenance) to the server; "
        "false: outputs only. Never written for kind = 'files'",
    )
    jobs: int | None = Field(
        None,
        ge=1,
        le=256,
        description="processes that decide the patients evaluated tonight when there are many "
        "(a full night; an incremental night's few are decided in the job's own process) "
        "(default: all cores); the outputs are the same for any number",
    )
    reuse_decisions: bool = Field(
        True,
        description="reuse a patient's cached decision (as of tonight) when their facts have not "
        "changed and tonight is within the decision's horizon, the first day it could change "
        "with time alone; false re-evaluates every patient every night (same outputs, slower)",
    )


class OutputConfig(_Section):
    state_dir: ConfigPath = Field(
        description="the job's own folder, made private by every run (0700, files 0600): "
        "store.sqlite (facts and the run ledger), locks/, exports/ (Bulk downloads, deleted "
        "after each run and after a crash), runs/<run id>/ (report.html, worklist.csv, "
        "decisions.ndjson, summary.json) and runs/latest"
    )
    keep_runs: int = Field(30, ge=1, le=10_000, description="run folders kept under runs/")
    lock_dir: ConfigPath | None = Field(
        None,
        description="the folder of the per-server write locks, shared by every ips-screen "
        "writing to the server from this machine (the nightly job and the service; set "
        "IPS_SCREEN_LOCK_DIR to the same folder for the service and screen --write); default "
        "$IPS_SCREEN_LOCK_DIR, else ~/.local/state/ips-screen/locks. Keep it outside state_dir",
    )


class FollowupConfig(_Section):
    weeks: int = Field(
        FOLLOWUP_WEEKS,
        ge=1,
        le=520,
        description="accepted IPS referrals still active with no answer from the IPS service "
        "(no Task, Communication or status change) this many weeks after acceptance are listed "
        "for follow-up; also the default of `review followup --config`",
    )
    nightly: bool = Field(
        False,
        description="true: the nightly job also lists them (server sources only) in "
        "runs/<run id>/followup.json (ids and ages only) and counts them in the ledger",
    )


class PracticeConfig(_Section):
    source: SourceConfig
    fhir: FhirConnection | None = None
    export: ExportConfig = ExportConfig()
    screen: ScreenConfig = ScreenConfig()
    output: OutputConfig
    referral: ReferralConfig | None = None  # where accepted proposals' orders go (review accept)
    followup: FollowupConfig = FollowupConfig()

    @model_validator(mode="after")
    def _server_connection(self) -> PracticeConfig:
        if self.source.kind == "server" and self.fhir is None:
            raise ValueError("[fhir] base_url is required when [source] kind = 'server'")
        if self.source.kind == "files" and self.fhir is not None:
            raise ValueError("[fhir] only applies when [source] kind = 'server'")
        return self

    @property
    def server(self) -> FhirConnection:
        """The FHIR server's connection (kind = 'server' only)."""
        assert self.fhir is not None
        return self.fhir

    def rebased(self, folder: Path) -> PracticeConfig:
        """Relative paths made relative to `folder` (the config file's)."""

        def fix(value: Path | None) -> Path | None:
            return None if value is None else (folder / value.expanduser()).resolve()

        return self.model_copy(
            update={
                "source": self.source.model_copy(update={"path": fix(self.source.path)}),
                "fhir": self.fhir and self.fhir.rebased(folder),
                "screen": self.screen.model_copy(update={"rules": fix(self.screen.rules)}),
                "output": self.output.model_copy(
                    update={
                        "state_dir": fix(self.output.state_dir),
                        "lock_dir": fix(self.output.lock_dir),
                    }
                ),
            }
        )


def load_config(path: Path | str) -> PracticeConfig:
    """Read and check a practice config file; `ConfigError` (exit 4) names file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    moved: list[Moved] = []
    try:
        _refuse_secrets(data, ())
        data, moved = upgrade_practice_keys(data)
        # strictly: TOML has types, and `true` or "3" for a number is a slip, not 1 or 3
        config = PracticeConfig.model_validate(data, strict=True)
    except ValidationError as exc:
        message, key = _one_line(exc, moved)
        raise ConfigError(f"{located(path, text, key)}: {message}") from None
    except ConfigError as exc:
        raise ConfigError(f"{located(path, text, exc.key)}: {exc}") from None
    log_deprecations(path, moved)
    return config.rebased(path.resolve().parent)


def _where(loc: tuple[Any, ...], moved: Sequence[Moved] = ()) -> str:
    parts = error_location(loc)
    old = old_key_label(parts, moved)
    if old is not None:
        return old
    if not parts:
        return "(top level)"
    if parts in _TABLES:
        return f"[{'.'.join(parts)}]"
    if len(parts) == 1:
        return parts[0]
    return f"[{'.'.join(parts[:-1])}] {parts[-1]}"


def _refuse_secrets(data: dict[str, Any], loc: tuple[str, ...]) -> None:
    for key, value in data.items():
        here = (*loc, key)
        if isinstance(value, dict):
            _refuse_secrets(value, here)
            continue
        lowered = key.lower()
        if lowered not in _NAMED_SECRETS and _SECRET_KEY.search(lowered):
            raise ConfigError(
                f"{_where(here)}: secrets must not be written in the config file; "
                "name an environment variable instead ([fhir.auth] token_env) or a key file "
                "([fhir.auth] private_key_file)",
                key=here,
            )
        if not isinstance(value, str) or lowered in _NOT_SECRETS:
            continue
        if lowered in _ENV_NAME_KEYS:
            problem = env_name_problem(value)
            if problem is not None:
                raise ConfigError(f"{_where(here)}: {problem}", key=here)
        elif (kind := secret_kind(value)) is not None:
            raise ConfigError(
                f"{_where(here)}: this looks like a secret ({kind}) written into the "
                "config file; it is not repeated here. Name an environment variable "
                "([fhir.auth] token_env) or a key file ([fhir.auth] private_key_file) instead",
                key=here,
            )


def _one_line(exc: ValidationError, moved: list[Moved]) -> tuple[str, tuple[str | int, ...]]:
    """The first problem's message, and the keys of its place as the file writes them."""
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    message = error_message(first)
    if first["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see docs/practice.example.toml)"
    elif first["type"] == "missing":
        message = "required setting missing"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    if not loc:  # a rule across sections names its keys itself
        return f"{message}{more}", ()
    return f"{_where(loc, moved)}: {message}{more}", old_key_path(error_key(first), moved)


def describe_settings() -> list[tuple[str, str]]:
    """("[section] key", description) of every setting, for documentation and its test."""
    sections: list[tuple[str, type[BaseModel]]] = [
        (name, info.annotation)  # type: ignore[misc]
        for name, info in PracticeConfig.model_fields.items()
        if name not in ("fhir", "referral")
    ]
    sections.append(("referral", ReferralConfig))
    sections.insert(1, ("fhir", FhirConnection))
    sections[2:2] = [("fhir.auth", m) for m in (BearerAuthSettings, SmartAuthSettings)]
    out: dict[str, str] = {}
    for section, model in sections:
        for key, field in model.model_fields.items():
            if key != "auth":
                out.setdefault(f"[{section}] {key}", field.description or "")
    out["[fhir.auth] method"] = "'none' (default), 'bearer' or 'smart'"
    return list(out.items())
