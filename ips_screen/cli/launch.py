"""The `ips-screen` command's entry point (and `python -m ips_screen`'s): a Ctrl-C while the
command is still loading, in the few tenths of a second its imports take, is said in one line
with exit 130, as it is later (`cli.main`), rather than as a KeyboardInterrupt traceback. This
module imports nothing of the command's until its handler is in place."""

from __future__ import annotations

import os
import signal


def entry_point() -> None:
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # e.g. a shell's background job
    if not ignored:
        signal.signal(signal.SIGINT, _interrupted_while_loading)
    from ips_screen.cli.main import entry_point as run_command

    if not ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    run_command()


def _interrupted_while_loading(signum: int, frame: object) -> None:
    os.write(2, b"ips-screen: interrupted\n")
    os._exit(130)  # nothing has started: nothing to stop or clean up
