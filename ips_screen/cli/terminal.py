"""What the commands print, made safe for a terminal.

Names, notes and record displays come from FHIR servers and files that others write. A control
character in one (an escape sequence that retitles the window, moves the cursor, clears the
screen, or on some terminals writes the clipboard) or a bidirectional-text override (which makes
a name read as another) would act on the clinician's terminal instead of being shown. While a
command runs, everything written to stdout and stderr (its output, its log lines, its one-line
errors) passes through `safe_text` (presentation/plain_text.py), which shows each such
character as its escape (``\\x1b``, ``\\u202e``) and keeps tabs and line ends. JSON output
is unchanged: it escapes them already.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ips_screen.presentation.plain_text import safe_text

__all__ = ["SafeStream", "safe_terminal", "safe_text"]


class SafeStream:
    """A text stream that writes `safe_text` of what it is given (the rest is the stream's)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(safe_text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def safe_terminal() -> Iterator[None]:
    """stdout and stderr through `SafeStream` while the block runs."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(out), SafeStream(err)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
