"""`cardio serve`'s forward mode: one `Slot` per card, each its own vpcd slot (PORT+i)
served by a thread of its own, under remote control (`cardio ctl`, cardio/control.py)
and with faults (cardio/faults.py). The main thread serves the control socket and takes
the signals. The wire and the single-card bridge are cardio/vpcd.py's.
"""

from __future__ import annotations

import contextlib
import random as stdlib_random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cardio.apdu import to_hex
from cardio.errors import CardioError
from cardio.faults import Fault, Kind, PowerLost, came_back_as
from cardio.trace import Responses, command_line, failure, mask_command
from cardio.vpcd import (
    POWER_ON,
    RESET,
    VPCD_HOST,
    VPCD_PORT,
    Bridge,
    FrameError,
    Held,
    ServeError,
    Stop,
    StopGuard,
    connect_with_backoff,
    describe_address,
    hold,
    log,
    read_frame,
    stopped_by_signals,
    write_frame,
)

if TYPE_CHECKING:
    from cardio.control import ControlServer


REINSERT_GAP = 1.0  # s out of the reader at least: pcscd polls every 0.4 s, and must see it
IDLE_POLL = 0.05  # s: how soon a removed slot notices `insert`
SWAP_WAIT = 5.0  # s: a swap waits this long at most for the slot's card command to end


@dataclass(eq=False)
class Slot:
    """One vpcd slot in forward mode: its card, its faults, its connection to vpcd, served
    by a thread of its own. `cardio ctl` (cardio/control.py) acts on it from the main
    thread; `_lock` keeps a card command and a swap or a fault change apart."""

    index: int
    address: tuple[str, int]
    held: Held
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
        self._tell("# card inserted (ctl insert)")
        return f"slot {self.index}: {self.held.path.name} inserted"

    def remove(self, why: str = "ctl remove") -> str:
        """The card out of the reader. An armed remove-after goes with it: it has
        happened, in a way."""
        with self._lock:
            if not self.wanted:
                return f"slot {self.index} is already empty"
            self.wanted = False
            disarmed = self._to_removal is not None and why != "remove-after"
            self._to_removal = None
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # gone already: the same thing
                sock.shutdown(socket.SHUT_RDWR)
        log.info("%scard pulled out (%s)", self.label, why)
        self._tell(f"# card pulled out ({why})")
        return f"slot {self.index}: {self.held.path.name} removed" + (
            ", its remove-after disarmed" if disarmed else ""
        )

    def swap(self, path: Path) -> str:
        """Another card into this reader, as a holder would: out, the new one in. The new
        file is opened (and locked) first: one that cannot be served is refused and the
        old card never leaves. The old file's lock is released once it is out."""
        if path == self.held.path and not self._dead:
            raise ServeError(f"{path.name} is already in slot {self.index}")
        new = hold(path, self.random_seed, self.rng)
        was_in = self.wanted
        removed = self.remove("ctl swap")
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
        self._tell(f"# swap: {old.path.name} out, {path.name} in")
        disarmed = ", its remove-after disarmed" if removed.endswith("disarmed") else ""
        return f"slot {self.index}: {old.path.name} out, {path.name} in{disarmed}"

    def arm(self, fault: Fault) -> str:
        """Faults add up; a tear and a remove-after are one each per slot: a new one
        replaces the old, and the reply says so."""
        replaced: str | None = None
        with self._lock:
            if fault.kind is Kind.TEAR:
                if self.held.tearing is None:
                    raise ServeError(
                        f"slot {self.index} holds a PSAM, which never writes: it cannot tear"
                    )
                if self.held.tearing.armed is not None:
                    replaced = self.held.tearing.armed.spec()
                self.held.tearing.armed = fault
            elif fault.kind is Kind.REMOVE_AFTER:
                if self._to_removal is not None:
                    replaced = f"remove-after={self._to_removal}"
                self._to_removal = fault.after
            else:
                self.faults.append(fault)
        log.warning("%sfault armed: %s", self.label, fault.spec())
        instead = f" (instead of {replaced})" if replaced else ""
        return f"slot {self.index}: {fault.spec()} armed{instead}"

    def clear(self) -> str:
        with self._lock:
            self.faults.clear()
            self._to_removal = None
            if self.held.tearing is not None:
                self.held.tearing.armed = None
        log.info("%sfaults cleared", self.label)
        return f"slot {self.index}: faults cleared"

    def watch(self, sock: socket.socket, greet: Callable[[], bool] = lambda: True) -> None:
        """Trace lines to `sock` from now on, after `greet` (the control socket's `ok`
        line; False: the client went) under the same lock as the lines: nothing between."""
        with self._lock:
            if not greet():
                return
            self._watchers.append(sock)
            if self.wanted and self._sock is not None:  # the card is in: which one
                self._tell_one(sock, "atr " + to_hex(self.held.chip.atr))

    def unwatch(self, sock: socket.socket) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._watchers.remove(sock)

    def _tell_one(self, sock: socket.socket, line: str) -> None:
        with contextlib.suppress(OSError):  # a fresh socket has room; gone: nothing lost
            sock.send((line + "\n").encode(), socket.MSG_DONTWAIT)

    def _tell(self, *lines: str) -> None:
        """Trace lines to whoever watches (`ctl watch`): a watcher that does not keep up
        is dropped rather than let slow the card. Under the lock, so that the main thread
        (unwatch, then close) never closes a socket we are writing to."""
        if not self._watchers:
            return
        data = "".join(line + "\n" for line in lines).encode()
        with self._lock:
            for sock in list(self._watchers):
                try:
                    sent = sock.send(data, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    sent = 0
                except OSError:  # it went away (EPIPE, ECONNRESET): nothing was lost to it
                    self._watchers.remove(sock)
                    continue
                if sent != len(data):
                    self._watchers.remove(sock)
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
                    self.serve_link(sock)
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

    def serve_link(self, sock: socket.socket) -> None:
        """One connection to vpcd, until it ends: the card is out after it."""
        with self._lock:
            if not self.wanted:  # pulled out as it went in
                sock.close()
                return
            self._sock = sock
            self._idle.clear()
        log.info("%scard inserted into vpcd at %s", self.label, describe_address(*self.address))
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
                reply = self.bridge.control(payload[0])
            if payload[0] in (POWER_ON, RESET):
                self._tell("reset " + to_hex(self.held.chip.atr))  # a new build may change it
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
                reply = self.held.chip.execute(payload)
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
            line = self._responses.line(payload, reply)  # as the reader gets it, faults and all
            if Kind.DELAY in kinds:
                delay = kinds[Kind.DELAY]
                self._fault_log(delay.name, payload, f"answer held {delay.delay_ms} ms")
        command = command_line(payload)
        if self.verbose:
            log.info("%s%s", self.label, command)
            log.info("%s%s", self.label, line)
        self._tell(command, line)
        if Kind.DELAY in kinds:
            end = time.monotonic() + delay.delay_ms / 1000
            while self.wanted and (left := end - time.monotonic()) > 0:
                self.guard.sleep(min(IDLE_POLL, left))  # a remove or swap need not wait
        return reply

    def _fault_log(self, what: str, payload: bytes, effect: str) -> None:
        """Logged with its APDU (masked), and told to watchers as a note, so a recording
        says which answer was made up, before the exchange it changed."""
        log.warning("%sfault %s on %s: %s", self.label, what, mask_command(payload), effect)
        self._tell(f"# fault {what}: {effect}")

    def _torn(self, payload: bytes, lost: PowerLost) -> None:
        """Power lost mid-write: no answer, the card out and its RAM gone; the file is
        opened again as the next power-up would, and which state it holds is told."""
        with self._lock:
            path, seed = self.held.path, self.random_seed
            armed = self.held.tearing.armed if self.held.tearing is not None else None
            self.held.cards.close()  # a crash would drop the lock as well
            state = came_back_as(path, lost.old, lost.new)
            try:
                self.held = hold(path, seed, self.rng)
            except CardioError as e:  # taken or damaged since: the slot stays empty
                self.wanted = False
                self._dead = True  # its store is closed: only a swap fills the slot
                self.last_tear = f"came back in the {state} state, and cannot be served: {e}"
                self._fault_log("tear", payload, self.last_tear)
                self._tell(command_line(payload), "# card pulled out (tear)")
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
    slots: list[Slot] = []
    threads: list[threading.Thread] = []
    with stopped_by_signals(guard, install_signals), _closing(slots):
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
                    hold(path, random_seed, stdlib_random.Random()),
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
    return 1 if any(slot.failed for slot in slots) else 0


@contextlib.contextmanager
def _closing(slots: list[Slot]) -> Iterator[None]:
    """Every slot's card powered off and its file released, however serving ends."""
    try:
        yield
    finally:
        for slot in slots:
            slot.held.chip.power_off()
            slot.held.cards.close()


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
