"""What the commands (`cardio`, `pos-host`, `pos-terminal`) say on stderr: one line each.

`OneLineParser` is argparse with one change: a usage error is one line, `PROG: MESSAGE;
see PROG --help`, and exit 2, instead of the usage block. `one_line` makes any message
safe to print on one line: a path's newline, terminal escape or undecodable byte is
shown as an escape, not obeyed. `run_command` is where each command catches the error
family (cardio.errors) once and turns it into that line and an exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

from cardio.errors import CardioError, Exit
from cardio.trace import failure

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
        self.exit(Exit.USAGE, f"{self.prog}: {one_line(message)}; see {self.prog} --help\n")


def say(prog: str, message: object) -> None:
    """The one form of every error line: `PROG: what; what to do`."""
    print(f"{prog}: {one_line(str(message))}", file=sys.stderr)


def run_command(prog: str, body: Callable[[], int], out: TextIO | None = None) -> int:
    """Run a command's body; whatever goes wrong is one line on stderr and an exit code
    (cardio.errors.Exit), never a traceback. `out` is the body's output, flushed here so
    that a closed pipe is told here and not at exit."""
    try:
        code = body()
        if out is not None:
            out.flush()
        return code
    except CardioError as e:
        say(prog, e)
        return e.exit_code
    except BrokenPipeError:  # `prog ... | head`: whoever read our output is gone
        if out is None or out is sys.stdout:
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.FAILED
    except OSError as e:  # a last net: a path that cannot be used
        where = f"{e.filename}: " if e.filename else ""
        say(
            prog,
            f"{where}{e.strerror or type(e).__name__}; check the path and its "
            "permissions, and try again",
        )
        return Exit.FAILED
    except EOFError:
        say(
            prog,
            "the input ended before the answer; type it in a terminal or give it on standard input",
        )
        return Exit.FAILED
    except KeyboardInterrupt:  # what was durable is kept; nothing half-done is
        say(prog, "interrupted; nothing half-done was kept, run the command again to finish")
        return Exit.INTERRUPTED
    except Exception as e:  # a bug: its type and place only (its message may hold a PIN)
        say(prog, f"unexpected error ({failure(e)}); this is a bug in {prog}, please report it")
        return Exit.FAILED
