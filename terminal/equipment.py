"""What the terminal's commands run against (its `Equipment`): the reader, one call at a
time through a `CardSlot`, the settlement host, where receipts go, the outlet's key and
operator, the terminal's ID. No Textual here, and nothing of the card protocol, the
flows or the host's workings: the app builds its equipment before its first screen, and
imports what runs the commands (terminal/worker.py) only after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from cardio.readers.errors import NoResponseError, ReaderBusyError

if TYPE_CHECKING:
    from pathlib import Path

    from cardio.keysource import KeySource
    from cardio.readers.base import Reader
    from terminal.settlement import PlatformLink


@dataclass(frozen=True)
class OutletSetup:
    """`--outlet`: the service outlet's operations instead of the pharmacy's."""

    keys: KeySource = field(repr=False)  # the issuer's master keys, or a PSAM
    operator: str
    log: Path


T = TypeVar("T")
DEFAULT_CARD_TIMEOUT = 10.0  # seconds a card command may take before "no response"
BUSY_WAIT = 0.5  # how long a new command waits for the reader before it is "busy"


class CardSlot:
    """The reader, one call at a time, each card call with a deadline.

    A call with a deadline runs in a daemon thread of its own: past the deadline the
    caller gets NoResponseError and goes on, while that thread keeps the reader until
    the card answers or the reader gives up; meanwhile every other call gets
    ReaderBusyError. A daemon thread, not a pool's, so that a reader that hangs for ever
    never keeps the program from exiting.
    """

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def call(
        self, fn: Callable[[], T], *, deadline: float | None = None, wait: float = BUSY_WAIT
    ) -> T:
        """fn() holding the reader; deadline None waits as long as fn takes."""
        if not self._lock.acquire(timeout=wait):
            raise ReaderBusyError()
        if deadline is None:
            try:
                return fn()
            finally:
                self._lock.release()
        box: list[T] = []
        error: list[BaseException] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append(fn())
            except BaseException as e:  # handed to the caller, who decides
                error.append(e)
            finally:
                self._lock.release()
                done.set()

        threading.Thread(target=run, name="card-call", daemon=True).start()
        if not done.wait(deadline):
            raise NoResponseError()
        if error:
            raise error[0]
        return box[0]


@dataclass(frozen=True)
class Equipment:
    """What the terminal's commands run against: its reader (one call at a time, through
    `slot`), the settlement host, the key source (its PSAM), where receipts go, the
    outlet's keys and operator, and the terminal's ID."""

    reader: Reader
    host: PlatformLink | None = None  # None: payments end at the card's authorisation
    # The PSAM (or the issuer's master keys) each card is checked with before any PIN:
    # INTERNAL AUTHENTICATE, and RKSSSE / RK1DF04 for the protected reads. None: no check
    keys: KeySource | None = field(default=None, repr=False)
    terminal_id: str = "POS-0001"
    receipts: Path | None = None
    outlet: OutletSetup | None = None
    card_timeout: float | None = DEFAULT_CARD_TIMEOUT  # None or 0: no deadline
    slot: CardSlot = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot", CardSlot(self.reader))
