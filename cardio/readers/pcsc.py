"""PC/SC readers through pyscard's thin `scard` layer (the real pcscd, real or vpcd readers).

The low-level API is used on purpose: its return codes map one to one onto the typed
errors of `cardio.readers.errors`, and SCardCancel stops the event thread at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from cardio.readers.base import CardEvent, EventKind, Listener, Reader, ReaderInfo, Trace
from cardio.readers.errors import (
    CardNotPoweredError,
    CardRemovedError,
    NoCardError,
    NoReaderError,
    NoServiceError,
    ReaderError,
    ReaderGoneError,
    SharingViolationError,
    UnresponsiveCardError,
)

try:
    from smartcard import scard
except ImportError:  # pragma: no cover - depends on the machine
    scard = None

log = logging.getLogger(__name__)

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
EVENT_TIMEOUT_MS = 1000
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0

# PC/SC return codes (pcsc-lite's values; pyscard may hand them back signed).
E_NO_SERVICE = 0x8010001D
E_SERVICE_STOPPED = 0x8010001E
E_NO_READERS = 0x8010002E
E_UNKNOWN_READER = 0x80100009
E_READER_UNAVAILABLE = 0x80100017
E_NO_SMARTCARD = 0x8010000C
E_SHARING_VIOLATION = 0x8010000B
E_TIMEOUT = 0x8010000A
E_CANCELLED = 0x80100002
E_INVALID_HANDLE = 0x80100003
W_REMOVED_CARD = 0x80100069
W_RESET_CARD = 0x80100068
W_UNPOWERED_CARD = 0x80100067
W_UNRESPONSIVE_CARD = 0x80100066
E_NOT_TRANSACTED = 0x80100016
F_COMM_ERROR = 0x80100013  # "RPC transport error": pcscd's socket went away under us

_SERVICE_GONE = (E_NO_SERVICE, E_SERVICE_STOPPED, E_INVALID_HANDLE, F_COMM_ERROR)


def available() -> bool:
    return scard is not None


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


def _message(hr: int) -> str:
    try:
        return str(scard.SCardGetErrorMessage(hr))
    except Exception:  # pragma: no cover - message lookup only
        return "unknown error"


def error_for(hresult: int, *, during_command: bool = False) -> ReaderError:
    """The typed error for a PC/SC return code."""
    hr = _code(hresult)
    if hr in _SERVICE_GONE:
        return NoServiceError()
    if hr in (E_NO_READERS, E_UNKNOWN_READER):
        return NoReaderError()
    if hr == E_READER_UNAVAILABLE:
        return ReaderGoneError()
    if hr == E_SHARING_VIOLATION:
        return SharingViolationError()
    if hr == W_UNPOWERED_CARD and not during_command:
        return CardNotPoweredError()
    if hr in (W_REMOVED_CARD, E_NO_SMARTCARD, W_UNPOWERED_CARD, W_RESET_CARD, E_NOT_TRANSACTED):
        return CardRemovedError() if during_command else NoCardError()
    if hr == W_UNRESPONSIVE_CARD:
        return UnresponsiveCardError()
    return ReaderError(f"the reader failed ({_message(hr)}, {hr:08X}); try again")


def _check(hresult: int, **kw: bool) -> None:
    if _code(hresult) != 0:
        raise error_for(hresult, **kw)


def _require_pyscard() -> None:
    if scard is None:
        raise ReaderError(
            "pyscard is not installed; install the 'pcsc' extra (pip install 'shebao-pos[pcsc]')"
        )


class Context:
    """An SCard context, released when done."""

    def __init__(self) -> None:
        _require_pyscard()
        hr, self.handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check(hr)

    def readers(self) -> list[str]:
        hr, names = scard.SCardListReaders(self.handle, [])
        if _code(hr) == E_NO_READERS:
            return []
        _check(hr)
        return list(names)

    def states(self, names: Sequence[str], timeout_ms: int = 0) -> list[tuple[str, int, bytes]]:
        """(name, event state, ATR) of each reader, without waiting."""
        request = [(name, scard.SCARD_STATE_UNAWARE) for name in names]
        hr, result = scard.SCardGetStatusChange(self.handle, timeout_ms, request)
        _check(hr)
        return [(name, state, bytes(atr)) for name, state, atr in result]

    def release(self) -> None:
        if self.handle is not None:
            scard.SCardReleaseContext(self.handle)
            self.handle = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def list_readers() -> list[ReaderInfo]:
    with Context() as ctx:
        names = ctx.readers()
        if not names:
            return []
        infos = []
        for name, state, atr in ctx.states(names):
            present = bool(state & scard.SCARD_STATE_PRESENT)
            infos.append(ReaderInfo(name, present, atr if present else None))
        return infos


def resolve(choice: str) -> str:
    """A reader by exact name, by index into the list, or by a unique part of its name."""
    with Context() as ctx:
        names = ctx.readers()
    if not names:
        raise NoReaderError()
    if choice in names:
        return choice
    if choice.isdigit():
        index = int(choice)
        if index < len(names):
            return names[index]
        raise NoReaderError(
            f"there is no reader {index}; 'cardio readers' lists "
            f"{len(names)} reader(s), numbered from 0"
        )
    matches = [n for n in names if choice.lower() in n.lower()]
    if len(matches) == 1:
        return matches[0]
    what = "several readers match" if matches else "no reader matches"
    raise NoReaderError(f"{what} {choice!r}; 'cardio readers' lists them")


class PcscReader(Reader):
    """One named PC/SC reader. `disconnect` powers the card off, clearing its session."""

    def __init__(self, name: str, *, trace: Trace | None = None, exclusive: bool = False) -> None:
        super().__init__(trace)
        _require_pyscard()
        self.name = name
        self._share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        self._ctx: Context | None = None
        self._card: Any = None
        self._protocol: int | None = None
        self._atr: bytes | None = None
        self._monitor: EventMonitor | None = None

    def _context(self) -> Context:
        if self._ctx is None:
            self._ctx = Context()
        return self._ctx

    def _state(self) -> tuple[int, bytes]:
        try:
            ((_, state, atr),) = self._context().states([self.name])
        except NoServiceError:
            self._drop_context()
            raise
        return state, atr

    def _drop_context(self) -> None:
        if self._ctx is not None:
            try:
                self._ctx.release()
            except Exception:  # a context of a dead pcscd: nothing to release
                log.debug("releasing a stale context failed", exc_info=True)
            self._ctx = None

    def card_present(self) -> bool:
        state, _ = self._state()
        if state & scard.SCARD_STATE_UNKNOWN:
            raise ReaderGoneError()
        return bool(state & scard.SCARD_STATE_PRESENT)

    def peek_atr(self) -> bytes | None:
        state, atr = self._state()
        return atr if state & scard.SCARD_STATE_PRESENT else None

    def connect(self) -> bytes:
        if self._card is not None:
            return self._atr or b""
        protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        hr, card, protocol = scard.SCardConnect(
            self._context().handle, self.name, self._share, protocols
        )
        if _code(hr) in _SERVICE_GONE:
            self._drop_context()
        _check(hr)
        self._card, self._protocol = card, protocol
        self._atr = self._read_atr()
        return self._session(self._atr)

    def _read_atr(self) -> bytes:
        hr, _reader, _state, _protocol, atr = scard.SCardStatus(self._card)
        _check(hr, during_command=True)
        return bytes(atr)

    def reset(self) -> bytes:
        if self._card is None:
            return self.connect()
        hr, protocol = scard.SCardReconnect(
            self._card,
            self._share,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            scard.SCARD_RESET_CARD,
        )
        _check(hr, during_command=True)
        self._protocol = protocol
        self._atr = self._read_atr()
        return self._session(self._atr)

    def disconnect(self) -> None:
        card, self._card = self._card, None
        self._session_marked = False  # the next connect is another session, maybe card
        if card is not None:
            scard.SCardDisconnect(card, scard.SCARD_UNPOWER_CARD)

    def _ready(self) -> None:
        if self._card is None:
            self.connect()

    def _exchange(self, apdu: bytes) -> bytes:
        self._ready()
        hr, response = scard.SCardTransmit(self._card, self._protocol, list(apdu))
        if _code(hr) != 0:
            self._card = None  # the handle is dead with the card
            if _code(hr) in _SERVICE_GONE:
                self._drop_context()
            raise error_for(hr, during_command=True)
        return bytes(response)

    def watch(self) -> EventMonitor:
        """Start the event thread for this reader (insert / remove go to subscribers)."""
        if self._monitor is None:
            self._monitor = EventMonitor(self._emit, readers=[self.name])
            self._monitor.start()
        return self._monitor

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        try:
            self.disconnect()
        finally:
            self._drop_context()


class EventMonitor:
    """Insert / remove events from a background thread.

    It survives a pcscd restart: when the service goes, it says so (SERVICE_LOST),
    reconnects with a backoff and says when it is back. It never dies silently: an
    unexpected error is logged and the loop goes on. `stop()` ends it at once.
    """

    def __init__(
        self,
        listener: Listener,
        *,
        readers: Sequence[str] | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        _require_pyscard()
        self._listener = listener
        self._only = list(readers) if readers is not None else None
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._ctx_lock = threading.Lock()
        self._ctx: Any = None
        self._thread = threading.Thread(target=self._run, name="pcsc-events", daemon=True)
        self.present: dict[str, bool] = {}

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._ctx_lock:
            if self._ctx is not None:
                scard.SCardCancel(self._ctx)
        self._thread.join(timeout)

    def _emit(self, kind: EventKind, reader: str, atr: bytes | None = None) -> None:
        try:
            self._listener(CardEvent(kind, reader, atr))
        except Exception:
            log.exception("a card event listener failed")

    def _run(self) -> None:
        delay = BACKOFF_START
        service_lost = False
        while not self._stop.is_set():
            try:
                hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                if _code(hr) != 0:
                    raise error_for(hr)
                with self._ctx_lock:
                    self._ctx = ctx
                if service_lost:
                    self._emit(EventKind.SERVICE_BACK, "")
                    service_lost = False
                delay = BACKOFF_START
                self._watch(ctx)
            except NoServiceError:
                if not service_lost:
                    log.warning("PC/SC service lost; reconnecting")
                    self._emit(EventKind.SERVICE_LOST, "")
                    self._forget_all()
                    service_lost = True
            except Exception:
                log.exception("card event thread error; retrying")
            finally:
                with self._ctx_lock:
                    ctx, self._ctx = self._ctx, None
                if ctx is not None:
                    scard.SCardReleaseContext(ctx)
            if self._stop.is_set():
                break
            self._sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _forget_all(self) -> None:
        for name, present in list(self.present.items()):
            if present:
                self._emit(EventKind.REMOVED, name)
        self.present.clear()

    def _readers(self, ctx: Any) -> list[str]:
        hr, names = scard.SCardListReaders(ctx, [])
        if _code(hr) == E_NO_READERS:
            names = []
        elif _code(hr) != 0:
            raise error_for(hr)
        if self._only is not None:
            names = [n for n in names if n in self._only]
        return list(names)

    def _watch(self, ctx: Any) -> None:
        """Wait for changes until the reader list changes or the service goes."""
        names = self._readers(ctx)
        for gone in set(self.present) - set(names):
            if self.present.pop(gone):
                self._emit(EventKind.REMOVED, gone)
            self._emit(EventKind.READER_GONE, gone)
        states = [(n, scard.SCARD_STATE_UNAWARE) for n in names]
        states.append((PNP_NOTIFICATION, scard.SCARD_STATE_UNAWARE))
        while not self._stop.is_set():
            hr, result = scard.SCardGetStatusChange(ctx, EVENT_TIMEOUT_MS, states)
            code = _code(hr)
            if code in (E_TIMEOUT, E_CANCELLED):
                continue
            if code != 0:
                raise error_for(hr)
            states = []
            for name, state, atr in result:
                states.append((name, state & ~scard.SCARD_STATE_CHANGED))
                if name == PNP_NOTIFICATION:
                    if state & scard.SCARD_STATE_CHANGED:
                        return  # a reader came or went: list them again
                    continue
                if state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                    return
                present = bool(state & scard.SCARD_STATE_PRESENT)
                if present != self.present.get(name, False):
                    self.present[name] = present
                    kind = EventKind.INSERTED if present else EventKind.REMOVED
                    self._emit(kind, name, bytes(atr) if present else None)
                else:
                    self.present[name] = present
