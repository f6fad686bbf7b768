"""`toml_lines.key_line`: the line of a key in a config file, for errors that name the line."""

from __future__ import annotations

import pytest

from ips_screen.toml_lines import MAX_CANDIDATES, MAX_LINES, key_line, located

DOC = """\
# practice.toml
[source]
kind = "server"

[fhir]
base_url = "https://f.example/R4"
scopes = [
    "system/Patient.read",  # one per line
    "system/Task.cruds",
]
note = '''
[fhir.auth]
'''
auth.method = "bearer"
limits = { page_size = 100, retries = 3 }

[[issuers]]
iss = "https://ehr.example"
[[issuers]]
iss = "https://other.example"
"quoted key" = 1
"""


@pytest.mark.parametrize(
    ("key", "line"),
    [
        (("source", "kind"), 3),
        (("fhir",), 5),
        (("fhir", "scopes"), 7),  # a value over several lines: where it begins
        (("fhir", "scopes", 1), 7),
        (("fhir", "note"), 11),  # a table header inside a multi-line string is not one
        (("fhir", "auth", "method"), 14),  # a dotted key
        (("fhir", "limits", "retries"), 15),  # an inline table
        (("issuers", 0, "iss"), 18),
        (("issuers", "1", "iss"), 20),  # an index as pydantic's loc names it in a message
        (("issuers", 1, "quoted key"), 21),
        (("source", "path"), 2),  # a required key left out: its table
        (("fhir", "auth", "token_env"), 14),  # ... the innermost table the file writes
        (("export", "mode"), None),  # neither the key nor its table
        ((), None),
    ],
)
def test_a_key_is_found_where_it_is_written(key, line):
    assert key_line(DOC, key) == line


def test_an_error_names_the_line_when_it_has_one():
    assert located("p.toml", DOC, ("fhir", "base_url")) == "p.toml:6"
    assert located("p.toml", DOC, ("export",)) == "p.toml"


def test_what_is_not_located_is_said_without_a_line():
    long = "".join(f"k{n} = {n}\n" for n in range(MAX_LINES + 1))
    assert key_line(long, ("k0",)) is None  # longer than a config
    assert key_line(long[: long.index(f"k{MAX_LINES - 1} ")], ("k0",)) == 1
    many = "".join(f"a{n} = 'k'\n" for n in range(MAX_CANDIDATES)) + "k = 1\n"
    assert key_line(many, ("k",)) is None  # its name on too many lines to try each
    assert key_line(many[many.index("a1 ") :], ("k",)) == MAX_CANDIDATES
    assert key_line('"caf\\u00e9" = 1\n', ("caf\u00e9",)) is None  # its name escaped
    assert key_line('"caf\u00e9" = 1\n', ("caf\u00e9",)) == 1
