"""What a flow shows: the stage it is on and the lines to say, as catalogue keys, and
what each stage lets the holder type. No Textual here: screens turn a `View` into text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cardio.pin import PIN_LENGTH
from cardio.protocol import CardInfo

MAX_AMOUNT_DIGITS = 8  # up to 999999.99 yuan
ID_LENGTH = 18  # a resident ID number (the outlet types it)


class Stage(StrEnum):
    AMOUNT = "amount"
    ID_NUMBER = "id-number"  # the service outlet asks for the holder's ID
    INSERT = "insert"
    READING = "reading"
    CONFIRM_AMOUNT = "confirm-amount"  # a card without PIN: the holder confirms the amount
    PIN = "pin"
    NEW_PIN = "new-pin"
    CONFIRM_PIN = "confirm-pin"
    WORKING = "working"
    PRESETTLING = "presettling"  # 2101: the split is asked before any PIN
    SETTLING = "settling"
    RESULT = "result"
    INFO = "info"


ENTRY_STAGES = {Stage.AMOUNT, Stage.ID_NUMBER, Stage.PIN, Stage.NEW_PIN, Stage.CONFIRM_PIN}
PIN_STAGES = {Stage.PIN, Stage.NEW_PIN, Stage.CONFIRM_PIN}
FINAL_STAGES = {Stage.RESULT, Stage.INFO}
INPUT_STAGES = ENTRY_STAGES | {Stage.CONFIRM_AMOUNT}  # Enter is taken here
ENTRY_LIMITS = {
    Stage.AMOUNT: MAX_AMOUNT_DIGITS,
    Stage.ID_NUMBER: ID_LENGTH,
    Stage.CONFIRM_AMOUNT: 0,
}  # other entry stages: a PIN's length
# Nothing is in flight on these: the holder's time is limited (--timeout).
TIMED_STAGES = INPUT_STAGES | FINAL_STAGES | {Stage.INSERT}


class Tone(StrEnum):
    PLAIN = "plain"
    OK = "ok"
    ERROR = "error"


def typed(stage: Stage, entry: str, key: str) -> str:
    """The entry after `key` on `stage`: what the stage takes and no more. ASCII digits
    up to the stage's length; an amount never starts with 0; X only as the last
    character of an ID number (some end in X)."""
    if len(entry) >= ENTRY_LIMITS.get(stage, PIN_LENGTH):
        return entry
    if key in "0123456789" and len(key) == 1:
        return entry if stage is Stage.AMOUNT and not entry and key == "0" else entry + key
    if key == "X" and stage is Stage.ID_NUMBER and len(entry) == ID_LENGTH - 1:
        return entry + key
    return entry


@dataclass(frozen=True)
class Line:
    key: str
    params: tuple[tuple[str, object], ...] = ()
    tone: Tone = Tone.PLAIN


def line(key: str, tone: Tone = Tone.PLAIN, **params: object) -> Line:
    return Line(key, tuple(params.items()), tone)


@dataclass(frozen=True)
class View:
    stage: Stage
    lines: tuple[Line, ...] = ()
    info: CardInfo | None = None
    success: bool | None = None  # for RESULT
    keep: bool = False  # a receipt: money moved, so only 确认 closes it
    brief: bool = False  # a notice (cancelled, timed out) that closes by itself
    lost: bool = False  # for INFO: the host says the card was reported lost

    @property
    def entry(self) -> bool:
        return self.stage in ENTRY_STAGES

    @property
    def accepts(self) -> bool:
        """Keys go to the entry line and Enter is taken."""
        return self.stage in INPUT_STAGES

    @property
    def timed(self) -> bool:
        return self.stage in TIMED_STAGES and not self.keep and not self.brief

    @property
    def alert(self) -> bool:
        """A wrong PIN, a lock, a refusal: the terminal beeps."""
        return any(item.tone is Tone.ERROR for item in self.lines)

    @property
    def secret(self) -> bool:
        return self.stage in PIN_STAGES

    @property
    def final(self) -> bool:
        return self.stage in FINAL_STAGES
