"""One Reader interface for the in-process virtual card and for PC/SC readers."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cardio.apdu import to_hex
from cardio.readers.transport import exchange
from cardio.trace import Responses, command_line

Trace = Callable[[str], None]


class EventKind(StrEnum):
    INSERTED = "inserted"
    REMOVED = "removed"
    READER_GONE = "reader-gone"
    SERVICE_LOST = "service-lost"
    SERVICE_BACK = "service-back"


@dataclass(frozen=True)
class CardEvent:
    kind: EventKind
    reader: str
    atr: bytes | None = None


Listener = Callable[[CardEvent], None]


@dataclass(frozen=True)
class ReaderInfo:
    name: str
    card_present: bool
    atr: bytes | None


class Reader(ABC):
    """A slot that may hold a card. One connection at a time; `transmit` handles T=0 habits."""

    name: str
    # The card can be put in and pulled out by software (a virtual slot): toggle().
    can_toggle: bool = False

    def __init__(self, trace: Trace | None = None) -> None:
        self.trace = trace
        self._responses = Responses()  # what of the answers the trace hides
        self._session_marked = False  # the trace's last line is this session's `reset`
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()

    # --- what each reader implements ------------------------------------------

    @abstractmethod
    def card_present(self) -> bool: ...

    @abstractmethod
    def connect(self) -> bytes:
        """Power the card up and connect; returns the ATR. Raises NoCardError etc."""

    @abstractmethod
    def reset(self) -> bytes:
        """Warm reset: the card's session is cleared; returns the ATR."""

    @abstractmethod
    def disconnect(self) -> None:
        """Power the card off and let it go (its session is cleared)."""

    @abstractmethod
    def _exchange(self, apdu: bytes) -> bytes:
        """One raw APDU, one raw response."""

    # --- shared ---------------------------------------------------------------

    def info(self) -> ReaderInfo:
        present = self.card_present()
        return ReaderInfo(self.name, present, self.peek_atr() if present else None)

    def peek_atr(self) -> bytes | None:
        return None

    def _session(self, atr: bytes) -> bytes:
        """A new card session (power-up or reset), marked in the trace with its ATR: a
        trace of several sessions records and replays as several (cardio record)."""
        if self.trace and not self._session_marked:  # a reset right after power-up: one
            self.trace("reset " + to_hex(atr))
        self._session_marked = True
        return atr

    def _ready(self) -> None:
        """Connect first where a reader does so by itself (PC/SC after a failed command):
        before the command is traced, so the new session's `reset` line comes first."""
        return None  # the others need the caller's connect()

    def transmit_raw(self, apdu: bytes) -> bytes:
        """Exactly one exchange, traced with PIN bytes masked."""
        self._ready()
        self._session_marked = False
        if self.trace:
            self.trace(command_line(apdu))
        response = self._exchange(apdu)
        if self.trace:
            self.trace(self._responses.line(apdu, response))
        return response

    def transmit(self, apdu: bytes) -> bytes:
        """One command, following 61xx and 6Cxx: all data || the final SW."""
        return exchange(self.transmit_raw, apdu)

    def subscribe(self, listener: Listener) -> None:
        with self._listeners_lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _emit(self, event: CardEvent) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)

    def toggle(self) -> None:
        """Put the card in, or pull it out (only where can_toggle)."""
        raise NotImplementedError(f"{self.name}: the card cannot be moved by software")

    def watch(self) -> object | None:
        """Start reporting insertions and removals to subscribers. A slot that reports
        them as they happen (a virtual one) needs nothing: the default does nothing."""
        return None

    def close(self) -> None:
        """Stop watching and let the card go."""
        self.disconnect()
