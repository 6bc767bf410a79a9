"""What the commands (`cardio`, `pos-host`, `pos-terminal`) say on stderr: one line each.

`OneLineParser` is argparse with one change: a usage error is one line, `PROG: MESSAGE;
see PROG --help`, and exit 2, instead of the usage block. `one_line` makes any message
safe to print on one line: a path's newline, terminal escape or undecodable byte is
shown as an escape, not obeyed.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_USAGE = 2

_SURROGATES = range(0xDC80, 0xDD00)  # os.fsdecode's stand-ins for undecodable bytes


def _escape(c: str) -> str:
    if c.isprintable():
        return c
    if ord(c) in _SURROGATES:  # the byte the name really holds, as Python writes bytes
        return f"\\x{ord(c) - 0xDC00:02x}"
    return c.encode("unicode_escape").decode("ascii")


def one_line(text: str) -> str:
    """`text` on one line: a newline, a terminal escape or an undecodable byte (0xFF of
    a file name, say, shown as `\\xff`) is shown, not obeyed."""
    return "".join(map(_escape, text))


class OneLineParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are one line. Its subparsers are
    OneLineParsers too (add_subparsers makes them of the parent's class), each with
    its own prog (`cardio card new`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {one_line(message)}; see {self.prog} --help\n")
