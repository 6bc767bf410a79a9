"""The control socket of `cardio serve`, and `cardio ctl`, its client.

A Unix stream socket (mode 0600: only its owner may pull cards), one command a line,
one reply line each, `ok ...` or `error ...`:

    status                  what each slot holds, in or out, the faults armed
    insert [SLOT]           the card back into the reader (slot 0 by default)
    remove [SLOT]           the card out of the reader
    swap SLOT FILE          another card file into that reader (FILE absolute)
    fault SLOT SPEC         arm a fault (cardio/faults.py)
    clear SLOT              disarm every fault of the slot
    watch SLOT              `ok ...`, `atr ATR` when a card is in, then the slot's
                            exchanges as trace lines (`> ` command and `< `
                            response, PINs masked; `reset ATR` at each power-on or
                            reset; `# ` notes: a fault that fired, a removal, a
                            swap), one a line, until the client goes; `end ...`
                            when serve stops. A watcher that does not keep up is
                            dropped without it: its stream was cut.

Commands run in the serve process's main thread, between its waits for signals.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cardio import faults
from cardio.errors import CardioError, Exit, UsageError

if TYPE_CHECKING:
    from cardio.slots import Slot
    from cardio.vpcd import StopGuard

SUN_PATH_MAX = 107  # bytes of a Unix socket's path on Linux (sun_path is 108, NUL included)
MAX_LINE = 4096
REPLY_TIMEOUT = 30.0  # s: a swap waits for a card command, never this long
ENV = "CARDIO_CONTROL"
END_LINE = b"end cardio serve stopped\n"  # a watch stream's last line when nothing was lost
END_TIMEOUT = 2.0  # s: a watcher behind by a full buffer has this long to take `end`
WATCH_BUFFER = 1 << 20  # bytes a watcher may fall behind by (the kernel may give less)


class ControlError(CardioError):
    """The control socket cannot be made or reached; the message says what to do."""


def default_path(first_card: Path) -> Path:
    """`.NAME.ctl` beside the first card file, like its lock file."""
    return first_card.with_name(f".{first_card.name}.ctl")


def check_socket_path(path: Path) -> None:
    size = len(os.fsencode(path))
    if size > SUN_PATH_MAX:
        raise UsageError(
            f"{path}: a control socket's path may have at most {SUN_PATH_MAX} bytes, "
            f"this one has {size}; give a shorter one with --control PATH"
        )


def _listen(path: Path) -> socket.socket:
    """Bound and listening, mode 0600. A socket left by a killed serve is replaced; one
    that answers is another serve's, and anything else at the path is refused."""
    check_socket_path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise ControlError(
            f"{path}: cannot be checked ({e.strerror}); give --control PATH"
        ) from None
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(
                f"{path} exists and is not a socket; remove it or give --control PATH"
            )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(os.fspath(path)) == 0:
                raise ControlError(
                    f"{path}: another cardio serve listens there; stop it or give --control PATH"
                )
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # born 0600: no moment when others may connect
    try:
        server.bind(os.fspath(path))
    except OSError as e:
        server.close()
        raise ControlError(
            f"{path}: cannot make the control socket ({e.strerror}); give --control PATH "
            "in a folder you can write to"
        ) from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    server.listen(8)
    server.setblocking(False)
    return server


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    inbox: bytearray = field(default_factory=bytearray)
    watching: Slot | None = None


@dataclass(eq=False)
class ControlServer:
    path: Path
    slots: list[Slot]
    guard: StopGuard
    server: socket.socket | None = None
    clients: set[_Client] = field(default_factory=set)
    selector: selectors.BaseSelector | None = None

    def __post_init__(self) -> None:
        self.server = _listen(self.path)
        self._inode = os.stat(self.path).st_ino  # close() removes our socket, not a successor's

    def register(self, selector: selectors.BaseSelector) -> None:
        from cardio.vpcd import log

        assert self.server is not None
        self.selector = selector
        selector.register(self.server, selectors.EVENT_READ, None)
        log.info("control socket %s (cardio ctl --control %s ...)", self.path, self.path)

    def ready(self, key: selectors.SelectorKey, mask: int) -> None:
        client = key.data
        if client is None:
            self._accept()
        else:
            self._read(client)

    def _accept(self) -> None:
        assert self.server is not None and self.selector is not None
        while True:
            try:
                sock, _ = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            client = _Client(sock)
            self.clients.add(client)
            self.selector.register(sock, selectors.EVENT_READ, client)

    def _read(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(client)
            return
        if client.watching is not None:
            return  # a watcher says nothing more: what it sends is ignored
        client.inbox += chunk
        while b"\n" in client.inbox and client.watching is None:
            line, _, rest = bytes(client.inbox).partition(b"\n")
            client.inbox = bytearray(rest)
            reply = self.handle(line.decode("utf-8", "replace").strip(), client)
            if client.watching is None:
                self._reply(client, reply)
                continue
            with contextlib.suppress(OSError):  # room for a burst while it catches up
                client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WATCH_BUFFER)

            def greet(client: _Client = client, reply: str = reply) -> bool:
                self._reply(client, reply)
                return client in self.clients

            # its `ok`, then every trace line from the next exchange on: none lost between
            client.watching.watch(client.sock, greet)
        if len(client.inbox) > MAX_LINE:
            self._reply(client, f"error a command is one line of at most {MAX_LINE} bytes")
            self._close(client)

    def _reply(self, client: _Client, text: str) -> None:
        client.sock.setblocking(True)
        client.sock.settimeout(REPLY_TIMEOUT)
        try:
            client.sock.sendall(text.replace("\n", " ").encode() + b"\n")
        except OSError:
            self._close(client)
            return
        client.sock.setblocking(False)

    def _close(self, client: _Client) -> None:
        if client not in self.clients:
            return
        self.clients.discard(client)
        if client.watching is not None:
            client.watching.unwatch(client.sock)
        if self.selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(client.sock)
        client.sock.close()

    def close(self) -> None:
        for client in list(self.clients):
            if client.watching is not None:  # the stream is whole: say so
                client.watching.unwatch(client.sock)  # the slots are stopped: no more lines
                with contextlib.suppress(OSError):  # a watcher dropped or gone: nothing to say
                    client.sock.settimeout(END_TIMEOUT)  # one that reads gets it whole
                    client.sock.sendall(END_LINE)
            self._close(client)
        if self.server is not None:
            self.server.close()
            self.server = None
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    # --- the commands ---------------------------------------------------------------

    def handle(self, line: str, client: _Client | None = None) -> str:
        """One command line -> one reply line."""
        from cardio.vpcd import log

        verb, _, rest = line.partition(" ")
        try:
            text = self._run(verb.lower(), rest.strip(), client)
        except CardioError as e:
            log.warning("ctl %s refused: %s", verb, e)
            return f"error {e}"
        return f"ok {text}"

    def _slot(self, text: str, *, default: int | None = None) -> Slot:
        if not text and default is not None:
            text = str(default)
        if not (text.isascii() and text.isdigit()):
            raise UsageError(
                f"{text!r} is not a slot number; slots go from 0 to {len(self.slots) - 1}"
            )
        index = int(text)
        if index >= len(self.slots):
            raise UsageError(f"there is no slot {index}; slots go from 0 to {len(self.slots) - 1}")
        return self.slots[index]

    def _run(self, verb: str, rest: str, client: _Client | None) -> str:
        commands: dict[str, Callable[[], str]] = {
            "status": lambda: "; ".join(slot.describe() for slot in self.slots),
            "insert": lambda: self._slot(rest, default=0).insert(),
            "remove": lambda: self._slot(rest, default=0).remove(),
            "clear": lambda: self._slot(rest).clear(),
        }
        if verb in commands:
            return commands[verb]()
        number, _, arg = rest.partition(" ")
        if verb == "fault":
            if not arg.strip():
                raise UsageError("fault needs SLOT SPEC, e.g. 'fault 0 sw=20:6983'")
            return self._slot(number).arm(faults.parse(arg))
        if verb == "swap":
            if not arg.strip():
                raise UsageError("swap needs SLOT FILE")
            slot, path = self._slot(number), _card_file(arg.strip())
            for other in self.slots:
                if other is not slot and other.held.path == path:
                    raise UsageError(f"{path.name} is in slot {other.index}; one card, one slot")
            return slot.swap(path)
        if verb == "watch":
            slot = self._slot(rest)
            if client is None:
                raise UsageError("watch needs a connection of its own")
            client.watching = slot
            return f"watching slot {slot.index}"
        raise UsageError(
            f"unknown command {verb!r}; use status, insert, remove, swap, fault, clear or watch"
        )


def _card_file(text: str) -> Path:
    from cardio.card.store import card_path

    if not os.path.isabs(text):
        raise UsageError(f"{text}: give the card file's absolute path (cardio ctl does)")
    return card_path(text)


# --- the client: `cardio ctl` -------------------------------------------------------------


def resolve(given: str | None) -> Path:
    """--control PATH: the socket, or the first card file it sits beside; else $CARDIO_CONTROL."""
    text = given if given is not None else os.environ.get(ENV)
    if not text:
        raise UsageError(
            f"give --control PATH: the socket cardio serve names as it starts, or its first "
            f"card file (or set {ENV})"
        )
    path = Path(text)
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.stat(path).st_mode):
            return default_path(path.resolve())
    return path


def connect(path: Path) -> socket.socket:
    check_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(REPLY_TIMEOUT)
    try:
        sock.connect(os.fspath(path))
    except OSError as e:
        sock.close()
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise ControlError(
                f"no cardio serve listens on {path}; start 'cardio serve CARD...' "
                "or give its socket with --control PATH"
            ) from None
        raise ControlError(f"{path}: cannot connect ({e.strerror}); check --control PATH") from None
    return sock


def request(path: Path, line: str, out: TextIO) -> int:
    """Send one command, print the reply; 0 on `ok`, 1 (the server's line) on `error`."""
    if "\n" in line or "\r" in line:
        raise UsageError("a command is one line: no line breaks in a file name or spec")
    with connect(path) as sock, sock.makefile("r", encoding="utf-8", errors="replace") as lines:
        try:
            sock.sendall(line.encode() + b"\n")
        except OSError as e:
            raise ControlError(f"cardio serve at {path} went away ({e.strerror})") from None
        print(_reply(lines, path), file=out, flush=True)
    return Exit.OK


def _reply(lines: TextIO, path: Path) -> str:
    """The server's reply line: `ok ...`, or a ControlError with its `error ...`."""
    try:
        reply = lines.readline(MAX_LINE)
    except TimeoutError:
        raise ControlError(
            f"cardio serve at {path} did not answer within {REPLY_TIMEOUT:g} s"
        ) from None
    except OSError as e:
        raise ControlError(f"cardio serve at {path} went away ({e.strerror})") from None
    if not reply.endswith("\n"):
        raise ControlError(f"cardio serve at {path} closed the connection without an answer")
    reply = reply.rstrip("\n")
    if not reply.startswith("ok"):
        raise ControlError(reply.removeprefix("error ").strip() or "the server said no")
    return reply


class WatchCut(ControlError):
    """A watch stream ended without serve's `end` line: lines may be missing."""


class Watch:
    """`watch SLOT` on a serve's control socket: connected and acknowledged as it is made
    (a ControlError otherwise, before the caller has made anything), then `lines()`."""

    def __init__(self, path: Path, slot: int) -> None:
        self.path = path
        self.sock = connect(path)
        self.stream = self.sock.makefile("r", encoding="utf-8", errors="replace", newline="\n")
        try:
            self.sock.sendall(f"watch {slot}\n".encode())
            self.reply = _reply(self.stream, path)
        except BaseException:
            self.close()
            raise
        self.sock.settimeout(None)  # a session may be quiet for hours

    def lines(self) -> Iterator[str]:
        """Each trace line as it comes, until serve's `end` line; WatchCut when the stream
        stops without it (serve dropped this watcher, which fell behind, or died)."""
        for line in self.stream:
            if not line.endswith("\n"):
                break  # a line cut short is no line: it could be half a command
            if line.startswith("end "):
                return
            yield line
        raise WatchCut(
            f"the stream from cardio serve at {self.path} was cut (this watcher fell "
            "behind and was dropped, or serve died): lines after that point are missing"
        )

    def close(self) -> None:
        self.stream.close()
        self.sock.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def watch(path: Path, slot: int, out: TextIO) -> int:
    """`cardio ctl watch SLOT`: the reply, then every line until serve stops (0), the
    stream is cut (1) or Ctrl-C (0)."""
    with Watch(path, slot) as stream:
        print(stream.reply, file=out, flush=True)
        try:
            for line in stream.lines():
                print(line.rstrip("\n"), file=out, flush=True)
        except KeyboardInterrupt:  # Ctrl-C is how a watch ends: nothing went wrong
            return Exit.OK
    return Exit.OK
