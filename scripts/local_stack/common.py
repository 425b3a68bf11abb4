"""What every module of the stack uses: the error it explains and the log on stderr."""

from __future__ import annotations

import sys


class StackError(Exception):
    """A failure we can explain; main() prints it to stderr and exits non-zero."""


def log(msg: str) -> None:
    # stdout is reserved for the KEY=value lines of `up`, so all chatter goes to stderr.
    print(f"stack: {msg}", file=sys.stderr, flush=True)
