"""Random APDUs against every card profile (docs/card.md §3, §4, §5).

- execute never raises and always answers >= 2 bytes ending in a §6 status word
  (never 6F00, the emulator's "bug" word, except where part 5 §6.6.4 gives it: a GET
  RESPONSE with nothing waiting);
- the durable state changes only through VERIFY (00 20 with data: tries_left only),
  CHANGE PIN (80 5E 01 00: PIN, counter, PIN state), EXTERNAL AUTHENTICATE (00 82: its
  key's try counter only), or PIN CHANGE/UNBLOCK, APPLICATION BLOCK and our activation
  (84 24, 84 1E, 84 18) with a valid MAC under the card's keys, which random bytes
  practically never carry;
- a stateful model of the PIN counter and of the keys' counters agrees with GET DATA C1,
  the empty VERIFY and the card's state; the service outlet's commands in it are the
  standard's (part 5 §6.4, §6.8; part 7 §13) with the card's keys.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cardio import pin, security
from cardio.card import files, profiles
from cardio.card.card import VirtualCard
from cardio.card.state import KEY_TRY_LIMIT, CardState, LifeCycle, PinState
from cardio.issuer import SPEC, KeyName

PROFILES = profiles.names()
BASE: dict[str, CardState] = {name: profiles.load(name) for name in PROFILES}
KNOWN_PINS = ["123456", "802613", "000000", "975318", "246801", "999999"]

FIXED_SW = {
    0x9000,
    0x6700,
    0x6981,  # READ RECORD on a transparent EF (part 5 table 33)
    0x6982,
    0x6983,
    0x6984,
    0x6985,
    0x6986,
    0x6988,
    0x6A80,
    0x6A82,
    0x6A83,
    0x6A86,
    0x6A88,
    0x6D00,
    0x6E00,
}
INS_VALUES = [0xA4, 0xB2, 0xB0, 0x20, 0x5E, 0xCA, 0x84, 0xC0, 0x18, 0x24, 0x1E, 0x82, 0x88]
KEY_REFERENCES = [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x80, 0x82, 0x83, 0x84, 0x85, 0x86]


class RecordingStore:
    """Sees every save."""

    def __init__(self) -> None:
        self.saved: list[CardState] = []

    def save(self, state: CardState) -> None:
        self.saved.append(state)


def sw_allowed(sw: int, t0_style: bool, try_limit: int) -> bool:
    if sw in FIXED_SW:
        return True
    if sw == 0x6F00:  # only where send_checked lets it through: GET RESPONSE, nothing waits
        return t0_style
    if sw & 0xFF00 == 0x6C00:
        return True
    if sw & 0xFF00 == 0x6100:
        return t0_style
    if sw & 0xFFF0 == 0x63C0:
        return (sw & 0x0F) <= try_limit
    return False


def _pin_fields(state: CardState) -> CardState:
    """`state` with the fields CHANGE PIN may change put back to a fixed value."""
    return state.with_(pin=None, tries_left=0, pin_state=PinState.INITIAL)


# --- strategies ---------------------------------------------------------------------------

pin_blocks = st.sampled_from(KNOWN_PINS).map(pin.encode) | st.text(
    "0123456789", min_size=6, max_size=6
).map(pin.encode)
# current ‖ FF ‖ new; either may be absent (part 5 §6.3.3), and 4 or 5 digits too
cn_blocks = pin_blocks | st.sampled_from([b"", b"", bytes.fromhex("2468"), bytes.fromhex("13579f")])
change_blocks = st.builds(
    lambda old, sep, new: old + bytes((sep,)) + new,
    cn_blocks,
    st.sampled_from([0xFF, 0xFF, 0xFF, 0x00]),
    cn_blocks,
)
data_values = st.one_of(
    st.just(b""),
    pin_blocks,
    change_blocks,
    st.just(files.SSSE_NAME),
    st.sampled_from([b"\x3f\x00", b"\xef\x05", b"\xef\x06", b"\xdf\x04"]),
    st.binary(min_size=1, max_size=255),
)


def _build(cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
    raw = bytes((cla, ins, p1, p2))
    if data:
        raw += bytes((len(data),)) + data
    if le is not None:
        raw += bytes((le,))
    return raw


byte = st.integers(0, 255)
maybe_le = st.none() | st.sampled_from([0x00, 0x06, 0x08]) | byte


@st.composite
def random_fields(draw: st.DrawFn) -> bytes:
    """Each field drawn on its own: CLA from {00, 80, 84, any}, INS from the spec or any."""
    cla = draw(st.sampled_from([0x00, 0x80, 0x84]) | byte)
    ins = draw(st.sampled_from(INS_VALUES) | byte)
    p1 = draw(st.sampled_from([0x00, 0x01, 0x04]) | byte)
    p2 = draw(st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x0C, 0x2C, 0x34, 0xC1]) | byte)
    return _build(cla, ins, p1, p2, draw(data_values), draw(maybe_le))


@st.composite
def spec_commands(draw: st.DrawFn) -> bytes:
    """The commands of §3, nearly right, then maybe one header byte or the Le changed."""
    kind = draw(
        st.sampled_from(
            [
                "select-name",
                "select-fid",
                "read",
                "read",
                "read",
                "verify",
                "status",
                "change",
                "get-data",
                "challenge",
                "get-response",
                "external-auth",
                "external-auth",
                "internal-auth",
                "read-binary",
                "pin-change-unblock",
                "application-block",
                "activate",
            ]
        )
    )
    le: int | None = None
    data = b""
    if kind == "select-name":
        cla, ins, p1, p2 = 0x00, 0xA4, 0x04, draw(st.sampled_from([0x00, 0x0C]))
        data = draw(st.just(files.SSSE_NAME) | st.binary(min_size=1, max_size=20))
        le = draw(st.none() | st.just(0x00))
    elif kind == "select-fid":
        cla, ins, p1, p2 = 0x00, 0xA4, 0x00, draw(st.sampled_from([0x00, 0x0C]))
        fid = draw(st.sampled_from([0x3F00, 0xEF05, 0xEF06, 0xDF04]) | st.integers(0, 0xFFFF))
        data = fid.to_bytes(2, "big")
        le = draw(st.none() | st.just(0x00))
    elif kind == "read":
        cla, ins = 0x00, 0xB2
        p1 = draw(st.integers(1, 0x0D) | st.integers(0, 0x0E) | byte)
        p2 = draw(st.sampled_from([0x04, (5 << 3) | 4, (6 << 3) | 4]) | byte)
        le = draw(st.none() | st.just(0x00) | st.integers(0, 40) | byte)
    elif kind == "verify":
        cla, ins, p1, p2 = 0x00, 0x20, 0x00, 0x00
        data = draw(pin_blocks)
    elif kind == "status":
        cla, ins, p1, p2 = 0x00, 0x20, 0x00, 0x00
        le = draw(st.none() | st.just(0x00))
    elif kind == "change":
        cla, ins, p1, p2 = 0x80, 0x5E, 0x01, 0x00
        data = draw(change_blocks)
    elif kind == "get-data":
        cla, ins, p1, p2 = 0x80, 0xCA, 0x00, 0xC1
        le = draw(maybe_le)
    elif kind == "challenge":
        cla, ins, p1, p2 = 0x00, 0x84, 0x00, 0x00
        le = draw(st.just(0x08) | maybe_le)
    elif kind == "get-response":
        cla, ins, p1, p2 = 0x00, 0xC0, 0x00, 0x00
        le = draw(maybe_le)
    elif kind == "external-auth":
        cla, ins, p1, p2 = 0x00, 0x82, 0x00, draw(st.sampled_from(KEY_REFERENCES))
        data = draw(st.binary(min_size=16, max_size=16) | st.binary(min_size=15, max_size=17))
    elif kind == "internal-auth":
        cla, ins, p1, p2 = 0x00, 0x88, 0x00, 0x00
        data = draw(st.binary(min_size=16, max_size=17))
        le = draw(st.none() | st.just(0x00) | st.just(0x08))
    elif kind == "read-binary":
        cla, ins = 0x00, 0xB0
        p1, p2 = draw(st.sampled_from([0x87, 0x88, 0x00, 0x02])), draw(byte)
        le = draw(maybe_le)
    elif kind == "pin-change-unblock":
        cla, ins, p1, p2 = 0x84, 0x24, 0x00, draw(st.sampled_from([0x00, 0x01]))
        data = draw(st.sampled_from([b"", bytes(16)]) | st.binary(max_size=20)) + draw(
            st.binary(min_size=4, max_size=4)
        )
    elif kind == "application-block":
        cla, ins, p1, p2 = 0x84, 0x1E, 0x00, 0x01
        data = draw(st.binary(min_size=0, max_size=6))
    else:
        cla, ins, p1, p2 = 0x84, 0x18, 0x00, 0x00
        data = draw(st.binary(min_size=0, max_size=6))
    header = [cla, ins, p1, p2]
    if draw(st.integers(0, 4)) == 0:  # one header byte changed
        header[draw(st.integers(0, 3))] = draw(byte)
    if draw(st.integers(0, 5)) == 0:  # Le added, changed or dropped
        le = draw(maybe_le)
    return _build(*header, data, le)


raw_apdus = st.binary(min_size=0, max_size=300)
RESET = None
SELECT_SSSE = _build(0x00, 0xA4, 0x04, 0x00, files.SSSE_NAME, None)
SELECT_DF04 = _build(0x00, 0xA4, 0x00, 0x0C, b"\xdf\x04", None)
CHALLENGE = bytes.fromhex("0084000008")
RAW = bytes(range(0xA0, 0xA8))  # the terminal's raw data in EXTERNAL AUTHENTICATE
# GET CHALLENGE and, at once, an EXTERNAL AUTHENTICATE of some key with a random
# cryptogram: the one random pair that reaches a key's try counter
challenged_authentications = st.builds(
    lambda p2, data: [CHALLENGE, _build(0x00, 0x82, 0x00, p2, data, None)],
    st.sampled_from(KEY_REFERENCES),
    st.binary(min_size=16, max_size=16)
    | st.binary(min_size=16, max_size=16).map(lambda d: d + b"\x01"),
)
sequences = st.builds(
    lambda start, rest: [*start, *(a for step in rest for a in step)],
    st.sampled_from([[], [SELECT_SSSE], [SELECT_SSSE, SELECT_DF04], [SELECT_SSSE, CHALLENGE]]),
    st.lists(
        st.one_of(
            spec_commands().map(lambda a: [a]),
            spec_commands().map(lambda a: [a]),
            random_fields().map(lambda a: [a]),
            raw_apdus.map(lambda a: [a]),
            st.just([RESET]),
            st.just([CHALLENGE]),
            challenged_authentications,
            st.just([SELECT_SSSE]),
            st.just([SELECT_DF04]),
        ),
        max_size=20,
    ),
)


# --- one APDU, checked ----------------------------------------------------------------------


def send_checked(card: VirtualCard, rec: RecordingStore, raw: bytes) -> int:
    before = card.state
    saves = len(rec.saved)
    response = card.execute(raw)
    assert isinstance(response, bytes)
    assert len(response) >= 2, (raw.hex(), response.hex())
    sw = int.from_bytes(response[-2:], "big")
    nothing_waits = before.t0_style and raw[:2] == b"\x00\xc0"  # part 5 §6.6.4
    assert sw != 0x6F00 or nothing_waits, raw.hex()
    assert sw_allowed(sw, before.t0_style, before.try_limit), (raw.hex(), f"{sw:04X}")
    if sw != 0x9000 and sw & 0xFF00 != 0x6100:
        assert response == response[-2:], (raw.hex(), response.hex())  # errors carry no data

    after = card.state
    new_saves = rec.saved[saves:]
    if new_saves:
        assert after == new_saves[-1]  # durable first: memory never ahead of the store
    else:
        assert after == before, raw.hex()
        return sw

    header = raw[:4]
    is_verify = header == b"\x00\x20\x00\x00" and len(raw) > 5
    is_change = header == b"\x80\x5e\x01\x00"
    is_external = header[:3] == b"\x00\x82\x00"
    is_secured = raw[:2] in (b"\x84\x24", b"\x84\x18", b"\x84\x1e")  # with a MAC
    assert is_verify or is_change or is_external or is_secured, (
        raw.hex(),
        f"{sw:04X}",
        "changed the state",
    )
    assert sw == 0x9000 or sw & 0xFFF0 == 0x63C0, (raw.hex(), f"{sw:04X}")
    if is_external:
        check_external_authenticate(before, new_saves, sw, raw)
    if is_verify:
        for state in new_saves:
            assert state == before.with_(tries_left=state.tries_left), raw.hex()
    if is_change:
        for state in new_saves:
            assert _pin_fields(state) == _pin_fields(before), raw.hex()
    if is_verify or is_change:
        check_pin_comparison(card, before, new_saves, sw, raw, is_change)
    if is_secured:
        assert sw == 0x9000  # a valid MAC: practically never from random bytes
    return sw


def check_external_authenticate(
    before: CardState, new_saves: list[CardState], sw: int, raw: bytes
) -> None:
    """Part 7 §6.6: one key's counter, decremented on disk first; 63Cx the new count,
    9000 back to the limit. Nothing else changes."""
    (key,) = [k for k in KeyName if new_saves[0].tries_of(k) != before.tries_of(k)]
    left = before.tries_of(key)
    assert left > 0, raw.hex()  # a locked key is 6983, nothing written
    assert new_saves[0] == before.with_(key_tries={**before.key_tries, key: left - 1})
    assert SPEC[key].reference == raw[3], raw.hex()
    if sw == 0x9000:
        assert [s.tries_of(key) for s in new_saves] == [left - 1, KEY_TRY_LIMIT]
        assert new_saves[-1] == before.with_(key_tries={**before.key_tries, key: KEY_TRY_LIMIT})
    else:
        assert len(new_saves) == 1
        assert sw & 0x0F == left - 1, raw.hex()


def check_pin_comparison(
    card: VirtualCard,
    before: CardState,
    new_saves: list[CardState],
    sw: int,
    raw: bytes,
    is_change: bool,
) -> None:
    """VERIFY or CHANGE PIN that wrote: decrement first (docs/card.md §4), unless the
    card holds no PIN (DISABLED), where only a CHANGE PIN without a current PIN writes."""
    after = card.state
    assert before.life_cycle is LifeCycle.ACTIVE
    assert before.tries_left > 0
    if before.pin_state is PinState.DISABLED:
        assert is_change and sw == 0x9000, raw.hex()  # a PIN given fails without a write
        assert raw[5] == pin.CHANGE_SEPARATOR  # no current PIN
        assert len(new_saves) == 1
    else:
        assert new_saves[0] == before.with_(tries_left=before.tries_left - 1)
    if sw == 0x9000:
        assert after.tries_left == after.try_limit
        if not is_change:
            assert card.verified
    else:
        assert sw & 0x0F == after.tries_left == before.tries_left - 1
        assert len(new_saves) == 1
        assert not card.verified
    if is_change and sw == 0x9000:
        data = raw[5 : 5 + raw[4]]
        _, separator, new_block = data.partition(bytes((pin.CHANGE_SEPARATOR,)))
        assert separator
        new = pin.decode_cn(new_block) if new_block else ""
        assert new is not None, raw.hex()
        assert after.pin.matches(new)
        assert after.pin_state is (PinState.ENABLED if new else PinState.DISABLED)
        assert card.verified == bool(new)


def run_sequence(profile: str, apdus: list[bytes | None]) -> None:
    rec = RecordingStore()
    card = VirtualCard(BASE[profile], rec)
    assert card.power_on()[:4] == bytes.fromhex("3B6D0000")
    for raw in apdus:
        if raw is RESET:
            card.reset()
            assert not card.verified
        else:
            send_checked(card, rec, raw)


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("profile", PROFILES)
@FUZZ
@given(apdus=st.lists(raw_apdus, min_size=1, max_size=10))
def test_random_bytes_always_get_a_status_word(profile: str, apdus: list[bytes]) -> None:
    run_sequence(profile, list(apdus))


@pytest.mark.slow  # 300 examples a profile
@pytest.mark.parametrize("profile", PROFILES)
@settings(FUZZ, max_examples=300)
@given(apdus=sequences)
def test_structured_apdus_change_state_only_through_pin_commands(
    profile: str, apdus: list[bytes | None]
) -> None:
    run_sequence(profile, apdus)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00",
        b"\x00\x20\x00",
        bytes.fromhex("0020000000"),  # status query with Le 00
        bytes.fromhex("00200000000003123456"),  # extended length
        bytes.fromhex("0020000003123456"),  # plain VERIFY, also fine
        bytes.fromhex("ff20000003123456"),
        bytes.fromhex("845e000007123456deadbeef"),  # retired (issue 12): 6E00
        bytes.fromhex("8424000004deadbeef"),  # no PUK authentication: 6982
        bytes.fromhex("84240001") + bytes((20,)) + bytes(20),
        bytes.fromhex("841e000104deadbeef"),
        bytes.fromhex("8418000004deadbeef"),
        bytes.fromhex("0082000610") + bytes(16),  # no DF with keys selected: 6A88
        bytes.fromhex("008800001000112233445566778899aabbccddeeff00"),
        bytes.fromhex("0084000010"),
        bytes.fromhex("0084000009"),
        bytes.fromhex("80ca00c1ff"),
        bytes(300),
    ],
)
@pytest.mark.parametrize("profile", PROFILES)
def test_edge_apdus(profile: str, raw: bytes) -> None:
    rec = RecordingStore()
    card = VirtualCard(BASE[profile], rec)
    card.power_on()
    send_checked(card, rec, raw)


def test_fixed_edge_answers() -> None:
    card = VirtualCard(BASE["employee-new"], RecordingStore())
    card.power_on()
    assert card.execute(b"") == b"\x67\x00"
    assert card.execute(b"\x00\x20\x00") == b"\x67\x00"
    assert card.execute(bytes.fromhex("00200000000003123456")) == b"\x67\x00"
    assert card.execute(bytes.fromhex("ff20000003123456")) == b"\x6e\x00"
    assert card.execute(bytes.fromhex("845e000007123456deadbeef")) == b"\x6e\x00"
    assert card.execute(bytes.fromhex("8424000004deadbeef")) == b"\x69\x82"
    assert card.execute(bytes.fromhex("0084000009")) == b"\x67\x00"
    assert card.execute(bytes.fromhex("0082000610") + bytes(16)) == b"\x6a\x88"
    assert card.execute(bytes.fromhex("80ca00c1ff")) == b"\x6c\x06"
    assert card.execute(bytes.fromhex("80ca00c100")) == bytes.fromhex("c10401000606") + b"\x90\x00"
    assert card.state == BASE["employee-new"]


# --- a stateful model of the PIN counter -----------------------------------------------------

WRONG_KEY = bytes(range(16))  # no card holds it


def _pin_of(state: CardState) -> str:
    (found,) = [p for p in KNOWN_PINS if state.pin.matches(p)]
    return found


def _cn(digits: str) -> bytes:
    """A PIN of 4-16 digits as compressed numeric; the empty PIN as nothing."""
    return security.pin_block(digits) if digits else b""


class PinCounter(RuleBasedStateMachine):
    """Model: life cycle, PIN digits ("" when the card holds none), PIN state, tries,
    session flag, and the try counters of two keys (PUK and RKSSSE)."""

    @initialize(profile=st.sampled_from(PROFILES))
    def start(self, profile: str) -> None:
        state = BASE[profile]
        self.rec = RecordingStore()
        self.card = VirtualCard(state, self.rec)
        self.card.power_on()
        self.keys = state.keys  # the card file's: the issuer's own copy
        self.alg = state.algorithm
        self.t0 = state.t0_style
        self.active = state.life_cycle is LifeCycle.ACTIVE
        self.digits = _pin_of(state)
        self.pin_state = state.pin_state
        self.tries = state.tries_left
        self.limit = state.try_limit
        self.verified = False
        self.key_tries = {k: state.tries_of(k) for k in (KeyName.PUK, KeyName.RKSSSE)}

    # -- transport --

    def send(self, raw: bytes) -> tuple[bytes, int]:
        response = self.card.execute(raw)
        sw = int.from_bytes(response[-2:], "big")
        if sw & 0xFF00 == 0x6C00:  # a case 2 command with the wrong Le: resend it right
            response = self.card.execute(raw[:4] + bytes((sw & 0xFF,)))
            sw = int.from_bytes(response[-2:], "big")
        if sw & 0xFF00 == 0x6100:  # T=0 style, case 4: fetch the data
            assert self.t0
            response = self.card.execute(bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
            sw = int.from_bytes(response[-2:], "big")
        assert sw != 0x6F00
        return response[:-2], sw

    def challenge(self) -> bytes:
        challenge, sw = self.send(CHALLENGE)
        assert sw == 0x9000 and len(challenge) == 8
        return challenge

    def compare(self, candidate: str) -> int | None:
        """What a comparison answers, and its effect on the model (§4); None when the
        card holds no PIN and none is given (CHANGE PIN goes on)."""
        if not self.active:
            return 0x6985
        if self.tries == 0:
            return 0x6983
        self.verified = False
        if self.pin_state is PinState.DISABLED:  # part 5 §6.14.5: no try spent
            return 0x63C0 | self.tries if candidate else None
        if candidate == self.digits:
            self.tries = self.limit
            self.verified = True
            return 0x9000
        self.tries -= 1
        return 0x63C0 | self.tries

    def wrong_pin(self) -> str:
        return "111111" if self.digits != "111111" else "222222"

    # -- rules: the holder --

    @rule()
    def verify_right(self) -> None:
        candidate = self.digits or "123456"  # a card holding no PIN fails any
        expected = self.compare(candidate)
        raw = bytes((0x00, 0x20, 0x00, 0x00, len(_cn(candidate)))) + _cn(candidate)
        assert self.send(raw) == (b"", expected)

    @rule(candidate=st.sampled_from(KNOWN_PINS))
    def verify_wrong(self, candidate: str) -> None:
        if candidate == self.digits:
            candidate = self.wrong_pin()
        expected = self.compare(candidate)
        assert self.send(bytes.fromhex("0020000003") + pin.encode(candidate)) == (b"", expected)

    @rule()
    def status_query(self) -> None:
        assert self.send(bytes.fromhex("00200000")) == (b"", self.expected_status())

    @rule(
        new=st.sampled_from([*KNOWN_PINS, "2468", "13579", ""]),
        old=st.sampled_from(["right", "wrong", "none"]),
    )
    def change_pin(self, new: str, old: str) -> None:
        current = {"right": self.digits, "wrong": self.wrong_pin(), "none": ""}[old]
        data = _cn(current) + bytes((pin.CHANGE_SEPARATOR,)) + _cn(new)
        raw = bytes((0x80, 0x5E, 0x01, 0x00, len(data))) + data
        if not current and not new:
            assert self.send(raw) == (b"", 0x6700)  # Lc 01: table 10 is 03-11
            return
        expected = self.compare(current)
        if expected is None or expected == 0x9000:
            expected = 0x9000
            self.digits, self.tries, self.verified = new, self.limit, bool(new)
            self.pin_state = PinState.ENABLED if new else PinState.DISABLED
        assert self.send(raw) == (b"", expected)

    @rule(bad=st.sampled_from(["lc", "separator", "nibble"]))
    def change_pin_bad_format(self, bad: str) -> None:
        block = pin.change_block("123456", "975318")  # refused before any comparison
        if bad == "lc":
            raw = bytes.fromhex("805E010002") + block[:2]
            expected = 0x6700
        elif bad == "separator":
            raw = bytes.fromhex("805E010007") + block[:3] + b"\x00" + block[4:]
            expected = 0x6A80
        else:
            raw = bytes.fromhex("805E010007") + block[:6] + b"\x5a"
            expected = 0x6A80
        assert self.send(raw) == (b"", expected)  # no try spent: the model is unchanged

    @rule()
    def reset(self) -> None:
        self.card.reset()
        self.verified = False

    @rule()
    def power_cycle(self) -> None:
        self.card.power_off()
        self.card.power_on()
        self.verified = False

    @rule()
    def get_data(self) -> None:
        data, sw = self.send(bytes.fromhex("80CA00C100"))
        assert sw == 0x9000
        assert data == self.expected_c1()

    # -- rules: the keys (part 5 §6.4, part 7 §6.6) --

    def authenticate(self, key: KeyName, right: bool) -> int:
        """SELECT the SSSE, GET CHALLENGE, EXTERNAL AUTHENTICATE; the model follows."""
        _, sw = self.send(SELECT_SSSE)
        assert sw == 0x9000
        challenge = self.challenge()
        secret = self.keys[key] if right else WRONG_KEY
        cryptogram = security.authentication(self.alg, secret, challenge, RAW)
        raw = bytes((0x00, 0x82, 0x00, SPEC[key].reference, 0x10)) + cryptogram + RAW
        left = self.key_tries[key]
        if left == 0:
            expected = 0x6983
        elif right:
            expected, self.key_tries[key] = 0x9000, KEY_TRY_LIMIT
        else:
            self.key_tries[key] = left - 1
            expected = 0x63C0 | (left - 1)
        assert self.send(raw) == (b"", expected)
        return expected

    @rule(key=st.sampled_from([KeyName.PUK, KeyName.RKSSSE]), right=st.booleans())
    def external_authenticate(self, key: KeyName, right: bool) -> None:
        self.authenticate(key, right)

    # -- rules: the service outlet (part 5 §6.8, part 7 §13.3; 84 18 ours) --

    def outlet(self, ins: int, p2: int, new: str | None = None, *, good_mac: bool = True) -> int:
        """The PUK's EXTERNAL AUTHENTICATE, GET CHALLENGE, then 84 INS 00 P2 with the PIN
        (if any) encrypted and the MAC under the PUK's session key."""
        assert self.authenticate(KeyName.PUK, right=True) == 0x9000
        challenge = self.challenge()
        session = security.session_key(self.alg, self.keys[KeyName.PUK], challenge)
        body = b"" if new is None else security.encrypt(self.alg, session, _cn(new))
        raw = security.secure_apdu(
            self.alg, self.keys[KeyName.PUK], challenge, 0x84, ins, 0x00, p2, body
        )
        if not good_mac:
            raw = raw[:-4] + bytes(4)
            expected = security.mac(self.alg, session, raw[:-4])
            if expected == bytes(4):  # pragma: no cover - one in 2**32
                return 0x6988
        _, sw = self.send(raw)
        return sw

    @precondition(lambda self: self.key_tries[KeyName.PUK] > 0)
    @rule()
    def outlet_unblock(self) -> None:
        assert self.outlet(0x24, 0x00) == 0x9000
        self.tries, self.verified = self.limit, False

    @precondition(lambda self: self.key_tries[KeyName.PUK] > 0)
    @rule(new=st.sampled_from([*KNOWN_PINS, "2468", "13579", "1234567890123456"]))
    def outlet_new_pin(self, new: str) -> None:
        assert self.outlet(0x24, 0x01, new) == 0x9000
        self.digits, self.tries, self.verified = new, self.limit, False
        self.pin_state = PinState.INITIAL if new == "123456" else PinState.ENABLED

    @precondition(lambda self: self.key_tries[KeyName.PUK] > 0)
    @rule()
    def outlet_empty_pin(self) -> None:
        assert self.outlet(0x24, 0x01) == 0x9000
        self.digits, self.pin_state, self.tries = "", PinState.DISABLED, self.limit
        self.verified = False

    @precondition(lambda self: self.key_tries[KeyName.PUK] > 0)
    @rule()
    def outlet_activate(self) -> None:
        assert self.outlet(0x18, 0x00) == 0x9000
        self.active = True

    @precondition(lambda self: self.key_tries[KeyName.PUK] > 0)
    @rule(ins_p2=st.sampled_from([(0x24, 0x00), (0x24, 0x01), (0x18, 0x00)]))
    def outlet_wrong_mac(self, ins_p2: tuple[int, int]) -> None:
        assert self.outlet(*ins_p2, good_mac=False) == 0x6988

    @precondition(lambda self: self.key_tries[KeyName.PUK] == 0)
    @rule()
    def outlet_with_a_locked_puk(self) -> None:
        assert self.authenticate(KeyName.PUK, right=True) == 0x6983
        self.card.reset()  # no PUK state survives: 84 24 is refused
        self.verified = False
        _, sw = self.send(SELECT_SSSE)
        assert sw == 0x9000
        challenge = self.challenge()
        raw = security.secure_apdu(
            self.alg, self.keys[KeyName.PUK], challenge, 0x84, 0x24, 0x00, 0x00, b""
        )
        assert self.send(raw) == (b"", 0x6982)

    # -- what the model predicts --

    def expected_status(self) -> int:
        if not self.active:
            return 0x6985
        if self.tries == 0:
            return 0x6983
        if self.pin_state is PinState.DISABLED or self.verified:
            return 0x9000
        return 0x63C0 | self.tries

    def expected_c1(self) -> bytes:
        states = [PinState.INITIAL, PinState.ENABLED, PinState.DISABLED]
        return bytes(
            (0xC1, 0x04, int(self.active), states.index(self.pin_state), self.tries, self.limit)
        )

    # -- invariants --

    @precondition(lambda self: hasattr(self, "card"))
    @invariant()
    def get_data_tries_match_the_model(self) -> None:
        data, sw = self.send(bytes.fromhex("80CA00C100"))
        assert sw == 0x9000
        assert data[4] == self.tries
        assert data == self.expected_c1()

    @precondition(lambda self: hasattr(self, "card"))
    @invariant()
    def status_query_agrees(self) -> None:
        assert self.send(bytes.fromhex("00200000")) == (b"", self.expected_status())

    @precondition(lambda self: hasattr(self, "card"))
    @invariant()
    def blocked_means_6983(self) -> None:
        if self.active and self.tries == 0:
            saves = len(self.rec.saved)
            candidate = _cn(self.digits or "123456")
            raw = bytes((0x00, 0x20, 0x00, 0x00, len(candidate))) + candidate
            assert self.send(raw) == (b"", 0x6983)
            assert len(self.rec.saved) == saves  # not even a decrement

    @precondition(lambda self: hasattr(self, "card"))
    @invariant()
    def durable_state_is_the_card_state(self) -> None:
        state = self.card.state
        if self.rec.saved:
            assert self.rec.saved[-1] == state
        assert state.tries_left == self.tries
        assert state.pin_state is self.pin_state
        assert state.pin.matches(self.digits)
        assert self.card.verified == self.verified
        assert {k: state.tries_of(k) for k in self.key_tries} == self.key_tries
        assert state.life_cycle is (LifeCycle.ACTIVE if self.active else LifeCycle.NOT_ACTIVATED)


PinCounter.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_pin_counter_model = pytest.mark.slow(PinCounter.TestCase)  # a long stateful run
