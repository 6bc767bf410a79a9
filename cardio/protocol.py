"""The host side of the social security card application: APDUs in, facts out.

Screens and the outlet call these; they never build an APDU themselves. Works over
any Reader (virtual or PC/SC), and degrades gracefully on a real card that does not
answer the emulator conventions (6D00 / 6A82 / 6A88): the facts are then None.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cardio import api_codes, pin, sw
from cardio.apdu import command, historical_bytes, split_response
from cardio.errors import CardioError
from cardio.issuer import SPEC, KeyName
from cardio.keysource import CardIdentity, KeySource
from cardio.model import (
    CHANGE_PIN,
    LIFE_CYCLE_BYTES,
    MEDICAL_AID,
    PIN_STATE_OF_BYTE,
    PIN_STATUS_LENGTH,
    PIN_STATUS_TAG,
    SSSE_NAME,
    Algorithm,
    Cla,
    Fid,
    Ins,
    LifeCycle,
    MedicalTag,
    PinState,
    RecordMode,
    SelectBy,
    SelectResponse,
    Tag,
)
from cardio.readers.base import Reader
from cardio.sw import Sw


class NotASocialSecurityCard(CardioError):
    """The card does not hold the SSSE application."""

    api_code = api_codes.ApiCode.WRONG_CARD_TYPE

    def __init__(self) -> None:
        super().__init__("this is not a social security card; insert the holder's 社会保障卡")


class CounterfeitCardError(CardioError):
    """The card's INTERNAL AUTHENTICATE answer is not what its issuer's keys give."""

    api_code = api_codes.ApiCode.NOT_GENUINE  # reader API appendix A

    def __init__(self) -> None:
        super().__init__(
            "this card failed the authenticity check: it is counterfeit or from another "
            "issuer; hand it back and do not accept it"
        )


class UncheckableCardError(CardioError):
    """The card does not say what its check needs (algorithm, identification code, the
    ATR's serial): it cannot be told genuine."""

    def __init__(self) -> None:
        super().__init__(
            "the card does not say its algorithm, identification code or card serial; "
            "it cannot be checked: hand it back"
        )


class CardCommandError(CardioError):
    """The card refused a command the host needed."""

    def __init__(self, status: int, what: str) -> None:
        super().__init__(f"{what} ({status:04X} {sw.meaning(status)}); remove the card and retry")
        self.sw = status
        self.api_code = api_codes.of_sw(status)


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
    spec_version: str | None = None  # EF05 tag 03: "1.00", "2.00", "3.00"


@dataclass(frozen=True)
class Basics:
    """The card's part of the reader API's iReadCardBas answer (its §1.1.2): personal
    data (the holder's SSN and name), for the integrator's own comparison only."""

    identification_code: bytes  # EF05 01
    ssn: str  # EF06 08
    card_number: str  # EF05 07
    name: str  # EF06 09 ‖ 4E
    spec_version: str  # EF05 03
    issue_date: str  # EF05 05, CCYYMMDD
    expiry_date: str  # EF05 06, CCYYMMDD


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

    @property
    def api_code(self) -> int | None:
        """The reader API's number for a failed VERIFY / CHANGE PIN (its appendix A):
        -51 wrong PIN (N tries left), -52 blocked; None when the PIN was right."""
        return None if self.ok else api_codes.of_pin_sw(self.sw)


CHALLENGE_LENGTH = 8  # every GET CHALLENGE the host sends (part 4 §8.4.1 recommends 8)
RANDOM_LENGTH = 8  # INTERNAL / EXTERNAL AUTHENTICATE's halves (part 5 §6.4, §6.7)
_FCI_ALGORITHM = bytes.fromhex("9F0C")  # the SSSE FCI's issuer data, with 86 01 xx inside
_ALGORITHM_TAG = 0x86


def algorithm_of(fci: bytes, identification_code: bytes | None) -> Algorithm | None:
    """The card's algorithm: `9F0C { 86 01 xx }` in the SSSE's FCI; without it, the reader
    API's rule (§10.1): a Beijing card (region 11...) SSF33, any other DES."""
    at = fci.find(_FCI_ALGORITHM)
    if at >= 0:
        inner = fci[at + 3 : at + 3 + fci[at + 2]] if at + 2 < len(fci) else b""
        if len(inner) >= 3 and inner[0] == _ALGORITHM_TAG and inner[1] == 1:
            try:
                return Algorithm(inner[2])
            except ValueError:
                return None
    if identification_code is None:
        return None
    return Algorithm.SSF33 if identification_code[:1] == b"\x11" else Algorithm.DES


def _cn(value: bytes) -> str:
    """A cn item as its digits: packed BCD, a short value padded with F (V2.0 §7)."""
    return value.hex().upper().rstrip("F")


def _bcd_date(value: bytes) -> dt.date | None:
    try:
        text = value.hex()
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


# Le of each tagged record read by identifier: tag ‖ length ‖ value, the value's length
# from the V2.0 notice's table 9 (EF05 §8.1.1, EF06 §8.1.2, DF04/EF05 §8.5.1). A card
# whose record is another length answers 6Cxx and the transport resends (part 5 §6.10.4).
RECORD_LE: dict[int, int] = {
    Tag.IDENTIFICATION_CODE: 2 + 16,
    Tag.CATEGORY: 2 + 1,
    Tag.SPEC_VERSION: 2 + 4,
    Tag.ISSUER: 2 + 12,
    Tag.ISSUE_DATE: 2 + 4,
    Tag.EXPIRY_DATE: 2 + 4,
    Tag.CARD_NUMBER: 2 + 9,
    Tag.SSN: 2 + 18,
    Tag.NAME: 2 + 30,
    Tag.NAME_EXTENSION: 2 + 20,
    Tag.SEX: 2 + 1,
    Tag.ETHNIC: 2 + 1,
    Tag.BIRTHPLACE: 2 + 3,
    Tag.BIRTH_DATE: 2 + 4,
    MedicalTag.SCHEME: 2 + 8,
}
V3 = "3.00"  # a 3.00 card's holder data is read under RKSSSE (reader API §10.2)
SCHEME_LENGTH = 3  # DF04/EF05 tag 81: characters 1-3 are the scheme code (V2.0 §8.5.1.1)


@dataclass(frozen=True)
class Read:
    """One record read by identifier: its value, or None and the card's status word."""

    value: bytes | None
    sw: int


def _text(read: Read | None, encoding: str = "ascii") -> str | None:
    if read is None or read.value is None:
        return None
    return read.value.rstrip(b"\x00").decode(encoding, "replace")


def _version_1(version: str | None) -> bool:
    """A 1.0x card (no name extension 4E). The reader API §10.2 compares the first three
    characters, and an empty version means 1.0x. A version that could not be read (None)
    is not known to be 1.0x: 4E is asked for, and its absence tolerated."""
    return version is not None and (version == "" or version[:3] == "1.0")


def full_name(name: Read | None, extension: Read | None) -> str | None:
    """09 ‖ 4E, each without its 00 padding (V2.0 §7), decoded as GBK (reader API §10.2)."""
    if name is None or name.value is None:
        return None
    raw = name.value.rstrip(b"\x00")
    if extension is not None and extension.value is not None:
        raw += extension.value.rstrip(b"\x00")
    return raw.decode("gbk", "replace")


class SocialSecurityCard:
    """One card in a connected reader.

    Reads as real terminals do (docs/card.md §8; the standard's part 7 §5 and the
    reader API §1.1.3): SELECT the SSSE by name, SELECT each EF with P1=02 and READ
    RECORD by record identifier (P2=00, the first occurrence) with the exact Le.
    """

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.fci = b""  # the SSSE's, from the last select_application

    def _send(self, apdu: bytes) -> tuple[bytes, int]:
        return split_response(self.reader.transmit(apdu))

    def select_application(self) -> None:
        """Part 5 §6.11 (table 34: Le 00): the SSSE by its DF name; its FCI says the
        card's algorithm (part 7 §5.3)."""
        fci, status = self._send(
            command(Cla.ISO, Ins.SELECT, SelectBy.NAME, SelectResponse.FCI, SSSE_NAME, le=0)
        )
        if status != Sw.OK:
            raise NotASocialSecurityCard()
        self.fci = fci

    def select_ef(self, fid: Fid) -> int:
        """An EF of the current DF, P1=02 (part 5 §6.11.2 table 35); no FCI comes back.
        A card that refuses P1=02 (6A86) is asked with P1=00, which many terminals send."""
        fid_bytes = fid.to_bytes(2, "big")
        _, status = self._send(
            command(Cla.ISO, Ins.SELECT, SelectBy.EF, SelectResponse.FCI, fid_bytes)
        )
        if status == Sw.WRONG_P1P2:
            _, status = self._send(
                command(Cla.ISO, Ins.SELECT, SelectBy.FID, SelectResponse.FCI, fid_bytes)
            )
        return status

    def read_tagged(self, tag: int) -> Read:
        """READ RECORD of the current EF by record identifier, first occurrence (part 3
        §5.3.1; part 5 §6.10.2 table 32, P2 = 00), with the record's exact Le; 6Cxx is
        resent by the transport. A record whose first byte is not the tag is refused."""
        le = RECORD_LE.get(tag, 0)
        data, status = self._send(command(Cla.ISO, Ins.READ_RECORD, tag, RecordMode.FIRST, le=le))
        if status != Sw.OK:
            return Read(None, status)
        if len(data) < 2 or data[0] != tag or len(data) < 2 + data[1]:
            return Read(None, Sw.NO_DIAGNOSIS)
        return Read(data[2 : 2 + data[1]], status)

    def read_file(self, fid: Fid, tags: Sequence[int]) -> dict[int, Read]:
        """SELECT the EF (P1=02), then each tag by identifier. If the EF cannot be
        selected, every tag reads as that status word."""
        status = self.select_ef(fid)
        if status != Sw.OK:
            return {tag: Read(None, status) for tag in tags}
        return {tag: self.read_tagged(tag) for tag in tags}

    def read_holder(self, tags: Sequence[int], version: str | None) -> dict[int, Read]:
        """EF06's records; on a 2.00/3.00 card also the name extension 4E, whose absence
        (6A83: some 2.00 cards lack it) is no error."""
        wanted = list(tags)
        if not _version_1(version) and Tag.NAME in wanted:
            wanted.insert(wanted.index(Tag.NAME) + 1, Tag.NAME_EXTENSION)
        return self.read_file(Fid.EF06, wanted)

    def read_scheme(
        self, keys: KeySource | None = None, card: CardIdentity | None = None
    ) -> str | None:
        """DF04 (medical insurance) selected by its AID (V2.0 §5.1 table 2), its EF05,
        record 81 by identifier: the scheme code is its first three characters
        (V2.0 §8.5.1.1). The file is read after the PIN or RK1DF04 (V2.0 table 7): with
        a key source, RK1DF04's EXTERNAL AUTHENTICATE first. None when the card has no
        such application or record, or will not let it be read.

        The SSSE is selected again afterwards: the PIN is verified there, before any
        application is selected (part 7 §5), and VERIFY must not find DF04 current."""
        _, status = self._send(
            command(Cla.ISO, Ins.SELECT, SelectBy.NAME, SelectResponse.FCI, MEDICAL_AID, le=0)
        )
        if status != Sw.OK:
            return None
        if keys is not None and card is not None:
            self.external_authenticate(keys, KeyName.RK1DF04, card)  # else: 6982 below
        text = _text(self.read_file(Fid.EF05, (MedicalTag.SCHEME,))[MedicalTag.SCHEME])
        self.select_application()
        return text[:SCHEME_LENGTH] if text else None

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
        # Never a guessed PIN: the empty VERIFY costs no try. 9000 from a card whose PIN
        # was not verified in this session: it holds none (part 5 §6.14.5, part 7 §5.6).
        _, status = self._send(command(Cla.ISO, Ins.VERIFY, 0x00, 0x00))
        if status == Sw.OK:
            return PinStatus(LifeCycle.ACTIVE, PinState.DISABLED, None, None)
        if status == Sw.PIN_BLOCKED:
            return PinStatus(LifeCycle.ACTIVE, None, 0, None)
        if status == Sw.CONDITIONS_NOT_SATISFIED:
            return PinStatus(LifeCycle.NOT_ACTIVATED, None, None, None)
        return PinStatus(None, None, sw.tries_left(status), None)

    def check_card(self, keys: KeySource, ident: bytes | None, version: str | None) -> CardIdentity:
        """Part 7 §5.4 and the reader API §1.1.3: the card proves it is genuine (INTERNAL
        AUTHENTICATE; CounterfeitCardError if not) before anything else is asked of it,
        and on a 3.00 card RKSSSE opens the holder's data (EF06, reader API §10.2)."""
        card = self.identity(ident)
        self.authenticate_card(keys, card)
        if version == V3:
            status = self.external_authenticate(keys, KeyName.RKSSSE, card)
            if status != Sw.OK:
                raise CardCommandError(status, "the card refused the terminal's key (RKSSSE)")
        return card

    def read_info(self, keys: KeySource | None = None, *, scheme: bool = True) -> CardInfo:
        """Everything the terminal decides on, read in one go (docs/card.md §8). With a
        key source (a PSAM), the card is checked first (check_card). `scheme=False`
        leaves DF04 alone (the outlet decides nothing on it)."""
        self.select_application()
        card = self.read_file(
            Fid.EF05,
            (Tag.IDENTIFICATION_CODE, Tag.CATEGORY, Tag.SPEC_VERSION, Tag.CARD_NUMBER),
        )
        version = _text(card[Tag.SPEC_VERSION])
        identity = (
            self.check_card(keys, card[Tag.IDENTIFICATION_CODE].value, version)
            if keys is not None
            else None
        )
        holder = self.read_holder((Tag.SSN, Tag.NAME, Tag.BIRTH_DATE), version)
        born = holder[Tag.BIRTH_DATE].value
        return CardInfo(
            identification_code=card[Tag.IDENTIFICATION_CODE].value,
            card_number=_text(card[Tag.CARD_NUMBER]),
            category=_text(card[Tag.CATEGORY]),
            ssn=_text(holder[Tag.SSN]),
            name=full_name(holder[Tag.NAME], holder.get(Tag.NAME_EXTENSION)),
            birth_date=_bcd_date(born) if born else None,
            scheme=self.read_scheme(keys, identity) if scheme else None,
            status=self.pin_status(),
            spec_version=version,
        )

    def read_basics(self, keys: KeySource | None = None) -> Basics:
        """What the reader API's iReadCardBas reads (its §1.1.3 (7)): EF05 01, 03, 05,
        06, 07 and EF06 08, 09 (+ 4E); with a key source, after the card's check (its
        §1.1.3 (6): INTERNAL AUTHENTICATE, and RKSSSE on a 3.00 card). A record that
        cannot be read is an error with the card's status word (CardCommandError), as the
        API reports it."""
        self.select_application()
        wanted = (
            Tag.IDENTIFICATION_CODE,
            Tag.SPEC_VERSION,
            Tag.ISSUE_DATE,
            Tag.EXPIRY_DATE,
            Tag.CARD_NUMBER,
        )
        card = self.read_file(Fid.EF05, wanted)
        version = _text(card[Tag.SPEC_VERSION])
        if keys is not None:
            self.check_card(keys, card[Tag.IDENTIFICATION_CODE].value, version)
        holder = self.read_holder((Tag.SSN, Tag.NAME), version)
        for tag, read in (*card.items(), *holder.items()):
            if read.value is None and tag != Tag.NAME_EXTENSION:
                raise CardCommandError(read.sw, f"the card did not give record {tag:02X}")
        return Basics(
            identification_code=card[Tag.IDENTIFICATION_CODE].value or b"",
            ssn=_text(holder[Tag.SSN]) or "",
            card_number=_text(card[Tag.CARD_NUMBER]) or "",
            name=full_name(holder[Tag.NAME], holder.get(Tag.NAME_EXTENSION)) or "",
            spec_version=version or "",
            issue_date=_cn(card[Tag.ISSUE_DATE].value or b""),
            expiry_date=_cn(card[Tag.EXPIRY_DATE].value or b""),
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

    def identity(self, identification_code: bytes | None) -> CardIdentity:
        """What a key source needs: the algorithm (the SSSE's FCI), the identification
        code (EF05 01) and the ATR's historical bytes (the card factor, part 9 §7.3.3)."""
        algorithm = algorithm_of(self.fci, identification_code)
        historical = historical_bytes(self.reader.peek_atr() or b"")
        if identification_code is None or algorithm is None or len(historical) != 13:
            raise UncheckableCardError()
        return CardIdentity(algorithm, identification_code, historical)

    def authenticate_card(self, keys: KeySource, card: CardIdentity) -> None:
        """Part 7 §5.4: INTERNAL AUTHENTICATE with fresh random data; the answer must be
        what the issuer's keys give for this card, else CounterfeitCardError."""
        r1, r2 = secrets.token_bytes(RANDOM_LENGTH), secrets.token_bytes(RANDOM_LENGTH)
        expected = keys.internal_auth(card, r1, r2)
        answer, status = self._send(
            command(Cla.ISO, Ins.INTERNAL_AUTHENTICATE, 0x00, 0x00, r1 + r2, le=0)
        )
        if status != Sw.OK or not hmac.compare_digest(answer, expected):
            raise CounterfeitCardError()

    def external_authenticate(self, keys: KeySource, key: KeyName, card: CardIdentity) -> int:
        """Part 7 §6.4-§6.6: a challenge, then the key's cryptogram over fresh raw data.
        Returns the status word (63Cx: the key's tries left; 6983: the key is locked)."""
        challenge = self.get_challenge()
        raw = secrets.token_bytes(RANDOM_LENGTH)
        cryptogram = keys.external_auth(key, card, challenge, raw)
        _, status = self._send(
            command(Cla.ISO, Ins.EXTERNAL_AUTHENTICATE, 0x00, SPEC[key].reference, cryptogram + raw)
        )
        return status

    def secure(
        self,
        keys: KeySource,
        key: KeyName,
        card: CardIdentity,
        ins: int,
        p2: int,
        new_pin: str | None = None,
    ) -> int:
        """A MAC-protected command (part 4 §8; part 7 §13): a fresh challenge, then the
        command under its session key; with `new_pin`, the encrypted PIN. Returns the SW."""
        challenge = self.get_challenge()
        apdu = keys.secure_apdu(key, card, challenge, Cla.SECURE_MESSAGING, ins, 0x00, p2, new_pin)
        _, status = self._send(apdu)
        return status

    def change_pin(self, old: str, new: str) -> PinOutcome:
        block = pin.change_block(old, new)  # format checked here, before the card
        _, status = self._send(command(Cla.PROPRIETARY, CHANGE_PIN, 0x01, 0x00, block))
        return PinOutcome(status)
