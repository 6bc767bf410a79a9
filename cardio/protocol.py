"""The host side of the social security card application: APDUs in, facts out.

Screens and the outlet call these; they never build an APDU themselves. Works over
any Reader (virtual or PC/SC), and degrades gracefully on a real card that does not
answer the emulator conventions (6D00 / 6A82 / 6A88): the facts are then None.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cardio import mac, pin, sw
from cardio.apdu import command, split_response
from cardio.errors import CardioError
from cardio.mac import CHALLENGE_LENGTH
from cardio.model import (
    CHANGE_PIN,
    LIFE_CYCLE_BYTES,
    PIN_STATE_OF_BYTE,
    PIN_STATUS_LENGTH,
    PIN_STATUS_TAG,
    SSSE_NAME,
    Cla,
    Fid,
    Ins,
    LifeCycle,
    MedicalTag,
    PinState,
    Sfi,
    Tag,
)
from cardio.readers.base import Reader
from cardio.sw import Sw


class NotASocialSecurityCard(CardioError):
    """The card does not hold the SSSE application."""

    def __init__(self) -> None:
        super().__init__("this is not a social security card; insert the holder's 社会保障卡")


class CardCommandError(CardioError):
    """The card refused a command the host needed."""

    def __init__(self, status: int, what: str) -> None:
        super().__init__(f"{what} ({status:04X} {sw.meaning(status)}); remove the card and retry")
        self.sw = status


@dataclass(frozen=True)
class PinStatus:
    life_cycle: LifeCycle | None
    pin_state: PinState | None
    tries_left: int | None
    try_limit: int | None


@dataclass(frozen=True)
class CardInfo:
    card_number: str | None
    category: str | None
    ssn: str | None
    name: str | None
    birth_date: dt.date | None
    scheme: str | None
    status: PinStatus
    identification_code: bytes | None = None  # EF05 tag 01: derives the card's MAC key


@dataclass(frozen=True)
class PinOutcome:
    """The card's answer to VERIFY or CHANGE PIN."""

    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == Sw.OK

    @property
    def wrong(self) -> bool:
        return sw.tries_left(self.sw) is not None

    @property
    def tries_left(self) -> int | None:
        left = sw.tries_left(self.sw)
        if left is not None:
            return left
        return 0 if self.blocked else None

    @property
    def blocked(self) -> bool:
        return self.sw == Sw.PIN_BLOCKED or self.sw == sw.wrong_pin(0)

    @property
    def not_activated(self) -> bool:
        return self.sw == Sw.CONDITIONS_NOT_SATISFIED


def _bcd_date(value: bytes) -> dt.date | None:
    try:
        text = value.hex()
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


class SocialSecurityCard:
    """One card in a connected reader."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def _send(self, apdu: bytes) -> tuple[bytes, int]:
        return split_response(self.reader.transmit(apdu))

    def select_application(self) -> None:
        _, status = self._send(command(Cla.ISO, Ins.SELECT, 0x04, 0x00, SSSE_NAME))
        if status != Sw.OK:
            raise NotASocialSecurityCard()

    def _record(self, sfi: int, tag: int) -> bytes | None:
        data, status = self._send(command(Cla.ISO, Ins.READ_RECORD, tag, (sfi << 3) | 0x04, le=0))
        if status != Sw.OK or len(data) < 2 or data[0] != tag:
            return None
        return data[2 : 2 + data[1]]

    def _text(self, sfi: int, tag: int, encoding: str = "ascii") -> str | None:
        value = self._record(sfi, tag)
        if value is None:
            return None
        return value.rstrip(b"\x00").decode(encoding, "replace")

    def pin_status(self) -> PinStatus:
        """GET DATA C1 (ours, docs/card.md §3); a real card's fallback: the status query."""
        data, status = self._send(
            command(Cla.PROPRIETARY, Ins.GET_DATA, 0x00, PIN_STATUS_TAG, le=0)
        )
        head = bytes((PIN_STATUS_TAG, PIN_STATUS_LENGTH))
        if status == Sw.OK and len(data) == len(head) + PIN_STATUS_LENGTH and data[:2] == head:
            life, state, left, limit = data[2:]
            return PinStatus(
                LifeCycle.ACTIVE
                if life == LIFE_CYCLE_BYTES[LifeCycle.ACTIVE]
                else LifeCycle.NOT_ACTIVATED,
                PIN_STATE_OF_BYTE.get(state),
                left,
                limit,
            )
        # Never a guessed PIN: the empty VERIFY costs no try.
        _, status = self._send(command(Cla.ISO, Ins.VERIFY, 0x00, 0x00))
        if status == Sw.PIN_BLOCKED:
            return PinStatus(LifeCycle.ACTIVE, None, 0, None)
        if status == Sw.CONDITIONS_NOT_SATISFIED:
            return PinStatus(LifeCycle.NOT_ACTIVATED, None, None, None)
        return PinStatus(None, None, sw.tries_left(status), None)

    def read_info(self) -> CardInfo:
        """Everything the terminal decides on, read in one go."""
        self.select_application()
        identification_code = self._record(Sfi.EF05, Tag.IDENTIFICATION_CODE)
        category = self._text(Sfi.EF05, Tag.CATEGORY)
        card_number = self._text(Sfi.EF05, Tag.CARD_NUMBER)
        ssn = self._text(Sfi.EF06, Tag.SSN)
        name = self._text(Sfi.EF06, Tag.NAME, "gbk")
        born = self._record(Sfi.EF06, Tag.BIRTH_DATE)
        scheme = None
        medical = Fid.DF04.to_bytes(2, "big")
        _, status = self._send(command(Cla.ISO, Ins.SELECT, 0x00, 0x00, medical))
        if status == Sw.OK:
            scheme = self._text(Sfi.EF05, MedicalTag.SCHEME)  # DF04's EF05
        return CardInfo(
            identification_code=identification_code,
            card_number=card_number,
            category=category,
            ssn=ssn,
            name=name,
            birth_date=_bcd_date(born) if born else None,
            scheme=scheme,
            status=self.pin_status(),
        )

    def verify(self, secret: str) -> PinOutcome:
        """Raises PinFormatError before anything is sent: a malformed PIN costs no try."""
        block = pin.encode(secret)
        _, status = self._send(command(Cla.ISO, Ins.VERIFY, 0x00, 0x00, block))
        return PinOutcome(status)

    def get_challenge(self) -> bytes:
        data, status = self._send(
            command(Cla.ISO, Ins.GET_CHALLENGE, 0x00, 0x00, le=CHALLENGE_LENGTH)
        )
        if status != Sw.OK or len(data) != CHALLENGE_LENGTH:
            raise CardCommandError(status, "the card gave no challenge")
        return data

    def protected(self, key: bytes, ins: int, p2: int, body: bytes = b"") -> int:
        """A MAC-protected service-outlet command (docs/card.md §5): a fresh challenge,
        then the command whose MAC chains from it. Returns the status word."""
        challenge = self.get_challenge()
        apdu = mac.protect(key, challenge, Cla.SECURE_MESSAGING, ins, 0x00, p2, body)
        _, status = self._send(apdu)
        return status

    def change_pin(self, old: str, new: str) -> PinOutcome:
        block = pin.change_block(old, new)  # format checked here, before the card
        _, status = self._send(command(Cla.PROPRIETARY, CHANGE_PIN, 0x01, 0x00, block))
        return PinOutcome(status)
