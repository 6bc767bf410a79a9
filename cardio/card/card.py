"""The emulated social security card: a pure `execute(apdu) -> response` over a store.

A dispatch table maps (CLA, INS) to a handler; a handler returns response data or
raises CardError with its status word (vsmartcard's pattern). Nothing escapes
`execute`: every byte string gets a status word.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from cardio import pin, sw, t0
from cardio.apdu import Apdu, binary_address
from cardio.card import files, update
from cardio.card.keyed import KeyedCommands, df_label, keys_kept
from cardio.card.session import Session
from cardio.card.state import CardState, LifeCycle, PinHash, PinState
from cardio.card.store import CardWriteError, MemoryStore, Store
from cardio.issuer import DF04
from cardio.model import (
    CHANGE_PIN,
    LIFE_CYCLE_BYTES,
    PIN_STATE_BYTES,
    PIN_STATUS_TAG,
    Cla,
    Fid,
    Ins,
    RecordMode,
    SelectBy,
    SelectResponse,
)
from cardio.sw import CardError, Sw

log = logging.getLogger(__name__)

ATR_PREFIX = bytes((0x3B, 0x6D, 0x00, 0x00))  # TB1, TC1, 13 historical bytes; T=0 implied
MIN_DF_NAME, MAX_DF_NAME = 5, 16  # SELECT by name: Lc 05-10 (part 5 table 34)
FID_LENGTH = 2
NO_SFI = 0x1F  # READ RECORD P2 b8-b4 = 11111: RFU
RECORD_RFU = 0xFF  # P1 = FF: RFU (part 3 §5.3)
MAX_RESPONSE = t0.MAX_RESPONSE  # a short Le's most (Le 00)
MIN_PIN_BYTES, MAX_PIN_BYTES = 2, 8  # VERIFY's Lc (part 5 table 46): 4-16 digits
CHANGE_MIN, CHANGE_MAX = 0x03, 0x11  # CHANGE PIN's Lc (part 5 table 10)
Handler = Callable[["VirtualCard", Apdu], bytes]


class VirtualCard(KeyedCommands, t0.Chip):
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
        self._challenge: bytes | None = None

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

    def _fresh_session(self) -> None:  # power on, reset, power off (cardio/t0.py)
        self._session = Session(self._mf)

    _log = log

    def _dispatch(self, raw: bytes) -> tuple[bytes, int]:
        session = self._session
        pending, session.pending = session.pending, b""
        challenge = session.challenge
        t0_style = self._state.t0_style
        # Spent by the next command, whatever it is. (No answer ever waits for GET
        # RESPONSE beside a challenge: GET CHALLENGE is case 2, answered directly.)
        session.challenge = None
        self._challenge = challenge
        apdu = Apdu.parse(raw)
        if apdu.cla not in tuple(Cla):
            raise CardError(Sw.CLA_NOT_SUPPORTED)
        if self._blocked_here() and apdu.ins != Ins.SELECT:
            raise CardError(Sw.APPLICATION_BLOCKED)  # part 7 §13.2: while it is current
        if t0_style and (apdu.cla, apdu.ins) == (Cla.ISO, Ins.GET_RESPONSE):
            return t0.get_response(apdu, pending, self._keep)
        handler = _COMMANDS.get((apdu.cla, apdu.ins))
        if self._state.real_only and (apdu.cla, apdu.ins) in _EXTENSIONS:
            handler = None  # docs/card.md §9: a real card does not know our commands
        if handler is None:
            raise CardError(self._unknown(apdu))
        data = handler(self, apdu)
        if t0_style:
            return t0.t0_answer(apdu, data, self._keep)
        return data, Sw.OK

    def _keep(self, data: bytes) -> None:
        """What waits for GET RESPONSE (T=0 style)."""
        self._session.pending = data

    # --- shared checks --------------------------------------------------------

    def _unknown(self, apdu: Apdu) -> int:
        """An instruction the card knows under another class is a CLA error (6E00, as
        every command's table in part 5 has it); one it does not know at all, 6D00."""
        known = {ins for cla, ins in _COMMANDS if (cla, ins) not in _EXTENSIONS}
        if not self._state.real_only:
            known |= {ins for _, ins in _EXTENSIONS}
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

    def _may_read(self, ef: files.Ef) -> None:
        """The file's read condition (V2.0 tables 3 and 7; part 5 §6.9.5, §6.10.5)."""
        key = ef.read_key
        if key is None or key in self._session.authenticated:
            return
        if ef.or_pin and self._session.verified:
            return
        raise CardError(Sw.SECURITY_NOT_SATISFIED)

    def _blocked_here(self) -> bool:
        return self._state.application_blocked and df_label(self._session.df) == DF04

    def _require_active(self) -> None:
        if self._state.life_cycle is not LifeCycle.ACTIVE:
            raise CardError(Sw.CONDITIONS_NOT_SATISFIED)

    def _compare_pin(self, candidate: str) -> None:
        """jCardSim's OwnerPIN.check order: decrement (durably), compare, caller restores.

        A card that holds no PIN (DISABLED) takes only the empty one; any other fails
        without costing a try (part 5 §6.14.5: an empty PIN cannot be guessed)."""
        state = self._state
        if state.blocked:
            raise CardError(Sw.PIN_BLOCKED)
        self._session.verified = False
        if state.pin_state is PinState.DISABLED:
            if candidate:
                raise CardError(sw.wrong_pin(state.tries_left))
            return
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
        if self._blocked_here() and (isinstance(target, files.Ef) or target is session.df):
            raise CardError(Sw.APPLICATION_BLOCKED)  # part 7 §13.2: only another application
        if isinstance(target, files.Ef):  # an EF: no FCI (part 5 §6.11.1), pointer cleared
            session.ef, session.record = target, None
            return b""
        if self._state.application_blocked and df_label(target) == DF04:
            raise CardError(Sw.APPLICATION_BLOCKED)  # part 5 §6.1: for good; nothing changes
        if target is not session.df:  # a key's state ends when its DF is left (part 7 §6.6)
            session.authenticated = keys_kept(session.authenticated, target)
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
        ef = self._record_ef(sfi)
        self._may_read(ef)
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

    def update_record(self, apdu: Apdu) -> bytes:
        """Part 5 §6.13 (tables 43-45), plain (part 7 §7.3: the standard's applications
        use no secure messaging here): the record P1 names (by number, P2 b3-b1 = 100;
        or the first occurrence of identifier P1, 000) replaced by the data, a whole
        record of the same tag and length, after the file's write key was proved
        (V2.0 tables 3 and 7). The card file's field changes (cardio/card/update.py)."""
        sfi, bits = apdu.p2 >> 3, apdu.p2 & 0x07
        if (
            sfi == NO_SFI
            or bits not in (RecordMode.NUMBER, RecordMode.FIRST)
            or apdu.p1 == RECORD_RFU
        ):
            raise CardError(Sw.WRONG_P1P2)
        if apdu.le is not None:
            raise CardError(Sw.WRONG_LENGTH)
        ef = self._record_ef(sfi)
        key = ef.write_key
        if key is None or key not in self._session.authenticated:
            raise CardError(Sw.SECURITY_NOT_SATISFIED)
        pointer = self._session.record if ef is self._session.ef else None
        if bits == RecordMode.NUMBER:
            index = pointer if apdu.p1 == 0 else apdu.p1 - 1
        else:
            index = next((i for i, r in enumerate(ef.records) if r[0] == apdu.p1), None)
        if index is None or index >= len(ef.records):
            raise CardError(Sw.RECORD_NOT_FOUND)
        old, new = ef.records[index], apdu.data
        if len(new) < 2 or new[1] != len(new) - 2:
            raise CardError(Sw.LC_INCONSISTENT)  # 6A85: Lc does not match the TLV
        if len(new) != len(old):
            raise CardError(Sw.WRONG_LENGTH)  # the notice's length for this item
        if new[0] != old[0]:
            raise CardError(Sw.WRONG_DATA)  # a record keeps its identifier
        changed = update.apply(self._state, ef.where, new[0], new[2:])
        tree = files.build(changed)  # before the write: nothing may fail after it
        self._save(changed)
        self._rebuild(tree, ef.sfi, index)
        return b""

    def _ef(self, sfi: int | None) -> files.Ef:
        """The EF an SFI names in the current DF (6A82), or the current EF (6986)."""
        session = self._session
        if sfi:
            ef = session.df.ef_by_sfi(sfi)
            if ef is None:
                raise CardError(Sw.FILE_NOT_FOUND)
            return ef
        if session.ef is None:
            raise CardError(Sw.NO_CURRENT_EF)
        return session.ef

    def _record_ef(self, sfi: int) -> files.Ef:
        """The EF an SFI names (the current one for SFI 0), holding records."""
        ef = self._ef(sfi)
        if not ef.holds_records:
            raise CardError(Sw.INCOMPATIBLE_FILE)
        return ef

    def _rebuild(self, tree: files.Df, sfi: int, record: int) -> None:
        """The file tree built from the changed state; the session points into it (the
        same DF, the updated EF current with the updated record: part 5 §6.13.1)."""
        self._mf = tree
        session = self._session
        name = session.df.name
        df = self._mf.df_by_name(name) if name is not None else self._mf
        session.df = df or self._mf
        session.ef = session.df.ef_by_sfi(sfi)
        session.record = record if session.ef is not None else None

    def read_binary(self, apdu: Apdu) -> bytes:
        """Part 5 §6.9 (tables 28-30) on the transparent EFs. Every one here (EF07, EF08)
        is read under RKSSSE (V2.0 table 3): 6982 until its EXTERNAL AUTHENTICATE, then
        the file's bytes (zeros: they are defined, not yet written)."""
        self._no_data(apdu)
        sfi, offset = binary_address(apdu)
        ef = self._ef(sfi)
        if ef.holds_records or ef.size is None:
            raise CardError(Sw.INCOMPATIBLE_FILE)
        if offset >= ef.size:
            raise CardError(Sw.WRONG_OFFSET)
        self._may_read(ef)  # V2.0 table 3: under RKSSSE
        left = min(ef.size - offset, MAX_RESPONSE)
        if apdu.le is None or (apdu.le != MAX_RESPONSE and apdu.le > left):
            raise CardError(sw.wrong_le(left))
        return bytes(min(apdu.le, left))  # defined, not yet written: empty (zeros)

    def verify(self, apdu: Apdu) -> bytes:
        """Part 5 §6.14, part 7 §5.6-§5.8; docs/card.md §3, "VERIFY"."""
        self._p1p2(apdu, 0, 0)
        if not apdu.data:  # the empty VERIFY (also 00 20 00 00 00): never costs a try
            if apdu.le not in (None, 256):
                raise CardError(Sw.WRONG_LENGTH)
            self._require_active()
            if self._state.blocked:
                raise CardError(Sw.PIN_BLOCKED)
            # §6.14.5: 9000 when the card holds no PIN (a PIN cancelled: DISABLED); and,
            # as ISO 7816-4's status query, when the PIN was verified in this session
            if self._state.pin_state is not PinState.DISABLED and not self._session.verified:
                raise CardError(sw.wrong_pin(self._state.tries_left))
            return b""
        if not MIN_PIN_BYTES <= len(apdu.data) <= MAX_PIN_BYTES or apdu.le is not None:
            raise CardError(Sw.WRONG_LENGTH)  # table 46: Lc 02-08
        candidate = pin.decode_cn(apdu.data)
        if candidate is None:
            raise CardError(Sw.WRONG_DATA)
        self._require_active()
        self._compare_pin(candidate)
        self._save(self._state.with_(tries_left=self._state.try_limit))
        self._session.verified = True
        return b""

    def change_pin(self, apdu: Apdu) -> bytes:
        """Part 5 §6.3 (80 5E 01 00, Lc 03-11): current PIN ‖ FF ‖ new PIN, each
        compressed numeric; no current PIN when the card holds none, no new PIN to hold
        none any more (PIN state DISABLED)."""
        self._p1p2(apdu, 0x01, 0x00)
        if not CHANGE_MIN <= len(apdu.data) <= CHANGE_MAX:
            raise CardError(Sw.WRONG_LENGTH)
        old_block, separator, new_block = apdu.data.partition(bytes((pin.CHANGE_SEPARATOR,)))
        old = pin.decode_cn(old_block) if old_block else ""
        new = pin.decode_cn(new_block) if new_block else ""
        if not separator or old is None or new is None or not (old or new):
            raise CardError(Sw.WRONG_DATA)
        self._require_active()
        self._compare_pin(old)
        state = self._state
        self._save(
            state.with_(
                pin=PinHash.of(new),
                tries_left=state.try_limit,
                pin_state=PinState.ENABLED if new else PinState.DISABLED,
            )
        )
        self._session.verified = bool(new)
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


_COMMANDS: dict[tuple[int, int], Handler] = {
    (Cla.ISO, Ins.SELECT): VirtualCard.select,
    (Cla.ISO, Ins.READ_RECORD): VirtualCard.read_record,
    (Cla.ISO, Ins.READ_BINARY): VirtualCard.read_binary,
    (Cla.ISO, Ins.UPDATE_RECORD): VirtualCard.update_record,
    (Cla.ISO, Ins.VERIFY): VirtualCard.verify,
    (Cla.PROPRIETARY, CHANGE_PIN): VirtualCard.change_pin,
    (Cla.PROPRIETARY, Ins.GET_DATA): VirtualCard.get_data,
    (Cla.ISO, Ins.GET_CHALLENGE): VirtualCard.get_challenge,
    (Cla.ISO, Ins.INTERNAL_AUTHENTICATE): VirtualCard.internal_authenticate,
    (Cla.ISO, Ins.EXTERNAL_AUTHENTICATE): VirtualCard.external_authenticate,
    (Cla.SECURE_MESSAGING, Ins.CHANGE_REFERENCE): VirtualCard.pin_change_unblock,
    (Cla.SECURE_MESSAGING, Ins.APPLICATION_BLOCK): VirtualCard.application_block,
    (Cla.SECURE_MESSAGING, Ins.OUTLET_ACTIVATE): VirtualCard.activate,
}
# Ours (docs/card.md §9): a real_only card answers them 6D00, as a real card does.
_EXTENSIONS = frozenset(
    {(Cla.PROPRIETARY, Ins.GET_DATA), (Cla.SECURE_MESSAGING, Ins.OUTLET_ACTIVATE)}
)


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
