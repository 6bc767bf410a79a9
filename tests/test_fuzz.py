"""Random APDUs against every card profile (docs/card.md §3, §4, §5).

- execute never raises and always answers >= 2 bytes ending in a §6 status word
  (never 6F00, the emulator's "bug" word, except where part 5 §6.6.4 gives it: a GET
  RESPONSE with nothing waiting);
- the durable state changes only through VERIFY (00 20 with data: tries_left only),
  CHANGE PIN (80 5E 01 00: PIN, counter, PIN state) or a CLA-84 command with a valid MAC;
- a stateful model of the PIN counter agrees with GET DATA C1 and the status query.
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

from cardio import mac, pin
from cardio.card import files, profiles
from cardio.card.card import VirtualCard
from cardio.card.state import CardState, LifeCycle, PinState
from cardio.resources import fixture_master_key as read_master_key

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
    0x6987,
    0x6988,
    0x6A80,
    0x6A82,
    0x6A83,
    0x6A86,
    0x6A88,
    0x6D00,
    0x6E00,
}
INS_VALUES = [0xA4, 0xB2, 0x20, 0x5E, 0xCA, 0x84, 0xC0, 0x18]


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
change_blocks = st.builds(
    lambda old, sep, new: old + bytes((sep,)) + new,
    pin_blocks,
    st.sampled_from([0xFF, 0xFF, 0xFF, 0x00]),
    pin_blocks,
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
                "outlet-pin",
                "outlet-activate",
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
    elif kind == "outlet-pin":
        cla, ins, p1, p2 = 0x84, 0x5E, 0x00, draw(st.sampled_from([0x00, 0x01, 0x02]))
        body = draw(pin_blocks) if p2 == 0 else b""
        data = body + draw(st.binary(min_size=0, max_size=6))
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
sequences = st.builds(
    lambda start, rest: [*start, *rest],
    st.sampled_from([[], [SELECT_SSSE], [SELECT_SSSE, SELECT_DF04]]),
    st.lists(
        st.one_of(spec_commands(), spec_commands(), random_fields(), raw_apdus, st.just(RESET)),
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
    is_outlet = len(raw) >= 4 and raw[0] == 0x84
    assert is_verify or is_change or is_outlet, (raw.hex(), f"{sw:04X}", "changed the state")
    assert sw == 0x9000 or sw & 0xFFF0 == 0x63C0, (raw.hex(), f"{sw:04X}")
    if is_verify:
        for state in new_saves:
            assert state == before.with_(tries_left=state.tries_left), raw.hex()
    if is_change:
        for state in new_saves:
            assert _pin_fields(state) == _pin_fields(before), raw.hex()
    if is_verify or is_change:
        assert before.life_cycle is LifeCycle.ACTIVE
        assert before.tries_left > 0
        assert new_saves[0].tries_left == before.tries_left - 1  # decrement first (§4)
        if sw == 0x9000:
            assert after.tries_left == after.try_limit
            assert card.verified
        else:
            assert sw & 0x0F == after.tries_left == before.tries_left - 1
            assert len(new_saves) == 1
            assert not card.verified
        if is_change and sw == 0x9000:
            assert after.pin_state is PinState.ENABLED
            assert raw[4] == 7 and len(raw) in (12, 13)  # Lc 07, maybe an Le
            assert after.pin.matches(raw[9:12].hex())
    if is_outlet:
        assert sw == 0x9000
    return sw


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
        bytes.fromhex("845e000007123456deadbeef"),  # no challenge
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
    assert card.execute(bytes.fromhex("845e000007123456deadbeef")) == b"\x69\x84"
    assert card.execute(bytes.fromhex("80ca00c1ff")) == b"\x6c\x06"
    assert card.execute(bytes.fromhex("80ca00c100")) == bytes.fromhex("c10401000606") + b"\x90\x00"
    assert card.state == BASE["employee-new"]


# --- a stateful model of the PIN counter -----------------------------------------------------

MASTER_KEY = read_master_key()


def _pin_of(state: CardState) -> str:
    (found,) = [p for p in KNOWN_PINS if state.pin.matches(p)]
    return found


class PinCounter(RuleBasedStateMachine):
    """Model: life cycle, PIN digits, PIN state, tries, session flag."""

    @initialize(profile=st.sampled_from(PROFILES))
    def start(self, profile: str) -> None:
        state = BASE[profile]
        self.rec = RecordingStore()
        self.card = VirtualCard(state, self.rec)
        self.card.power_on()
        self.t0 = state.t0_style
        self.active = state.life_cycle is LifeCycle.ACTIVE
        self.digits = _pin_of(state)
        self.pin_state = state.pin_state
        self.tries = state.tries_left
        self.limit = state.try_limit
        self.verified = False

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

    def compare(self, candidate: str) -> int:
        """What a comparison answers, and its effect on the model (§4)."""
        if not self.active:
            return 0x6985
        if self.tries == 0:
            return 0x6983
        if candidate == self.digits:
            self.tries = self.limit
            self.verified = True
            return 0x9000
        self.tries -= 1
        self.verified = False
        return 0x63C0 | self.tries

    # -- rules --

    @rule()
    def verify_right(self) -> None:
        expected = self.compare(self.digits)
        assert self.send(bytes.fromhex("0020000003") + pin.encode(self.digits)) == (b"", expected)

    @rule(candidate=st.sampled_from(KNOWN_PINS))
    def verify_wrong(self, candidate: str) -> None:
        if candidate == self.digits:
            candidate = "111111"
        expected = self.compare(candidate)
        assert self.send(bytes.fromhex("0020000003") + pin.encode(candidate)) == (b"", expected)

    @rule()
    def status_query(self) -> None:
        assert self.send(bytes.fromhex("00200000")) == (b"", self.expected_status())

    @rule(new=st.sampled_from(KNOWN_PINS), right_old=st.booleans())
    def change_pin(self, new: str, right_old: bool) -> None:
        old = self.digits if right_old else ("111111" if self.digits != "111111" else "222222")
        expected = self.compare(old)
        if expected == 0x9000:
            self.digits, self.pin_state = new, PinState.ENABLED
        raw = bytes.fromhex("805E010007") + pin.change_block(old, new)
        assert self.send(raw) == (b"", expected)

    @rule(bad=st.sampled_from(["lc", "separator", "nibble"]))
    def change_pin_bad_format(self, bad: str) -> None:
        block = pin.change_block(self.digits, "975318")
        if bad == "lc":
            raw = bytes.fromhex("805E010006") + block[:6]
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

    def outlet(self, ins: int, p2: int, body: bytes) -> int:
        challenge, sw = self.send(bytes.fromhex("0084000008"))
        assert sw == 0x9000 and len(challenge) == 8
        state = self.card.state
        key = mac.card_key(MASTER_KEY, state.card.identification_code)
        _, sw = self.send(mac.protect(key, challenge, 0x84, ins, 0x00, p2, body))
        return sw

    @rule(new=st.sampled_from(KNOWN_PINS))
    def outlet_unblock(self, new: str) -> None:
        assert self.outlet(0x5E, 0x00, pin.encode(new)) == 0x9000
        self.digits, self.pin_state, self.tries = new, PinState.ENABLED, self.limit
        self.verified = False

    @rule()
    def outlet_restore_initial(self) -> None:
        assert self.outlet(0x5E, 0x01, b"") == 0x9000
        self.digits, self.pin_state, self.tries = "123456", PinState.INITIAL, self.limit
        self.verified = False

    @rule()
    def outlet_cancel(self) -> None:
        assert self.outlet(0x5E, 0x02, b"") == 0x9000
        self.pin_state, self.tries = PinState.DISABLED, self.limit
        self.verified = False

    @rule()
    def outlet_activate(self) -> None:
        assert self.outlet(0x18, 0x00, b"") == 0x9000
        self.active = True

    @rule(ins=st.sampled_from([0x5E, 0x18]))
    def outlet_wrong_mac(self, ins: int) -> None:
        challenge, sw = self.send(bytes.fromhex("0084000008"))
        assert sw == 0x9000
        body = b"" if ins == 0x18 else pin.encode("999999")
        raw = bytes((0x84, ins, 0, 0, len(body) + 4)) + body + b"\x00\x00\x00\x00"
        expected = mac.mac(self.card.state.card_key, challenge, raw[:5], body)
        if expected == b"\x00\x00\x00\x00":  # pragma: no cover - one in 2**32
            return
        assert self.send(raw) == (b"", 0x6988)

    # -- what the model predicts --

    def expected_status(self) -> int:
        if not self.active:
            return 0x6985
        if self.tries == 0:
            return 0x6983
        return 0x9000 if self.verified else 0x63C0 | self.tries

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
            assert self.send(bytes.fromhex("0020000003") + pin.encode(self.digits)) == (b"", 0x6983)
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


PinCounter.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_pin_counter_model = pytest.mark.slow(PinCounter.TestCase)  # a long stateful run
