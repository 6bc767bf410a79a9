"""The served card through the real PC/SC stack: pcscd + vpcd + pyscard, never a mock.

Each test serves its own card file (`served`), talks to it through pcscd, and stops it.
The card: docs/card.md §3 (commands and status words), §4 (the PIN), §6 (T=0).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from card_helpers import FCI_SSSE, INITIAL_PIN, SELECT_SSSE, h
from pcsc_stack import card_present, slot_name, wait_for

from cardio.apdu import to_hex
from cardio.card import profiles, store
from cardio.card.card import VirtualCard
from cardio.readers import pcsc
from cardio.readers.base import CardEvent, EventKind
from cardio.readers.errors import CardRemovedError, NoCardError, NoServiceError, ReaderError
from cardio.readers.pcsc import EventMonitor, PcscReader

WRONG_PIN = "654321"
NEW_PIN = "802613"
VERIFY_RIGHT = h("00 20 00 00 03 12 34 56")
VERIFY_WRONG = h("00 20 00 00 03 65 43 21")
STATUS = h("00 20 00 00")
CHANGE_PIN = h("80 5E 01 00 07 12 34 56 FF 80 26 13")
VERIFY_NEW = h("00 20 00 00 03 80 26 13")
GET_DATA = h("80 CA 00 C1 00")
READ_CARD_NUMBER = h("00 B2 07 2C 0B")  # SSSE/EF05 (SFI 05) record 07, exact Le
READ_NAME = h("00 B2 09 30 00")  # SSSE/EF06 (SFI 06) identifier 09; Le 00: 6C20, resent
SSSE_NAME_GBK = "sx1.sh.社会保障".encode("gbk")
OK = h("90 00")
WAIT = 15.0


def sw(response: bytes) -> str:
    return response[-2:].hex().upper()


def expected_atr(path: Path) -> bytes:
    return VirtualCard(store.read(path)).atr


def cardio(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardio.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def new_card(tmp_path: Path, name: str, profile: str = "employee-new") -> Path:
    path = tmp_path / f"{name}.json"
    profiles.new_card(profile, path)
    return path


class Events:
    """Card events from another thread, kept in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[CardEvent] = []

    def __call__(self, event: CardEvent) -> None:
        with self._lock:
            self._items.append(event)

    @property
    def items(self) -> list[CardEvent]:
        with self._lock:
            return list(self._items)

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.items]

    def wait(self, what: str, condition: Callable[[list[CardEvent]], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if condition(self.items):
                return
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {WAIT:.0f} s; events: {self.kinds()}")

    def wait_count(self, kind: EventKind, count: int) -> None:
        self.wait(f"{count}x {kind}", lambda items: [e.kind for e in items].count(kind) >= count)


def one_actionable_sentence(message: str, verb: str) -> None:
    assert "\n" not in message and message.strip() == message
    assert not re.search(r"[.!?]\s", message), message  # one sentence
    assert verb in message, message


@pytest.fixture
def reader_factory():
    """PcscReaders closed after the test, whatever happened."""
    made: list[PcscReader] = []

    def make(name: str) -> PcscReader:
        reader = PcscReader(name)
        made.append(reader)
        return reader

    yield make
    for reader in made:
        with contextlib.suppress(Exception):  # a handle of a dead card or pcscd
            reader.close()


# --- listing ------------------------------------------------------------------------


def test_card_is_listed_with_its_atr_by_pcsc_and_by_cardio_readers(tmp_path, served):
    path = new_card(tmp_path, "card")
    card = served(path)
    atr = expected_atr(path)
    assert atr == bytes.fromhex("3B6D0000 0000534250 0000 3100 372A9FA8")  # part 2 §8.4

    infos = pcsc.list_readers()
    by_name = {i.name: i for i in infos}
    assert by_name[card.reader].card_present is True
    assert by_name[card.reader].atr == atr
    assert by_name[slot_name(1)].card_present is False
    assert by_name[slot_name(1)].atr is None

    result = cardio("readers")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    index0 = [i.name for i in infos].index(card.reader)
    index1 = [i.name for i in infos].index(slot_name(1))
    assert lines[index0] == f"{index0}: {card.reader}  [card  {to_hex(atr)}]"
    assert lines[index1] == f"{index1}: {slot_name(1)}  [no card]"
    assert len(lines) == len(infos)


# --- commands (§3, §4) ----------------------------------------------------------------


def test_select_read_record_verify_and_change_pin(tmp_path, served, reader_factory):
    path = new_card(tmp_path, "card")
    card = served(path)
    reader = reader_factory(card.reader)
    assert reader.connect() == expected_atr(path)

    assert SELECT_SSSE.startswith("00 A4 04 00 0F")
    assert h(SELECT_SSSE)[5:] == SSSE_NAME_GBK
    assert reader.transmit(h(SELECT_SSSE)) == h(FCI_SSSE) + OK
    state = store.read(path)
    number = state.card.card_number.encode("ascii")
    assert reader.transmit(READ_CARD_NUMBER) == bytes((0x07, len(number))) + number + OK
    name = reader.transmit(READ_NAME)
    assert sw(name) == "9000" and name[:2] == h("09 1E") and len(name) == 2 + 30 + 2
    assert name[2:32].rstrip(b"\0").decode("gbk") == state.holder.name
    assert reader.transmit(GET_DATA) == h("C1 04 01 00 06 06 90 00")

    assert reader.transmit(STATUS) == h("63 C6")
    assert reader.transmit(VERIFY_WRONG) == h("63 C5")
    assert reader.transmit(STATUS) == h("63 C5")
    assert reader.transmit(VERIFY_RIGHT) == OK
    assert reader.transmit(STATUS) == OK
    assert reader.transmit(GET_DATA) == h("C1 04 01 00 06 06 90 00")

    assert reader.transmit(CHANGE_PIN) == OK
    assert reader.transmit(GET_DATA) == h("C1 04 01 01 06 06 90 00")  # ENABLED
    assert reader.transmit(VERIFY_RIGHT) == h("63 C5")  # the old PIN is gone
    assert reader.transmit(VERIFY_NEW) == OK
    after = store.read(path)
    assert after.pin_state.value == "ENABLED" and after.tries_left == 6
    assert after.pin.matches(NEW_PIN) and not after.pin.matches(INITIAL_PIN)


def test_six_wrong_pins_lock_the_card_even_for_the_right_pin(tmp_path, served, reader_factory):
    path = new_card(tmp_path, "card")
    card = served(path)
    reader = reader_factory(card.reader)
    reader.connect()
    answers = [sw(reader.transmit(VERIFY_WRONG)) for _ in range(6)]
    assert answers == ["63C5", "63C4", "63C3", "63C2", "63C1", "63C0"]
    assert sw(reader.transmit(VERIFY_RIGHT)) == "6983"
    assert sw(reader.transmit(STATUS)) == "6983"
    assert reader.transmit(GET_DATA) == h("C1 04 01 00 00 06 90 00")
    assert store.read(path).tries_left == 0


# --- durable state --------------------------------------------------------------------


def test_state_survives_kill_9_of_cardio_serve(tmp_path, served, pcsc_stack, reader_factory):
    path = new_card(tmp_path, "card")
    card = served(path)
    reader = reader_factory(card.reader)
    reader.connect()
    assert reader.transmit(VERIFY_WRONG) == h("63 C5")
    assert reader.transmit(VERIFY_WRONG) == h("63 C4")
    card.kill()
    assert card.proc.returncode == -9
    pcsc_stack.wait_removed(card.reader)
    assert store.read(path).tries_left == 4

    again = served(path)
    reader2 = reader_factory(again.reader)
    reader2.connect()
    assert reader2.transmit(STATUS) == h("63 C4")
    assert reader2.transmit(GET_DATA) == h("C1 04 01 00 04 06 90 00")
    assert reader2.transmit(VERIFY_RIGHT) == OK
    assert store.read(path).tries_left == 6
    # Empty the slot here: `served` stops its cards in order and waits for the slot to
    # empty after each, which never happens while the second one still serves.
    reader2.close()
    again.stop()
    pcsc_stack.wait_removed(again.reader)


def test_state_survives_a_pcscd_restart_and_serve_reconnects(
    tmp_path, served, pcsc_stack, reader_factory
):
    if not pcsc_stack.owned:
        pytest.skip("this pcscd is not the suite's own; it cannot be restarted")
    path = new_card(tmp_path, "card")
    card = served(path)
    reader = reader_factory(card.reader)
    reader.connect()
    assert reader.transmit(VERIFY_WRONG) == h("63 C5")
    reader.close()

    pcsc_stack.restart_pcscd()
    wait_for(lambda: card_present(card.reader), "the served card back after the pcscd restart")
    assert card.proc.poll() is None, card.output()
    assert store.read(path).tries_left == 5

    reader2 = reader_factory(card.reader)
    assert reader2.connect() == expected_atr(path)
    assert reader2.transmit(STATUS) == h("63 C5")
    assert reader2.transmit(VERIFY_WRONG) == h("63 C4")
    assert reader2.transmit(VERIFY_RIGHT) == OK
    assert reader2.transmit(STATUS) == OK


# --- T=0 (§8) ------------------------------------------------------------------------


def test_t0_profile_answers_case_2_directly_and_case_4_through_get_response(
    tmp_path, served, reader_factory
):
    """Part 2 §9.3: a case 2 command (no data, Le) gets its data for the right Le and
    6Cxx otherwise; a case 4 command (data and Le) gets 61xx, then GET RESPONSE."""
    path = new_card(tmp_path, "t0", "t0-employee-new")
    card = served(path)
    reader = reader_factory(card.reader)
    assert reader.connect() == expected_atr(path)
    number = store.read(path).card.card_number.encode("ascii")
    record = bytes((0x07, len(number))) + number

    assert reader.transmit_raw(GET_DATA) == h("6C 06")
    assert reader.transmit_raw(h("80 CA 00 C1 06")) == h("C1 04 01 00 06 06 90 00")
    assert reader.transmit(GET_DATA) == h("C1 04 01 00 06 06 90 00")

    # SELECT by name carries data and asks for the FCI (part 5 table 36): case 4
    fci = h("6F 1C 84 0F") + SSSE_NAME_GBK + h("A5 09 88 01 0F 9F 0C 03 86 01 03")
    assert reader.transmit_raw(h(SELECT_SSSE)) == bytes((0x61, len(fci)))
    assert reader.transmit_raw(bytes((0x00, 0xC0, 0x00, 0x00, len(fci)))) == fci + OK
    assert reader.transmit(h(SELECT_SSSE)) == fci + OK

    assert reader.transmit_raw(READ_CARD_NUMBER) == record + OK
    assert reader.transmit(VERIFY_WRONG) == h("63 C5")  # no data: no 61xx
    assert reader.transmit(VERIFY_RIGHT) == OK


# --- events ----------------------------------------------------------------------------


def test_insert_and_remove_events_when_serve_starts_and_stops(tmp_path, served):
    path = new_card(tmp_path, "card")
    name = slot_name(0)
    reader = PcscReader(name)
    events = Events()
    reader.subscribe(events)
    monitor = reader.watch()
    try:
        time.sleep(0.3)  # let the monitor take the empty slot's state first
        assert events.items == []
        card = served(path)
        events.wait_count(EventKind.INSERTED, 1)
        card.stop()
        events.wait_count(EventKind.REMOVED, 1)
        assert events.items == [
            CardEvent(EventKind.INSERTED, name, expected_atr(path)),
            CardEvent(EventKind.REMOVED, name, None),
        ]
    finally:
        reader.close()
    assert not monitor.alive


def test_event_monitor_survives_a_pcscd_restart_and_stops_promptly(tmp_path, served, pcsc_stack):
    if not pcsc_stack.owned:
        pytest.skip("this pcscd is not the suite's own; it cannot be restarted")
    path = new_card(tmp_path, "card")
    name = slot_name(0)
    served(path)
    events = Events()
    monitor = EventMonitor(events, readers=[name])
    monitor.start()
    try:
        events.wait_count(EventKind.INSERTED, 1)
        pcsc_stack.restart_pcscd()
        events.wait_count(EventKind.INSERTED, 2)  # the card again, through the new pcscd
        assert monitor.alive
        kinds = events.kinds()
        assert kinds.count(EventKind.SERVICE_LOST) == 1, kinds
        assert kinds.count(EventKind.SERVICE_BACK) == 1, kinds
        assert kinds.count(EventKind.INSERTED) == 2, kinds
        lost = kinds.index(EventKind.SERVICE_LOST)
        back = kinds.index(EventKind.SERVICE_BACK)
        again = len(kinds) - 1 - kinds[::-1].index(EventKind.INSERTED)
        assert kinds[0] == EventKind.INSERTED
        assert 0 < lost < back < again, kinds
        assert set(kinds) <= {
            EventKind.INSERTED,
            EventKind.REMOVED,
            EventKind.SERVICE_LOST,
            EventKind.SERVICE_BACK,
        }, kinds
        inserted = [e for e in events.items if e.kind == EventKind.INSERTED]
        assert [(e.reader, e.atr) for e in inserted] == [(name, expected_atr(path))] * 2
    finally:
        monitor.stop(timeout=5)
    assert not monitor.alive


# --- power-off on disconnect ------------------------------------------------------------
# pcscd powers a new card up, and down again once idle; a disconnect that leaves the card
# powered (SCARD_LEAVE_CARD) keeps its session until pcscd's idle power-down. So each
# test waits for the first idle power-down (seen in the `serve -v` log) and reconnects at
# once: only a disconnect that powers the card off clears the session by then.


def log_lines(card) -> list[str]:
    return [line.removeprefix("cardio serve: ") for line in card.output().splitlines()]


def serve_idle(served, path: Path):
    card = served(path, 0, "-v")
    wait_for(lambda: "control power off" in log_lines(card), "pcscd's idle power-down")
    return card


def assert_powered_off_between_sessions(card) -> None:
    """In the serve log: VERIFY right, power off, power on, the status query."""
    wait_for(lambda: log_lines(card).count("> 00 20 00 00") == 1, "the status query in the log")
    lines = log_lines(card)
    at = lines.index("> 00 20 00 00 03 ** ** **")
    assert lines[at : at + 6] == [
        "> 00 20 00 00 03 ** ** **",
        "< 90 00",
        "control power off",
        "control power on",
        "> 00 20 00 00",
        "< 63 C6",
    ], lines


def test_pyscard_default_disconnect_powers_the_card_off(tmp_path, served):
    from smartcard.System import readers as pyscard_readers  # `served` skips without it

    path = new_card(tmp_path, "card")
    card = serve_idle(served, path)
    (slot,) = [r for r in pyscard_readers() if str(r) == card.reader]

    first = slot.createConnection()
    first.connect()  # the default disposition
    assert first.transmit(list(VERIFY_RIGHT)) == ([], 0x90, 0x00)
    first.disconnect()

    second = slot.createConnection()
    second.connect()
    try:
        assert second.transmit(list(STATUS)) == ([], 0x63, 0xC6)  # the session was cleared
    finally:
        second.disconnect()
    assert_powered_off_between_sessions(card)


def test_pcsc_reader_disconnect_powers_the_card_off(tmp_path, served, reader_factory):
    path = new_card(tmp_path, "card")
    card = serve_idle(served, path)
    reader = reader_factory(card.reader)
    reader.connect()
    assert reader.transmit(VERIFY_RIGHT) == OK
    reader.disconnect()
    reader.connect()
    assert reader.transmit(STATUS) == h("63 C6")
    assert_powered_off_between_sessions(card)


def test_verified_session_lasts_while_connected(tmp_path, served, reader_factory):
    # The control for the two tests above: without a disconnect the session stays.
    path = new_card(tmp_path, "card")
    card = served(path)
    reader = reader_factory(card.reader)
    reader.connect()
    assert reader.transmit(STATUS) == h("63 C6")
    assert reader.transmit(VERIFY_RIGHT) == OK
    assert reader.transmit(STATUS) == OK
    assert reader.transmit(STATUS) == OK


def test_the_trace_marks_each_session_before_its_first_command(tmp_path, served, pcsc_stack):
    """`reset ATR` before a session's first command (cardio record replays sessions as
    sessions), also when the reader connects by itself after a card went, and with the
    new card's ATR."""
    first = new_card(tmp_path, "first")
    second = tmp_path / "second.json"
    profiles.new_card("employee-new", second, serial=2)
    assert expected_atr(first) != expected_atr(second)
    card = served(first)
    lines: list[str] = []
    reader = PcscReader(card.reader, trace=lines.append)
    then = None
    try:
        assert reader.transmit_raw(STATUS) == h("63 C6")  # no connect(): it connects itself
        card.kill()
        pcsc_stack.wait_removed(card.reader)
        with pytest.raises(ReaderError):
            reader.transmit_raw(STATUS)
        then = pcsc_stack.serve(second, 0)  # stopped here: `served` waits for an empty slot
        assert reader.transmit_raw(STATUS) == h("63 C6")
    finally:
        reader.close()
        if then is not None:
            then.stop()
            pcsc_stack.wait_removed(then.reader)
    status = to_hex(STATUS)
    assert lines == [
        "reset " + to_hex(expected_atr(first)),
        "> " + status,
        "< 63 C6",
        "> " + status,  # sent as the card went: no answer
        "reset " + to_hex(expected_atr(second)),
        "> " + status,
        "< 63 C6",
    ]


# --- typed errors ----------------------------------------------------------------------


def test_connect_to_the_empty_slot_raises_no_card_error(served, pcsc_stack, reader_factory):
    assert not card_present(slot_name(1))
    reader = reader_factory(slot_name(1))
    with pytest.raises(NoCardError) as err:
        reader.connect()
    assert type(err.value) is NoCardError
    assert str(err.value) == "no card in the reader; insert the card"
    one_actionable_sentence(str(err.value), "insert")


def test_card_removed_during_a_session_raises_card_removed_error(
    tmp_path, served, pcsc_stack, reader_factory
):
    path = new_card(tmp_path, "card")
    card = served(path)
    reader = reader_factory(card.reader)
    reader.connect()
    assert reader.transmit(STATUS) == h("63 C6")
    card.kill()
    pcsc_stack.wait_removed(card.reader)
    with pytest.raises(ReaderError) as err:  # which one: asserted below
        reader.transmit(STATUS)
    assert type(err.value) is CardRemovedError
    assert str(err.value) == "the card was removed during the command; insert it again and retry"
    one_actionable_sentence(str(err.value), "insert")


def test_no_pcscd_raises_no_service_error(pcsc_stack):
    if not pcsc_stack.owned:
        pytest.skip("this pcscd is not the suite's own; it cannot be stopped")
    pcsc_stack.stop_pcscd()
    try:
        with pytest.raises(NoServiceError) as err:
            pcsc.list_readers()
        message = str(err.value)
        assert "start pcscd" in message
        one_actionable_sentence(message, "start pcscd")
        result = cardio("readers")
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr == f"cardio: {message}\n"
    finally:
        pcsc_stack._launch()
    assert slot_name(0) in [i.name for i in pcsc.list_readers()]


# --- the CLI over PC/SC --------------------------------------------------------------------

CLI_APDUS = [
    "00 A4 04 00 0F " + SSSE_NAME_GBK.hex(" ").upper(),
    "00 A4 04 00 0F " + SSSE_NAME_GBK.hex(" ").upper() + " 00",  # with Le: FCI
    "00 B2 07 2C 00",
    "00 B2 09 34 00",
    "00 B2 07 2C 05",  # wrong Le: 6Cxx, raw, not followed
    "80 CA 00 C1 00",
    "00 20 00 00",
    "00 20 00 00 03 65 43 21",
    "00 20 00 00",
    "00 84 00 00 08",
    "00 20 00 00 03 12 34 56",
    "00 20 00 00",
    "80 5E 01 00 07 12 34 56 FF 80 26 13",
    "80 CA 00 C1 00",
]
CHALLENGE_LINE = re.compile(r"^< (?:[0-9A-F]{2} ){8}90 00$")


def without_challenge(transcript: str) -> list[str]:
    """The transcript, with the 8 random bytes of each GET CHALLENGE answer blanked."""
    lines = transcript.splitlines()
    out = []
    for i, line in enumerate(lines):
        if i > 0 and lines[i - 1] == "> 00 84 00 00 08":
            assert CHALLENGE_LINE.match(line), line
            line = "< <8 random bytes> 90 00"
        out.append(line)
    return out


def test_send_and_script_over_a_reader_print_what_send_card_prints(tmp_path, served):
    served_path = new_card(tmp_path, "served")
    local_path = new_card(tmp_path, "local")
    card = served(served_path)
    names = [i.name for i in pcsc.list_readers()]
    index = names.index(card.reader)

    local = cardio("send", "--card", str(local_path), *CLI_APDUS)
    remote = cardio("send", "--reader", str(index), *CLI_APDUS)
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    assert remote.stderr == ""
    assert len(local.stdout.splitlines()) == 2 * len(CLI_APDUS)
    assert without_challenge(remote.stdout) == without_challenge(local.stdout)
    assert "> 00 20 00 00 03 ** ** **" in local.stdout.splitlines()
    assert "> 80 5E 01 00 07 ** ** ** FF ** ** **" in local.stdout.splitlines()
    lines = remote.stdout.splitlines()
    assert lines[14:18] == ["> 00 20 00 00 03 ** ** **", "< 63 C5", "> 00 20 00 00", "< 63 C5"]
    assert lines[-1] == "< C1 04 01 01 06 06 90 00"  # PIN changed: ENABLED, 6 of 6

    # Both cards now have PIN 802613 and the same state: the same script on each.
    script = tmp_path / "script.txt"
    script.write_text(
        "# after the send above\n"
        "00 A4 04 00 0F " + SSSE_NAME_GBK.hex(" ") + "\n"
        "00 20 00 00\n"
        "00 20 00 00 03 80 26 13\n"
        "00 20 00 00\n"
        "reset\n"
        "00 20 00 00   # reset clears the session\n"
        "00 84 00 00 08\n"
        "80 CA 00 C1 00\n"
        "exit\n"
        "00 20 00 00 03 65 43 21\n"
    )
    local = cardio("script", "--card", str(local_path), str(script))
    remote = cardio("script", "--reader", card.reader, str(script))
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    assert without_challenge(remote.stdout) == without_challenge(local.stdout)
    assert without_challenge(remote.stdout) == [
        "> 00 A4 04 00 0F " + SSSE_NAME_GBK.hex(" ").upper(),
        "< " + FCI_SSSE + " 90 00",
        "> 00 20 00 00",
        "< 63 C6",
        "> 00 20 00 00 03 ** ** **",
        "< 90 00",
        "> 00 20 00 00",
        "< 90 00",
        "> reset",
        "< " + to_hex(expected_atr(served_path)),
        "> 00 20 00 00",
        "< 63 C6",
        "> 00 84 00 00 08",
        "< <8 random bytes> 90 00",
        "> 80 CA 00 C1 00",
        "< C1 04 01 01 06 06 90 00",
    ]
    assert store.read(served_path).tries_left == store.read(local_path).tries_left == 6


def test_reader_with_a_bad_index_exits_1_with_a_clear_message(served, pcsc_stack):
    count = len(pcsc.list_readers())
    result = cardio("send", "--reader", str(count + 5), "00 20 00 00")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"cardio: there is no reader {count + 5}; 'cardio readers' lists "
        f"{count} reader(s), numbered from 0\n"
    )


def test_serve_verbose_logs_apdus_with_pin_bytes_masked(tmp_path, served, reader_factory):
    path = new_card(tmp_path, "card")
    card = served(path, 0, "-v")
    reader = reader_factory(card.reader)
    reader.connect()
    assert reader.transmit(VERIFY_WRONG) == h("63 C5")
    assert reader.transmit(VERIFY_RIGHT) == OK
    assert reader.transmit(CHANGE_PIN) == OK
    assert reader.transmit(h("00 20 00 00 03 80 26 13")) == OK
    assert reader.transmit(GET_DATA) == h("C1 04 01 01 06 06 90 00")
    reader.close()
    wait_for(lambda: "< C1 04 01 01 06 06 90 00" in card.output(), "the last APDU in the log")
    log = card.output()
    lines = [line.removeprefix("cardio serve: ") for line in log.splitlines()]
    apdu_lines = [line for line in lines if line.startswith(("> ", "< "))]
    assert apdu_lines == [
        "> 00 20 00 00 03 ** ** **",
        "< 63 C5",
        "> 00 20 00 00 03 ** ** **",
        "< 90 00",
        "> 80 5E 01 00 07 ** ** ** FF ** ** **",
        "< 90 00",
        "> 00 20 00 00 03 ** ** **",
        "< 90 00",
        "> 80 CA 00 C1 00",
        "< C1 04 01 01 06 06 90 00",
    ]
    for secret in ("65 43 21", "12 34 56", "80 26 13", WRONG_PIN, INITIAL_PIN, NEW_PIN):
        assert secret not in log, f"{secret!r} in the serve log:\n{log}"
    compact = re.sub(r"\s+", "", log)
    for digits in (WRONG_PIN, INITIAL_PIN, NEW_PIN):
        assert digits not in compact
