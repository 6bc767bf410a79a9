"""T=0 habits, handled for every card: 61xx (GET RESPONSE) and 6Cxx (resend with Le).

Works over any function that exchanges one raw APDU; bounded, so a card that keeps
asking can never hang the terminal.
"""

from __future__ import annotations

from collections.abc import Callable

from cardio import sw
from cardio.apdu import Apdu
from cardio.model import Cla, Ins
from cardio.readers.errors import ProtocolError
from cardio.sw import CardError

MAX_ROUNDS = 16


def with_le(apdu: bytes, le: int) -> bytes:
    """The same command with Le set (case 1->2, 3->4) or replaced (case 2, 4)."""
    try:
        parsed = Apdu.parse(apdu)
    except CardError:
        return apdu
    return Apdu(parsed.cla, parsed.ins, parsed.p1, parsed.p2, parsed.data, le or 256).to_bytes()


def get_response(le: int) -> bytes:
    return bytes((Cla.ISO, Ins.GET_RESPONSE, 0x00, 0x00, le))


def exchange(send: Callable[[bytes], bytes], apdu: bytes, max_rounds: int = MAX_ROUNDS) -> bytes:
    """Send `apdu`; follow 6Cxx and 61xx; return all data || the final SW."""
    collected = b""
    last = apdu
    response = send(last)
    for _ in range(max_rounds):
        if len(response) < 2:
            return collected + response
        status = int.from_bytes(response[-2:], "big")
        if (le := sw.right_le(status)) is not None:  # the same command again, with that Le
            last = with_le(last, le)
        elif (waiting := sw.available(status)) is not None:  # more data waiting
            collected += response[:-2]
            last = get_response(waiting)
        else:
            return collected + response
        response = send(last)
    raise ProtocolError()
