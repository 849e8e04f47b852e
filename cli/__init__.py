"""isasim.cli: the `isasim` command (cli/main.py parses, calls the library, renders)."""

import signal
import sys


def _interrupted(signum, frame) -> None:
    sys.stderr.write("isasim: interrupted\n")
    sys.exit(130)


def run() -> None:
    """The console script. A Ctrl-C while the command line is still loading ends it like one later does: one
    line, exit status 130, no traceback (main() catches the later ones)."""
    watching = signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # (a background job ignores it: so do we)
    if watching:
        signal.signal(signal.SIGINT, _interrupted)
    from isasim.cli.main import main

    if watching:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
