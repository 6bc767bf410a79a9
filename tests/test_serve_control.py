"""`cardio serve A B PSAM` and `cardio ctl`: several cards, and a card under remote control.

Through the real PC/SC stack (pcscd + vpcd + pyscard) where a client must see it: ctl
insert / remove / swap as card events, two cards and a PSAM at once. Debian's vpcd has two
slots, so the third card goes to a fake vpcd on the port after them (vpcd_fakes.py), as
a vpcd built with more slots would take it. Bad input and a missing server need no pcscd.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from card_helpers import FCI_SSSE, h
from card_helpers import SELECT_SSSE as SELECT_SSSE_HEX
from pcsc_stack import wait_for
from vpcd_fakes import FakeVpcd, Served, assert_lock_free, expected_atr, free_port

from cardio.card import profiles, store
from cardio.card.store import CardInUseError, FileStore
from cardio.issuer import fixture_issuer
from cardio.psam import state as psam_state
from cardio.psam import store as psam_store
from cardio.psam.card import VirtualPsam

SELECT_SSSE = h(SELECT_SSSE_HEX)
SELECTED = h(FCI_SSSE + " 90 00")
VERIFY_WRONG = h("00 20 00 00 03 11 22 33")
CLI = [sys.executable, "-m", "cardio.cli"]


def new_card(folder: Path, name: str, serial: int | None = None) -> Path:
    path = folder / f"{name}.json"
    profiles.new_card("employee-new", path, serial=serial)
    return path


def new_psam(folder: Path) -> Path:
    path = folder / "psam.json"
    psam_store.create(path, psam_state.make(fixture_issuer(), "440300000007"))
    return path


def cardio(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("ok ")
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], status: int) -> str:
    """One line on stderr (`cardio: ...`, or argparse's `cardio ctl: ...`), and the exit
    status; never a traceback."""
    assert result.returncode == status, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cardio"), result.stderr
    return lines[0]


def atr_of(reader: str) -> bytes | None:
    from cardio.readers import pcsc

    return {i.name: i.atr for i in pcsc.list_readers()}.get(reader)


class Events:
    """SCardGetStatusChange on one reader, as a PC/SC program waits for card events."""

    def __init__(self, reader: str) -> None:
        from smartcard import scard

        self.scard = scard
        self.reader = reader
        hr, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert hr == 0
        hr, states = scard.SCardGetStatusChange(self.ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        assert hr == 0
        self.state = states[0][1] & ~scard.SCARD_STATE_CHANGED

    @property
    def present(self) -> bool:
        return bool(self.state & self.scard.SCARD_STATE_PRESENT)

    def next(self, timeout_ms: int = 10_000) -> bool | None:
        """Block until the reader's state changes: whether a card is present then; None
        when nothing happened within the timeout."""
        scard = self.scard
        hr, states = scard.SCardGetStatusChange(self.ctx, timeout_ms, [(self.reader, self.state)])
        if hr == scard.SCARD_E_TIMEOUT:
            return None
        assert hr == 0, scard.SCardGetErrorMessage(hr)
        self.state = states[0][1] & ~scard.SCARD_STATE_CHANGED
        return self.present

    def until(self, present: bool) -> None:
        deadline = time.monotonic() + 10
        while self.present != present:
            assert time.monotonic() < deadline, f"no card event: present={present}"
            self.next()

    def close(self) -> None:
        self.scard.SCardReleaseContext(self.ctx)


@pytest.fixture
def serve_set(pcsc_stack):
    with pcsc_stack.serving_sets() as start:
        yield start


# --- through pcscd ----------------------------------------------------------------------


@pytest.mark.pcsc
def test_ctl_remove_and_insert_are_card_events(tmp_path, pcsc_stack, serve_set) -> None:
    path = new_card(tmp_path, "card")
    served = serve_set([path])
    reader = served.readers[0]
    events = Events(reader)
    try:
        assert events.present
        assert ok(served.ctl("remove")) == "ok slot 0: card.json removed\n"
        events.until(present=False)
        assert "slot 0: card card.json removed, no faults" in ok(served.ctl("status"))
        assert ok(served.ctl("remove", "0")) == "ok slot 0 is already empty\n"
        assert ok(served.ctl("insert", "0")) == "ok slot 0: card.json inserted\n"
        events.until(present=True)
    finally:
        events.close()
    assert atr_of(reader) == expected_atr(path)
    log = served.output()
    assert "card pulled out (ctl remove)" in log and "card inserted (ctl)" in log


@pytest.mark.pcsc
def test_ctl_swap_puts_another_card_into_the_reader(tmp_path, pcsc_stack, serve_set) -> None:
    first, second = new_card(tmp_path, "first"), new_card(tmp_path, "second", serial=2)
    assert expected_atr(first) != expected_atr(second)
    served = serve_set([first])
    reader = served.readers[0]
    events = Events(reader)
    try:
        line = ok(served.ctl("swap", "0", str(second)))
        assert line == "ok slot 0: first.json out, second.json in\n"
        events.until(present=False)  # out, as a holder's hand takes it
        events.until(present=True)
    finally:
        events.close()
    assert atr_of(reader) == expected_atr(second)
    assert_lock_free(first)  # the old card's file is free for another program
    with pytest.raises(CardInUseError):
        FileStore(second).open()
    assert "second.json inserted" in ok(served.ctl("status"))


@pytest.mark.pcsc
def test_a_swap_to_a_locked_or_bad_file_is_refused_and_the_old_card_stays(
    tmp_path, pcsc_stack, serve_set
) -> None:
    card, locked = new_card(tmp_path, "card"), new_card(tmp_path, "locked", serial=3)
    served = serve_set([card])
    reader = served.readers[0]
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{")
    events = Events(reader)
    holder = FileStore(locked)
    holder.open()
    try:
        line = refused(served.ctl("swap", "0", str(locked)), 1)
        assert "locked.json is in use by" in line
        line = refused(served.ctl("swap", "0", str(garbage)), 1)
        assert "garbage.json" in line and "not valid JSON" in line
        assert events.present
        assert events.next(timeout_ms=1500) is None  # over three polls: never pulled out
    finally:
        holder.close()
        events.close()
    assert atr_of(reader) == expected_atr(card)
    assert "card card.json inserted" in ok(served.ctl("status"))


@pytest.mark.pcsc
def test_two_cards_and_a_psam_served_at_once(tmp_path, pcsc_stack, serve_set) -> None:
    a, b, psam = new_card(tmp_path, "a"), new_card(tmp_path, "b", serial=2), new_psam(tmp_path)
    third = FakeVpcd(pcsc_stack.port + 2)  # slot 2: where a vpcd with three slots listens
    try:
        served = serve_set([a, b, psam], "-v")
        link = third.accept()
        assert link.get_atr() == VirtualPsam(psam_store.read(psam)).atr
        assert len(link.apdu(h("00 A4 00 00 02 3F 00"))) >= 2  # the PSAM answers
        assert atr_of(served.readers[0]) == expected_atr(a)
        assert atr_of(served.readers[1]) == expected_atr(b)
        from smartcard.System import readers

        (slot1,) = [r for r in readers() if str(r) == served.readers[1]]
        connection = slot1.createConnection()
        connection.connect()
        try:
            assert connection.transmit(list(SELECT_SSSE)) == (list(SELECTED[:-2]), 0x90, 0x00)
        finally:
            connection.disconnect()
        status = ok(served.ctl("status"))
        assert status == (
            "ok slot 0: card a.json inserted, no faults; slot 1: card b.json inserted, "
            "no faults; slot 2: PSAM psam.json inserted, no faults\n"
        )
        log = served.output()
        assert "--enable-vpcdslots=3" in log
        assert "slot 1: > 00 A4 04 00 0F" in log  # each slot's lines say whose they are
    finally:
        third.close()


@pytest.mark.pcsc
def test_watch_streams_the_exchanges_as_trace_lines(tmp_path, pcsc_stack, serve_set) -> None:
    path = new_card(tmp_path, "card")
    served = serve_set([path], "-v")
    watcher = subprocess.Popen(
        [*CLI, "ctl", "--control", str(served.control), "watch", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline() == "ok watching slot 0\n"
        # read here: communicate() below reads the pipe itself, past this buffer
        first = watcher.stdout.readline()
        from smartcard.System import readers

        (slot,) = [r for r in readers() if str(r) == served.readers[0]]
        connection = slot.createConnection()
        connection.connect()
        try:
            connection.transmit(list(SELECT_SSSE))
            connection.transmit(list(VERIFY_WRONG))
        finally:
            connection.disconnect()
        wait_for(lambda: "< 63 C5" in served.output(), "the last answer in the log")
        time.sleep(0.3)  # its trace line is on its way to the watcher too
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    lines = out.splitlines()
    assert lines[lines.index("> " + SELECT_SSSE_HEX) :][:4] == [
        "> " + SELECT_SSSE_HEX,
        "< " + FCI_SSSE + " 90 00",
        "> 00 20 00 00 03 ** ** **",
        "< 63 C5",
    ]
    atr = expected_atr(path).hex(" ").upper()
    assert first == f"atr {atr}\n"  # the card in the slot as the watch began
    assert set(lines) - {"> " + SELECT_SSSE_HEX, "< " + FCI_SSSE + " 90 00"} <= {
        "reset " + atr,  # a power-up, if pcscd made one
        "> 00 20 00 00 03 ** ** **",
        "< 63 C5",
    }
    assert "11 22 33" not in out
    assert ok(served.ctl("status"))  # the watcher's going did not harm the server


# --- without pcscd: the control socket and bad input ------------------------------------


@pytest.fixture
def idle_serve(tmp_path):
    """`cardio serve` waiting for a vpcd that is not there: its control socket works."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*CLI, "serve", *args, "--vpcd", f"127.0.0.1:{free_port()}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.terminate()
        proc.communicate(timeout=10)


def test_the_control_socket_is_0600_beside_the_first_card_and_goes_at_exit(
    tmp_path, idle_serve
) -> None:
    card = new_card(tmp_path, "card")
    proc = idle_serve(str(card))
    sock = tmp_path / ".card.json.ctl"
    wait_for(sock.exists, "the control socket")
    mode = os.lstat(sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert ok(cardio("ctl", "--control", str(card), "status")) == (
        "ok slot 0: card card.json inserted (not yet in vpcd), no faults\n"
    )
    assert ok(cardio("ctl", "--control", str(sock), "fault", "0", "sw=20:6983,p=0.5,count=*"))
    assert ok(cardio("ctl", "--control", str(sock), "fault", "0", "tear=new"))
    status = ok(cardio("ctl", "--control", str(sock), "status"))
    armed = "faults sw=20:6983,p=0.5,count=* tear=new"
    assert status == f"ok slot 0: card card.json inserted (not yet in vpcd), {armed}\n"
    assert ok(cardio("ctl", "--control", str(sock), "clear", "0"))
    proc.terminate()
    assert proc.wait(10) == 0
    assert not sock.exists()
    assert_lock_free(card)


def test_a_socket_left_by_a_killed_serve_is_replaced(tmp_path, idle_serve) -> None:
    card = new_card(tmp_path, "card")
    sock = tmp_path / ".card.json.ctl"
    first = idle_serve(str(card))
    wait_for(sock.exists, "the control socket")
    first.kill()
    first.wait(10)
    assert sock.exists()
    idle_serve(str(card))
    wait_for(lambda: cardio("ctl", "--control", str(sock), "status").returncode == 0, "ctl")


def test_bad_ctl_input_is_one_line_and_status_2(tmp_path, idle_serve) -> None:
    card = new_card(tmp_path, "card")
    idle_serve(str(card))
    sock = tmp_path / ".card.json.ctl"
    wait_for(sock.exists, "the control socket")
    control = ("ctl", "--control", str(sock))
    assert "there is no fault 'bogus'" in refused(cardio(*control, "fault", "0", "bogus"), 2)
    assert "INS must be 2 hex digits" in refused(cardio(*control, "fault", "0", "sw=2:6983"), 2)
    assert "p is a probability" in refused(cardio(*control, "fault", "0", "flip,p=2"), 2)
    assert "not a slot number" in refused(cardio(*control, "remove", "x"), 2)
    assert "cardio ctl clear SLOT" in refused(cardio(*control, "clear"), 2)
    assert "cardio ctl swap SLOT FILE" in refused(cardio(*control, "swap", "0"), 2)
    assert "no such card file" in refused(cardio(*control, "swap", "0", "nope.json"), 2)
    line = refused(cardio(*control, "swap", "0", str(tmp_path)), 2)
    assert "is not a regular file" in line
    line = refused(cardio(*control, "fault", "0", "remove-after=3,p=0.5"), 2)
    assert "remove-after fires once" in line
    assert "invalid choice" in refused(cardio(*control, "explode"), 2)
    # the server's own refusals: status 1, its error line
    assert "there is no slot 3" in refused(cardio(*control, "insert", "3"), 1)
    assert "is already in slot 0" in refused(cardio(*control, "swap", "0", str(card)), 1)


def test_ctl_without_a_server_says_so(tmp_path, monkeypatch) -> None:
    gone = tmp_path / "nobody.sock"
    line = refused(cardio("ctl", "--control", str(gone), "status"), 1)
    assert line == (
        f"cardio: no cardio serve listens on {gone}; start 'cardio serve CARD...' "
        "or give its socket with --control PATH"
    )
    monkeypatch.delenv("CARDIO_CONTROL", raising=False)
    assert "give --control PATH" in refused(cardio("ctl", "status"), 2)
    monkeypatch.setenv("CARDIO_CONTROL", str(gone))
    assert "no cardio serve listens" in refused(cardio("ctl", "status"), 1)
    long = tmp_path / ("x" * 120)
    assert "at most 107 bytes" in refused(cardio("ctl", "--control", str(long), "status"), 2)


def test_bad_serve_arguments_are_one_line(tmp_path) -> None:
    card = new_card(tmp_path, "card")
    other = new_card(tmp_path, "other", serial=2)
    port = f"127.0.0.1:{free_port()}"
    assert "given twice" in refused(cardio("serve", str(card), str(card), "--vpcd", port), 2)
    line = refused(cardio("serve", str(card), str(other), "--listen", port), 2)
    assert "--listen serves one card" in line
    line = refused(cardio("serve", str(card), "--faults", "2:mute", "--vpcd", port), 2)
    assert "--faults names slot 2" in line
    psam = new_psam(tmp_path)
    line = refused(cardio("serve", str(card), str(psam), "--faults", "1:tear", "--vpcd", port), 2)
    assert "slot 1 holds a PSAM" in line
    line = refused(cardio("serve", str(card), "--faults", "remove-after=2,count=2"), 2)
    assert "takes no ,p= or ,count=" in line
    assert "no fault 'melt'" in refused(cardio("serve", str(card), "--faults", "melt"), 2)
    long = "/tmp/" + "y" * 110
    line = refused(cardio("serve", str(card), "--control", long, "--vpcd", port), 2)
    assert "at most 107 bytes" in line
    assert_lock_free(card)


def test_serve_given_a_card_file_as_control_makes_the_socket_beside_it(
    tmp_path, idle_serve
) -> None:
    """As ctl and record take it: the card file names the socket beside it."""
    card = new_card(tmp_path, "card")
    other = new_card(tmp_path, "other", serial=2)
    idle_serve(str(other), "--control", str(card))
    sock = tmp_path / ".card.json.ctl"
    wait_for(sock.exists, "the control socket beside card.json")
    assert "other.json" in ok(cardio("ctl", "--control", str(card), "status"))
    assert store.read(card)  # the card file is a card file still


def test_one_tear_and_one_remove_after_per_slot_and_a_removal_disarms(tmp_path, idle_serve) -> None:
    card = new_card(tmp_path, "card")
    idle_serve(str(card))
    control = ("ctl", "--control", str(card))
    wait_for(lambda: cardio(*control, "status").returncode == 0, "the control socket")
    assert ok(cardio(*control, "fault", "0", "remove-after=5")).endswith("armed\n")
    again = ok(cardio(*control, "fault", "0", "remove-after=2"))
    assert again == "ok slot 0: remove-after=2 armed (instead of remove-after=5)\n"
    ok(cardio(*control, "fault", "0", "tear=old"))
    assert "(instead of tear=old)" in ok(cardio(*control, "fault", "0", "tear=new,count=2"))
    ok(cardio(*control, "fault", "0", "flip"))
    ok(cardio(*control, "fault", "0", "flip"))  # the others add up
    status = ok(cardio(*control, "status"))
    assert "faults flip flip tear=new,count=2 remove-after=2" in status
    removed = ok(cardio(*control, "remove"))
    assert removed == "ok slot 0: card.json removed, its remove-after disarmed\n"
    assert "remove-after" not in ok(cardio(*control, "status"))


def read_watch(sock: Path, slot: int = 0) -> tuple[threading.Thread, list[str], list[Exception]]:
    """`watch SLOT` in a thread (cardio.control.Watch): its lines, and how it ended."""
    from cardio.control import Watch

    watch = Watch(sock, slot)
    lines: list[str] = []
    ended: list[Exception] = []

    def run() -> None:
        try:
            with watch:
                lines.extend(line.rstrip("\n") for line in watch.lines())
        except Exception as e:
            ended.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, lines, ended


def test_a_watch_tells_the_atr_each_fault_and_swap_and_ends_with_serve(tmp_path) -> None:
    """What `cardio record` needs from a live stream: the ATR at each power-up, a note
    before each exchange a fault changed, a note at a swap, and `end` when serve stops,
    so that a stream cut short can be told from a whole one."""
    card = new_card(tmp_path, "card")
    other = new_card(tmp_path, "other", serial=2)
    vpcd = FakeVpcd()
    sock = tmp_path / "c.sock"
    served = Served(card, "--vpcd", vpcd.address, "--control", str(sock))
    try:
        link = vpcd.accept()
        wait_for(sock.exists, "the control socket")
        in_vpcd = "card card.json inserted, no faults"
        wait_for(lambda: in_vpcd in cardio("ctl", "--control", str(sock), "status").stdout, "in")
        thread, lines, ended = read_watch(sock)
        link.control(1)  # power on
        atr = link.get_atr()
        assert link.apdu(SELECT_SSSE) == SELECTED
        ok(cardio("ctl", "--control", str(sock), "fault", "0", "sw=20:6983"))
        assert link.apdu(VERIFY_WRONG) == h("69 83")
        ok(cardio("ctl", "--control", str(sock), "swap", "0", str(other)))
        wait_for(lambda: any(line.startswith("# swap") for line in lines), "the swap's note")
    finally:
        served.stop()
        vpcd.close()
    thread.join(10)
    assert ended == []  # `end` came: the stream is whole
    # the card in the slot as the watch began, then its power-up
    assert lines[:2] == ["atr " + atr.hex(" ").upper(), "reset " + atr.hex(" ").upper()]
    fault = lines.index("# fault sw=20:6983: answered 69 83 unexecuted")
    assert lines[fault + 1 : fault + 3] == ["> 00 20 00 00 03 ** ** **", "< 69 83"]
    assert "# swap: card.json out, other.json in" in lines
    assert "11 22 33" not in "\n".join(lines)


def test_a_watcher_that_falls_behind_is_cut_and_a_recording_says_so(tmp_path) -> None:
    """serve never lets a watcher slow the card: one that stops reading is dropped. Its
    `cardio record` then exits 1 and the script ends with a `# cut` note."""
    card = new_card(tmp_path, "card")
    vpcd = FakeVpcd()
    sock = tmp_path / "c.sock"
    script = tmp_path / "live.apdu"
    served = Served(card, "--vpcd", vpcd.address, "--control", str(sock))
    recorder = None
    try:
        link = vpcd.accept()
        wait_for(sock.exists, "the control socket")
        recorder = subprocess.Popen(
            [*CLI, "record", "--control", str(sock), "--out", str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(script.exists, "the script file")
        link.control(1)
        os.kill(recorder.pid, signal.SIGSTOP)  # a recorder that falls behind
        sent = 0
        while "did not keep up" not in served.stderr and sent < 200_000:
            link.apdu(SELECT_SSSE)
            sent += 1
        os.kill(recorder.pid, signal.SIGCONT)
        out, err = recorder.communicate(timeout=30)
    finally:
        if recorder is not None and recorder.poll() is None:
            recorder.kill()
        served.stop()
        vpcd.close()
    assert "did not keep up" in served.stderr
    assert recorder.returncode == 1, out + err
    assert "was cut" in err and len(err.strip().splitlines()) == 1
    recorded = script.read_text("utf-8")
    assert recorded.splitlines()[-1].startswith("# cut: the live stream stopped here")
    assert 0 < recorded.count("\n" + SELECT_SSSE_HEX) < sent


# --- in process: fault specs and the tear ----------------------------------------------


def test_a_watcher_that_leaves_is_let_go_and_one_that_lags_is_dropped(tmp_path, caplog) -> None:
    import logging
    import random
    import socket

    from cardio.slots import Slot
    from cardio.vpcd import hold

    slot = Slot(0, ("127.0.0.1", 1), hold(new_card(tmp_path, "card"), None, random.Random()))
    gone, gone_peer = socket.socketpair()
    lagging, lagging_peer = socket.socketpair()
    try:
        slot.watch(gone)
        slot.watch(lagging)
        gone_peer.close()  # Ctrl-C of a ctl watch
        with caplog.at_level(logging.INFO, logger="cardio"):
            slot._tell("> 00 A4 04 00 00")
            assert "did not keep up" not in caplog.text  # it left: it lost nothing
            assert slot._watchers == [lagging]
            while slot._watchers:  # the lagging one never reads
                slot._tell("> " + "00 " * 1000)
        assert "a watcher did not keep up and was dropped" in caplog.text
    finally:
        slot.held.cards.close()
        for sock in (gone, lagging, lagging_peer):
            sock.close()


def test_fault_specs_parse_and_show_back() -> None:
    from cardio import faults

    fault = faults.parse("sw=20:6983,p=0.5,count=2")
    assert (fault.kind, fault.ins, fault.sw, fault.p, fault.left) == (
        faults.Kind.SW,
        0x20,
        h("69 83"),
        0.5,
        2,
    )
    assert fault.spec() == "sw=20:6983,p=0.5,count=2" and fault.name == "sw=20:6983"
    assert faults.parse("delay=250,count=*").left == faults.FOREVER
    assert faults.parse_slotted("1:tear=new")[0] == 1
    assert faults.parse_slotted("mute")[0] == 0
    for bad in ("", "mute=1", "delay=0", "delay=x", "tear=half", "sw=20", "sw=2G:6983",
                "flip,p=0", "flip,count=0", "flip,often", "remove-after=1,p=0.5",
                "remove-after=1,count=*"):  # fmt: skip
        with pytest.raises(faults.UsageError):
            faults.parse(bad)


@pytest.mark.parametrize("to", ["old", "new"])
def test_a_tear_leaves_the_old_or_the_new_file(tmp_path, to) -> None:
    from cardio.card.card import VirtualCard
    from cardio.faults import PowerLost, TearingStore, came_back_as, parse

    path = new_card(tmp_path, "card")
    with FileStore(path) as file_store:
        tearing = TearingStore(file_store, armed=parse(f"tear={to}"))
        card = VirtualCard(file_store.open(), tearing)
        card.power_on()
        card.execute(VERIFY_WRONG)  # its answer is never sent: the slot sees `lost`
        lost = tearing.lost
        assert isinstance(lost, PowerLost)
    assert came_back_as(path, lost.old, lost.new) == to
    assert store.read(path).tries_left == 6 - (to == "new")
    with FileStore(path) as again:  # the next opener removes what the crash left
        again.open()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
