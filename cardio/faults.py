"""Faults a served card can be told to show (`cardio serve --faults`, `cardio ctl fault`).

One SPEC is one fault, then optional `,p=P` (the chance, 0 < P <= 1, that an APDU it
applies to gets it; default 1) and `,count=N` (how many times it fires, default 1;
`count=*` for every time); remove-after takes neither. Faults add up, but a slot holds
one tear and one remove-after at a time: a new one replaces the old.

    mute              no answer at all: the reader waits (pcscd has no timeout of its own)
    delay=MS          the answer only after MS milliseconds
    remove-after=N    the card is pulled out once N more APDUs have been answered
    tear              power lost in the middle of the card's next durable write
    tear=old|new      ... at a point where the card comes back in that state
    sw=INS:SW         answer status word SW (4 hex digits) to instruction INS, unexecuted
    flip              one byte of the answer corrupted (XOR FF)

What a fault does to a frame is the slot's business (cardio/slots.py); the tear
itself is here, since it has to cut a file write short exactly as lost power would.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from cardio.card.state import CardState
from cardio.card.store import FILE_MODE, FileStore, encode
from cardio.errors import UsageError
from cardio.resources import fsync_folder
from cardio.sw import CardError, Sw

FOREVER = -1  # count=*: the fault never runs out
MAX_DELAY_MS = 600_000  # ten minutes: longer is a typo, and a stop would wait for none of it
SYNTAX = (
    "mute, delay=MS, remove-after=N, tear, tear=old|new, sw=INS:SW or flip, "
    "then optionally ,p=0.5 and ,count=N|*"
)


class Kind(Enum):
    MUTE = "mute"
    DELAY = "delay"
    REMOVE_AFTER = "remove-after"
    TEAR = "tear"
    SW = "sw"
    FLIP = "flip"


@dataclass
class Fault:
    """One armed fault and how many times it may still fire."""

    kind: Kind
    value: str = ""  # as given after '=' (shown back in the status)
    delay_ms: int = 0
    after: int = 0  # remove-after: APDUs still to answer
    ins: int | None = None  # sw: the instruction it answers
    sw: bytes = b""
    tear_to: str | None = None  # tear: "old", "new" or None (either, by chance)
    p: float = 1.0
    left: int = 1  # FOREVER: unlimited

    @property
    def name(self) -> str:
        """The fault without its options, for the log: `sw=20:6983`."""
        return self.kind.value + (f"={self.value}" if self.value else "")

    def spec(self) -> str:
        """As it would be given, with what is left of its count (for the status)."""
        text = self.name
        if self.p != 1.0:
            text += f",p={self.p:g}"
        if self.left != 1:
            text += ",count=" + ("*" if self.left == FOREVER else str(self.left))
        return text

    def applies(self, apdu: bytes) -> bool:
        """Whether this fault is for this APDU (before the dice)."""
        if self.kind is Kind.SW:
            return len(apdu) >= 2 and apdu[1] == self.ins
        return self.kind in (Kind.MUTE, Kind.DELAY, Kind.FLIP)

    def fire(self, rng: random.Random) -> bool:
        """The dice and the count: True when it fires now (and one use is spent)."""
        if self.left == 0 or (self.p < 1.0 and rng.random() >= self.p):
            return False
        if self.left != FOREVER:
            self.left -= 1
        return True

    @property
    def spent(self) -> bool:
        return self.left == 0


def _bad(spec: str, why: str) -> UsageError:
    return UsageError(f"fault {spec!r}: {why}; write one of: {SYNTAX}")


def _number(spec: str, text: str, what: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise _bad(spec, f"{what} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def _hex(spec: str, text: str, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != size or len(text) != 2 * size:
        raise _bad(spec, f"{what} must be {2 * size} hex digits, not {text!r}")
    return raw


def parse(spec: str) -> Fault:
    """A fault from its SPEC; UsageError (one line) when it is not one."""
    text = spec.strip()
    if not text:
        raise _bad(spec, "it is empty")
    head, *options = text.split(",")
    name, eq, value = head.partition("=")
    try:
        kind = Kind(name.strip().lower())
    except ValueError:
        raise _bad(spec, f"there is no fault {name!r}") from None
    value = value.strip()
    fault = Fault(kind, value)
    if kind in (Kind.MUTE, Kind.FLIP) and eq:
        raise _bad(spec, f"{kind.value} takes no value")
    if kind is Kind.DELAY:
        fault.delay_ms = _number(spec, value, "the delay in ms", 1, MAX_DELAY_MS)
    elif kind is Kind.REMOVE_AFTER:
        fault.after = _number(spec, value, "the number of APDUs", 1, 1_000_000)
    elif kind is Kind.TEAR:
        if eq and value not in ("old", "new"):
            raise _bad(spec, f"tear comes back in the 'old' or 'new' state, not {value!r}")
        fault.tear_to = value or None
    elif kind is Kind.SW:
        ins, colon, sw = value.partition(":")
        if not colon:
            raise _bad(spec, "sw needs INS:SW, e.g. sw=20:6983")
        fault.ins = _hex(spec, ins, 1, "INS")[0]
        fault.sw = _hex(spec, sw, 2, "SW")
    if kind is Kind.REMOVE_AFTER and options:
        raise _bad(spec, "remove-after fires once, after N APDUs: it takes no ,p= or ,count=")
    for option in options:
        key, eq, setting = (part.strip() for part in option.partition("="))
        if key == "p" and eq:
            try:
                fault.p = float(setting)
            except ValueError:
                fault.p = -1.0
            if not 0.0 < fault.p <= 1.0:
                raise _bad(spec, f"p is a probability above 0 and at most 1, not {setting!r}")
        elif key == "count" and eq:
            fault.left = (
                FOREVER if setting == "*" else _number(spec, setting, "count", 1, 1_000_000)
            )
        else:
            raise _bad(spec, f"{option.strip()!r} is neither p=P nor count=N")
    return fault


def parse_slotted(text: str) -> tuple[int, Fault]:
    """`--faults SLOT:SPEC` or `--faults SPEC` (slot 0)."""
    slot, colon, rest = text.partition(":")
    if colon and slot.isascii() and slot.isdigit():
        return int(slot), parse(rest)
    return 0, parse(text)


# --- the tear: a write cut short by lost power --------------------------------------------


@dataclass(frozen=True)
class PowerLost:
    """What a tear did: the file before the write, and what the write would have made it."""

    old: bytes
    new: bytes


@dataclass
class TearingStore:
    """A FileStore whose next save may be cut short (the `tear` fault). The steps are the
    real ones of an atomic write, stopped after a prefix: after the temp file's write or
    its fsync the card file is still the old one (the temp is left, as a crash leaves it,
    for the next opener to remove); after the rename it is the new one.

    The power is gone from then on, so what the card does next does not matter: the save
    fails with a status word (CardError, which the card's dispatcher answers quietly), and
    `lost` tells whoever runs the card to drop that answer and the card's memory."""

    inner: FileStore
    armed: Fault | None = None
    rng: random.Random = field(default_factory=random.Random)
    lost: PowerLost | None = None

    def save(self, state: CardState) -> None:
        fault = self.armed
        if fault is None or not fault.fire(self.rng):
            self.inner.save(state)
            return
        if fault.spent:
            self.armed = None
        came_back = fault.tear_to or self.rng.choice(("old", "new"))
        old, new = self.inner.path.read_bytes(), encode(state)
        self._cut_short(new, to_new=came_back == "new")
        self.lost = PowerLost(old, new)
        raise CardError(Sw.MEMORY_FAILURE)  # never sent: the slot drops it

    def _cut_short(self, data: bytes, *, to_new: bool) -> None:
        path = self.inner.path
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, FILE_MODE)
        try:
            os.write(fd, data[: len(data) // 2] if not to_new else data)
            if to_new:
                os.fsync(fd)
        finally:
            os.close(fd)
        if to_new:
            os.replace(tmp, path)
            fsync_folder(path.parent)


def came_back_as(path: Path, old: bytes, new: bytes) -> str:
    """Which state the file holds after a tear: 'old', 'new' or (never, if the store
    keeps its promise) 'torn'."""
    raw = path.read_bytes()
    return "old" if raw == old else "new" if raw == new else "torn"
