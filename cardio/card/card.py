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
    RecordMode,
    SelectBy,
    SelectResponse,
)
from cardio.sw import CardError, Sw
from cardio.trace import failure

log = logging.getLogger(__name__)

ATR_PREFIX = bytes((0x3B, 0x6D, 0x00, 0x00))  # TB1, TC1, 13 historical bytes; T=0 implied
MIN_DF_NAME, MAX_DF_NAME = 5, 16  # SELECT by name: Lc 05-10 (part 5 table 34)
FID_LENGTH = 2
NO_SFI = 0x1F  # READ RECORD P2 b8-b4 = 11111: RFU
RECORD_RFU = 0xFF  # P1 = FF: RFU (part 3 §5.3)
MAX_RESPONSE = 256  # a short Le's most (Le 00)
Handler = Callable[["VirtualCard", Apdu], bytes]


@dataclass
class Session:
    """What a reset, power-off or removal forgets."""

    df: files.Df
    ef: files.Ef | None = None
    record: int | None = None  # the record pointer: index of the current record in `ef`
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
        # Spent by the next command, whatever it is. (No answer ever waits for GET
        # RESPONSE beside a challenge: GET CHALLENGE is case 2, answered directly.)
        session.challenge = None
        apdu = Apdu.parse(raw)
        if apdu.cla not in tuple(Cla):
            raise CardError(Sw.CLA_NOT_SUPPORTED)
        if t0 and (apdu.cla, apdu.ins) == (Cla.ISO, Ins.GET_RESPONSE):
            return self._get_response(apdu, pending)
        if apdu.cla == Cla.SECURE_MESSAGING:
            outlet = None if self._state.real_only else _OUTLET.get(apdu.ins)
            if outlet is None:
                raise CardError(self._unknown(apdu))
            data = outlet(self, apdu, self._unwrap(apdu, challenge))
        else:
            handler = _COMMANDS.get((apdu.cla, apdu.ins))
            if self._state.real_only and (apdu.cla, apdu.ins) in _EXTENSIONS:
                handler = None  # docs/card.md §9: a real card does not know our commands
            if handler is None:
                raise CardError(self._unknown(apdu))
            data = handler(self, apdu)
        if data and t0:
            if apdu.has_data:
                # Case 4 (part 2 §9.3.1.4): T=0 has no room for an answer after the
                # command data; announce it and hand it out on GET RESPONSE.
                session.pending = data
                return b"", sw.bytes_available(len(data))
            if apdu.le != len(data):
                # Case 2 (part 2 §9.3.2.1): the data goes out only for the right P3.
                raise CardError(sw.wrong_le(len(data)))
        return data, Sw.OK

    # --- shared checks --------------------------------------------------------

    def _unknown(self, apdu: Apdu) -> int:
        """An instruction the card knows under another class is a CLA error (6E00, as
        every command's table in part 5 has it); one it does not know at all, 6D00."""
        known = {ins for cla, ins in _COMMANDS if (cla, ins) not in _EXTENSIONS}
        if not self._state.real_only:
            known |= {ins for _, ins in _EXTENSIONS} | set(_OUTLET)
        return Sw.CLA_NOT_SUPPORTED if apdu.ins in known else Sw.INS_NOT_SUPPORTED

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
        """Part 5 §6.11 (tables 34-39); docs/card.md §3, "SELECT"."""
        if apdu.p2 not in tuple(SelectResponse):
            raise CardError(Sw.WRONG_P1P2)
        target = self._select_target(apdu)
        if target is None:
            raise CardError(Sw.FILE_NOT_FOUND)
        session = self._session
        if isinstance(target, files.Ef):  # an EF: no FCI (part 5 §6.11.1), pointer cleared
            session.ef, session.record = target, None
            return b""
        session.df, session.ef, session.record = target, None, None
        if apdu.p2 != SelectResponse.FCI:
            return b""
        # Every DF answers its FCI (part 5 §6.11.1), with or without a Le: table 34's Le
        # is 00, and a real (T=0) card announces it with 61xx either way. A Le too short
        # for it gets 6Cxx, as READ RECORD's does (part 2 §9.3.2).
        fci = target.fci()
        if apdu.le is not None and apdu.le < len(fci) and not self._state.t0_style:
            raise CardError(sw.wrong_le(len(fci)))
        return fci

    def _select_target(self, apdu: Apdu) -> files.Ef | files.Df | None:
        current = self._session.df
        if apdu.p1 == SelectBy.NAME:
            if not MIN_DF_NAME <= len(apdu.data) <= MAX_DF_NAME:
                raise CardError(Sw.WRONG_LENGTH)
            if apdu.p2 == SelectResponse.NEXT:
                return None  # full names only: no other DF matches (part 5 §6.11.5)
            return self._mf.df_by_name(apdu.data)
        if apdu.p2 == SelectResponse.NEXT:
            raise CardError(Sw.WRONG_P1P2)  # "next occurrence" is for DF names only
        if apdu.p1 == SelectBy.FID and not apdu.data:
            return self._mf  # part 5 table 35: empty data selects the MF
        if apdu.p1 not in (SelectBy.FID, SelectBy.CHILD_DF, SelectBy.EF):
            raise CardError(Sw.WRONG_P1P2)
        if len(apdu.data) != FID_LENGTH:
            raise CardError(Sw.WRONG_LENGTH)  # table 39: Lc inconsistent with P1
        fid = int.from_bytes(apdu.data, "big")
        if apdu.p1 == SelectBy.FID:
            if fid == Fid.MF:
                return self._mf
            if fid == current.fid:
                return current
            return current.child_by_fid(fid)  # a DF, or an EF as terminals send it
        child = current.child_by_fid(fid)
        wanted = files.Df if apdu.p1 == SelectBy.CHILD_DF else files.Ef
        return child if isinstance(child, wanted) else None

    def read_record(self, apdu: Apdu) -> bytes:
        """Part 5 §6.10 (tables 31-33), part 3 §5.3; docs/card.md §3, "READ RECORD"."""
        self._no_data(apdu)
        sfi, bits = apdu.p2 >> 3, apdu.p2 & 0x07
        if sfi == NO_SFI or bits not in tuple(RecordMode) or apdu.p1 == RECORD_RFU:
            raise CardError(Sw.WRONG_P1P2)
        mode = RecordMode(bits)
        session = self._session
        if sfi:
            ef = session.df.ef_by_sfi(sfi)
            if ef is None:
                raise CardError(Sw.FILE_NOT_FOUND)
        elif session.ef is None:
            raise CardError(Sw.NO_CURRENT_EF)
        else:
            ef = session.ef
        if not ef.holds_records:
            raise CardError(Sw.INCOMPATIBLE_FILE)
        # The record pointer belongs to the current EF: an SFI naming another EF makes
        # that EF current with no current record (part 3 §5.3).
        pointer = session.record if ef is session.ef else None
        data, new_pointer = _read(ef.records, mode, apdu.p1, pointer)
        if len(data) > MAX_RESPONSE:  # several records beyond a short response
            raise CardError(Sw.WRONG_LENGTH)
        if apdu.le != len(data):  # part 5 §6.10.4: Le 00, absent or wrong -> 6Cxx
            raise CardError(sw.wrong_le(len(data)))
        session.ef, session.record = ef, new_pointer  # only a command that succeeded moves it
        return data

    def read_binary(self, apdu: Apdu) -> bytes:
        """Part 5 §6.9 (tables 28-30) on the transparent EFs. Every one here (EF07, EF08)
        is read under RKSSSE (V2.0 table 3), which only EXTERNAL AUTHENTICATE gives; this
        card has none yet, so a read that is well formed ends in 6982."""
        self._no_data(apdu)
        session = self._session
        if apdu.p1 & 0x80:  # b8 = 1: an SFI in b5-b1, the offset in P2 (b7-b6 = 00)
            sfi = apdu.p1 & 0x1F
            if apdu.p1 & 0x60 or sfi in (0, NO_SFI):
                raise CardError(Sw.WRONG_P1P2)
            ef = session.df.ef_by_sfi(sfi)
            if ef is None:
                raise CardError(Sw.FILE_NOT_FOUND)
            offset = apdu.p2
        else:
            if session.ef is None:
                raise CardError(Sw.NO_CURRENT_EF)
            ef, offset = session.ef, (apdu.p1 << 8) | apdu.p2
        if ef.holds_records or ef.size is None:
            raise CardError(Sw.INCOMPATIBLE_FILE)
        if offset >= ef.size:
            raise CardError(Sw.WRONG_OFFSET)
        raise CardError(Sw.SECURITY_NOT_SATISFIED)

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
        """Ours (docs/card.md §9): a `real_only` card answers 6D00 at the dispatcher."""
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
        """Part 5 §6.6 and part 2 §9.3.3 (docs/card.md §6): what a 61xx announced."""
        self._p1p2(apdu, 0, 0)
        self._no_data(apdu)
        if not pending:
            raise CardError(Sw.NO_DIAGNOSIS)  # part 5 §6.6.4 and table 21: nothing waits
        le = apdu.le
        whole = le == len(pending)
        if le is None or (le == MAX_RESPONSE and not whole) or le > len(pending):
            self._session.pending = pending  # kept: Le 00 or too long -> 6Cxx (§6.6.4)
            raise CardError(sw.wrong_le(len(pending)))
        if whole:
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
    (Cla.ISO, Ins.READ_BINARY): VirtualCard.read_binary,
    (Cla.ISO, Ins.VERIFY): VirtualCard.verify,
    (Cla.PROPRIETARY, CHANGE_PIN): VirtualCard.change_pin,
    (Cla.PROPRIETARY, Ins.GET_DATA): VirtualCard.get_data,
    (Cla.ISO, Ins.GET_CHALLENGE): VirtualCard.get_challenge,
}
_EXTENSIONS = frozenset({(Cla.PROPRIETARY, Ins.GET_DATA)})
_OUTLET: dict[int, Callable[[VirtualCard, Apdu, bytes], bytes]] = {
    Ins.OUTLET_PIN: VirtualCard.outlet_pin,
    Ins.OUTLET_ACTIVATE: VirtualCard.outlet_activate,
}


def _read(
    records: tuple[bytes, ...], mode: RecordMode, p1: int, pointer: int | None
) -> tuple[bytes, int | None]:
    """The bytes READ RECORD returns and the record pointer after it (part 3 §5.3).

    By number (100, 101, 110) the pointer stays; by identifier (000-011) it moves to the
    record found. P1 = 00 is the current record by number, and "any identifier" by
    identifier (part 3 §5.3.1). No record found -> 6A83, the pointer unchanged.
    """
    count = len(records)
    if mode in (RecordMode.NUMBER, RecordMode.NUMBER_TO_LAST, RecordMode.LAST_TO_NUMBER):
        first = pointer if p1 == 0 else p1 - 1
        if first is None or first >= count:
            raise CardError(Sw.RECORD_NOT_FOUND)
        if mode is RecordMode.NUMBER:
            return records[first], pointer
        chosen = records[first:]
        if mode is RecordMode.LAST_TO_NUMBER:
            chosen = chosen[::-1]  # read from the last record back to record P1
        return b"".join(chosen), pointer
    order = range(count)  # linear files: logical order = creation order (part 3 §5.3.1)
    if mode is RecordMode.NEXT and pointer is not None:
        order = range(pointer + 1, count)
    elif mode is RecordMode.PREVIOUS and pointer is not None:
        order = range(pointer - 1, -1, -1)
    elif mode in (RecordMode.LAST, RecordMode.PREVIOUS):
        order = range(count - 1, -1, -1)
    for index in order:
        if p1 == 0 or records[index][0] == p1:
            return records[index], index
    raise CardError(Sw.RECORD_NOT_FOUND)
