"""The output formats by name: every module of `ips_screen.outputs.formats` registers its writer
with `@register`, so adding a format is adding one module there (and its test).

    available()          name -> writer class, every format
    default_names()      the formats written when none are named (`OutputWriter.default`)
    make_writers(names)  new writers for the named formats, in the order their files are moved
                         into place; an unknown name is a `UserError` listing the known ones
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from functools import cache
from typing import TypeVar

from ips_screen.errors import UserError
from ips_screen.outputs.writers import OutputWriter

W = TypeVar("W", bound=type[OutputWriter])
_FORMATS: dict[str, type[OutputWriter]] = {}


def register(writer: W) -> W:
    """Class decorator: make a writer available by its `name`."""
    for other in _FORMATS.values():
        same = writer.name == other.name or writer.filename == other.filename
        if same and other is not writer:
            raise ValueError(f"{writer.__name__}: {writer.name} / {writer.filename} taken")
    _FORMATS[writer.name] = writer
    return writer


@cache
def _import_formats() -> None:
    from ips_screen.outputs import formats

    for module in pkgutil.iter_modules(formats.__path__):
        importlib.import_module(f"{formats.__name__}.{module.name}")


def available() -> dict[str, type[OutputWriter]]:
    """Every output format, by name (the formats package's modules are imported once)."""
    _import_formats()
    return dict(sorted(_FORMATS.items()))


def default_names() -> tuple[str, ...]:
    return tuple(name for name, writer in available().items() if writer.default)


def make_writers(names: Iterable[str] | None = None) -> list[OutputWriter]:
    """New writers for the formats named (None: the default ones), each once."""
    known = available()
    chosen = default_names() if names is None else tuple(dict.fromkeys(names))
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise UserError(f"unknown output format {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return [known[name]() for name in sorted(chosen, key=lambda n: known[n].order)]


def filenames() -> tuple[str, ...]:
    """The file names of every format (what an output folder may hold)."""
    return tuple(writer.filename for writer in available().values())
