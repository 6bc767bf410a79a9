"""The vpcd bridge: a card file plugged into pcscd through vsmartcard's vpcd driver.

Wire format (card-apdu.md §8), both directions: 2-byte big-endian length, then the
payload. A 1-byte payload from vpcd is a control message; anything else is an APDU
answered by exactly one frame.

Speed: Debian's vpcd (3.3) writes each frame as two send()s (length, then payload)
with Nagle on, so its payload waits for our ACK of the length, and Linux delays that
ACK by about 40 ms: every APDU would cost 44 ms (vsmartcard's own vicc pays it). We
re-arm TCP_QUICKACK after every recv (the kernel clears it), and answer each frame
in one send() with TCP_NODELAY. That takes an APDU to about 0.1 ms.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from cardio.card.card import VirtualCard
from cardio.card.store import FileStore
from cardio.trace import command_line, response_line

log = logging.getLogger("cardio.serve")

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963  # vpcd's first slot; the next port is the second slot
POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
HEADER = 2
BACKOFF_START, BACKOFF_MAX = 0.1, 2.0


class FrameError(Exception):
    """A frame that cannot be read whole: the connection is dropped, the card is fine."""


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly n bytes, however the stream splits them."""
    chunk = sock.recv(n)
    _quickack(sock)
    if len(chunk) == n:  # the usual case: the whole header, or the whole payload
        return chunk
    if not chunk:
        raise EOFError
    buf = bytearray(chunk)
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        _quickack(sock)
        if not chunk:
            raise FrameError(f"short read: {len(buf)} of {n} bytes, then end of stream")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> bytes:
    header = recv_exact(sock, HEADER)
    length = int.from_bytes(header, "big")
    if length == 0:
        raise FrameError("empty frame")
    try:
        return recv_exact(sock, length)
    except EOFError:
        raise FrameError(f"short read: 0 of {length} bytes, then end of stream") from None


def write_frame(sock: socket.socket, payload: bytes) -> None:
    if len(payload) > 0xFFFF:
        raise FrameError(f"a frame holds at most 65535 bytes, not {len(payload)}")
    sock.sendall(len(payload).to_bytes(HEADER, "big") + payload)


def parse_address(text: str, default_host: str = VPCD_HOST) -> tuple[str, int]:
    """'HOST:PORT' or 'PORT' -> (host, port); raises ValueError with the reason."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT with a port from 1 to 65535")
    return host, int(port)


class Bridge:
    """Answers vpcd's frames with one card."""

    def __init__(self, card: VirtualCard, verbose: bool = False) -> None:
        self.card = card
        self.verbose = verbose

    def answer(self, payload: bytes) -> bytes | None:
        """The reply to one frame, or None when vpcd expects none."""
        if len(payload) == 1:
            code = payload[0]
            if code == GET_ATR:
                return self.card.atr
            if code == POWER_ON:
                self.card.power_on()
            elif code == RESET:
                self.card.reset()
            elif code == POWER_OFF:
                self.card.power_off()
            else:
                log.warning("unknown vpcd control message %02X ignored", code)
            if self.verbose:
                log.info("control %s", {0: "power off", 1: "power on", 2: "reset"}.get(code, code))
            return None
        response = self.card.execute(payload)
        if self.verbose:
            log.info("%s", command_line(payload))
            log.info("%s", response_line(response))
        return response

    def serve(self, sock: socket.socket, guard: StopGuard) -> None:
        """Frames until the peer goes; a malformed frame drops the connection."""
        while True:
            try:
                payload = read_frame(sock)
            except EOFError:
                log.info("vpcd closed the connection")
                return
            with guard.busy():
                reply = self.answer(payload)
                if reply is not None:
                    write_frame(sock, reply)


class Stop(Exception):
    """SIGINT / SIGTERM: the card is pulled out."""


@dataclass
class StopGuard:
    """Signals stop the bridge between frames, never in the middle of a card command."""

    stopping: bool = False
    _busy: bool = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if not self._busy:
            raise Stop

    def busy(self) -> StopGuard:
        return self

    def __enter__(self) -> None:
        self._busy = True

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._busy = False
        if self.stopping and exc_type is None:
            raise Stop

    def sleep(self, seconds: float) -> None:
        if self.stopping:
            raise Stop
        time.sleep(seconds)


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only
_TCP = socket.IPPROTO_TCP


def _quickack(sock: socket.socket) -> None:
    """ACK at once: the peer's next segment may be waiting for it (see the module doc)."""
    if _QUICKACK is not None:
        try:
            sock.setsockopt(_TCP, _QUICKACK, 1)
        except OSError:  # not a TCP socket (a socketpair in the tests): nothing to ACK
            return


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _quickack(sock)


def _connections_out(address: tuple[str, int], guard: StopGuard) -> Iterator[socket.socket]:
    """Forward mode: connect to vpcd, again and again, backing off while it is away."""
    delay = BACKOFF_START
    waiting_said = False
    while True:
        try:
            sock = socket.create_connection(address, timeout=5)
        except OSError as e:
            if not waiting_said:
                log.warning("waiting for vpcd at %s:%d (%s); is pcscd running with the vpcd "
                            "driver?", *address, e.strerror or e)
                waiting_said = True
            guard.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            continue
        sock.settimeout(None)
        _tune(sock)
        log.info("card inserted into vpcd at %s:%d", *address)
        delay, waiting_said = BACKOFF_START, False
        yield sock


def _connections_in(address: tuple[str, int], guard: StopGuard) -> Iterator[socket.socket]:
    """Reversed mode: vpcd connects to us."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(address)
        server.listen(1)
        log.info("listening for vpcd on %s:%d", *server.getsockname()[:2])
        while True:
            sock, peer = server.accept()
            _tune(sock)
            log.info("vpcd connected from %s:%d: card inserted", *peer[:2])
            yield sock


def serve(
    card_path: Path,
    *,
    vpcd: tuple[str, int] | None = None,
    listen: tuple[str, int] | None = None,
    verbose: bool = False,
    install_signals: bool = True,
) -> int:
    """Run until SIGINT/SIGTERM. The card file stays locked meanwhile."""
    guard = StopGuard()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, guard.handle)
    connections: Callable[[tuple[str, int], StopGuard], Iterator[socket.socket]]
    if listen is not None:
        address, connections = listen, _connections_in
    else:
        address, connections = vpcd or (VPCD_HOST, VPCD_PORT), _connections_out
    with FileStore(card_path) as store:
        card = VirtualCard(store.open(), store)
        bridge = Bridge(card, verbose)
        try:
            for sock in connections(address, guard):
                with sock:
                    try:
                        bridge.serve(sock, guard)
                    except (FrameError, OSError) as e:
                        log.warning("connection dropped: %s", e)
                card.power_off()
                log.info("card removed from vpcd")
        except Stop:
            log.info("stopping: card pulled out")
        finally:
            card.power_off()
    return 0
