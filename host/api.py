"""What a terminal needs from a settlement host, whatever runs it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from cardio.errors import CardioError


class DebitStatus(StrEnum):
    DEBITED = "DEBITED"
    INSUFFICIENT = "INSUFFICIENT"  # refused: nothing debited
    LOST = "LOST"  # refused: the card was reported lost (S18)
    UNKNOWN_HOLDER = "UNKNOWN_HOLDER"  # refused: no account for this holder


@dataclass(frozen=True)
class Holder:
    ssn: str
    name: str
    phone: str | None
    scheme: str
    balance_fen: int
    lost: bool


@dataclass(frozen=True)
class Debit:
    """The host's answer to a payment. The same transaction id always gets the same answer."""

    txn_id: str
    status: DebitStatus
    amount_fen: int
    balance_after_fen: int | None
    time: str
    replayed: bool = False  # True when this answer was recorded by an earlier attempt

    @property
    def ok(self) -> bool:
        return self.status is DebitStatus.DEBITED


@dataclass(frozen=True)
class Transaction:
    txn_id: str
    terminal_id: str
    card_number: str
    ssn: str
    amount_fen: int
    time: str
    status: DebitStatus
    balance_after_fen: int | None


class HostError(CardioError):
    """A host problem for a person: the message says what to do."""


# SQLite stores an INTEGER in 64 bits: a larger Python int would not fit the column.
MAX_FEN = 2**63 - 1


def checked_text(what: str, value: object, *, empty: bool = False) -> str:
    """`value` as text a host can store, or a HostError naming `what` is wrong with it."""
    if value is None:
        raise HostError(f"the {what} is missing; give it as text")
    if not isinstance(value, str):
        raise HostError(f"the {what} must be text, not {type(value).__name__}; give it as text")
    if not empty and not value.strip():
        raise HostError(f"the {what} is empty; give it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (undecodable bytes) cannot be stored
        raise HostError(f"the {what} has characters that are not text; type it again") from None
    return value


def checked_amount(value: object) -> int:
    """A payment amount: whole fen above 0 that fits the database, else a HostError."""
    if type(value) is not int:  # bool and float are not amounts, even when they look whole
        raise HostError("an amount is a whole number of fen above 0; enter it again")
    if value <= 0:
        raise HostError("an amount is a whole number of fen above 0; enter it again")
    if value > MAX_FEN:
        raise HostError(f"an amount of more than {MAX_FEN} fen cannot be recorded; enter it again")
    return value


class SettlementHost(Protocol):
    def holder(self, ssn: str) -> Holder | None: ...

    def debit(
        self, txn_id: str, terminal_id: str, card_number: str, ssn: str, amount_fen: int
    ) -> Debit: ...

    def report_loss(self, ssn: str) -> Holder: ...

    def cancel_loss(self, ssn: str) -> Holder: ...

    def history(self, ssn: str) -> list[Transaction]: ...


def format_fen(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"
