"""Progress of the nightly job's stages: tqdm bars on a terminal, log lines otherwise.

    progress = make_progress(sys.stderr)
    with progress.stage("applied", unit="resources") as bar:
        for item in items:
            bar.update()

`LogProgress` logs "<stage>: N so far" every 10,000 items and "<stage>: N" at the end, through the
`ips_screen.nightly` logger (so `--log-format json` gives JSON lines with an `event`).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import IO, Protocol

log = logging.getLogger("ips_screen.nightly")

LOG_EVERY = 10_000


class Stage(Protocol):
    def update(self, n: int = 1) -> None: ...

    def __enter__(self) -> Stage: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Progress(Protocol):
    def stage(self, name: str, *, total: int | None = None, unit: str = "items") -> Stage: ...


class _LogStage:
    def __init__(self, name: str, unit: str, every: int) -> None:
        self.name, self.unit, self.every = name, unit, every
        self.count = 0

    def update(self, n: int = 1) -> None:
        before = self.count // self.every
        self.count += n
        if self.count // self.every > before:
            log.info(
                "%s: %d %s so far",
                self.name,
                self.count,
                self.unit,
                extra={"event": {"stage": self.name, "count": self.count, "done": False}},
            )

    def __enter__(self) -> _LogStage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        log.info(
            "%s: %d %s",
            self.name,
            self.count,
            self.unit,
            extra={"event": {"stage": self.name, "count": self.count, "done": True}},
        )


class LogProgress:
    """A log line every `every` items of a stage, and one when it ends."""

    def __init__(self, every: int = LOG_EVERY) -> None:
        self.every = every

    def stage(self, name: str, *, total: int | None = None, unit: str = "items") -> _LogStage:
        return _LogStage(name, unit, self.every)


class _TqdmStage:
    def __init__(self, bar: object) -> None:
        self.bar = bar

    def update(self, n: int = 1) -> None:
        self.bar.update(n)  # type: ignore[attr-defined]

    def __enter__(self) -> _TqdmStage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.bar.close()  # type: ignore[attr-defined]


class TqdmProgress:
    """A tqdm bar per stage on `stream` (a terminal)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def stage(self, name: str, *, total: int | None = None, unit: str = "items") -> _TqdmStage:
        from tqdm import tqdm

        return _TqdmStage(
            tqdm(total=total, desc=name, unit=f" {unit}", file=self.stream, mininterval=0.5)
        )


class NoProgress:
    """Nothing at all (library use, tests)."""

    def stage(self, name: str, *, total: int | None = None, unit: str = "items") -> _NoStage:
        return _NoStage()


class _NoStage:
    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _NoStage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


def make_progress(stream: IO[str]) -> Progress:
    """Bars when `stream` is a terminal, else log lines."""
    isatty = getattr(stream, "isatty", None)
    return TqdmProgress(stream) if callable(isatty) and isatty() else LogProgress()
