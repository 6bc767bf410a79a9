"""What every emulated chip (the user card, the PSAM) does the same way around its
commands: any byte string gets a status word, and the T=0 habits of part 2 §9.3
(docs/card.md §6): `61xx` and GET RESPONSE for an answer to a command that sent data,
the exact Le (else `6Cxx`) for one that did not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cardio import sw
from cardio.apdu import Apdu
from cardio.sw import CardError, Sw
from cardio.trace import failure

MAX_RESPONSE = 256  # a short Le's most (Le 00)


def answer(
    dispatch: Callable[[bytes], tuple[bytes, int]], raw: bytes, log: logging.Logger
) -> bytes:
    """Response data || SW1 SW2, for any byte string at all: a CardError is its status
    word; anything else is a bug, answered 6F00 and logged by its type only (never the
    bytes), and the chip stays usable."""
    try:
        data, status = dispatch(bytes(raw))
    except CardError as e:
        data, status = b"", e.sw
    except Exception as e:
        log.error("emulator error: %s", failure(e))
        data, status = b"", Sw.NO_DIAGNOSIS
    return data + sw.split(status)


def t0_answer(apdu: Apdu, data: bytes, keep: Callable[[bytes], None]) -> tuple[bytes, int]:
    """A T=0 chip's answer to a command that succeeded with `data`: a case 4 command
    (data sent) announces it with 61xx and `keep`s it for GET RESPONSE (part 2 §9.3.1.4);
    a case 2 command gets it for the exact P3 only, else 6Cxx (§9.3.2.1)."""
    if data and apdu.has_data:
        keep(data)
        return b"", sw.bytes_available(len(data))
    if data and apdu.le != len(data):
        raise CardError(sw.wrong_le(len(data)))
    return data, Sw.OK


def get_response(apdu: Apdu, pending: bytes, keep: Callable[[bytes], None]) -> tuple[bytes, int]:
    """GET RESPONSE (part 5 §6.6, part 2 §9.3.3): what a 61xx announced. Le exactly its
    length: all of it; shorter: that much and 61yy for the rest; 00, absent or longer:
    6Cxx, the data kept; nothing waiting: 6F00 (part 5 §6.6.4, table 21)."""
    if (apdu.p1, apdu.p2) != (0, 0):
        raise CardError(Sw.WRONG_P1P2)
    if apdu.data:
        raise CardError(Sw.WRONG_LENGTH)
    if not pending:
        raise CardError(Sw.NO_DIAGNOSIS)
    le = apdu.le
    whole = le == len(pending)
    if le is None or (le == MAX_RESPONSE and not whole) or le > len(pending):
        keep(pending)
        raise CardError(sw.wrong_le(len(pending)))
    if whole:
        return pending, Sw.OK
    keep(pending[le:])
    return pending[:le], sw.bytes_available(len(pending) - le)


class Chip:
    """Power and the one entry point, as both emulated chips have them: a reset or a
    power-off forgets the session; `execute` answers any byte string (`answer`)."""

    _log = logging.getLogger("cardio.chip")

    @property
    def atr(self) -> bytes:
        raise NotImplementedError

    def _fresh_session(self) -> None:
        raise NotImplementedError

    def _dispatch(self, raw: bytes) -> tuple[bytes, int]:
        raise NotImplementedError

    def power_on(self) -> bytes:
        self._fresh_session()
        return self.atr

    def reset(self) -> bytes:
        return self.power_on()

    def power_off(self) -> None:
        self._fresh_session()

    def execute(self, apdu: bytes) -> bytes:
        """Response data || SW1 SW2, for any byte string at all."""
        return answer(self._dispatch, apdu, self._log)
