"""T=0 habits in the transport (docs/card.md §6), the in-process VirtualReader, and
the PC/SC error mapping. No pcscd: `exchange` runs over a scripted `send` function,
the reader over card files in tmp_path, and `error_for` is a pure function.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from card_helpers import SELECT_SSSE as SELECT_SSSE_HEX
from card_helpers import h

from cardio.card import profiles
from cardio.card.store import CardInUseError, FileStore
from cardio.readers.base import CardEvent, EventKind, ReaderInfo
from cardio.readers.errors import (
    CardNotPoweredError,
    CardRemovedError,
    NoCardError,
    NoReaderError,
    NoServiceError,
    ProtocolError,
    ReaderError,
    ReaderGoneError,
    SharingViolationError,
    UnresponsiveCardError,
)
from cardio.readers.transport import MAX_ROUNDS, exchange, get_response, with_le
from cardio.readers.virtual import VirtualReader

SELECT_SSSE = h(SELECT_SSSE_HEX)
VERIFY_RIGHT = h("00 20 00 00 03 12 34 56")  # initial PIN 123456 (fixtures/README.md)
VERIFY_WRONG = h("00 20 00 00 03 11 22 33")
STATUS_QUERY = h("00 20 00 00")
CHANGE_PIN = h("80 5E 01 00 07 12 34 56 FF 90 81 72")  # 123456 -> 908172
VERIFY_NEW = h("00 20 00 00 03 90 81 72")
GET_PIN_DATA = h("80 CA 00 C1 00")
PIN_DATA_FRESH = h("C1 04 01 00 06 06 90 00")
OK = h("90 00")
NOT_VERIFIED = h("63 C6")

COMMAND_LINE = re.compile(r"> (?:[0-9A-F]{2}|\*\*)(?: (?:[0-9A-F]{2}|\*\*))*")
RESPONSE_LINE = re.compile(r"< [0-9A-F]{2}(?: [0-9A-F]{2})*")


def assert_one_sentence(message: str) -> None:
    """One line, one sentence: no sentence break inside."""
    assert message, "empty message"
    assert message == message.strip()
    assert "\n" not in message
    assert not re.search(r"[.!?]\s+\S", message), message


# --- exchange over a scripted card --------------------------------------------------------


class ScriptedCard:
    """A `send` function that answers from a script and records every command it gets."""

    def __init__(self, *answers: str, forever: str | None = None) -> None:
        self.answers = [h(a) for a in answers]
        self.forever = h(forever) if forever else None
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        if self.answers:
            return self.answers.pop(0)
        if self.forever is not None:
            return self.forever
        pytest.fail(f"sent {apdu.hex(' ').upper()} after the script ended")


DATA_16 = bytes(range(0x10, 0x20))
DATA_5 = bytes(range(0xA0, 0xA5))


def test_61xx_is_followed_with_get_response_and_the_data_joined() -> None:
    card = ScriptedCard("61 10", DATA_16.hex() + " 61 05", DATA_5.hex() + " 90 00")
    result = exchange(card, h("00 B2 01 2C 00"))
    assert card.sent == [h("00 B2 01 2C 00"), h("00 C0 00 00 10"), h("00 C0 00 00 05")]
    assert result == DATA_16 + DATA_5 + OK


def test_data_that_comes_with_61xx_is_kept() -> None:
    card = ScriptedCard("AA BB 61 02", "CC DD 61 01", "EE 62 83")
    assert exchange(card, h("00 B2 01 2C 00")) == h("AA BB CC DD EE 62 83")
    assert card.sent == [h("00 B2 01 2C 00"), h("00 C0 00 00 02"), h("00 C0 00 00 01")]


def test_6100_asks_for_256_bytes() -> None:
    card = ScriptedCard("61 00", "00" * 256 + " 90 00")
    assert exchange(card, h("00 B2 01 2C 00")) == bytes(256) + OK
    assert card.sent == [h("00 B2 01 2C 00"), h("00 C0 00 00 00")]
    assert get_response(0) == h("00 C0 00 00 00")


LE_CASES = {
    "case 1": ("00 B2 01 2C", "00 B2 01 2C 12"),
    "case 2": ("00 B2 01 2C 05", "00 B2 01 2C 12"),
    "case 2, Le 00": ("00 B2 01 2C 00", "00 B2 01 2C 12"),
    "case 3": ("00 A4 04 00 02 3F 00", "00 A4 04 00 02 3F 00 12"),
    "case 4": ("00 A4 04 00 02 3F 00 05", "00 A4 04 00 02 3F 00 12"),
}


@pytest.mark.parametrize("command,resent", LE_CASES.values(), ids=LE_CASES.keys())
def test_6cxx_resends_the_command_with_the_le_the_card_named(command: str, resent: str) -> None:
    assert with_le(h(command), 0x12) == h(resent)
    data = bytes(range(0x12))
    card = ScriptedCard("6C 12", data.hex() + " 90 00")
    assert exchange(card, h(command)) == data + OK
    assert card.sent == [h(command), h(resent)]


def test_6c00_means_le_256() -> None:
    assert with_le(h("00 B2 01 2C 05"), 0x00) == h("00 B2 01 2C 00")
    assert with_le(h("00 A4 04 00 02 3F 00"), 0x00) == h("00 A4 04 00 02 3F 00 00")


def test_6cxx_answered_to_a_get_response_resends_the_get_response() -> None:
    data = bytes(range(8))
    card = ScriptedCard("61 10", "6C 08", data.hex() + " 90 00")
    assert exchange(card, h("00 B2 01 2C 00")) == data + OK
    assert card.sent == [h("00 B2 01 2C 00"), h("00 C0 00 00 10"), h("00 C0 00 00 08")]


def test_6cxx_then_61xx() -> None:
    data = bytes(range(11))
    card = ScriptedCard("6C 0B", "61 0B", data.hex() + " 90 00")
    assert exchange(card, h("00 B2 07 2C 05")) == data + OK
    assert card.sent == [h("00 B2 07 2C 05"), h("00 B2 07 2C 0B"), h("00 C0 00 00 0B")]


def test_a_final_error_sw_ends_the_exchange_as_it_is() -> None:
    card = ScriptedCard("6A 82")
    assert exchange(card, h("00 A4 00 00 02 EF 09")) == h("6A 82")
    assert card.sent == [h("00 A4 00 00 02 EF 09")]


def test_a_card_that_always_answers_6101_is_stopped_after_max_rounds() -> None:
    card = ScriptedCard(forever="61 01")
    with pytest.raises(ProtocolError) as raised:
        exchange(card, h("00 B2 01 2C 00"))
    # the command itself, then MAX_ROUNDS GET RESPONSEs, and no more
    assert card.sent == [h("00 B2 01 2C 00")] + [h("00 C0 00 00 01")] * MAX_ROUNDS
    assert_one_sentence(str(raised.value))
    assert "try again" in str(raised.value)


def test_a_card_that_always_answers_6cxx_is_stopped_too() -> None:
    card = ScriptedCard(forever="6C 05")
    with pytest.raises(ProtocolError):
        exchange(card, h("00 B2 01 2C 00"))
    assert card.sent == [h("00 B2 01 2C 00")] + [h("00 B2 01 2C 05")] * MAX_ROUNDS


def test_the_bound_can_be_set() -> None:
    card = ScriptedCard(forever="61 01")
    with pytest.raises(ProtocolError):
        exchange(card, h("00 B2 01 2C 00"), max_rounds=2)
    assert len(card.sent) == 3


# --- VirtualReader -----------------------------------------------------------------------


@pytest.fixture
def card_path(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    profiles.new_card("employee-new", path)
    return path


@pytest.fixture
def t0_path(tmp_path: Path) -> Path:
    path = tmp_path / "t0.json"
    profiles.new_card("t0-employee-new", path)
    return path


@pytest.fixture
def open_readers() -> Iterator[Callable[..., VirtualReader]]:
    """VirtualReader(...), closed after the test whatever happens."""
    readers: list[VirtualReader] = []

    def make(path: Path, **kwargs: object) -> VirtualReader:
        reader = VirtualReader(path, **kwargs)  # type: ignore[arg-type]
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


def atr_of(path: Path) -> bytes:
    historical = bytes.fromhex(json.loads(path.read_text("utf-8"))["atr_historical"])
    return h("3B 6D 00 00") + historical


def card_number_record(path: Path) -> bytes:
    """SSSE/EF05 record 07: tag 07, length 09, the card number in ASCII (§2)."""
    number = json.loads(path.read_text("utf-8"))["card"]["card_number"].encode("ascii")
    assert len(number) == 9
    return bytes((0x07, 0x09)) + number


def test_t0_card_transmit_follows_61xx_and_6cxx_where_transmit_raw_does_not(
    t0_path: Path, open_readers: Callable[..., VirtualReader]
) -> None:
    """Part 2 §9.3: a case 4 command (SELECT by name) is answered 61xx and its data
    fetched with GET RESPONSE; a case 2 command answers at once for the exact Le and
    6Cxx otherwise. transmit follows both, transmit_raw neither."""
    reader = open_readers(t0_path)
    reader.connect()
    announced = reader.transmit_raw(SELECT_SSSE)
    assert announced == h("61 1E"), announced.hex()  # the SSSE's FCI, 30 bytes (§3)
    fci = reader.transmit_raw(get_response(announced[1]))
    assert len(fci) == 0x1E + 2 and fci[-2:] == OK, fci.hex()
    assert fci[:4] == h("6F 1C 84 0F"), fci.hex()
    assert reader.transmit(SELECT_SSSE) == fci

    record = card_number_record(t0_path)
    # case 2: Le 00 gets 6Cxx (part 5 §6.10.4); the exact Le gets the data with 9000
    assert reader.transmit_raw(h("00 B2 07 2C 00")) == h("6C 0B")
    assert reader.transmit_raw(h("00 B2 07 2C 0B")) == record + OK
    assert reader.transmit(h("00 B2 07 2C 00")) == record + OK
    # GET DATA with Le 00: 9000 on other cards, 6C06 on a T=0 card (part 2 §9.3.2.1)
    assert reader.transmit_raw(GET_PIN_DATA) == h("6C 06")
    assert reader.transmit_raw(h("80 CA 00 C1 06")) == PIN_DATA_FRESH
    assert reader.transmit(GET_PIN_DATA) == PIN_DATA_FRESH


def test_t0_card_read_record_with_a_wrong_le_is_fixed_by_6cxx_without_get_response(
    t0_path: Path, open_readers: Callable[..., VirtualReader]
) -> None:
    """Part 2 §9.3: the case 4 SELECT goes through 61xx and GET RESPONSE; the case 2
    READ RECORD with a wrong Le is resent with the Le of 6Cxx and answered at once."""
    trace: list[str] = []
    reader = open_readers(t0_path, trace=trace.append)
    reader.connect()
    assert trace == ["reset " + atr_of(t0_path).hex(" ").upper()]  # a session begins
    trace.clear()
    fci = reader.transmit(SELECT_SSSE)
    assert fci[-2:] == OK
    assert trace == [
        "> " + SELECT_SSSE.hex(" ").upper(),
        "< 61 1E",
        "> 00 C0 00 00 1E",
        "< " + fci.hex(" ").upper(),
    ]
    trace.clear()
    record = card_number_record(t0_path)
    assert reader.transmit(h("00 B2 07 2C 05")) == record + OK
    assert trace == [
        "> 00 B2 07 2C 05",
        "< 6C 0B",
        "> 00 B2 07 2C 0B",
        "< " + (record + OK).hex(" ").upper(),
    ]


def test_insert_and_remove_emit_events_to_subscribers(
    card_path: Path, open_readers: Callable[..., VirtualReader]
) -> None:
    reader = open_readers(card_path, inserted=False)
    name = f"virtual:{card_path.name}"
    assert reader.name == name
    first: list[CardEvent] = []
    second: list[CardEvent] = []
    reader.subscribe(first.append)
    reader.subscribe(second.append)
    assert first == []

    reader.insert()
    inserted = CardEvent(EventKind.INSERTED, name, atr_of(card_path))
    assert first == second == [inserted]
    reader.insert()  # already in: nothing happens
    assert first == [inserted]

    reader.remove()
    removed = CardEvent(EventKind.REMOVED, name, None)
    assert first == second == [inserted, removed]
    reader.remove()  # already out
    assert first == [inserted, removed]

    reader.unsubscribe(second.append)
    reader.insert()
    assert first == [inserted, removed, inserted]
    assert second == [inserted, removed]


def test_a_removed_card_raises_no_card_error(
    card_path: Path, open_readers: Callable[..., VirtualReader]
) -> None:
    reader = open_readers(card_path)
    reader.connect()
    assert reader.transmit(GET_PIN_DATA) == PIN_DATA_FRESH
    reader.remove()
    assert reader.card_present() is False
    assert reader.info() == ReaderInfo(reader.name, False, None)
    assert reader.peek_atr() is None
    actions: list[Callable[[], object]] = [
        reader.connect,
        reader.reset,
        lambda: reader.transmit(GET_PIN_DATA),
        lambda: reader.transmit_raw(GET_PIN_DATA),
    ]
    for action in actions:
        with pytest.raises(NoCardError) as raised:
            action()
        assert_one_sentence(str(raised.value))


def test_the_card_file_is_locked_while_inserted_and_released_on_remove(
    card_path: Path, open_readers: Callable[..., VirtualReader]
) -> None:
    reader = open_readers(card_path)
    other = FileStore(card_path)
    with pytest.raises(CardInUseError) as raised:
        other.open()
    assert re.search(rf"\bpid {os.getpid()}\b", str(raised.value)), str(raised.value)
    reader.remove()
    other.open()  # free now
    try:
        events: list[CardEvent] = []
        reader.subscribe(events.append)
        with pytest.raises(CardInUseError):
            reader.insert()  # someone else holds it: no card goes in
        assert reader.card_present() is False
        assert events == []
    finally:
        other.close()
    reader.insert()
    assert reader.card_present() is True


def test_power_off_on_remove_clears_the_verified_session(
    card_path: Path, open_readers: Callable[..., VirtualReader]
) -> None:
    reader = open_readers(card_path)
    reader.connect()
    assert reader.transmit(VERIFY_RIGHT) == OK
    assert reader.transmit(STATUS_QUERY) == OK
    card = reader.card
    assert card is not None and card.verified is True
    reader.remove()
    assert card.verified is False
    reader.insert()
    reader.connect()
    assert reader.transmit(STATUS_QUERY) == NOT_VERIFIED


def test_the_trace_gets_masked_lines_only(
    card_path: Path, open_readers: Callable[..., VirtualReader]
) -> None:
    trace: list[str] = []
    reader = open_readers(card_path, trace=trace.append)
    reader.connect()
    assert reader.transmit(VERIFY_RIGHT) == OK
    assert reader.transmit(CHANGE_PIN) == OK
    assert reader.transmit(VERIFY_WRONG) == h("63 C5")
    assert reader.transmit(VERIFY_NEW) == OK
    assert reader.transmit(STATUS_QUERY) == OK
    reader.reset()
    reader.reset()  # no exchange between: still the one session's mark
    assert trace == [
        "reset " + atr_of(card_path).hex(" ").upper(),
        "> 00 20 00 00 03 ** ** **",
        "< 90 00",
        "> 80 5E 01 00 07 ** ** ** FF ** ** **",
        "< 90 00",
        "> 00 20 00 00 03 ** ** **",
        "< 63 C5",
        "> 00 20 00 00 03 ** ** **",
        "< 90 00",
        "> 00 20 00 00",
        "< 90 00",
        "reset " + atr_of(card_path).hex(" ").upper(),
    ]
    for line in trace[1:-1]:
        assert COMMAND_LINE.fullmatch(line) or RESPONSE_LINE.fullmatch(line), line
    reader.disconnect()
    reader.connect()  # another session, though no command came between
    assert trace[-2:] == [trace[0], trace[0]]  # the reset's session, then this one
    compact = "".join(trace).replace(" ", "")
    for digits in ("123456", "908172", "112233"):
        assert digits not in compact


# --- PC/SC error codes -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pcsc() -> ModuleType:
    return pytest.importorskip("cardio.readers.pcsc")


ERROR_CASES = {
    #                       code, during_command, error type, what to do
    "NO_SERVICE": (0x8010001D, False, NoServiceError, "start pcscd"),
    "SERVICE_STOPPED": (0x8010001E, False, NoServiceError, "start pcscd"),
    "NO_READERS_AVAILABLE": (0x8010002E, False, NoReaderError, "plug in a reader"),
    "UNKNOWN_READER": (0x80100009, False, NoReaderError, "plug in a reader"),
    "READER_UNAVAILABLE": (0x80100017, False, ReaderGoneError, "plug it in again"),
    "SHARING_VIOLATION": (0x8010000B, False, SharingViolationError, "close it"),
    "NO_SMARTCARD": (0x8010000C, False, NoCardError, "insert the card"),
    "REMOVED_CARD during a command": (0x80100069, True, CardRemovedError, "insert it again"),
    "REMOVED_CARD otherwise": (0x80100069, False, NoCardError, "insert the card"),
    "UNRESPONSIVE_CARD": (0x80100066, False, UnresponsiveCardError, "insert it"),  # API -4
    "UNPOWERED_CARD otherwise": (0x80100067, False, CardNotPoweredError, "connect first"),  # -3
    "UNPOWERED_CARD during a command": (0x80100067, True, CardRemovedError, "insert it again"),
}


@pytest.mark.parametrize("code,during,kind,action", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_error_for_maps_each_code_to_its_typed_error(
    pcsc: ModuleType, code: int, during: bool, kind: type[ReaderError], action: str
) -> None:
    error = pcsc.error_for(code, during_command=during)
    assert type(error) is kind
    message = str(error)
    assert_one_sentence(message)
    assert action in message, message


@pytest.mark.parametrize("code,during,kind,action", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_error_for_treats_a_signed_code_as_the_same_code(
    pcsc: ModuleType, code: int, during: bool, kind: type[ReaderError], action: str
) -> None:
    signed = code - (1 << 32)
    assert signed < 0
    error = pcsc.error_for(signed, during_command=during)
    assert type(error) is kind
    assert str(error) == str(pcsc.error_for(code, during_command=during))


UNKNOWN_CODE = 0x801000FF


def test_error_for_an_unknown_code_is_a_plain_reader_error(pcsc: ModuleType) -> None:
    error = pcsc.error_for(UNKNOWN_CODE)
    assert type(error) is ReaderError
    message = str(error)
    assert_one_sentence(message)
    assert "801000FF" in message.upper()
    assert message.endswith("try again"), message


def test_error_for_a_signed_unknown_code_is_the_same_error(pcsc: ModuleType) -> None:
    error = pcsc.error_for(UNKNOWN_CODE - (1 << 32))
    assert type(error) is ReaderError
    assert str(error) == str(pcsc.error_for(UNKNOWN_CODE))
