"""A fake vpcd and a real `cardio serve` child process, for the tests of cardio.vpcd
(test_vpcd_bridge.py) and of `cardio serve`'s robustness (test_serve_robustness.py).

Like Debian's vpcd 3.3, the fake writes the 2-byte length and the payload in two send()
calls, and sends the 1-byte controls 00 power off, 01 power on, 02 reset, 04 get ATR.
"""

from __future__ import annotations

import json
import os
import signal
import socket
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

from cardio.card.store import FileStore

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 10.0  # seconds: waiting longer than this is a hang, not slowness
SIGNAL_DEADLINE = 5.0  # a signal must stop `cardio serve` well within this

POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
CONTROL_NAMES = {POWER_OFF: "power-off", POWER_ON: "power-on", RESET: "reset"}

SELECT_SSSE = h(SELECT_SSSE_HEX)
SELECTED = h(FCI_SSSE + " 90 00")  # what SELECT_SSSE answers
VERIFY_RIGHT = h("00 20 00 00 03 12 34 56")  # employee-new: initial PIN 123456
VERIFY_WRONG = h("00 20 00 00 03 11 22 33")
STATUS_QUERY = h("00 20 00 00")
CHANGE_PIN = h("80 5E 01 00 07 12 34 56 FF 90 81 72")  # 123456 -> 908172
VERIFY_NEW = h("00 20 00 00 03 90 81 72")
GET_PIN_DATA = h("80 CA 00 C1 00")
PIN_DATA_FRESH = h("C1 04 01 00 06 06 90 00")  # active, INITIAL, 6 of 6 tries
OK = h("90 00")
NOT_VERIFIED = h("63 C6")  # status query, not verified, 6 tries left
WRONG_PIN_5_LEFT = h("63 C5")


# --- the card file ----------------------------------------------------------------------


def expected_atr(path: Path) -> bytes:
    """3B 6D 00 00 and the 13 historical bytes written in the card file (§1)."""
    historical = bytes.fromhex(json.loads(path.read_text("utf-8"))["atr_historical"])
    assert len(historical) == 13
    return bytes((0x3B, 0x6D, 0x00, 0x00)) + historical


def assert_lock_free(path: Path) -> None:
    """Another process (here: this one) can take the card file."""
    other = FileStore(path)
    other.open()
    other.close()


# --- the wire ---------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(2, "big") + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f"the card side closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


class VpcdLink:
    """Our end of one vpcd connection, speaking as Debian's vpcd 3.3 does."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(DEADLINE)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # so that the pieces we write leave as separate segments
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, payload: bytes, *, byte_by_byte: bool = False) -> None:
        header = len(payload).to_bytes(2, "big")
        if byte_by_byte:
            for byte in header + payload:
                self.sock.sendall(bytes((byte,)))
                time.sleep(0.002)
        else:
            self.sock.sendall(header)  # two send()s: length, then payload
            self.sock.sendall(payload)

    def reply(self) -> bytes:
        length = int.from_bytes(recv_exact(self.sock, 2), "big")
        return recv_exact(self.sock, length)

    def control(self, code: int) -> None:
        self.send(bytes((code,)))

    def get_atr(self) -> bytes:
        self.control(GET_ATR)
        return self.reply()

    def apdu(self, command: bytes, *, byte_by_byte: bool = False) -> bytes:
        self.send(command, byte_by_byte=byte_by_byte)
        return self.reply()

    def rest(self) -> bytes:
        """Every byte the card side still sends until it closes (a reset counts as closed)."""
        data = b""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        self.sock.close()


class FakeVpcd:
    """vpcd in forward mode: it listens, `cardio serve --vpcd` connects to it."""

    def __init__(self, port: int = 0) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.server.settimeout(DEADLINE)
        self.port = self.server.getsockname()[1]
        self.links: list[VpcdLink] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def accept(self) -> VpcdLink:
        try:
            sock, _ = self.server.accept()
        except TimeoutError:
            pytest.fail(f"cardio serve did not connect to the fake vpcd within {DEADLINE} s")
        link = VpcdLink(sock)
        self.links.append(link)
        return link

    def close(self) -> None:
        for link in self.links:
            link.close()
        self.server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- `cardio serve` as a child process -------------------------------------------------


class Served:
    """A real `cardio serve` process; its stderr collected line by line as it comes."""

    def __init__(self, card: Path, *args: str) -> None:
        env = dict(os.environ, PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cardio.cli", "serve", str(card), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._lines: list[str] = []
        self._stdout: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for thread in self._readers:
            thread.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self._stdout.extend(self.proc.stdout)

    @property
    def lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    def wait_for(self, text: str, timeout: float = DEADLINE) -> str:
        """The first stderr line containing `text`, waiting for it to come."""
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    if text in line:
                        return line
                left = end - time.monotonic()
                if self._ended or left <= 0:
                    break
                self._changed.wait(left)
        pytest.fail(
            f"cardio serve (status {self.proc.poll()}) never said {text!r}; stderr:\n{self.stderr}"
        )

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"cardio serve did not exit within {timeout} s; stderr:\n{self.stderr}")
        for thread in self._readers:
            thread.join(DEADLINE)
        return status

    def stop(self, sig: int = signal.SIGTERM, timeout: float = SIGNAL_DEADLINE) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def connect_when_listening(port: int) -> VpcdLink:
    end = time.monotonic() + DEADLINE
    while True:
        try:
            return VpcdLink(socket.create_connection(("127.0.0.1", port), timeout=DEADLINE))
        except ConnectionRefusedError:
            if time.monotonic() > end:
                pytest.fail(f"cardio serve --listen never listened on port {port}")
            time.sleep(0.05)


@contextmanager
def serving() -> Iterator[Callable[..., Served]]:
    """Start `cardio serve CARD ARGS...`; whatever is left running is killed on leaving."""
    started: list[Served] = []

    def start(card: Path, *args: str) -> Served:
        served = Served(card, *args)
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            served.kill()
