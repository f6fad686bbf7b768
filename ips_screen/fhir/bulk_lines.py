"""The body of one Bulk Data file, checked as it arrives: decoding, line size, each line's type.

- `BodyDecoder` undoes the `Content-Encoding` (gzip, deflate or none) itself, a bounded amount of
  output per step, and notices a stream that ends early: a truncated gzip file is an
  `ExportDamaged` error, never a silently short file.
- `LineChecker` splits NDJSON into lines in linear time (only each new chunk is searched for a
  newline; the pending partial line is never searched again), refuses a line longer than
  `max_line` bytes before reading more of it, and checks that every line is JSON with the
  entry's resourceType. A bad line is `ExportDamaged`, naming the file and line.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from ips_screen.fhir.bulk_filter import Criterion, matches
from ips_screen.fhir.bulk_http import ExportDamaged
from ips_screen.fhir.outcome import only_informs, outcome_summary
from ips_screen.limits import DEFAULT_MAX_LINE

DECODE_STEP = 1 << 20  # at most this many decoded bytes per decompression step
MAX_ERRORS = 1000  # OperationOutcome summaries kept from error files (and as many notes)
ACCEPT_ENCODING = "gzip, deflate"
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class BodyDecoder:
    """Decodes a file body by its Content-Encoding; `finish` raises when the stream was cut."""

    def __init__(self, encoding: str | None, what: str) -> None:
        self.what = what
        self.encoding = (encoding or "identity").strip().lower()
        if self.encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            raise ExportDamaged(f"{what}: unsupported Content-Encoding {self.encoding[:40]!r}")
        self.obj: Any = None  # a zlib decompress object
        self.started = False

    def _new(self, data: bytes) -> Any:
        if self.encoding == "deflate" and not _zlib_header(data):
            return zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send
        return zlib.decompressobj(zlib.MAX_WBITS if self.encoding == "deflate" else _GZIP_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.encoding == "identity":
            if data:
                yield data
            return
        try:
            while data:
                if self.obj is None or self.obj.eof:
                    if self.obj is not None and self.encoding == "deflate":
                        raise ExportDamaged(f"{self.what}: data after the deflate stream")
                    self.obj = self._new(data)  # a gzip file may hold several members
                    self.started = True
                while True:  # bounded output per step; pending output is drained too
                    out = self.obj.decompress(data, DECODE_STEP)
                    data = self.obj.unconsumed_tail
                    if out:
                        yield out
                    if self.obj.eof:
                        data = self.obj.unused_data
                        break
                    if not data and len(out) < DECODE_STEP:
                        break
        except zlib.error as exc:
            raise ExportDamaged(
                f"{self.what}: the download failed: the {self.encoding} stream is corrupt ({exc})"
            ) from exc

    def finish(self) -> None:
        if self.started and self.obj is not None and not self.obj.eof:
            raise ExportDamaged(
                f"{self.what}: the {self.encoding} stream ends early (the file is truncated)"
            )


def _zlib_header(data: bytes) -> bool:
    """Whether `data` starts with a zlib header (deflate, and a valid check value)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


class LineChecker:
    """NDJSON lines of one file, checked as chunks arrive; `feed`/`finish` return the bytes to
    keep (lines failing the client-side `_typeFilter` are dropped)."""

    def __init__(
        self,
        line_type: str,
        where: Callable[[int], str],
        *,
        criteria: Sequence[Criterion] | None = None,
        keep_errors: bool = False,
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        self.line_type = line_type
        self.where = where
        self.criteria = criteria
        self.keep_errors = keep_errors
        self.max_line = max_line
        self.buf = bytearray()  # the partial line after the last newline seen
        self.lineno = 0
        self.lines = 0  # resources seen
        self.kept = 0  # resources kept after client filtering
        self.errors: list[str] = []  # an error file's OperationOutcomes (summaries) ...
        self.notes: list[str] = []  # ... but those with information only (`only_informs`)

    def feed(self, chunk: bytes) -> bytes:
        end = chunk.rfind(b"\n")
        if end < 0:
            self.buf += chunk
            self._check_pending()
            return b""
        self.buf += chunk[: end + 1]
        block, self.buf = self.buf, bytearray(chunk[end + 1 :])
        self._check_pending()
        return b"".join([self._line(line) for line in bytes(block).split(b"\n")[:-1]])

    def finish(self) -> bytes:
        rest, self.buf = bytes(self.buf), bytearray()
        return self._line(rest) if rest.strip() else b""

    def _check_pending(self) -> None:
        if len(self.buf) > self.max_line:
            self._too_long(self.lineno + 1)

    def _too_long(self, lineno: int) -> None:
        raise ExportDamaged(
            f"{self.where(lineno)}: a line longer than {self.max_line} bytes (the line size cap)"
        )

    def _line(self, raw: bytes) -> bytes:
        self.lineno += 1
        if len(raw) > self.max_line:
            self._too_long(self.lineno)
        if self.lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        line = raw.strip()
        if not line:
            return b""
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ExportDamaged(f"{self.where(self.lineno)}: not valid JSON ({exc.msg})") from exc
        rtype = value.get("resourceType") if isinstance(value, dict) else None
        if rtype != self.line_type:
            got = repr(rtype)[:70] if isinstance(rtype, str) else "no resourceType"
            raise ExportDamaged(
                f"{self.where(self.lineno)}: expected resourceType {self.line_type}, got {got}"
            )
        self.lines += 1
        if self.keep_errors:
            kept = self.notes if only_informs(value) else self.errors
            if len(kept) < MAX_ERRORS:
                kept.append(outcome_summary(value))
        if self.criteria is not None and not matches(value, self.criteria):
            return b""
        self.kept += 1
        return line + b"\n"
