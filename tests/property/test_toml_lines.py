"""`toml_lines.key_line` against a simple reference: a TOML document written line by line, with
the line of every key and table noted as it is written (values over several lines, arrays of
tables, comments, blank lines, keys quoted or dotted), and every key located where it was
written; a key the document lacks, by the table it would be in."""

from __future__ import annotations

import json
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from ips_screen.toml_lines import key_line
from tests.support.hypothesis_profile import examples

NAMES = st.sampled_from(["a", "b", "kind", "path", "base_url", "token_env", "x-y", "ünï"])
SCALARS = st.one_of(
    st.integers(-5, 5).map(str),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6).map(
        lambda t: json.dumps(t, ensure_ascii=False)  # a basic string: JSON's escapes are TOML's
    ),
)


@st.composite
def values(draw: st.DrawFn) -> list[str]:
    """One value, as the lines it is written on."""
    kind = draw(st.sampled_from(["scalar", "array", "lines", "string"]))
    if kind == "scalar":
        return [draw(SCALARS)]
    items = draw(st.lists(SCALARS.filter(lambda s: not s.startswith('"')), max_size=3))
    if kind == "array":
        return ["[" + ", ".join(items) + "]"]
    if kind == "lines":  # an array over several lines, with a comment inside
        return ["[", *(f"  {item},  # {n}" for n, item in enumerate(items)), "]"]
    return ['"""', *draw(st.lists(st.sampled_from(["x", "[t]", "k = 1", ""]), max_size=3)), '"""']


def key_text(name: str) -> str:
    """A bare key, or a quoted one spelled as is (an escaped spelling is not located)."""
    if name.replace("_", "").replace("-", "").isascii():
        return name
    return json.dumps(name, ensure_ascii=False)


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, dict[tuple, int], dict[str, int]]:
    """A document, the line of each key written, and the line of each table's header."""
    lines: list[str] = []
    where: dict[tuple, int] = {}
    tables: dict[str, int] = {}

    def filler() -> None:
        lines.extend(draw(st.lists(st.sampled_from(["", "# a comment", "   "]), max_size=2)))

    def keys(prefix: tuple) -> None:
        for name in draw(st.lists(NAMES, max_size=4, unique=True)):
            filler()
            value = draw(values())
            where[(*prefix, name)] = len(lines) + 1
            lines.append(f"{key_text(name)} = {value[0]}")
            lines.extend(value[1:])

    keys(())
    for table in draw(st.lists(st.sampled_from(["source", "fhir", "out"]), unique=True)):
        filler()
        tables[table] = len(lines) + 1
        where[(table,)] = len(lines) + 1
        lines.append(f"[{table}]")
        keys((table,))
        if draw(st.booleans()):  # a sub-table, written as a dotted header
            filler()
            where[(table, "auth")] = len(lines) + 1
            lines.append(f"[{table}.auth]")
            keys((table, "auth"))
    for index in range(draw(st.integers(0, 2))):
        filler()
        where[("issuers", index)] = len(lines) + 1
        lines.append("[[issuers]]")
        keys(("issuers", index))
    return "\n".join(lines) + "\n", where, tables


@settings(max_examples=examples(0.5))
@given(documents())
def test_every_key_is_found_on_the_line_it_was_written(document):
    text, where, tables = document
    tomllib.loads(text)  # the reference writes valid TOML
    for key, line in where.items():
        assert key_line(text, key) == line, (key, text)
    for table, line in tables.items():
        if (table, "missing") not in where:
            assert key_line(text, (table, "missing")) == line  # a required key left out
    assert key_line(text, ("nowhere", "missing")) is None
