"""The one error family of `cardio`, `pos-host` and `pos-terminal`, and their exit codes.

Every error a person may see derives from `CardioError`: its message is one sentence
that says what went wrong and what to do. `exit_code` says how a command ends on it:
`Exit.USAGE` for what was given (an option, a file's content, a typed value), and
`Exit.FAILED` for what happened (a reader, a card, a host). Each entry point catches
the base once (`cardio.usage.run_command`).
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    FAILED = 1  # it was tried, and did not work
    USAGE = 2  # what was given cannot be used: nothing was tried
    INTERRUPTED = 130  # Ctrl+C, as a shell reports SIGINT


class CardioError(Exception):
    """Base of every error shown to a person; str(e) is the sentence to show."""

    default = "the command failed; try again"
    exit_code = Exit.FAILED
    # The reader API's number for this failure (cardio/api_codes.py), None if it has none.
    api_code: int | None = None

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default)


class UsageError(CardioError):
    """Bad input from the command line, a file or a script: nothing was sent or written."""

    default = "that input cannot be used; see --help"
    exit_code = Exit.USAGE
    api_code: int | None = -14  # 命令参数错 (reader API appendix A)
