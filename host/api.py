"""What the host's parts share: a holder as the desk sees it, the host's error, and fen."""

from __future__ import annotations

from dataclasses import dataclass

from cardio.errors import CardioError


@dataclass(frozen=True)
class Holder:
    ssn: str
    name: str
    phone: str | None
    scheme: str
    balance_fen: int
    lost: bool


class HostError(CardioError):
    """A host problem for a person: the message says what to do."""


# SQLite stores an INTEGER in 64 bits: a larger Python int would not fit the column.
MAX_FEN = 2**63 - 1


def checked_text(what: str, value: object) -> str:
    """`value` as text a host can store, or a HostError naming `what` is wrong with it."""
    if value is None:
        raise HostError(f"the {what} is missing; give it as text")
    if not isinstance(value, str):
        raise HostError(f"the {what} must be text, not {type(value).__name__}; give it as text")
    if not value.strip():
        raise HostError(f"the {what} is empty; give it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (undecodable bytes) cannot be stored
        raise HostError(f"the {what} has characters that are not text; type it again") from None
    return value


def format_fen(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"
