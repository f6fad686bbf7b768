"""Command-line options for reading a FHIR server, shared by the commands that talk to one.

    add_server_args(parser)                  --auth, --token-env, SMART options, --page-size
                                             (and --patient-id unless patient_ids=False)
    connection_from_args(args, url)          the FhirConnection they describe for `url`
    client_from_args(args, environ, url)     a FhirClient for it, from the one factory
                                             (ips_screen.fhir.connection.open_client)

Options that only make sense for a server are None unless given, so a command reading files can
refuse them (`server_options_given`) instead of silently ignoring them. The client sends
`Prefer: handling=strict`, so a server rejects a search parameter it does not know instead of
ignoring it (which would return every resource of the type).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ips_screen.errors import UserError

if TYPE_CHECKING:  # imported when used: the HTTP and crypto libraries slow every command's start
    from ips_screen.fhir.client import FhirClient
    from ips_screen.fhir.connection import FhirConnection

# The same as ips_screen.fhir.auth's defaults (a test checks), for --help without importing it.
DEFAULT_TOKEN_ENV = "IPS_SCREEN_FHIR_TOKEN"  # noqa: S105 (a variable name, not a secret)
DEFAULT_SCOPE = "system/*.rs"
AUTH_CHOICES = ("none", "bearer", "smart")
_SMART_OPTIONS = {
    "client_id": "--client-id",
    "private_key": "--private-key",
    "kid": "--kid",
    "scope": "--scope",
    "token_url": "--token-url",
}


def is_server_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {value!r}")
    return number


def add_server_args(parser: argparse.ArgumentParser, *, patient_ids: bool = True) -> None:
    group = parser.add_argument_group("FHIR server (when the source is a base URL)")
    group.add_argument(
        "--auth",
        choices=AUTH_CHOICES,
        help="how to authenticate: none (default), bearer (a token from --token-env) or smart "
        "(SMART Backend Services)",
    )
    group.add_argument(
        "--token-env",
        metavar="VAR",
        help=f"environment variable holding the bearer token (default {DEFAULT_TOKEN_ENV})",
    )
    group.add_argument("--client-id", help="SMART: the registered client id")
    group.add_argument("--private-key", metavar="FILE", help="SMART: PEM private key (RS384/ES384)")
    group.add_argument("--kid", help="SMART: the key id registered with the public key")
    group.add_argument("--scope", help=f"SMART: scopes to ask for (default {DEFAULT_SCOPE})")
    group.add_argument(
        "--token-url",
        help="SMART: token endpoint, when .well-known/smart-configuration does not name one",
    )
    group.add_argument(
        "--page-size",
        type=_positive,
        metavar="N",
        help="resources per page of search results (default 500; servers may send fewer)",
    )
    if patient_ids:
        group.add_argument(
            "--patient-id",
            action="append",
            metavar="ID",
            help="screen only this patient (repeatable)",
        )


def server_options_given(args: argparse.Namespace) -> list[str]:
    """The server-only options given on the command line, as option names."""
    names = {
        "auth": "--auth",
        "token_env": "--token-env",
        **_SMART_OPTIONS,
        "page_size": "--page-size",
        "patient_id": "--patient-id",
    }
    return [option for attr, option in names.items() if getattr(args, attr, None) is not None]


_FLAGS = {  # the connection's keys as the options that set them
    "base_url": "the server URL",
    "auth": "--auth",
    **_SMART_OPTIONS,
    "token_env": "--token-env",
    "private_key_file": "--private-key",
    "page_size": "--page-size",
}


def connection_from_args(args: argparse.Namespace, base_url: str) -> FhirConnection:
    """The connection the options describe for the server at `base_url` (no credential is read)."""
    from pydantic import ValidationError

    from ips_screen.fhir.connection import (
        FhirConnection,
        error_location,
        error_message,
        without_secrets,
    )

    if not is_server_url(base_url):
        raise UserError(
            f"{without_secrets(base_url)}: a FHIR base URL starts with http:// or https://"
        )
    kind = getattr(args, "auth", None) or "none"
    smart_given = [o for a, o in _SMART_OPTIONS.items() if getattr(args, a, None) is not None]
    if kind != "smart" and smart_given:
        raise UserError(f"{smart_given[0]} only applies with --auth smart")
    if kind != "bearer" and getattr(args, "token_env", None) is not None:
        raise UserError("--token-env only applies with --auth bearer")
    missing = [o for a, o in list(_SMART_OPTIONS.items())[:3] if not getattr(args, a, None)]
    if kind == "smart" and missing:
        raise UserError(f"--auth smart needs {', '.join(missing)}")
    auth: dict[str, object] = {"method": kind}
    if kind == "bearer" and args.token_env is not None:
        auth["token_env"] = args.token_env
    if kind == "smart":
        auth.update(client_id=args.client_id, private_key_file=args.private_key, kid=args.kid)
        auth.update({k: getattr(args, k) for k in ("scope", "token_url") if getattr(args, k)})
    connection = {"base_url": base_url, "auth": auth}
    if getattr(args, "page_size", None) is not None:
        connection["page_size"] = args.page_size
    try:
        return FhirConnection.model_validate(connection)
    except ValidationError as exc:  # never repeats a value: --token-env may hold the token
        first = exc.errors()[0]
        loc = error_location(tuple(first["loc"]))
        message = error_message(first)
        if loc:
            message = f"{_FLAGS.get(loc[-1], 'the server options')}: {message}"
        raise UserError(message) from None


def client_from_args(
    args: argparse.Namespace, environ: Mapping[str, str], base_url: str | None = None
) -> FhirClient:
    """A client for `base_url` (default: `args.base_url`) with the options' authentication, from
    `open_client` like every other entry point's. Close it (or use it as a context manager)."""
    from ips_screen.fhir.connection import open_client

    url = base_url or getattr(args, "base_url", None)
    if not url:
        raise UserError("no FHIR server base URL given")
    return open_client(connection_from_args(args, url), environ)
