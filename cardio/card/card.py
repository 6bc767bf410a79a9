"""The emulated social security card: a pure `execute(apdu) -> response` over a store.

A dispatch table maps (CLA, INS) to a handler; a handler returns response data or
raises CardError with its status word (vsmartcard's pattern). Nothing escapes
`execute`: every byte string gets a status word.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cardio import mac, pin, sw
from cardio.apdu import Apdu
from cardio.card import files
from cardio.card.state import CardState, LifeCycle, PinHash, PinState
from cardio.card.store import CardWriteError, MemoryStore, Store
from cardio.model import (
    CHANGE_PIN,
    LIFE_CYCLE_BYTES,
    PIN_STATE_BYTES,
    PIN_STATUS_TAG,
    Cla,
    Fid,
    Ins,
    OutletPin,
)
from cardio.sw import CardError, Sw
from cardio.trace import failure

log = logging.getLogger(__name__)

ATR_PREFIX = bytes((0x3B, 0x6D, 0x00, 0x00))  # TB1, TC1, 13 historical bytes; T=0 implied
GET_RESPONSE = bytes((Cla.ISO, Ins.GET_RESPONSE))
Handler = Callable[["VirtualCard", Apdu], bytes]


@dataclass
class Session:
    """What a reset, power-off or removal forgets."""

    df: files.Df
    ef: files.Ef | None = None
    verified: bool = False
    challenge: bytes | None = None
    pending: bytes = b""  # T=0 style: data waiting for GET RESPONSE


class VirtualCard:
    def __init__(
        self,
        state: CardState,
        store: Store | None = None,
        random: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._state = state
        self._store = store if store is not None else MemoryStore(state)
        self._random = random
        self._mf = files.build(state)
        self._session = Session(self._mf)

    # --- power ----------------------------------------------------------------

    @property
    def state(self) -> CardState:
        return self._state

    @property
    def verified(self) -> bool:
        return self._session.verified

    @property
    def atr(self) -> bytes:
        return ATR_PREFIX + self._state.historical

    def power_on(self) -> bytes:
        self._session = Session(self._mf)
        return self.atr

    def reset(self) -> bytes:
        return self.power_on()

    def power_off(self) -> None:
        self._session = Session(self._mf)

    # --- the one entry point --------------------------------------------------

    def execute(self, apdu: bytes) -> bytes:
        """Response data || SW1 SW2, for any byte string at all."""
        try:
            data, status = self._dispatch(bytes(apdu))
        except CardError as e:
            data, status = b"", e.sw
        except Exception as e:  # a bug: keep the card alive, and say so (never the bytes)
            log.error("emulator error: %s", failure(e))
            data, status = b"", Sw.NO_DIAGNOSIS
        return data + sw.split(status)

    def _dispatch(self, raw: bytes) -> tuple[bytes, int]:
        session = self._session
        pending, session.pending = session.pending, b""
        challenge = session.challenge
        t0 = self._state.t0_style
        if not (t0 and pending and raw[:2] == GET_RESPONSE):
            # Spent by the next command, whatever it is; but the GET RESPONSE that
            # fetches a T=0 answer is transport, not a command of its own.
            session.challenge = None
        apdu = Apdu.parse(raw)
        if apdu.cla not in tuple(Cla):
            raise CardError(Sw.CLA_NOT_SUPPORTED)
        if t0 and (apdu.cla, apdu.ins) == (Cla.ISO, Ins.GET_RESPONSE):
            return self._get_response(apdu, pending)
        if apdu.cla == Cla.SECURE_MESSAGING:
            outlet = _OUTLET.get(apdu.ins)
            if outlet is None:
                raise CardError(Sw.INS_NOT_SUPPORTED)
            data = outlet(self, apdu, self._unwrap(apdu, challenge))
        else:
            handler = _COMMANDS.get((apdu.cla, apdu.ins))
            if handler is None:
                raise CardError(Sw.INS_NOT_SUPPORTED)
            data = handler(self, apdu)
        if data and t0:  # docs/card.md §6: announce the data, hand it out on GET RESPONSE
            session.pending = data
            return b"", sw.bytes_available(len(data))
        return data, Sw.OK

    # --- shared checks --------------------------------------------------------

    def _save(self, state: CardState) -> None:
        """Durable first, then in memory: the card never claims what is not on disk.

        A write that fails (a full disk, a read-only folder) is a real card's EEPROM
        failure: 6581, the old state kept, and nothing done after it (VERIFY compares no
        PIN). One log line, no traceback: the store's message names file and cause only.
        """
        try:
            self._store.save(state)
        except CardWriteError as e:
            log.error(
                "%s: the card answered 6581 (memory failure) and keeps its previous state; %s",
                e.problem,
                e.advice,
            )
            raise CardError(Sw.MEMORY_FAILURE) from None
        except OSError as e:  # another Store's failure: its message is not ours to show
            log.error(
                "the card could not be saved (%s): the card answered 6581 (memory "
                "failure) and keeps its previous state; check the disk",
                e.strerror or type(e).__name__,
            )
            raise CardError(Sw.MEMORY_FAILURE) from None
        self._state = state

    def _require_active(self) -> None:
        if self._state.life_cycle is not LifeCycle.ACTIVE:
            raise CardError(Sw.CONDITIONS_NOT_SATISFIED)

    def _compare_pin(self, candidate: str) -> None:
        """jCardSim's OwnerPIN.check order: decrement (durably), compare, caller restores."""
        state = self._state
        if state.blocked:
            raise CardError(Sw.PIN_BLOCKED)
        self._session.verified = False
        left = state.tries_left - 1
        self._save(state.with_(tries_left=left))
        if not state.pin.matches(candidate):
            raise CardError(sw.wrong_pin(left))

    @staticmethod
    def _no_data(apdu: Apdu) -> None:
        if apdu.data:
            raise CardError(Sw.WRONG_LENGTH)

    @staticmethod
    def _p1p2(apdu: Apdu, p1: int, p2: int) -> None:
        if (apdu.p1, apdu.p2) != (p1, p2):
            raise CardError(Sw.WRONG_P1P2)

    @staticmethod
    def _exact_le(apdu: Apdu, length: int) -> None:
        """Le must be 00 or exactly the length; else 6Cxx tells the right one."""
        if apdu.le not in (256, length):
            raise CardError(sw.wrong_le(length))

    # --- commands (docs/card.md §3) -------------------------------------------

    def select(self, apdu: Apdu) -> bytes:
        if apdu.p2 not in (0x00, 0x0C):
            raise CardError(Sw.WRONG_P1P2)
        if apdu.p1 == 0x04:
            if not apdu.data:
                raise CardError(Sw.WRONG_LENGTH)
            target: files.Ef | files.Df | None = self._mf.df_by_name(apdu.data)
        elif apdu.p1 == 0x00:
            if len(apdu.data) != 2:
                raise CardError(Sw.WRONG_LENGTH)
            fid = int.from_bytes(apdu.data, "big")
            current = self._session.df
            if fid == Fid.MF:
                target = self._mf
            elif fid == current.fid:
                target = current
            else:
                target = current.child_by_fid(fid)
        else:
            raise CardError(Sw.WRONG_P1P2)
        if target is None:
            raise CardError(Sw.FILE_NOT_FOUND)
        if isinstance(target, files.Ef):
            self._session.ef = target
            return b""
        self._session.df, self._session.ef = target, None
        wants_fci = apdu.p2 == 0x00 and (apdu.le is not None or self._state.t0_style)
        return target.fci() if wants_fci else b""

    def read_record(self, apdu: Apdu) -> bytes:
        self._no_data(apdu)
        if apdu.p1 == 0 or apdu.p2 & 0x07 != 0x04:
            raise CardError(Sw.WRONG_P1P2)
        sfi = apdu.p2 >> 3
        if sfi:
            ef = self._session.df.ef_by_sfi(sfi)
            if ef is None:
                raise CardError(Sw.FILE_NOT_FOUND)
            self._session.ef = ef
        elif self._session.ef is None:
            raise CardError(Sw.NO_CURRENT_EF)
        else:
            ef = self._session.ef
        record = ef.record(apdu.p1)
        if record is None:
            raise CardError(Sw.RECORD_NOT_FOUND)
        self._exact_le(apdu, len(record))
        return record

    def verify(self, apdu: Apdu) -> bytes:
        self._p1p2(apdu, 0, 0)
        if not apdu.data:  # the status query: never costs a try
            if apdu.le not in (None, 256):
                raise CardError(Sw.WRONG_LENGTH)
            self._require_active()
            if self._state.blocked:
                raise CardError(Sw.PIN_BLOCKED)
            if not self._session.verified:
                raise CardError(sw.wrong_pin(self._state.tries_left))
            return b""
        if len(apdu.data) != 3 or apdu.le is not None:
            raise CardError(Sw.WRONG_LENGTH)
        candidate = pin.decode(apdu.data)
        if candidate is None:
            raise CardError(Sw.WRONG_DATA)
        self._require_active()
        self._compare_pin(candidate)
        self._save(self._state.with_(tries_left=self._state.try_limit))
        self._session.verified = True
        return b""

    def change_pin(self, apdu: Apdu) -> bytes:
        self._p1p2(apdu, 0x01, 0x00)
        if len(apdu.data) != 7:
            raise CardError(Sw.WRONG_LENGTH)
        old, new = pin.decode(apdu.data[:3]), pin.decode(apdu.data[4:])
        if apdu.data[3] != pin.CHANGE_SEPARATOR or old is None or new is None:
            raise CardError(Sw.WRONG_DATA)
        self._require_active()
        self._compare_pin(old)
        state = self._state
        self._save(
            state.with_(pin=PinHash.of(new), tries_left=state.try_limit, pin_state=PinState.ENABLED)
        )
        self._session.verified = True
        return b""

    def get_data(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x00, PIN_STATUS_TAG):
            raise CardError(Sw.DATA_NOT_FOUND)
        self._no_data(apdu)
        s = self._state
        value = bytes(
            (
                LIFE_CYCLE_BYTES[s.life_cycle],
                PIN_STATE_BYTES[s.pin_state],
                s.tries_left,
                s.try_limit,
            )
        )
        answer = bytes((PIN_STATUS_TAG, len(value))) + value
        self._exact_le(apdu, len(answer))
        return answer

    def get_challenge(self, apdu: Apdu) -> bytes:
        self._p1p2(apdu, 0, 0)
        self._no_data(apdu)
        if apdu.le != mac.CHALLENGE_LENGTH:
            raise CardError(sw.wrong_le(mac.CHALLENGE_LENGTH))
        self._session.challenge = self._random(mac.CHALLENGE_LENGTH)
        return self._session.challenge

    def _get_response(self, apdu: Apdu, pending: bytes) -> tuple[bytes, int]:
        """docs/card.md §6: hand out what a T=0 style answer announced with 61xx."""
        self._p1p2(apdu, 0, 0)
        self._no_data(apdu)
        if not pending:
            raise CardError(Sw.CONDITIONS_NOT_SATISFIED)
        le = apdu.le
        if le is None or (le > len(pending) and le != 256):
            self._session.pending = pending  # kept, so the terminal can ask again
            raise CardError(sw.wrong_le(len(pending)))
        if le == 256 or le == len(pending):
            return pending, Sw.OK
        self._session.pending = pending[le:]
        return pending[:le], sw.bytes_available(len(pending) - le)

    # --- service-outlet commands (docs/card.md §5) ----------------------------

    def _unwrap(self, apdu: Apdu, challenge: bytes | None) -> bytes:
        """Check the MAC; return the data without it."""
        if challenge is None:
            raise CardError(Sw.NO_CHALLENGE)
        if len(apdu.data) < mac.MAC_LENGTH:
            raise CardError(Sw.MAC_MISSING)
        body, given = apdu.data[: -mac.MAC_LENGTH], apdu.data[-mac.MAC_LENGTH :]
        header = bytes((apdu.cla, apdu.ins, apdu.p1, apdu.p2, len(apdu.data)))
        expected = mac.mac(self._state.card_key, challenge, header, body)
        if not hmac.compare_digest(given, expected):
            raise CardError(Sw.MAC_WRONG)
        return body

    def outlet_pin(self, apdu: Apdu, body: bytes) -> bytes:
        """84 5E 00 P2: reset and unblock (00), restore the initial PIN (01), cancel (02)."""
        state = self._state
        if apdu.p1 != 0x00 or apdu.p2 not in tuple(OutletPin):
            raise CardError(Sw.WRONG_P1P2)
        if len(body) != (3 if apdu.p2 == OutletPin.RESET else 0):
            raise CardError(Sw.WRONG_LENGTH)
        if apdu.p2 == OutletPin.RESET:
            new = pin.decode(body)
            if new is None:
                raise CardError(Sw.WRONG_DATA)
            changed = state.with_(pin=PinHash.of(new), pin_state=PinState.ENABLED)
        elif apdu.p2 == OutletPin.RESTORE_INITIAL:
            changed = state.with_(pin=PinHash.of(pin.INITIAL_PIN), pin_state=PinState.INITIAL)
        else:
            changed = state.with_(pin_state=PinState.DISABLED)
        self._save(changed.with_(tries_left=state.try_limit))
        self._session.verified = False
        return b""

    def outlet_activate(self, apdu: Apdu, body: bytes) -> bytes:
        """84 18 00 00: life cycle ACTIVE."""
        self._p1p2(apdu, 0, 0)
        if body:
            raise CardError(Sw.WRONG_LENGTH)
        self._save(self._state.with_(life_cycle=LifeCycle.ACTIVE))
        return b""


_COMMANDS: dict[tuple[int, int], Handler] = {
    (Cla.ISO, Ins.SELECT): VirtualCard.select,
    (Cla.ISO, Ins.READ_RECORD): VirtualCard.read_record,
    (Cla.ISO, Ins.VERIFY): VirtualCard.verify,
    (Cla.PROPRIETARY, CHANGE_PIN): VirtualCard.change_pin,
    (Cla.PROPRIETARY, Ins.GET_DATA): VirtualCard.get_data,
    (Cla.ISO, Ins.GET_CHALLENGE): VirtualCard.get_challenge,
}
_OUTLET: dict[int, Callable[[VirtualCard, Apdu, bytes], bytes]] = {
    Ins.OUTLET_PIN: VirtualCard.outlet_pin,
    Ins.OUTLET_ACTIVATE: VirtualCard.outlet_activate,
}
