"""The vpcd bridge: a card file plugged into pcscd through vsmartcard's vpcd driver.

Wire format (vsmartcard's vpcd protocol), both directions: 2-byte big-endian length,
then the payload. A 1-byte payload from vpcd is a control message; anything else is an
APDU answered by exactly one frame.

Speed: Debian's vpcd (3.3) writes each frame as two send()s (length, then payload)
with Nagle on, so its payload waits for our ACK of the length, and Linux delays that
ACK by about 40 ms: every APDU would cost 44 ms (vsmartcard's own vicc pays it). We
re-arm TCP_QUICKACK after every recv (the kernel clears it), and answer each frame
in one send() with TCP_NODELAY. That takes an APDU to about 0.1 ms.

Modes: `serve` runs one card in reversed mode (`--listen`: vpcd connects to us), here;
forward mode (we connect to vpcd), one card or several under remote control, is
cardio/slots.py's. Both answer frames through a `Bridge`, and hold card files with `hold`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import random as stdlib_random
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from cardio.card.card import VirtualCard
from cardio.card.store import FileStore
from cardio.errors import CardioError
from cardio.faults import TearingStore
from cardio.psam import store as psam_store
from cardio.psam.card import VirtualPsam
from cardio.psam.chip import Chip
from cardio.trace import Responses, command_line

log = logging.getLogger("cardio.serve")

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963  # vpcd's first slot; the next port is the second slot
POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
HEADER = 2
BACKOFF_START, BACKOFF_MAX = 0.1, 2.0
RECV_SIZE = HEADER + 0xFFFF  # one whole frame at most
# Listen mode. vpcd sends GET ATR as soon as it connects; a frame is a few hundred bytes.
FIRST_FRAME_TIMEOUT = 5.0  # s: a new connection that says nothing by then is dropped
FRAME_TIMEOUT = 5.0  # s: a frame once begun arrives whole, a reply is taken, by then
BACKLOG = 16


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
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(
            f"{text!r} is not HOST:PORT with a port from 1 to 65535; "
            f"write it like {VPCD_HOST}:{VPCD_PORT}"
        )
    try:  # what the socket layer will do with it: refuse here, in a sentence
        host.encode("idna")
    except UnicodeError:
        raise ValueError(
            f"{text!r} does not start with a valid host name; "
            f"give an IP address such as {VPCD_HOST}, or a name"
        ) from None
    return host, int(port)


def describe_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ServeError(CardioError):
    """`cardio serve` cannot start; the message says what is wrong and what to do."""


class Bridge:
    """Answers vpcd's frames with one card, or one PSAM (docs/psam.md)."""

    def __init__(self, card: Chip, verbose: bool = False, label: str = "") -> None:
        self.card = card
        self.verbose = verbose
        self.label = label  # "slot 1: " when several cards are served, so logs tell them apart
        self._responses = Responses()

    def answer(self, payload: bytes) -> bytes | None:
        """The reply to one frame, or None when vpcd expects none."""
        if len(payload) == 1:
            return self.control(payload[0])
        response = self.card.execute(payload)
        if self.verbose:
            log.info("%s%s", self.label, command_line(payload))
            log.info("%s%s", self.label, self._responses.line(payload, response))
        return response

    def control(self, code: int) -> bytes | None:
        """A 1-byte vpcd message: the ATR asked for, or the power switched."""
        if code == GET_ATR:
            return self.card.atr
        if code == POWER_ON:
            self.card.power_on()
        elif code == RESET:
            self.card.reset()
        elif code == POWER_OFF:
            self.card.power_off()
        else:
            log.warning("%sunknown vpcd control message %02X ignored", self.label, code)
        if self.verbose:
            what = {0: "power off", 1: "power on", 2: "reset"}.get(code, code)
            log.info("%scontrol %s", self.label, what)
        return None


class Stop(Exception):
    """SIGINT / SIGTERM: the card is pulled out."""


@dataclass(eq=False)
class StopGuard:
    """Signals stop the bridge only where it waits (for a frame, a connection, vpcd, a
    reply to leave); anywhere else, a card command or the shutdown, they are noted and
    honoured at the next wait. So a second signal while stopping does nothing."""

    stopping: bool = False
    waiting: bool = False  # True only around a blocking call that a Stop may interrupt
    _wake: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _wakers: set[socket.socket] = field(default_factory=set, init=False, repr=False)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.waiting:
            self.waiting = False  # one Stop, however many signals follow
            raise Stop

    def enter(self) -> None:
        """Start a wait: a signal from here on raises Stop, and one that came already does."""
        self.waiting = True  # before the check: a signal in between cannot be missed
        if self.stopping:
            self.waiting = False
            raise Stop

    def sleep(self, seconds: float) -> None:
        self.enter()
        try:
            self._wake.wait(seconds)
        finally:
            self.waiting = False
        if self.stopping:  # woken by stop()
            raise Stop

    def watch(self, sock: socket.socket) -> None:
        """stop() shuts this socket down, which ends a recv() waiting on it."""
        self._wakers.add(sock)

    def unwatch(self, sock: socket.socket) -> None:
        self._wakers.discard(sock)

    def stop(self) -> None:
        """Stop from another thread (signals only reach the main one): tests, embedding."""
        self.stopping = True
        self._wake.set()
        for sock in list(self._wakers):
            with contextlib.suppress(OSError):  # already closed: nothing to wake
                sock.shutdown(socket.SHUT_RDWR)


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


# --- forward mode: we connect to vpcd ---------------------------------------------------


def _connect(address: tuple[str, int], guard: StopGuard) -> socket.socket:
    guard.enter()
    try:
        return socket.create_connection(address, timeout=5)
    finally:
        guard.waiting = False


def connect_with_backoff(
    address: tuple[str, int],
    guard: StopGuard,
    label: str = "",
    wanted: Callable[[], bool] = lambda: True,
) -> socket.socket | None:
    """Forward mode: connected to vpcd, backing off while it is away (said once); None
    once the card is no longer `wanted` (pulled out meanwhile)."""
    delay = BACKOFF_START
    waiting_said = False
    while wanted():
        try:
            sock = _connect(address, guard)
        except UnicodeError:  # parse_address refuses such names; serve() may be called directly
            raise ServeError(
                f"cannot connect to vpcd at {describe_address(*address)}: not a valid host "
                f"name; give an IP address such as {VPCD_HOST}"
            ) from None
        except OSError as e:
            if not waiting_said:
                if isinstance(e, socket.gaierror):  # it may appear (a container starting)
                    log.warning(
                        "%swaiting for vpcd at %s: the host name does not resolve (%s); "
                        "check --vpcd",
                        label,
                        describe_address(*address),
                        e.strerror,
                    )
                else:
                    log.warning(
                        "%swaiting for vpcd at %s (%s); is pcscd running with the vpcd driver?",
                        label,
                        describe_address(*address),
                        e.strerror or e,
                    )
                waiting_said = True
            guard.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            continue
        sock.settimeout(None)
        _tune(sock)
        return sock
    return None


# --- reversed mode: vpcd connects to us -------------------------------------------------


def _listening_socket(address: tuple[str, int], backlog: int) -> socket.socket:
    """Bound and listening, or a ServeError that says what to do."""
    host, port = address
    where = describe_address(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or "not a valid host name"
        raise ServeError(
            f"cannot listen on {where}: {host!r} does not resolve ({reason}); "
            f"give an IP address of this machine, such as {VPCD_HOST}"
        ) from None
    family, kind, proto, _, sockaddr = infos[0]
    server: socket.socket | None = None
    try:
        server = socket.socket(family, kind, proto)  # fails too where IPv6 is off
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(sockaddr)
        server.listen(backlog)
    except OSError as e:
        if server is not None:
            server.close()
        raise ServeError(f"cannot listen on {where}: {_bind_advice(host, e)}") from None
    server.setblocking(False)
    return server


def _bind_advice(host: str, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return (
            "the port is in use by another program (another cardio serve?); "
            "stop it, or choose another port with --listen HOST:PORT"
        )
    if e.errno == errno.EADDRNOTAVAIL:
        return (
            f"{host} is not an address of this machine; "
            f"listen on one of its own, such as {VPCD_HOST}"
        )
    if e.errno == errno.EACCES:
        return "permission denied (ports below 1024 need root); choose a port from 1024 up"
    return f"{e.strerror or e}; check the --listen address"


class _Link:
    """One vpcd connection in listen mode: what it has sent of its frame, what it has
    not yet taken of its reply, and by when it must be done."""

    __slots__ = ("sock", "peer", "inbox", "outbox", "deadline")

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.inbox = bytearray()
        self.outbox = b""
        # None: idle between frames, which a vpcd may be for as long as it likes
        self.deadline: float | None = deadline


class _Switchboard:
    """Listen mode: every connection is served as its frames come, in one thread.

    vpcd keeps one connection open and silent between APDUs: that is fine. A new
    connection must start its first frame within first_frame_timeout; a frame that has
    begun must arrive whole, and a reply must be taken, within frame_timeout. Whoever
    misses that is dropped, and nobody waits for anybody meanwhile. One thread means
    one card command at a time, in the order the frames complete.
    """

    def __init__(
        self,
        server: socket.socket,
        bridge: Bridge,
        guard: StopGuard,
        first_frame_timeout: float,
        frame_timeout: float,
    ) -> None:
        self.server = server
        self.bridge = bridge
        self.guard = guard
        self.first_frame_timeout = first_frame_timeout
        self.frame_timeout = frame_timeout
        self.selector = selectors.DefaultSelector()
        self.links: set[_Link] = set()
        self.ready: set[_Link] = set()  # hold another whole frame: served in turn, no waiting
        self.holder: _Link | None = None  # the link that last used the card
        self.accept_again: float | None = None  # accepting paused (out of file descriptors)

    def run(self) -> None:
        wake, waker = socket.socketpair()  # stop() shuts `waker`: `wake` turns readable
        self.guard.watch(waker)
        self.selector.register(self.server, selectors.EVENT_READ)
        self.selector.register(wake, selectors.EVENT_READ)
        try:
            while True:
                self.guard.enter()
                try:
                    events = self.selector.select(self._timeout())
                finally:
                    self.guard.waiting = False
                for key, mask in events:
                    link = key.data
                    if link is not None:
                        if mask & selectors.EVENT_WRITE:
                            self._writable(link)
                        else:
                            self._readable(link)
                    elif key.fileobj is self.server:
                        self._accept()
                for link in list(self.ready):
                    self.ready.discard(link)
                    self._pump(link)
                self._expire(time.monotonic())
        finally:
            self.guard.unwatch(waker)
            for link in list(self.links):
                self._close(link)
            self.selector.close()
            wake.close()
            waker.close()

    def _timeout(self) -> float | None:
        if self.ready:
            return 0
        deadlines = [link.deadline for link in self.links if link.deadline is not None]
        if self.accept_again is not None:
            deadlines.append(self.accept_again)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # gone before we took it
                continue
            except OSError as e:  # out of file descriptors: pause instead of spinning
                log.warning("cannot take a new connection (%s); trying again in 1 s", e)
                self.selector.unregister(self.server)
                self.accept_again = time.monotonic() + 1.0
                return
            try:
                sock.setblocking(False)
                _tune(sock)
            except OSError:  # reset before we got to it
                sock.close()
                continue
            deadline = time.monotonic() + self.first_frame_timeout
            link = _Link(sock, describe_address(*peer[:2]), deadline)
            self.links.add(link)
            self.selector.register(sock, selectors.EVENT_READ, link)
            log.info("vpcd connected from %s: card inserted", link.peer)

    def _readable(self, link: _Link) -> None:
        try:
            chunk = link.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(link, str(e))
            return
        _quickack(link.sock)
        if not chunk:
            if link.inbox:
                self._drop(link, self._partial(link, "then end of stream"))
            else:
                log.info("vpcd at %s closed the connection", link.peer)
                self._close(link)
            return
        if not link.inbox:  # a frame begins: it must end in time
            link.deadline = time.monotonic() + self.frame_timeout
        link.inbox += chunk
        self._pump(link)

    def _pump(self, link: _Link) -> None:
        """Answer one whole frame, if there is one; the others get their turn first."""
        inbox = link.inbox
        if link.outbox or len(inbox) < HEADER:
            return
        length = int.from_bytes(inbox[:HEADER], "big")
        if length == 0:
            self._drop(link, "empty frame")
            return
        end = HEADER + length
        if len(inbox) < end:
            return
        payload = bytes(inbox[HEADER:end])
        del inbox[:end]
        self.holder = link
        reply = self.bridge.answer(payload)
        if reply is not None and not self._send(link, len(reply).to_bytes(HEADER, "big") + reply):
            return
        link.deadline = time.monotonic() + self.frame_timeout if inbox or link.outbox else None
        if len(inbox) >= HEADER and not link.outbox:
            self.ready.add(link)

    def _send(self, link: _Link, data: bytes) -> bool:
        """Send what the socket takes now; the rest waits for it, and the link's next
        frame waits for the rest. False when the link is gone."""
        try:
            sent = link.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            self._drop(link, str(e))
            return False
        if sent < len(data):
            link.outbox = data[sent:]
            self.selector.modify(link.sock, selectors.EVENT_WRITE, link)
        return True

    def _writable(self, link: _Link) -> None:
        outbox, link.outbox = link.outbox, b""
        if not self._send(link, outbox) or link.outbox:
            return
        self.selector.modify(link.sock, selectors.EVENT_READ, link)
        link.deadline = time.monotonic() + self.frame_timeout if link.inbox else None
        self._pump(link)

    def _expire(self, now: float) -> None:
        if self.accept_again is not None and now >= self.accept_again:
            self.accept_again = None
            self.selector.register(self.server, selectors.EVENT_READ)
        for link in list(self.links):
            if link.deadline is not None and now >= link.deadline:
                self._drop(link, self._overdue(link))

    def _overdue(self, link: _Link) -> str:
        if link.outbox:
            return f"it did not take its reply within {self.frame_timeout:g} s"
        if link.inbox:
            return "a frame stalled: " + self._partial(link, f"for {self.frame_timeout:g} s")
        return f"it sent nothing within {self.first_frame_timeout:g} s"

    @staticmethod
    def _partial(link: _Link, then: str) -> str:
        got = len(link.inbox)
        if got < HEADER:
            return f"{got} of {HEADER} header bytes, {then}"
        length = int.from_bytes(link.inbox[:HEADER], "big")
        return f"{got - HEADER} of {length} bytes, {then}"

    def _drop(self, link: _Link, reason: str) -> None:
        log.warning("connection from %s dropped: %s", link.peer, reason)
        self._close(link)

    def _close(self, link: _Link) -> None:
        self.links.discard(link)
        self.ready.discard(link)
        self.selector.unregister(link.sock)
        link.sock.close()
        if self.holder is link:  # its user left: the card comes out (a stranger's going does not)
            self.holder = None
            self.bridge.card.power_off()
            log.info("card removed from vpcd")


@dataclass
class Held:
    """A slot's card: the open file (locked) and, for a user card, the store that tears."""

    path: Path
    chip: Chip
    cards: contextlib.ExitStack
    tearing: TearingStore | None


def hold(path: Path, random_seed: int | None, rng: stdlib_random.Random) -> Held:
    """Open and lock a card or PSAM file for a slot; StoreError / CardFileError as open does."""
    cards = contextlib.ExitStack()
    try:
        if psam_store.is_psam_file(path):
            psam = cards.enter_context(psam_store.held(path))
            return Held(path, VirtualPsam(psam), cards, None)
        file_store = cards.enter_context(FileStore(path))
        tearing = TearingStore(file_store, rng=rng)
        state = file_store.open()
        if random_seed is None:
            return Held(path, VirtualCard(state, tearing), cards, tearing)
        log.warning(
            "--random-seed %d: the card's challenges are predictable (tests only)", random_seed
        )
        seeded = stdlib_random.Random(random_seed)  # a test hook: never secret
        return Held(path, VirtualCard(state, tearing, random=seeded.randbytes), cards, tearing)
    except BaseException:
        cards.close()
        raise


@contextlib.contextmanager
def _inserted(card_path: Path, random_seed: int | None = None) -> Iterator[Chip]:
    """The file's card or PSAM, its file locked while it is served."""
    held = hold(card_path, random_seed, stdlib_random.Random())
    with held.cards:
        yield held.chip


@contextlib.contextmanager
def stopped_by_signals(guard: StopGuard, install: bool) -> Iterator[None]:
    """SIGINT and SIGTERM stop `guard` (install: a process that is this server). Once
    done they are ignored: SIG_IGN, unlike our handler, survives Python's own shutdown,
    so a late one neither raises in the caller nor kills the process as it exits."""
    if install:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, guard.handle)
    try:
        yield
    finally:
        if install:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)


def serve(
    card_path: Path,
    *,
    vpcd: tuple[str, int] | None = None,
    listen: tuple[str, int] | None = None,
    verbose: bool = False,
    install_signals: bool = True,
    guard: StopGuard | None = None,
    first_frame_timeout: float = FIRST_FRAME_TIMEOUT,
    frame_timeout: float = FRAME_TIMEOUT,
    backlog: int = BACKLOG,
    random_seed: int | None = None,
) -> int:
    """One card until SIGINT/SIGTERM (or guard.stop()), its file locked meanwhile: in
    reversed mode (`listen`), or forward mode (one slot of cardio/slots.py, no control).

    Raises ServeError when the listen address cannot be used, StoreError when the card
    file cannot be; the card file is untouched then."""
    if listen is None:
        from cardio.slots import serve_cards

        return serve_cards(
            [card_path],
            vpcd=vpcd,
            verbose=verbose,
            install_signals=install_signals,
            guard=guard,
            random_seed=random_seed,
        )
    guard = guard or StopGuard()
    with stopped_by_signals(guard, install_signals), _inserted(card_path, random_seed) as card:
        try:
            with _listening_socket(listen, backlog) as server:
                log.info("listening for vpcd on %s", describe_address(*server.getsockname()[:2]))
                bridge = Bridge(card, verbose)
                _Switchboard(server, bridge, guard, first_frame_timeout, frame_timeout).run()
        except Stop:
            log.info("stopping: card pulled out")
        finally:
            card.power_off()
    return 0
