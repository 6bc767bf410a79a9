"""The vpcd bridge: a card file plugged into pcscd through vsmartcard's vpcd driver.

Wire format (vsmartcard's vpcd protocol), both directions: 2-byte big-endian length,
then the payload. A 1-byte payload from vpcd is a control message; anything else is an
APDU answered by exactly one frame.

Speed: Debian's vpcd (3.3) writes each frame as two send()s (length, then payload)
with Nagle on, so its payload waits for our ACK of the length, and Linux delays that
ACK by about 40 ms: every APDU would cost 44 ms (vsmartcard's own vicc pays it). We
re-arm TCP_QUICKACK after every recv (the kernel clears it), and answer each frame
in one send() with TCP_NODELAY. That takes an APDU to about 0.1 ms.

Modes: `serve` runs one card in reversed mode (`--listen`) or forward mode; `serve_cards`
(the `cardio serve` command's forward mode) runs one `Slot` per card, each in a thread of
its own, and the control socket (cardio/control.py) and the faults (cardio/faults.py)
in the main thread, where signals arrive.
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
from typing import TYPE_CHECKING

from cardio.apdu import to_hex
from cardio.card.card import VirtualCard
from cardio.card.store import FileStore
from cardio.errors import CardioError
from cardio.faults import Fault, Kind, PowerLost, TearingStore, came_back_as
from cardio.psam import store as psam_store
from cardio.psam.card import VirtualPsam
from cardio.psam.chip import Chip
from cardio.trace import Responses, command_line, failure, mask_command

if TYPE_CHECKING:
    from cardio.control import ControlServer

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


def _where(host: str, port: int) -> str:
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
                what = {0: "power off", 1: "power on", 2: "reset"}.get(code, code)
                log.info("%scontrol %s", self.label, what)
            return None
        response = self.card.execute(payload)
        if self.verbose:
            log.info("%s%s", self.label, command_line(payload))
            log.info("%s%s", self.label, self._responses.line(payload, response))
        return response

    def serve(self, sock: socket.socket, guard: StopGuard) -> None:
        """Frames until the peer goes; a malformed frame drops the connection.

        The hot path of forward mode: no more than a few attribute writes per frame
        besides the recv/send themselves."""
        while True:
            guard.enter()
            try:
                payload = read_frame(sock)
            except EOFError:
                log.info("vpcd closed the connection")
                return
            finally:
                guard.waiting = False
            reply = self.answer(payload)  # a card command: a signal waits for its end
            if reply is not None:
                guard.waiting = True  # a peer that does not read must not outlast a signal
                try:
                    write_frame(sock, reply)
                finally:
                    guard.waiting = False


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
                f"cannot connect to vpcd at {_where(*address)}: not a valid host "
                f"name; give an IP address such as {VPCD_HOST}"
            ) from None
        except OSError as e:
            if not waiting_said:
                if isinstance(e, socket.gaierror):  # it may appear (a container starting)
                    log.warning(
                        "%swaiting for vpcd at %s: the host name does not resolve (%s); "
                        "check --vpcd",
                        label,
                        _where(*address),
                        e.strerror,
                    )
                else:
                    log.warning(
                        "%swaiting for vpcd at %s (%s); is pcscd running with the vpcd driver?",
                        label,
                        _where(*address),
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


def _connections_out(address: tuple[str, int], guard: StopGuard) -> Iterator[socket.socket]:
    """Forward mode: connect to vpcd, again and again, backing off while it is away."""
    while True:
        sock = connect_with_backoff(address, guard)
        if sock is None:  # cannot happen: always wanted
            return
        log.info("card inserted into vpcd at %s", _where(*address))
        yield sock


def _serve_forward(address: tuple[str, int], bridge: Bridge, guard: StopGuard) -> None:
    for sock in _connections_out(address, guard):
        guard.watch(sock)
        try:
            with sock:
                try:
                    bridge.serve(sock, guard)
                except (FrameError, OSError) as e:
                    log.warning("connection dropped: %s", e)
        finally:
            guard.unwatch(sock)
        bridge.card.power_off()
        log.info("card removed from vpcd")


# --- reversed mode: vpcd connects to us -------------------------------------------------


def _listening_socket(address: tuple[str, int], backlog: int) -> socket.socket:
    """Bound and listening, or a ServeError that says what to do."""
    host, port = address
    where = _where(host, port)
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
            link = _Link(sock, _where(*peer[:2]), time.monotonic() + self.first_frame_timeout)
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


@contextlib.contextmanager
def _inserted(card_path: Path, random_seed: int | None = None) -> Iterator[Chip]:
    """The file's card or PSAM (`"kind": "psam"`), its file locked while it is served.
    `random_seed` (tests only, `serve --random-seed`): the card's GET CHALLENGE bytes
    come from `random.Random(seed)`, so a test can compute them."""
    if psam_store.is_psam_file(card_path):
        with psam_store.held(card_path) as state:
            yield VirtualPsam(state)
        return
    with FileStore(card_path) as store:
        if random_seed is None:
            yield VirtualCard(store.open(), store)
        else:
            log.warning(
                "--random-seed %d: the card's challenges are predictable (tests only)", random_seed
            )
            seeded = stdlib_random.Random(random_seed)  # a test hook: never secret
            yield VirtualCard(store.open(), store, random=seeded.randbytes)


# --- forward mode with several slots, under remote control (`cardio ctl`) ----------------

REINSERT_GAP = 1.0  # s out of the reader at least: pcscd polls every 0.4 s, and must see it
IDLE_POLL = 0.05  # s: how soon a removed slot notices `insert`
SWAP_WAIT = 5.0  # s: a swap waits this long at most for the slot's card command to end


@dataclass
class _Held:
    """A slot's card: the open file (locked) and, for a user card, the store that tears."""

    path: Path
    chip: Chip
    cards: contextlib.ExitStack
    tearing: TearingStore | None


def _hold(path: Path, random_seed: int | None, rng: stdlib_random.Random) -> _Held:
    """Open and lock a card or PSAM file for a slot; StoreError / CardFileError as open does."""
    cards = contextlib.ExitStack()
    try:
        if psam_store.is_psam_file(path):
            psam = cards.enter_context(psam_store.held(path))
            return _Held(path, VirtualPsam(psam), cards, None)
        file_store = cards.enter_context(FileStore(path))
        tearing = TearingStore(file_store, rng=rng)
        state = file_store.open()
        if random_seed is None:
            return _Held(path, VirtualCard(state, tearing), cards, tearing)
        log.warning(
            "--random-seed %d: the card's challenges are predictable (tests only)", random_seed
        )
        seeded = stdlib_random.Random(random_seed)  # a test hook: never secret
        return _Held(path, VirtualCard(state, tearing, random=seeded.randbytes), cards, tearing)
    except BaseException:
        cards.close()
        raise


@dataclass(eq=False)
class Slot:
    """One vpcd slot in forward mode: its card, its faults, its connection to vpcd, served
    by a thread of its own. `cardio ctl` (cardio/control.py) acts on it from the main
    thread; `_lock` keeps a card command and a swap or a fault change apart."""

    index: int
    address: tuple[str, int]
    held: _Held
    verbose: bool = False
    random_seed: int | None = None
    label: str = ""
    guard: StopGuard = field(default_factory=StopGuard)
    faults: list[Fault] = field(default_factory=list)
    wanted: bool = True  # inserted; False after `ctl remove` or remove-after
    last_tear: str = ""
    rng: stdlib_random.Random = field(default_factory=stdlib_random.Random)
    failed: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _sock: socket.socket | None = field(default=None, repr=False)
    _idle: threading.Event = field(default_factory=threading.Event, repr=False)
    _out_since: float = 0.0
    _muted: bool = False  # an APDU went unanswered on the current link
    _dead: bool = False  # the card's file could not be opened again after a tear
    _to_removal: int | None = None  # remove-after: APDUs still to answer
    _watchers: list[socket.socket] = field(default_factory=list, repr=False)
    _responses: Responses = field(default_factory=Responses, repr=False)
    bridge: Bridge = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._idle.set()
        self.bridge = Bridge(self.held.chip, self.verbose, self.label)

    # --- asked by the control socket (main thread) ---------------------------------

    def describe(self) -> str:
        with self._lock:
            kind = "PSAM" if self.held.tearing is None else "card"
            where = "removed"
            if self.wanted:
                where = "inserted" if self._sock is not None else "inserted (not yet in vpcd)"
            armed = [f.spec() for f in self.faults]
            if self.held.tearing is not None and self.held.tearing.armed is not None:
                armed.append(self.held.tearing.armed.spec())
            if self._to_removal is not None:
                armed.append(f"remove-after={self._to_removal}")
            text = f"slot {self.index}: {kind} {self.held.path.name} {where}"
            text += ", faults " + " ".join(armed) if armed else ", no faults"
            if self._muted:
                text += ", an answer withheld (mute: ctl remove ends the wait)"
            return text + (f", last tear: {self.last_tear}" if self.last_tear else "")

    def insert(self) -> str:
        with self._lock:
            if self._dead:
                raise ServeError(
                    f"{self.held.path.name} could not come back after its tear; "
                    f"put a card in with 'ctl swap {self.index} FILE'"
                )
            if self.wanted:
                return f"slot {self.index} already holds {self.held.path.name}"
            self.wanted = True
        log.info("%scard inserted (ctl)", self.label)
        return f"slot {self.index}: {self.held.path.name} inserted"

    def remove(self, why: str = "ctl") -> str:
        with self._lock:
            if not self.wanted:
                return f"slot {self.index} is already empty"
            self.wanted = False
            self._to_removal = None
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # gone already: the same thing
                sock.shutdown(socket.SHUT_RDWR)
        log.info("%scard pulled out (%s)", self.label, why)
        return f"slot {self.index}: {self.held.path.name} removed"

    def swap(self, path: Path) -> str:
        """Another card into this reader, as a holder would: out, the new one in. The new
        file is opened (and locked) first: one that cannot be served is refused and the
        old card never leaves. The old file's lock is released once it is out."""
        if path == self.held.path and not self._dead:
            raise ServeError(f"{path.name} is already in slot {self.index}")
        new = _hold(path, self.random_seed, self.rng)
        was_in = self.wanted
        self.remove("ctl swap")
        if not self._idle.wait(SWAP_WAIT):
            new.cards.close()
            if was_in:
                self.insert()
            raise ServeError(f"slot {self.index} is busy with a card command; try again")
        with self._lock:
            old, self.held = self.held, new
            self.bridge = Bridge(new.chip, self.verbose, self.label)
            self._responses = Responses()
            if old.tearing is not None and new.tearing is not None:
                new.tearing.armed = old.tearing.armed  # armed for the slot, not the card
            self.last_tear = ""
            self._dead = False
            old.cards.close()  # its lock released: another program may have that card now
            self.wanted = True
        log.info("%s%s swapped for %s", self.label, old.path.name, path.name)
        return f"slot {self.index}: {old.path.name} out, {path.name} in"

    def arm(self, fault: Fault) -> str:
        with self._lock:
            if fault.kind is Kind.TEAR:
                if self.held.tearing is None:
                    raise ServeError(
                        f"slot {self.index} holds a PSAM, which never writes: it cannot tear"
                    )
                self.held.tearing.armed = fault
            elif fault.kind is Kind.REMOVE_AFTER:
                self._to_removal = fault.after
            else:
                self.faults.append(fault)
        log.warning("%sfault armed: %s", self.label, fault.spec())
        return f"slot {self.index}: {fault.spec()} armed"

    def clear(self) -> str:
        with self._lock:
            self.faults.clear()
            self._to_removal = None
            if self.held.tearing is not None:
                self.held.tearing.armed = None
        log.info("%sfaults cleared", self.label)
        return f"slot {self.index}: faults cleared"

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._watchers.append(sock)

    def unwatch(self, sock: socket.socket) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._watchers.remove(sock)

    def _tell(self, *lines: str) -> None:
        """Trace lines to whoever watches (`ctl watch`): a watcher that does not keep up
        is dropped rather than let slow the card."""
        if not self._watchers:
            return
        data = "".join(line + "\n" for line in lines).encode()
        for sock in list(self._watchers):
            try:
                sent = sock.send(data, socket.MSG_DONTWAIT)
            except OSError:
                sent = -1
            if sent != len(data):
                self.unwatch(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                log.warning("%sa watcher did not keep up and was dropped", self.label)

    # --- the slot's own thread ---------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                self._wait_until_wanted()
                sock = self._connect()
                if sock is not None:
                    self._serve_link(sock)
        except Stop:
            pass
        except Exception as e:  # a bug: its type and place (its message may hold a PIN)
            self.failed = True
            log.error("%sstopped by an unexpected error (%s)", self.label, failure(e))

    def _wait_until_wanted(self) -> None:
        while not self.wanted or time.monotonic() - self._out_since < REINSERT_GAP:
            self.guard.sleep(IDLE_POLL)

    def _connect(self) -> socket.socket | None:
        """Connected to vpcd, or None once the card is pulled out meanwhile."""
        return connect_with_backoff(self.address, self.guard, self.label, lambda: self.wanted)

    def _serve_link(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.wanted:  # pulled out as it went in
                sock.close()
                return
            self._sock = sock
            self._idle.clear()
        log.info("%scard inserted into vpcd at %s", self.label, _where(*self.address))
        self.guard.watch(sock)
        try:
            with sock:
                try:
                    self._frames(sock)
                except (FrameError, OSError) as e:
                    if self.wanted:
                        log.warning("%sconnection dropped: %s", self.label, e)
        finally:
            self.guard.unwatch(sock)
            with self._lock:
                self._sock = None
                self._muted = False
                self.held.chip.power_off()
                self._out_since = time.monotonic()
                self._idle.set()
            log.info("%scard removed from vpcd", self.label)

    def _frames(self, sock: socket.socket) -> None:
        guard = self.guard
        while True:
            guard.enter()
            try:
                payload = read_frame(sock)
            except EOFError:
                if self.wanted:
                    log.info("%svpcd closed the connection", self.label)
                return
            finally:
                guard.waiting = False
            if not self.wanted:
                return
            reply = self._exchange(payload)
            tearing = self.held.tearing
            if tearing is not None and tearing.lost is not None:
                self._torn(payload, tearing.lost)  # the answer is dropped: no power
                return
            if reply is not None:
                write_frame(sock, reply)
            with self._lock:
                if self._to_removal is not None and len(payload) > 1:
                    self._to_removal -= 1
                    if self._to_removal <= 0:
                        self._to_removal = None
                        due = True
                    else:
                        due = False
                else:
                    due = False
            if due:
                self._fault_log("remove-after", payload, "the card pulled out after it")
                self.remove("remove-after")
                return

    def _exchange(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            with self._lock:
                reply = self.bridge.answer(payload)
            if payload[0] in (POWER_ON, RESET):
                self._tell("reset")
            return reply
        with self._lock:
            fired = [f for f in self.faults if f.applies(payload) and f.fire(self.rng)]
            self.faults = [f for f in self.faults if not f.spent]
            kinds = {f.kind: f for f in fired}
            if Kind.MUTE in kinds:
                self._fault_log(
                    "mute", payload, "no answer: the reader waits until the card is removed"
                )
                self._tell(command_line(payload))
                self._muted = True
                return None
            if Kind.SW in kinds:
                reply = kinds[Kind.SW].sw
                self._fault_log(
                    kinds[Kind.SW].name, payload, f"answered {to_hex(reply)} unexecuted"
                )
            else:
                reply = self.bridge.answer(payload) or b""  # an APDU always has an answer
                tearing = self.held.tearing
                if tearing is not None and tearing.lost is not None:
                    return None  # the power went in it: _frames tells the tear
            if Kind.FLIP in kinds and reply:
                data = len(reply) - 2
                at = self.rng.randrange(data) if data > 0 else self.rng.randrange(len(reply))
                corrupt = bytearray(reply)
                corrupt[at] ^= 0xFF
                reply = bytes(corrupt)
                self._fault_log("flip", payload, f"byte {at} of the answer flipped")
            line = self._responses.line(payload, reply)
        self._tell(command_line(payload), line)
        if Kind.DELAY in kinds:
            delay = kinds[Kind.DELAY]
            self._fault_log(delay.name, payload, f"answer held {delay.delay_ms} ms")
            end = time.monotonic() + delay.delay_ms / 1000
            while self.wanted and (left := end - time.monotonic()) > 0:
                self.guard.sleep(min(IDLE_POLL, left))  # a remove or swap need not wait
        return reply

    def _fault_log(self, what: str, payload: bytes, effect: str) -> None:
        log.warning("%sfault %s on %s: %s", self.label, what, mask_command(payload), effect)

    def _torn(self, payload: bytes, lost: PowerLost) -> None:
        """Power lost mid-write: no answer, the card out and its RAM gone; the file is
        opened again as the next power-up would, and which state it holds is told."""
        with self._lock:
            path, seed = self.held.path, self.random_seed
            armed = self.held.tearing.armed if self.held.tearing is not None else None
            self.held.cards.close()  # a crash would drop the lock as well
            state = came_back_as(path, lost.old, lost.new)
            try:
                self.held = _hold(path, seed, self.rng)
            except CardioError as e:  # taken or damaged since: the slot stays empty
                self.wanted = False
                self._dead = True  # its store is closed: only a swap fills the slot
                self.last_tear = f"came back in the {state} state, and cannot be served: {e}"
                self._fault_log("tear", payload, self.last_tear)
                return
            if self.held.tearing is not None:
                self.held.tearing.armed = armed  # what is left of a tear with a count
            self.bridge = Bridge(self.held.chip, self.verbose, self.label)
            self._responses = Responses()
            tries = getattr(getattr(self.held.chip, "state", None), "tries_left", "?")
            self.last_tear = f"came back in the {state} state (tries left {tries})"
        self._fault_log("tear", payload, f"power lost mid-write; {self.last_tear}")
        self._tell(command_line(payload))


def _slot_addresses(base: tuple[str, int], count: int) -> list[tuple[str, int]]:
    host, port = base
    if port + count - 1 > 0xFFFF:
        raise ServeError(
            f"{count} cards need ports {port} to {port + count - 1}, past 65535; "
            "give a lower --vpcd port"
        )
    return [(host, port + i) for i in range(count)]


def serve_cards(
    card_paths: list[Path],
    *,
    vpcd: tuple[str, int] | None = None,
    verbose: bool = False,
    install_signals: bool = True,
    guard: StopGuard | None = None,
    random_seed: int | None = None,
    control: Path | None = None,
    faults: list[tuple[int, Fault]] | None = None,
) -> int:
    """Forward mode: card i in vpcd slot i (PORT+i), each served by a thread of its own,
    and `control` (a Unix socket, cardio/control.py) for `cardio ctl`. Runs until
    SIGINT/SIGTERM or guard.stop(); 1 when a slot stopped on an unexpected error."""
    from cardio.control import ControlServer, check_socket_path

    guard = guard or StopGuard()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, guard.handle)
    slots: list[Slot] = []
    threads: list[threading.Thread] = []
    try:
        addresses = _slot_addresses(vpcd or (VPCD_HOST, VPCD_PORT), len(card_paths))
        if control is not None:
            check_socket_path(control)
        several = len(card_paths) > 1
        for index, (path, address) in enumerate(zip(card_paths, addresses, strict=True)):
            label = f"slot {index}: " if several else ""
            slots.append(
                Slot(
                    index,
                    address,
                    _hold(path, random_seed, stdlib_random.Random()),
                    verbose,
                    random_seed,
                    label,
                )
            )
        for index, fault in faults or []:
            if index >= len(slots):
                raise ServeError(
                    f"--faults names slot {index}, but slots go from 0 to {len(slots) - 1}"
                )
            slots[index].arm(fault)
        if len(slots) > 2:
            log.warning(
                "slots 2 and up (ports %d on) need a vpcd built with --enable-vpcdslots=%d "
                "or more: Debian's has 2, and a second reader.conf entry adds none (README)",
                addresses[2][1],
                len(slots),
            )
        server = ControlServer(control, slots, guard) if control is not None else None
        try:
            for slot in slots:
                thread = threading.Thread(target=slot.run, name=f"slot {slot.index}", daemon=True)
                thread.start()
                threads.append(thread)
            _main_wait(guard, server, slots)
        except Stop:
            log.info("stopping: card pulled out")
        finally:
            for slot in slots:
                slot.guard.stop()
            for thread in threads:
                thread.join()
            if server is not None:
                server.close()
    finally:
        for slot in slots:
            slot.held.chip.power_off()
            slot.held.cards.close()
        if install_signals:  # SIG_IGN, unlike our handler, survives Python's own shutdown
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
    return 1 if any(slot.failed for slot in slots) else 0


def _main_wait(guard: StopGuard, server: ControlServer | None, slots: list[Slot]) -> None:
    """The main thread: signals land here (Python runs handlers in it), and the control
    socket is served here, until Stop."""
    wake, waker = socket.socketpair()  # stop() shuts `waker`: `wake` turns readable
    guard.watch(waker)
    selector = selectors.DefaultSelector()
    selector.register(wake, selectors.EVENT_READ)
    try:
        if server is not None:
            server.register(selector)
        while True:
            guard.enter()
            try:
                events = selector.select(1.0)
            finally:
                guard.waiting = False
            for key, mask in events:
                if server is not None and key.fileobj is not wake:
                    server.ready(key, mask)
            if any(slot.failed for slot in slots):
                raise Stop
    finally:
        guard.unwatch(waker)
        selector.close()
        wake.close()
        waker.close()


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
    """Run until SIGINT/SIGTERM (or guard.stop()). The card file stays locked meanwhile.

    Raises ServeError when the listen address cannot be used, StoreError when the card
    file cannot be; the card file is untouched then. install_signals is for a process
    that is this server: once serve returns, SIGINT and SIGTERM are ignored, so that a
    late one neither raises in the caller nor kills the process as it exits."""
    guard = guard or StopGuard()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, guard.handle)
    try:
        with _inserted(card_path, random_seed) as card:
            bridge = Bridge(card, verbose)
            try:
                if listen is not None:
                    with _listening_socket(listen, backlog) as server:
                        log.info("listening for vpcd on %s", _where(*server.getsockname()[:2]))
                        _Switchboard(
                            server, bridge, guard, first_frame_timeout, frame_timeout
                        ).run()
                else:
                    _serve_forward(vpcd or (VPCD_HOST, VPCD_PORT), bridge, guard)
            except Stop:
                log.info("stopping: card pulled out")
            finally:
                card.power_off()
    finally:
        if install_signals:  # SIG_IGN, unlike our handler, survives Python's own shutdown
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
    return 0
