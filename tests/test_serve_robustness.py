"""`cardio serve` under what people and peers actually do to it.

A. Nothing a person can do prints a traceback: an address that cannot be listened on
   or resolved is one line on stderr and a non-zero status; a second SIGTERM/SIGINT
   while serve is already stopping is harmless; a signal stops serve even while it is
   blocked writing to a vpcd that does not read.
B. In `--listen` mode no client can stall the others: a connection that says nothing,
   or stops in the middle of a frame (or of taking its reply), is dropped after a
   timeout and logged, and the others are served meanwhile. An established vpcd link
   may stay idle for as long as it likes.

The wire helpers and the `cardio serve` child process come from test_vpcd_bridge.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from vpcd_fakes import (
    DEADLINE,
    GET_PIN_DATA,
    NOT_VERIFIED,
    OK,
    PIN_DATA_FRESH,
    POWER_ON,
    ROOT,
    SIGNAL_DEADLINE,
    STATUS_QUERY,
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

from cardio import vpcd
from cardio.card import profiles, store
from cardio.card.card import VirtualCard

PROMPT = 2.0  # s: an answer this late means the client waited for another one
SHORT = 0.25  # s: the timeouts under test (sub-second, so that the tests stay fast)
LONG = DEADLINE  # s: a timeout that must not be what lets the others through


@pytest.fixture
def card_path(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    profiles.new_card("employee-new", path)
    return path


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
    assert "Logging error" not in text, text


# --- A. addresses that cannot be used: one line, a non-zero status --------------------


def run_serve(card: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cardio.cli", "serve", str(card), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=DEADLINE,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert_no_traceback(result.stderr)
    assert result.returncode != 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cardio: "), result.stderr
    assert ";" in lines[0], "the line says what is wrong, then what to do: " + lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def test_a_port_in_use_is_one_line_and_status_1(card_path: Path) -> None:
    before = card_path.read_bytes()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_serve(card_path, "--listen", f"127.0.0.1:{port}")
    assert_one_line_error(result, f"127.0.0.1:{port}", "in use")
    assert result.returncode == 1
    assert card_path.read_bytes() == before
    assert_lock_free(card_path)


def test_an_address_of_another_machine_is_one_line_and_status_1(card_path: Path) -> None:
    result = run_serve(card_path, "--listen", "203.0.113.1:35963")  # TEST-NET-3: not ours
    assert_one_line_error(result, "203.0.113.1:35963", "not an address of this machine")
    assert result.returncode == 1
    assert_lock_free(card_path)


def test_an_unresolvable_host_name_is_one_line_and_status_1(card_path: Path) -> None:
    result = run_serve(card_path, "--listen", "no-such-host.invalid:35963")
    assert_one_line_error(result, "no-such-host.invalid")
    assert result.returncode == 1
    assert_lock_free(card_path)


BAD_HOST_OR_PORT = [
    ("--listen", "127.0.0.1:65536"),
    ("--listen", "127.0.0.1:0"),
    ("--listen", "127.0.0.1:\u00b2"),  # '²' is a digit to str.isdigit, not to int()
    ("--vpcd", "127.0.0.1:\u0661\u0662"),  # Arabic-Indic digits: not a port either
    ("--vpcd", "a..b:35963"),  # an empty label: the IDNA codec refuses it
    ("--vpcd", "x" * 300 + ":35963"),  # a label longer than 63
    ("--listen", "a..b:35963"),
]


@pytest.mark.parametrize("option,value", BAD_HOST_OR_PORT, ids=lambda v: v[:24])
def test_a_host_or_port_that_cannot_be_one_is_a_usage_error(
    card_path: Path, option: str, value: str
) -> None:
    result = run_serve(card_path, option, value)
    assert_one_line_error(result, repr(value))
    assert result.returncode == 2
    assert_lock_free(card_path)


# --- A. signals: a second one while stopping, one while blocked -------------------------


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    with serving() as start:
        yield start


def two_signals_at_once(pid: int, first: int, second: int) -> None:
    """Both pending at once when the process runs again."""
    os.kill(pid, signal.SIGSTOP)
    try:
        os.kill(pid, first)
        os.kill(pid, second)
    finally:
        os.kill(pid, signal.SIGCONT)


def assert_stopped_cleanly(served: Served, card: Path, before: store.CardState) -> None:
    status = served.wait(SIGNAL_DEADLINE)
    assert_no_traceback(served.stderr)
    assert status == 0, served.stderr
    assert "stopping: card pulled out" in served.stderr
    assert store.read(card) == before
    assert_lock_free(card)
    assert [p.name for p in card.parent.iterdir() if ".tmp-" in p.name] == []


def serving_forward(card: Path, fake_vpcd: FakeVpcd, serve: Callable[..., Served]) -> Served:
    served = serve(card, "--vpcd", fake_vpcd.address)
    link = fake_vpcd.accept()
    assert link.get_atr() == expected_atr(card)  # its handlers are in place
    link.control(POWER_ON)
    assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
    return served


@pytest.fixture
def fake_vpcd() -> Iterator[FakeVpcd]:
    server = FakeVpcd()
    yield server
    server.close()


SIGNAL_PAIRS = {
    "SIGINT+SIGTERM": (signal.SIGINT, signal.SIGTERM),
    "SIGTERM+SIGINT": (signal.SIGTERM, signal.SIGINT),
}


@pytest.mark.parametrize("pair", SIGNAL_PAIRS.values(), ids=SIGNAL_PAIRS.keys())
def test_a_second_signal_during_the_shutdown_is_harmless(
    card_path: Path, fake_vpcd: FakeVpcd, serve: Callable[..., Served], pair: tuple[int, int]
) -> None:
    before = store.read(card_path)
    served = serving_forward(card_path, fake_vpcd, serve)
    two_signals_at_once(served.proc.pid, *pair)
    assert_stopped_cleanly(served, card_path, before)


def test_sigterm_twice_in_a_row_is_harmless(
    card_path: Path, fake_vpcd: FakeVpcd, serve: Callable[..., Served]
) -> None:
    before = store.read(card_path)
    served = serving_forward(card_path, fake_vpcd, serve)
    os.kill(served.proc.pid, signal.SIGTERM)
    os.kill(served.proc.pid, signal.SIGTERM)
    time.sleep(0.01)  # the first is being handled: this one lands in the shutdown
    if served.proc.poll() is None:
        os.kill(served.proc.pid, signal.SIGTERM)
    assert_stopped_cleanly(served, card_path, before)


def test_two_signals_while_waiting_for_vpcd_are_harmless(
    card_path: Path, serve: Callable[..., Served]
) -> None:
    before = store.read(card_path)
    served = serve(card_path, "--vpcd", f"127.0.0.1:{free_port()}")
    served.wait_for("waiting for vpcd")  # blocked in the back-off sleep
    two_signals_at_once(served.proc.pid, signal.SIGTERM, signal.SIGINT)
    assert_stopped_cleanly(served, card_path, before)


def listening(card: Path, serve: Callable[..., Served]) -> tuple[Served, int]:
    port = free_port()
    served = serve(card, "--listen", f"127.0.0.1:{port}")
    served.wait_for("listening for vpcd")
    return served, port


def test_two_signals_while_listening_are_harmless(
    card_path: Path, serve: Callable[..., Served]
) -> None:
    before = store.read(card_path)
    served, port = listening(card_path, serve)
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        link = VpcdLink(sock)
        assert link.get_atr() == expected_atr(card_path)
        two_signals_at_once(served.proc.pid, signal.SIGINT, signal.SIGTERM)
        assert_stopped_cleanly(served, card_path, before)


def test_a_burst_of_signals_is_harmless(
    card_path: Path, fake_vpcd: FakeVpcd, serve: Callable[..., Served]
) -> None:
    """An impatient person (or a supervisor and a shell): signals keep coming while serve
    stops. Some land in the shutdown; none may show a traceback or harm the card."""
    before = store.read(card_path)
    served = serving_forward(card_path, fake_vpcd, serve)
    signals = itertools.cycle((signal.SIGTERM, signal.SIGINT))
    end = time.monotonic() + SIGNAL_DEADLINE
    while served.proc.poll() is None and time.monotonic() < end:
        with contextlib.suppress(ProcessLookupError):
            os.kill(served.proc.pid, next(signals))
        time.sleep(0.0005)
    status = served.wait(SIGNAL_DEADLINE)
    assert_no_traceback(served.stderr)
    assert status == 0, served.stderr  # not even killed as Python itself shuts down
    assert store.read(card_path) == before
    assert_lock_free(card_path)


@pytest.mark.parametrize("mode", ["forward", "listen"])
def test_a_signal_during_the_shutdown_or_after_it_is_noted_not_raised(
    card_path: Path, fake_vpcd: FakeVpcd, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """In process, so that the second signal lands exactly where it used to raise: while
    serve pulls the card out (its finally), and after serve has returned."""
    main = threading.get_ident()
    real_power_off = VirtualCard.power_off
    fired: list[int] = []

    def power_off_under_fire(self: VirtualCard) -> None:
        signal.pthread_kill(main, signal.SIGTERM)  # its handler runs right here
        fired.append(signal.SIGTERM)
        real_power_off(self)

    port = free_port()
    failures: list[BaseException] = []

    def vpcd_side() -> None:
        """Play vpcd until serve (in the main thread) is idle, then send the first signal."""
        try:
            link = fake_vpcd.accept() if mode == "forward" else connect_when_listening(port)
            assert link.get_atr() == expected_atr(card_path)
            monkeypatch.setattr(VirtualCard, "power_off", power_off_under_fire)
            signal.pthread_kill(main, signal.SIGINT)
            time.sleep(0.2)  # serve has stopped and closed the link before we do
            link.close()
        except BaseException as e:
            failures.append(e)

    where = (
        {"listen": ("127.0.0.1", port)}
        if mode == "listen"
        else {"vpcd": ("127.0.0.1", fake_vpcd.port)}
    )
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    helper = threading.Thread(target=vpcd_side, daemon=True)
    helper.start()
    try:
        status = vpcd.serve(card_path, install_signals=True, **where)
        signal.pthread_kill(main, signal.SIGTERM)  # after it returned: ignored, not raised
        signal.pthread_kill(main, signal.SIGINT)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        helper.join(DEADLINE)
    assert failures == []
    assert status == 0
    assert fired  # the second signal did land in the shutdown
    assert_lock_free(card_path)


def small_buffers(sock: socket.socket) -> None:
    """Before connect/listen: a small window, small segments and a small send buffer, so
    that buffers fill after thousands of frames, not millions (loopback's are huge)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 88)


def sleeping(pid: int) -> bool:
    """State S in /proc/PID/stat: blocked in a system call (not running, not stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "S"


def fill_until_blocked(sock: socket.socket, burst: bytes, pid: int) -> None:
    """Send `burst` again and again, never reading, until the peer stops taking it while
    `pid` sleeps: it is then blocked sending us replies, since it reads when it can."""
    sock.setblocking(False)
    pending = burst
    stalled_since: float | None = None
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            pending = pending[sock.send(pending) :] or burst  # partial sends: keep frames whole
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since > 0.3 and sleeping(pid):
                return
            time.sleep(0.01)
    pytest.fail("the peer never blocked sending to a vpcd that does not read")


def test_a_signal_stops_serve_blocked_on_a_vpcd_that_does_not_read(
    card_path: Path, serve: Callable[..., Served]
) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to see that serve is blocked")
    server = socket.socket()
    small_buffers(server)  # inherited by the accepted socket
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(DEADLINE)
    before = store.read(card_path)
    with server:
        served = serve(card_path, "--vpcd", f"127.0.0.1:{server.getsockname()[1]}")
        sock, _ = server.accept()
        with sock:
            link = VpcdLink(sock)
            assert link.get_atr() == expected_atr(card_path)
            fill_until_blocked(sock, frame(GET_PIN_DATA) * 1000, served.proc.pid)
            os.kill(served.proc.pid, signal.SIGTERM)
            status = served.wait(SIGNAL_DEADLINE)
    assert_no_traceback(served.stderr)
    assert status == 0, served.stderr
    assert store.read(card_path) == before
    assert_lock_free(card_path)


# --- B. --listen: no client stalls the others -------------------------------------------


@dataclass
class Listening:
    """vpcd.serve(listen=...) in a thread of this process, stopped by its guard."""

    port: int
    guard: vpcd.StopGuard
    thread: threading.Thread
    result: list[object] = field(default_factory=list)

    def connect(self) -> VpcdLink:
        return connect_when_listening(self.port)


@pytest.fixture
def listen(card_path: Path) -> Iterator[Callable[..., Listening]]:
    started: list[Listening] = []

    def start(first_frame_timeout: float = LONG, frame_timeout: float = LONG) -> Listening:
        port = free_port()
        guard = vpcd.StopGuard()
        result: list[object] = []

        def run() -> None:
            try:
                result.append(
                    vpcd.serve(
                        card_path,
                        listen=("127.0.0.1", port),
                        install_signals=False,
                        guard=guard,
                        first_frame_timeout=first_frame_timeout,
                        frame_timeout=frame_timeout,
                    )
                )
            except BaseException as e:
                result.append(e)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        served = Listening(port, guard, thread, result)
        started.append(served)
        return served

    yield start
    for served in started:
        served.guard.stop()
        served.thread.join(DEADLINE)
        assert not served.thread.is_alive(), "vpcd.serve did not stop"
        assert served.result == [0]
    assert_lock_free(card_path)


def answered_promptly(link: VpcdLink, card: Path) -> None:
    """GET ATR, power on, an APDU: each answered well before any timeout could help."""
    link.sock.settimeout(PROMPT)
    start = time.monotonic()
    assert link.get_atr() == expected_atr(card)
    link.control(POWER_ON)
    assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
    assert time.monotonic() - start < PROMPT


def closed_by_serve(link: VpcdLink, within: float) -> float:
    """Seconds until serve hung up on this link (it sent nothing before)."""
    link.sock.settimeout(within)
    start = time.monotonic()
    assert link.rest() == b""
    return time.monotonic() - start


STALLS = {
    "silent": b"",
    "half a header": b"\x00",
    "a header, no payload": b"\x00\x05",
    "half a payload": frame(GET_PIN_DATA)[:4],
}


@pytest.mark.parametrize("sent", STALLS.values(), ids=STALLS.keys())
def test_a_stalled_client_does_not_block_the_next_one(
    card_path: Path, listen: Callable[..., Listening], sent: bytes
) -> None:
    served = listen()  # long timeouts: the second client must not need them
    stalled = served.connect()
    stalled.sock.sendall(sent)
    time.sleep(0.05)  # serve has taken it (and read what it sent)
    other = served.connect()
    answered_promptly(other, card_path)
    stalled.close()
    other.close()


def test_cardio_serve_listen_answers_a_client_while_another_says_nothing(
    card_path: Path, serve: Callable[..., Served]
) -> None:
    """The command itself, default timeouts: the silent one is still there meanwhile."""
    served, port = listening(card_path, serve)
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as silent:
        silent.sendall(b"\x00")  # and half a header, for good measure
        time.sleep(0.05)
        other = VpcdLink(socket.create_connection(("127.0.0.1", port), timeout=DEADLINE))
        answered_promptly(other, card_path)
        other.close()
    assert served.stop() == 0
    assert_no_traceback(served.stderr)
    assert_lock_free(card_path)


def test_a_client_that_sends_nothing_is_dropped_after_the_first_frame_timeout(
    card_path: Path, listen: Callable[..., Listening], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cardio.serve")
    served = listen(first_frame_timeout=SHORT)
    silent = served.connect()
    waited = closed_by_serve(silent, DEADLINE)
    assert SHORT * 0.8 < waited < SHORT + PROMPT
    answered_promptly(served.connect(), card_path)  # and serve goes on
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1, dropped
    assert "sent nothing" in dropped[0]


@pytest.mark.parametrize("sent", list(STALLS.values())[1:], ids=list(STALLS.keys())[1:])
def test_a_frame_that_stops_halfway_is_dropped_after_the_frame_timeout(
    card_path: Path,
    listen: Callable[..., Listening],
    caplog: pytest.LogCaptureFixture,
    sent: bytes,
) -> None:
    caplog.set_level(logging.INFO, logger="cardio.serve")
    served = listen(frame_timeout=SHORT)  # the first-frame timeout is not what drops it
    link = served.connect()
    assert link.get_atr() == expected_atr(card_path)
    link.sock.sendall(sent)
    waited = closed_by_serve(link, DEADLINE)
    assert SHORT * 0.8 < waited < SHORT + PROMPT
    answered_promptly(served.connect(), card_path)
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1, dropped
    assert "stalled" in dropped[0]


def test_an_idle_vpcd_link_is_kept_however_long_it_waits(
    card_path: Path, listen: Callable[..., Listening], caplog: pytest.LogCaptureFixture
) -> None:
    """vpcd keeps one connection open, silent between APDUs: never a reason to drop it."""
    caplog.set_level(logging.INFO, logger="cardio.serve")
    served = listen(first_frame_timeout=0.1, frame_timeout=0.1)
    link = served.connect()
    assert link.get_atr() == expected_atr(card_path)
    link.control(POWER_ON)
    assert link.apdu(VERIFY_WRONG) == WRONG_PIN_5_LEFT
    time.sleep(0.4)  # four times either timeout
    assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH.replace(b"\x06\x06", b"\x05\x06")
    link.close()
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]


def test_two_links_are_served_side_by_side_one_apdu_at_a_time(
    card_path: Path, listen: Callable[..., Listening]
) -> None:
    served = listen()
    first, second = served.connect(), served.connect()
    for link in (first, second, first, second):
        assert link.get_atr() == expected_atr(card_path)
        assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
    errors: list[BaseException] = []

    def hammer(link: VpcdLink) -> None:
        try:
            for _ in range(50):
                assert link.apdu(GET_PIN_DATA) == PIN_DATA_FRESH
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(link,)) for link in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert errors == []
    first.close()
    second.close()


def test_a_client_that_does_not_take_its_replies_is_dropped_and_blocks_no_one(
    card_path: Path, listen: Callable[..., Listening], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cardio.serve")
    served = listen(frame_timeout=SHORT)
    served.connect().close()  # it listens
    greedy = socket.socket()
    small_buffers(greedy)
    greedy.settimeout(DEADLINE)
    greedy.connect(("127.0.0.1", served.port))
    burst = frame(GET_PIN_DATA) * 1000
    end = time.monotonic() + DEADLINE
    with greedy:
        greedy.setblocking(False)
        pending = burst
        while not any("reply" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < end, [r.getMessage() for r in caplog.records]
            try:
                pending = pending[greedy.send(pending) :] or burst
            except BlockingIOError:  # serve is not reading us: is it still serving others?
                other = served.connect()
                answered_promptly(other, card_path)
                other.close()
                time.sleep(0.01)
            except OSError:  # serve hung up on us: the log says why
                time.sleep(0.01)
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1, dropped
    assert "did not take its reply" in dropped[0]
    answered_promptly(served.connect(), card_path)


def test_a_dropped_client_that_had_the_card_takes_it_out(
    card_path: Path, listen: Callable[..., Listening]
) -> None:
    """The card is powered off when the link that used it last goes, not when a
    stranger that never used it does."""
    served = listen(first_frame_timeout=SHORT)
    link = served.connect()
    link.control(POWER_ON)
    assert link.apdu(VERIFY_RIGHT) == OK
    stranger = served.connect()
    closed_by_serve(stranger, DEADLINE)  # dropped for silence: the session survives it
    assert link.apdu(STATUS_QUERY) == OK
    link.close()
    again = served.connect()
    assert again.get_atr() == expected_atr(card_path)
    assert again.apdu(STATUS_QUERY) == NOT_VERIFIED  # taken out when its user left
    again.close()


def test_stop_from_another_thread_ends_serve_in_every_wait(card_path: Path) -> None:
    """StopGuard.stop: the way to end serve without signals (tests, embedding)."""
    port = free_port()
    cases = {
        "listening": {"listen": ("127.0.0.1", port)},
        "waiting for vpcd": {"vpcd": ("127.0.0.1", free_port())},
    }
    for name, where in cases.items():
        guard = vpcd.StopGuard()
        result: list[object] = []
        thread = threading.Thread(
            target=lambda w=where, g=guard, r=result: r.append(
                vpcd.serve(card_path, install_signals=False, guard=g, **w)
            ),
            daemon=True,
        )
        thread.start()
        time.sleep(0.1)
        guard.stop()
        thread.join(SIGNAL_DEADLINE)
        assert not thread.is_alive(), name
        assert result == [0], name
    assert_lock_free(card_path)


def test_stop_ends_a_forward_link_idle_in_recv(card_path: Path, fake_vpcd: FakeVpcd) -> None:
    guard = vpcd.StopGuard()
    result: list[object] = []
    host, port = fake_vpcd.address.split(":")
    thread = threading.Thread(
        target=lambda: result.append(
            vpcd.serve(card_path, vpcd=(host, int(port)), install_signals=False, guard=guard)
        ),
        daemon=True,
    )
    thread.start()
    link = fake_vpcd.accept()
    assert link.get_atr() == expected_atr(card_path)
    guard.stop()
    thread.join(SIGNAL_DEADLINE)
    assert not thread.is_alive()
    assert result == [0]
    assert_lock_free(card_path)
