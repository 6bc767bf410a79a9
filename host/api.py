"""What a terminal needs from a settlement host, whatever runs it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


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


class HostError(Exception):
    """A host problem for a person: the message says what to do."""


class SettlementHost(Protocol):
    def holder(self, ssn: str) -> Holder | None: ...

    def debit(self, txn_id: str, terminal_id: str, card_number: str, ssn: str,
              amount_fen: int) -> Debit: ...

    def report_loss(self, ssn: str) -> Holder: ...

    def cancel_loss(self, ssn: str) -> Holder: ...

    def history(self, ssn: str) -> list[Transaction]: ...


def format_fen(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"
