"""Where log lines go: stderr, as text or as JSON lines (`--log-format json`).

Shared by the command line (`cli/main.py`) and each `serve --workers` process
(`service.app.app_from_environment`), so neither has to import the other.
"""

from __future__ import annotations

import argparse
import logging
import sys

import orjson

from ips_screen.presentation.plain_text import one_line


class _TextFormatter(logging.Formatter):
    """A record as one line: its message's line feeds and control characters escaped
    (`one_line`), so that what a message quotes cannot forge a line of its own; a traceback
    below it stays as Python wrote it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if hasattr(record, "event"):
            payload["event"] = record.event
        return orjson.dumps(payload).decode()


def configure_logging(args: argparse.Namespace) -> None:
    """Send the `ips_screen` loggers to stderr at the level and in the format `args` ask for
    (`verbose`, `quiet`, `log_format`)."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("ips_screen")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
