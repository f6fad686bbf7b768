"""Recognise a secret put where a name is expected, and never repeat it.

Settings such as `token_env` or `--token-env` hold the NAME of an environment variable. A token
pasted there instead (`ghp_...` is also a valid variable name, so a name check alone does not
catch it) must be refused without being printed, logged or stored. One checker serves the
practice config, the service config and the command-line flags:

    secret_kind(value)        what kind of secret `value` looks like ("a GitHub token", ...),
                              or None: known token prefixes, JWTs, PEM blocks, AWS key ids
    env_name_problem(value)   why `value` is not usable as an environment-variable name (it looks
                              like a secret, or is not a name), or None; never quotes `value`
    redact(text)              `text` with anything shaped like a known secret replaced, for
                              messages that are stored (the run ledger) or printed

Long high-entropy strings count as secrets only where a name is expected (`env_name_problem`):
elsewhere a key id or a client id may well be long and random, and is not a secret.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import pairwise

__all__ = ["env_name_problem", "redact", "secret_kind"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

# Token shapes of widely used formats: (regular expression, what it is). One table serves both
# the check of a whole value (matched at its start) and `redact` (found anywhere in a text).
_TOKENS: tuple[tuple[str, str], ...] = (
    (r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}", "a GitHub token"),
    (r"github_pat_[A-Za-z0-9_]{20,}", "a GitHub token"),
    (r"glpat-[A-Za-z0-9_\-]{16,}", "a GitLab token"),
    (r"xox[abposr]-[A-Za-z0-9\-]{8,}", "a Slack token"),
    (r"sk-[A-Za-z0-9_\-]{16,}", "an API secret key"),
    (r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}", "an API secret key"),
    (r"eyJ[A-Za-z0-9_\-]{4,}", "a JSON Web Token"),
    (r"(?:AKIA|ASIA)[A-Z0-9]{16}", "an AWS access key"),
    (r"AIza[A-Za-z0-9_\-]{30,}", "a Google API key"),
    (r"ya29\.[A-Za-z0-9_\-]{16,}", "a Google access token"),
)
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*(PRIVATE KEY|CERTIFICATE)[A-Z ]*-----")
_KNOWN = tuple((re.compile(pattern), kind) for pattern, kind in _TOKENS)
# The same shapes anywhere in a text (a word boundary before each; a JWT with its other two
# parts), and any PEM block, for `redact`.
_IN_TEXT = re.compile(
    r"(?<![A-Za-z0-9_])(?:"
    + "|".join(
        pattern + r"(?:\.[A-Za-z0-9_\-]*){0,2}" if pattern.startswith("eyJ") else pattern
        for pattern, _ in _TOKENS
    )
    + r")|-----BEGIN [A-Z0-9 ]*-----.*?(?:-----END [A-Z0-9 ]*-----|$)",
    re.DOTALL,
)
HIGH_ENTROPY_MIN_LENGTH = 24
HIGH_ENTROPY_BITS = 3.5  # per character; random base64 of 24+ characters has about 4.3
RANDOM_CHANGES = 0.25  # class changes per character (see _class_changes)
REDACTED = "[redacted]"


def secret_kind(value: str) -> str | None:
    """What kind of secret `value` looks like, or None. Never includes the value."""
    text = value.strip()
    for pattern, kind in _KNOWN:
        if pattern.match(text):
            return kind
    return "a PEM block" if _PEM.search(text) else None


def _bits_per_char(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _class_changes(text: str) -> float:
    """Changes between lower case, upper case and digit from one character to the next, per
    character, not counting a capital followed by lower case (a Word): about 0.45 in random
    base64, under 0.2 in names made of words (snake_case, CamelCase, with a number or two)."""

    def kind(c: str) -> str:
        return "l" if c.islower() else "u" if c.isupper() else "d" if c.isdigit() else ""

    kinds = [kind(c) for c in text]
    pairs = pairwise(kinds)
    changes = sum(1 for a, b in pairs if a and b and a != b and (a, b) != ("u", "l"))
    return changes / len(text)


def looks_random(value: str) -> bool:
    """A long string with the look of a generated secret: 32+ hex digits, or 24+ characters
    without spaces mixing at least two of lower case, upper case and digits with the frequent
    changes between them and the entropy (3.5+ bits per character) of random text. Names made
    of words (IPS_SCREEN_FHIR_TOKEN, PracticeA81001FhirToken) are not."""
    text = value.strip()
    if len(text) < HIGH_ENTROPY_MIN_LENGTH or any(c.isspace() for c in text):
        return False
    if re.fullmatch(r"[0-9a-fA-F]{32,}", text):
        return _class_changes(text) >= RANDOM_CHANGES / 2
    classes = sum(
        (
            any(c.islower() for c in text),
            any(c.isupper() for c in text),
            any(c.isdigit() for c in text),
        )
    )
    return (
        classes >= 2
        and _class_changes(text) >= RANDOM_CHANGES
        and _bits_per_char(text) >= HIGH_ENTROPY_BITS
    )


def env_name_problem(value: str) -> str | None:
    """Why `value` cannot be the NAME of an environment variable, or None. The answer never
    repeats the value (it may be a secret)."""
    kind = secret_kind(value)
    if kind is None and looks_random(value):
        kind = "a long random string"
    if kind is not None:
        return (
            f"this looks like a secret ({kind}), not the NAME of an environment variable; "
            "it is not repeated here. Put the secret in an environment variable and give that "
            "variable's name"
        )
    if not _ENV_NAME.match(value):
        return "must be the NAME of an environment variable (letters, digits and _)"
    return None


def redact(text: str) -> str:
    """`text` with every substring shaped like a known secret replaced by "[redacted]"."""
    return _IN_TEXT.sub(REDACTED, text)
