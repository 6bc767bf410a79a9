"""`cardio serve` and cardio.vpcd against a fake vpcd (docs/card.md).

No pcscd and no pyscard here: the tests play vpcd themselves. End to end, a real
`cardio serve` child process connects to our listener on 127.0.0.1 (forward mode) or
we connect to it (`--listen`, vpcd's reversed mode). Unit level, cardio.vpcd runs in
process over socket.socketpair() or over a scripted fake socket.

The fake vpcd and the `cardio serve` process are in vpcd_fakes.py.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from card_helpers import FCI_SSSE, h
from card_helpers import SELECT_SSSE as SELECT_SSSE_HEX
from vpcd_fakes import (
    CHANGE_PIN,
    CONTROL_NAMES,
    DEADLINE,
    GET_ATR,
    GET_PIN_DATA,
    NOT_VERIFIED,
    OK,
    PIN_DATA_FRESH,
    POWER_OFF,
    POWER_ON,
    RESET,
    ROOT,
    SELECT_SSSE,
    SELECTED,
    SIGNAL_DEADLINE,
    STATUS_QUERY,
    VERIFY_NEW,
    VERIFY_RIGHT,
    VERIFY_WRONG,
    WRONG_PIN_5_LEFT,
    FakeVpcd,
    Served,
    VpcdLink,
    assert_lock_free,
    connect_when_listening,
    expected_atr,
    frame,
    free_port,
    serving,
)

from cardio import cli, slots, vpcd
from cardio.card import profiles, store

# --- the card file --------------------------------------------------------------------


@pytest.fixture
def card_path(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    profiles.new_card("employee-new", path)
    return path


@pytest.fixture
def fake_vpcd() -> Iterator[FakeVpcd]:
    server = FakeVpcd()
    yield server
    server.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    with serving() as start:
        yield start


# --- unit: cardio.vpcd in process --------------------------------------------------------


class ScriptedSocket:
    """A stand-in socket: recv hands out the scripted chunks (never more than asked, an
    exception in the script is raised), then end of stream; every write is recorded."""

    def __init__(self, chunks: list[bytes | BaseException], family: int = socket.AF_UNIX):
        self.chunks = list(chunks)
        self.family = family
        self.writes: list[bytes] = []
        self.recvs = 0
        self.options: list[tuple[int, int, int]] = []

    def recv(self, n: int) -> bytes:
        self.recvs += 1
        if not self.chunks:
            return b""
        item = self.chunks[0]
        if isinstance(item, BaseException):
            self.chunks.pop(0)
            raise item
        head, rest = item[:n], item[n:]
        if rest:
            self.chunks[0] = rest
        else:
            self.chunks.pop(0)
        return head

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def __enter__(self) -> ScriptedSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def send(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))


@contextmanager
def open_card(path: Path) -> Iterator[vpcd.Held]:
    held = vpcd.hold(path, None, random.Random())
    with held.cards:
        yield held


def serve_link(held: vpcd.Held, sock: socket.socket | ScriptedSocket) -> None:
    """What `cardio serve` does with one connection to vpcd (forward mode)."""
    slots.Slot(0, ("127.0.0.1", 0), held).serve_link(sock)  # type: ignore[arg-type]


def run_bridge(path: Path, stream: bytes) -> bytes:
    """A slot on one end of a socketpair: we write `stream` and close our sending
    side; everything the bridge wrote back before it returned."""
    with open_card(path) as card:
        ours, theirs = socket.socketpair()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                with theirs:
                    serve_link(card, theirs)
            except BaseException as e:
                failures.append(e)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            link = VpcdLink(ours)
            ours.sendall(stream)
            ours.shutdown(socket.SHUT_WR)
            received = link.rest()
        finally:
            ours.close()
            thread.join(DEADLINE)
    assert not thread.is_alive(), "the slot did not return at end of stream"
    assert failures == []
    return received


@contextmanager
def bridged(path: Path) -> Iterator[VpcdLink]:
    """A slot in a thread; we talk to it as vpcd. On leaving, the bridge must
    return at end of stream without having sent anything more."""
    with open_card(path) as card:
        ours, theirs = socket.socketpair()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                with theirs:
                    serve_link(card, theirs)
            except BaseException as e:
                failures.append(e)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        link = VpcdLink(ours)
        try:
            yield link
            ours.shutdown(socket.SHUT_WR)
            assert link.rest() == b"", "the bridge sent a frame nobody asked for"
        finally:
            ours.close()
            thread.join(DEADLINE)
    assert not thread.is_alive(), "the slot did not return at end of stream"
    assert failures == []


F1, F2 = frame(SELECT_SSSE), frame(GET_PIN_DATA)
SPLITS = {
    "one piece": [F1 + F2],
    "length, then payload (vpcd)": [F1[:2], F1[2:], F2[:2], F2[2:]],
    "byte by byte": [bytes((b,)) for b in F1 + F2],
    "header split, frames run together": [F1[:1], F1[1:5], F1[5:] + F2[:1], F2[1:3], F2[3:]],
}


@pytest.mark.parametrize("chunks", SPLITS.values(), ids=SPLITS.keys())
def test_read_frame_reads_whole_frames_however_the_stream_splits(chunks: list[bytes]) -> None:
    sock = ScriptedSocket(chunks)
    assert vpcd.read_frame(sock) == SELECT_SSSE
    assert vpcd.read_frame(sock) == GET_PIN_DATA
    with pytest.raises(EOFError):  # the peer left between frames: a clean end
        vpcd.read_frame(sock)


def test_bridge_answers_frames_that_arrive_in_pieces(card_path: Path) -> None:
    with bridged(card_path) as link:
        assert link.apdu(SELECT_SSSE, byte_by_byte=True) == SELECTED
        assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH  # length and payload sent apart
        assert link.apdu(GET_PIN_DATA, byte_by_byte=True) == PIN_DATA_FRESH


def test_get_atr_is_answered_with_the_atr_of_the_card_file(card_path: Path) -> None:
    atr = expected_atr(card_path)
    assert atr == h("3B 6D 00 00 00 00 53 42 50 00 00 31 00 37 2A 9F A8")  # employee-new
    received = run_bridge(card_path, frame(bytes((GET_ATR,))) * 2)
    assert received == frame(atr) * 2


@pytest.mark.parametrize("code", [POWER_OFF, RESET, POWER_ON], ids=CONTROL_NAMES.get)
def test_power_controls_send_no_reply_and_clear_the_session(card_path: Path, code: int) -> None:
    stream = b"".join(
        frame(p)
        for p in (
            bytes((POWER_ON,)),
            VERIFY_RIGHT,
            STATUS_QUERY,
            bytes((code,)),
            STATUS_QUERY,
            bytes((GET_ATR,)),
        )
    )
    received = run_bridge(card_path, stream)
    # one frame for each APDU and the GET ATR, nothing for the controls
    assert received == frame(OK) + frame(OK) + frame(NOT_VERIFIED) + frame(expected_atr(card_path))


@pytest.mark.parametrize("code", [POWER_OFF, RESET, POWER_ON], ids=CONTROL_NAMES.get)
def test_power_controls_interactively(card_path: Path, code: int) -> None:
    with bridged(card_path) as link:
        assert link.apdu(VERIFY_RIGHT) == OK
        assert link.apdu(STATUS_QUERY) == OK
        link.control(code)
        assert link.apdu(STATUS_QUERY) == NOT_VERIFIED


def test_an_apdu_is_answered_by_exactly_one_frame(card_path: Path) -> None:
    assert run_bridge(card_path, frame(GET_PIN_DATA)) == frame(PIN_DATA_FRESH)
    assert run_bridge(card_path, frame(SELECT_SSSE) + frame(GET_PIN_DATA)) == (
        frame(SELECTED) + frame(PIN_DATA_FRESH)
    )


MALFORMED_UNIT = {
    "length 0": [b"\x00\x00"],
    "10 announced, 3 arrive, end": [b"\x00\x0a", b"\x01\x02\x03"],
    "10 announced, none arrive, end": [b"\x00\x0a"],
    "half a header, end": [b"\x00"],
}


@pytest.mark.parametrize("chunks", MALFORMED_UNIT.values(), ids=MALFORMED_UNIT.keys())
def test_read_frame_rejects_malformed_frames(chunks: list[bytes]) -> None:
    with pytest.raises(vpcd.FrameError):
        vpcd.read_frame(ScriptedSocket(chunks))


def test_read_frame_passes_a_connection_reset_on() -> None:
    sock = ScriptedSocket([b"\x00\x0a\x01", ConnectionResetError(104, "Connection reset by peer")])
    with pytest.raises(OSError):
        vpcd.read_frame(sock)


def test_tune_sets_tcp_nodelay() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname()[:2], timeout=DEADLINE):
        accepted, _ = server.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            vpcd._tune(accepted)
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_write_frame_is_a_single_send() -> None:
    sock = ScriptedSocket([])
    vpcd.write_frame(sock, PIN_DATA_FRESH)
    assert sock.writes == [frame(PIN_DATA_FRESH)]


def test_a_signal_raises_stop_only_in_a_wait_and_only_once() -> None:
    """StopGuard: a signal during a card command or the shutdown is noted and honoured at
    the next wait; once stopping, no further signal raises anything (no traceback)."""
    guard = vpcd.StopGuard()
    guard.handle(signal.SIGTERM, None)  # in a card command: noted, not raised
    assert guard.stopping
    with pytest.raises(vpcd.Stop):
        guard.enter()  # the next wait
    guard.handle(signal.SIGTERM, None)  # in the shutdown: nothing
    guard.handle(signal.SIGINT, None)

    idle = vpcd.StopGuard()
    idle.enter()  # blocked in recv, accept or the back-off sleep
    with pytest.raises(vpcd.Stop):
        idle.handle(signal.SIGINT, None)
    idle.handle(signal.SIGTERM, None)  # a second one while stopping: nothing
    assert idle.stopping and not idle.waiting


def test_each_reply_is_one_frame_written_with_one_send(card_path: Path) -> None:
    atr_frame = frame(bytes((GET_ATR,)))
    data_frame = frame(GET_PIN_DATA)
    sock = ScriptedSocket(
        [
            atr_frame[:2],
            atr_frame[2:],  # as vpcd writes: length, then payload
            frame(bytes((POWER_ON,))),
            *(bytes((b,)) for b in data_frame),
            frame(VERIFY_RIGHT) + frame(bytes((POWER_OFF,))) + frame(STATUS_QUERY),
        ]
    )
    with open_card(card_path) as card:
        serve_link(card, sock)  # returns at end of stream
    assert sock.writes == [
        frame(expected_atr(card_path)),
        frame(PIN_DATA_FRESH),
        frame(OK),
        frame(NOT_VERIFIED),
    ]


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux only")
def test_quickack_is_rearmed_after_every_recv() -> None:
    """The module doc: vpcd's payload waits for our ACK of its length; ACK at once."""
    sock = ScriptedSocket(
        [b"\x00", b"\x05", GET_PIN_DATA[:2], GET_PIN_DATA[2:]], family=socket.AF_INET
    )
    assert vpcd.read_frame(sock) == GET_PIN_DATA
    quickacks = [o for o in sock.options if o == (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)]
    assert len(quickacks) == sock.recvs == 4


# --- end to end: `cardio serve` in forward mode ----------------------------------------------


def test_serve_answers_vpcd_like_a_card(
    card_path: Path, fake_vpcd: FakeVpcd, serve: Callable[..., Served]
) -> None:
    served = serve(card_path, "--vpcd", fake_vpcd.address)
    link = fake_vpcd.accept()
    atr = expected_atr(card_path)
    # pcscd's insertion sequence (REPORT.md §3), then a client session
    assert link.get_atr() == atr
    assert link.get_atr() == atr
    link.control(POWER_ON)
    assert link.get_atr() == atr
    assert link.apdu(SELECT_SSSE, byte_by_byte=True) == SELECTED
    assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
    assert link.apdu(VERIFY_RIGHT) == OK
    assert link.apdu(STATUS_QUERY) == OK
    link.control(RESET)
    assert link.get_atr() == atr
    assert link.apdu(STATUS_QUERY) == NOT_VERIFIED
    assert link.apdu(VERIFY_RIGHT) == OK
    link.control(POWER_OFF)
    link.control(POWER_ON)
    assert link.apdu(STATUS_QUERY) == NOT_VERIFIED
    assert served.stop() == 0


def _send_empty_frame(link: VpcdLink) -> None:
    link.sock.sendall(b"\x00\x00")


def _send_short_frame_then_close(link: VpcdLink) -> None:
    link.sock.sendall(b"\x00\x0a")
    link.sock.sendall(b"\x01\x02\x03")
    link.sock.shutdown(socket.SHUT_WR)


def _reset_mid_frame(link: VpcdLink) -> None:
    link.sock.sendall(b"\x00\x0a\x01\x02\x03")
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN
    link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    link.sock.close()


MALFORMED = {
    "length 0": (_send_empty_frame, r"connection dropped: .*empty"),
    "short read": (_send_short_frame_then_close, r"connection dropped: .*\b3 of 10\b"),
    "reset mid-frame": (_reset_mid_frame, r"connection dropped"),
}


@pytest.mark.parametrize("case", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_frame_drops_the_connection_and_serve_reconnects(
    card_path: Path,
    fake_vpcd: FakeVpcd,
    serve: Callable[..., Served],
    case: tuple[Callable[[VpcdLink], None], str],
) -> None:
    spoil, logged = case
    before = card_path.read_bytes()
    served = serve(card_path, "--vpcd", fake_vpcd.address)
    first = fake_vpcd.accept()
    atr = expected_atr(card_path)
    assert first.get_atr() == atr
    first.control(POWER_ON)
    assert first.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
    spoil(first)
    if first.sock.fileno() != -1:  # still open on our side: it must hang up, without a word
        assert first.rest() == b""
    second = fake_vpcd.accept()  # forward mode: serve comes back by itself
    assert second.get_atr() == atr
    second.control(POWER_ON)
    assert second.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
    assert served.stop() == 0
    dropped = [line for line in served.lines if re.search(logged, line)]
    assert len(dropped) == 1, served.stderr
    assert card_path.read_bytes() == before
    assert store.read(card_path).tries_left == 6
    assert_lock_free(card_path)


@pytest.mark.slow  # waits for serve's retries
def test_serve_waits_for_vpcd_and_says_so_once(
    card_path: Path, serve: Callable[..., Served]
) -> None:
    port = free_port()
    served = serve(card_path, "--vpcd", f"127.0.0.1:{port}")
    line = served.wait_for("waiting for vpcd")
    assert f"127.0.0.1:{port}" in line
    time.sleep(1.0)  # vpcd (pcscd) comes up a second later
    late = FakeVpcd(port)
    try:
        link = late.accept()
        assert link.get_atr() == expected_atr(card_path)
        link.control(POWER_ON)
        assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
        assert served.stop() == 0
    finally:
        late.close()
    waiting = [line for line in served.lines if "waiting for vpcd" in line]
    assert len(waiting) == 1, served.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_pulls_the_card_out_and_nothing_is_lost(
    card_path: Path, fake_vpcd: FakeVpcd, serve: Callable[..., Served], sig: int
) -> None:
    before = store.read(card_path)
    served = serve(card_path, "--vpcd", fake_vpcd.address)
    link = fake_vpcd.accept()
    link.control(POWER_ON)
    assert link.apdu(VERIFY_WRONG) == WRONG_PIN_5_LEFT  # written to the card file
    # now idle, blocked in recv: the signal must end it promptly, and cleanly
    assert served.stop(sig, timeout=SIGNAL_DEADLINE) == 0
    assert link.rest() == b""
    assert store.read(card_path) == before.with_(tries_left=5)
    assert_lock_free(card_path)
    leftovers = [p.name for p in card_path.parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_idle_in_recv_stops_serve_promptly(
    card_path: Path, fake_vpcd: FakeVpcd, serve: Callable[..., Served], sig: int
) -> None:
    served = serve(card_path, "--vpcd", fake_vpcd.address)
    link = fake_vpcd.accept()
    assert link.get_atr() == expected_atr(card_path)  # serving: its handlers are in place
    assert served.stop(sig, timeout=SIGNAL_DEADLINE) == 0
    assert_lock_free(card_path)


def test_a_signal_while_waiting_for_vpcd_stops_serve(
    card_path: Path, serve: Callable[..., Served]
) -> None:
    served = serve(card_path, "--vpcd", f"127.0.0.1:{free_port()}")
    served.wait_for("waiting for vpcd")
    assert served.stop(signal.SIGTERM, timeout=SIGNAL_DEADLINE) == 0
    assert_lock_free(card_path)


HEX_LINE = re.compile(r"([<>] (?:[0-9A-F]{2}|\*\*)(?: (?:[0-9A-F]{2}|\*\*))*)$")


def test_verbose_logs_each_apdu_with_pins_masked(
    card_path: Path, fake_vpcd: FakeVpcd, serve: Callable[..., Served]
) -> None:
    served = serve(card_path, "--vpcd", fake_vpcd.address, "-v")
    link = fake_vpcd.accept()
    assert link.get_atr() == expected_atr(card_path)
    link.control(POWER_ON)
    assert link.apdu(SELECT_SSSE) == SELECTED
    assert link.apdu(VERIFY_RIGHT) == OK
    assert link.apdu(CHANGE_PIN) == OK
    assert link.apdu(VERIFY_WRONG) == WRONG_PIN_5_LEFT
    assert link.apdu(VERIFY_NEW) == OK
    assert link.apdu(STATUS_QUERY) == OK
    assert served.stop() == 0
    logged = [m.group(1) for line in served.lines if (m := HEX_LINE.search(line))]
    assert logged == [
        "> " + SELECT_SSSE_HEX,
        "< " + FCI_SSSE + " 90 00",
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
    ]
    everything = re.sub(r"\s", "", served.stdout + served.stderr)
    for digits in ("123456", "908172", "112233"):
        assert digits not in everything


def test_a_second_serve_on_the_same_card_exits_naming_the_holder(
    card_path: Path, fake_vpcd: FakeVpcd, serve: Callable[..., Served]
) -> None:
    first = serve(card_path, "--vpcd", fake_vpcd.address)
    link = fake_vpcd.accept()
    assert link.get_atr() == expected_atr(card_path)  # the first one holds the card now
    second = serve(card_path, "--vpcd", fake_vpcd.address)
    assert second.wait() == 1  # README: 1 when the card file is in use by another process
    assert re.search(rf"\bpid {first.proc.pid}\b", second.stderr), second.stderr
    link.control(POWER_ON)
    assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH  # the first one still serves
    assert first.stop() == 0


def test_listen_mode_serves_one_connection_after_another(
    card_path: Path, serve: Callable[..., Served]
) -> None:
    port = free_port()
    served = serve(card_path, "--listen", f"127.0.0.1:{port}")
    atr = expected_atr(card_path)

    link = connect_when_listening(port)
    assert link.get_atr() == atr
    link.control(POWER_ON)
    assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
    assert link.apdu(VERIFY_RIGHT) == OK
    assert link.apdu(STATUS_QUERY) == OK
    link.close()

    link = connect_when_listening(port)
    assert link.get_atr() == atr
    assert link.apdu(STATUS_QUERY) == NOT_VERIFIED  # the card was taken out in between
    link.control(POWER_ON)
    assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
    link.close()

    assert served.stop() == 0
    assert_lock_free(card_path)


BAD_ADDRESSES = [
    ("--vpcd", "nonsense"),
    ("--vpcd", "127.0.0.1:0"),
    ("--vpcd", "127.0.0.1:65536"),
    ("--vpcd", "127.0.0.1:http"),
    ("--vpcd", "127.0.0.1:"),
    ("--listen", "127.0.0.1:-1"),
    ("--listen", "99999"),
    ("--listen", "localhost:35963x"),
]


def run_cardio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardio.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=DEADLINE,
    )


@pytest.mark.parametrize("option,value", BAD_ADDRESSES)
def test_a_bad_address_exits_2(card_path: Path, option: str, value: str) -> None:
    before = card_path.read_bytes()
    result = run_cardio("serve", str(card_path), option, value)
    assert result.returncode == 2, result.stderr
    assert repr(value) in result.stderr
    assert result.stderr.count("\n") == 1  # one line
    assert card_path.read_bytes() == before


def test_vpcd_and_listen_together_exit_2(card_path: Path) -> None:
    result = run_cardio("serve", str(card_path), "--vpcd", "127.0.0.1:1", "--listen", "127.0.0.1:2")
    assert result.returncode == 2, result.stderr


@pytest.mark.parametrize("option", ["--vpcd", "--listen"])
def test_an_empty_address_exits_2(
    card_path: Path, option: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, so that a wrong fallback cannot plug the card into a real vpcd."""
    calls: list[object] = []

    def fake_serve(*args: object, **kwargs: object) -> int:
        calls.append((args, kwargs))
        return 0

    monkeypatch.setattr(vpcd, "serve", fake_serve)
    status = cli.main(["serve", str(card_path), option, ""])
    assert (status, calls) == (2, [])  # a usage error, and nothing served
