"""Small helpers for talking to the emulated card in tests (docs/card.md)."""

from __future__ import annotations

from dataclasses import replace

from cardio import security
from cardio.apdu import Apdu, parse_hex
from cardio.card.card import VirtualCard
from cardio.card.profiles import load
from cardio.card.state import CardState
from cardio.issuer import SPEC, KeyName

SSSE_NAME = "73 78 31 2E 73 68 2E C9 E7 BB E1 B1 A3 D5 CF"  # "sx1.sh.社会保障" in GBK
SELECT_SSSE = "00 A4 04 00 0F " + SSSE_NAME
# The SSSE's FCI (part 5 table 36): its name, the directory's SFI 0F, algorithm 03 (SM4)
FCI_SSSE = "6F 1C 84 0F " + SSSE_NAME + " A5 09 88 01 0F 9F 0C 03 86 01 03"
INITIAL_PIN = "123456"
ENABLED_PIN = "802613"  # fixtures/README.md: employee-enabled, and locked before it locked

OK = 0x9000


class RecordingStore:
    """A store that keeps every state the card asked it to persist, in order."""

    def __init__(self) -> None:
        self.saved: list[CardState] = []

    def save(self, state: CardState) -> None:
        self.saved.append(state)


def h(text: str) -> bytes:
    """Hex text -> bytes; blank text is the empty byte string."""
    return parse_hex(text) if text.strip() else b""


def new_card(
    profile: str = "employee-new",
    store: object | None = None,
    state: CardState | None = None,
    **kwargs: object,
) -> VirtualCard:
    """A powered-on card of the named profile (or of `state`)."""
    card = VirtualCard(state if state is not None else load(profile), store, **kwargs)
    card.power_on()
    return card


def send(card: VirtualCard, apdu: str | bytes) -> bytes:
    """One APDU, given as hex text or bytes; the raw response (data || SW1 SW2)."""
    raw = h(apdu) if isinstance(apdu, str) else apdu
    return card.execute(raw)


def sw_of(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


def data_of(resp: bytes) -> bytes:
    return resp[:-2]


def sw_hex(resp: bytes) -> str:
    return resp[-2:].hex().upper()


def transmit(card: VirtualCard, apdu: str | bytes) -> bytes:
    """Like send, but as a terminal's transport does (part 2 §9.3.2): follows 6Cxx by
    sending the command again with Le = xx, and 61xx with GET RESPONSE (T=0 style cards)."""
    raw = h(apdu) if isinstance(apdu, str) else apdu
    resp = send(card, raw)
    if resp[-2] == 0x6C and len(resp) == 2:
        parsed = Apdu.parse(raw)
        resp = send(card, replace(parsed, le=resp[-1] or 256).to_bytes())
    if resp[-2] == 0x61:
        resp = send(card, bytes((0x00, 0xC0, 0x00, 0x00, resp[-1])))
    return resp


def select_ssse(card: VirtualCard) -> None:
    resp = transmit(card, SELECT_SSSE)
    assert sw_of(resp) == OK, resp.hex()


def pin_block(pin: str) -> str:
    return " ".join(pin[i : i + 2] for i in range(0, 6, 2))


def verify(card: VirtualCard, pin: str) -> int:
    return sw_of(send(card, "00 20 00 00 03 " + pin_block(pin)))


def status_query(card: VirtualCard) -> int:
    return sw_of(send(card, "00 20 00 00"))


def change_pin(card: VirtualCard, old: str, new: str) -> int:
    return sw_of(send(card, f"80 5E 01 00 07 {pin_block(old)} FF {pin_block(new)}"))


def pin_status(card: VirtualCard) -> tuple[int, int, int, int]:
    """GET DATA C1 -> (LL life cycle, SS PIN state, TT tries left, MM try limit)."""
    resp = transmit(card, "80 CA 00 C1 00")
    assert sw_of(resp) == OK, resp.hex()
    data = data_of(resp)
    assert data[:2] == b"\xc1\x04", data.hex()
    assert len(data) == 6, data.hex()
    return data[2], data[3], data[4], data[5]


def tries_left(card: VirtualCard) -> int:
    return pin_status(card)[2]


def get_challenge(card: VirtualCard) -> bytes:
    resp = transmit(card, "00 84 00 00 08")
    assert sw_of(resp) == OK, resp.hex()
    assert len(data_of(resp)) == 8
    return data_of(resp)


def identification_code(card: VirtualCard) -> bytes:
    """Read SSSE/EF05 record 01 from the card itself."""
    select_ssse(card)
    resp = transmit(card, "00 B2 01 2C 00")
    assert sw_of(resp) == OK, resp.hex()
    assert data_of(resp)[:2] == b"\x01\x10"
    return data_of(resp)[2:]


def prove(card: VirtualCard, key: KeyName) -> bytes:
    """EXTERNAL AUTHENTICATE with the card's own `key` (part 5 §6.4): a challenge, then
    the cryptogram of fresh raw data, computed from the card file's key. The response."""
    challenge = card.execute(bytes.fromhex("0084000008"))[:-2]
    raw = bytes(range(1, 9))
    cryptogram = security.authentication(card.state.algorithm, card.state.keys[key], challenge, raw)
    return card.execute(bytes((0x00, 0x82, 0x00, SPEC[key].reference, 0x10)) + cryptogram + raw)
