"""What a flow asks the worker (terminal/worker.py) to run, and what the host says of the
holder when a card is read. PIN digits leave a flow only inside one of these commands,
and never show in their repr.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cardio.outlet import Operation
from host.client import Person
from host.daybook import Entry


@dataclass(frozen=True)
class ReadCard:
    pass


@dataclass(frozen=True)
class Verify:
    pin: str = field(repr=False)


@dataclass(frozen=True)
class ChangePin:
    old: str = field(repr=False)
    new: str = field(repr=False)


@dataclass(frozen=True)
class Presettle:
    """2101: how the bill splits between the pooled fund, the account and cash."""

    amount_fen: int
    card_number: str
    person: Person = field(repr=False)


@dataclass(frozen=True)
class Settle:
    """2102 under a pending reversal (terminal/settlement.py)."""

    amount_fen: int
    card_number: str
    person: Person = field(repr=False)
    holder_name: str | None = field(default=None, repr=False)  # for the receipt


@dataclass(frozen=True)
class RunOutlet:
    """One of the service outlet's privileged operations (cardio.outlet.Outlet.run)."""

    operation: Operation
    id_number: str
    new_pin: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FindSettlement:
    """The clerk's: today's standing settlements of this terminal whose id ends with
    `digits` (the day-book, PlatformLink.todays)."""

    digits: str


@dataclass(frozen=True)
class CancelSettlement:
    """The clerk's: 2103 of one of today's settlements, once confirmed."""

    entry: Entry = field(repr=False)


@dataclass(frozen=True)
class Reconcile:
    """The clerk's: the end of day (3201, and 3202 when the totals differ)."""


Command = (
    ReadCard
    | Verify
    | ChangePin
    | Presettle
    | Settle
    | RunOutlet
    | FindSettlement
    | CancelSettlement
    | Reconcile
)


@dataclass(frozen=True)
class Account:
    """What the host says of the holder, fetched with the card's facts."""

    lost: bool = False
    phone: str | None = None
    person: Person | None = field(default=None, repr=False)  # None: the platform knows none
