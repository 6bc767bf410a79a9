"""The card's commands under its keys, against the standard (parts 4, 5 and 7).

Each test is named after the part and section it proves: p5_6_4 is part 5 §6.4. The
cryptograms and MACs are built here from cardio.security's primitives (or, in the
written-out tests, from the block cipher itself) and the card's own keys as its card
file holds them, never by asking the card. `ours_` tests cover our activation (84 18).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from card_helpers import (
    ENABLED_PIN,
    INITIAL_PIN,
    OK,
    SELECT_SSSE,
    RecordingStore,
    data_of,
    h,
    pin_status,
    status_query,
    sw_of,
    transmit,
    verify,
)

from cardio import security
from cardio.card import profiles
from cardio.card.card import VirtualCard
from cardio.card.keyed import UNCOUNTED
from cardio.card.state import CardState, LifeCycle, PinState
from cardio.card.store import FileStore
from cardio.issuer import (
    KEYS,
    Issuer,
    KeyName,
    card_keys,
    counterfeit_issuer,
    fixture_issuer,
)
from cardio.model import Algorithm
from cardio.resources import data_dir

RAW = h("A1 A2 A3 A4 A5 A6 A7 A8")  # the terminal's 8 bytes of raw data (part 5 §6.4.3)
SELECT_DF04 = "00 A4 00 00 02 DF 04"
SELECT_MF = "00 A4 00 00 02 3F 00"
# The reference of each key: EXTERNAL AUTHENTICATE's P2 (part 9 table B1; RKSSSE ours)
REFERENCE = {
    KeyName.STKSSSE: 0x02,
    KeyName.UK: 0x04,
    KeyName.BK: 0x05,
    KeyName.PUK: 0x06,
    KeyName.RKSSSE: 0x07,
    KeyName.STKDF04: 0x82,
    KeyName.LKDF04: 0x83,
    KeyName.RK1DF04: 0x84,
    KeyName.UK1DF04: 0x85,
}
SSSE_KEYS = [KeyName.STKSSSE, KeyName.UK, KeyName.BK, KeyName.PUK, KeyName.RKSSSE]
DF04_KEYS = [KeyName.STKDF04, KeyName.LKDF04, KeyName.RK1DF04, KeyName.UK1DF04]


# --- a terminal that holds the card's keys ------------------------------------------------


def des_state(profile: str = "employee-new", **kwargs: object) -> CardState:
    """A DES card (3DES, 16-byte keys) whose keys are the test issuer's masters
    dispersed with DES (part 9 §7.1.1, §7.3)."""
    state = profiles.make(profile, **kwargs)
    issuer = Issuer(Algorithm.DES, fixture_issuer().masters)
    keys = card_keys(issuer, state.card.identification_code, state.historical)
    return state.with_(algorithm=Algorithm.DES, keys=keys)


@dataclass
class Terminal:
    """The card, and the card's keys as the issuer knows them (`issued`)."""

    card: VirtualCard
    issued: CardState

    @property
    def alg(self) -> Algorithm:
        return self.issued.algorithm

    def key(self, name: KeyName) -> bytes:
        return self.issued.keys[name]

    def send(self, apdu: str | bytes) -> bytes:
        return self.card.execute(h(apdu) if isinstance(apdu, str) else apdu)

    def sw(self, apdu: str | bytes) -> int:
        return sw_of(self.send(apdu))

    def select(self, where: str) -> None:
        """MF, SSSE or DF04 (under the SSSE)."""
        if where == "MF":
            assert sw_of(transmit(self.card, SELECT_MF)) == OK
            return
        assert sw_of(transmit(self.card, SELECT_SSSE)) == OK
        if where == "DF04":
            assert sw_of(transmit(self.card, SELECT_DF04)) == OK

    def challenge(self, le: int = 8) -> bytes:
        resp = self.send(bytes((0x00, 0x84, 0x00, 0x00, le)))
        assert sw_of(resp) == OK, resp.hex()
        assert len(data_of(resp)) == le
        return data_of(resp)

    def auth_data(self, name: KeyName, challenge: bytes, raw: bytes = RAW) -> bytes:
        return security.authentication(self.alg, self.key(name), challenge, raw)

    def external_authenticate(
        self,
        name: KeyName,
        *,
        p2: int | None = None,
        using: bytes | None = None,
        version: int | None = None,
        challenge: bytes | None = None,
    ) -> int:
        """GET CHALLENGE (unless given), then 00 82 00 P2 with the cryptogram of the key
        `name` (or of the key bytes `using`) over RAW."""
        challenge = self.challenge() if challenge is None else challenge
        key = self.key(name) if using is None else using
        data = security.authentication(self.alg, key, challenge, RAW) + RAW
        if version is not None:
            data += bytes((version,))
        p2 = REFERENCE[name] if p2 is None else p2
        return self.sw(bytes((0x00, 0x82, 0x00, p2, len(data))) + data)

    def protected(
        self,
        name: KeyName,
        ins: int,
        p1: int,
        p2: int,
        body: bytes = b"",
        *,
        challenge: bytes | None = None,
        using: bytes | None = None,
    ) -> bytes:
        """The whole MAC-protected APDU (part 4 §8.2.4) under the session key of `name`
        for a fresh challenge (or the one given)."""
        challenge = self.challenge() if challenge is None else challenge
        key = self.key(name) if using is None else using
        return security.secure_apdu(self.alg, key, challenge, 0x84, ins, p1, p2, body)

    def pin_element(self, challenge: bytes, digits: str) -> bytes:
        """The encrypted PIN element (part 4 §8.3) under the PUK's session key."""
        session = security.session_key(self.alg, self.key(KeyName.PUK), challenge)
        return security.encrypt(self.alg, session, security.pin_block(digits))

    def pin_change_apdu(self, p2: int, digits: str | None = None) -> bytes:
        """84 24 00 P2: a fresh challenge, the PIN (if any) encrypted, the MAC."""
        challenge = self.challenge()
        body = b"" if digits is None else self.pin_element(challenge, digits)
        return self.protected(KeyName.PUK, 0x24, 0x00, p2, body, challenge=challenge)

    def pin_change(self, p2: int, digits: str | None = None) -> int:
        return self.sw(self.pin_change_apdu(p2, digits))


def terminal(
    profile: str = "employee-new",
    where: str | None = "SSSE",
    *,
    store: object | None = None,
    state: CardState | None = None,
    random=None,
) -> Terminal:
    issued = state if state is not None else profiles.load(profile)
    kwargs = {} if random is None else {"random": random}
    card = VirtualCard(issued, store, **kwargs)
    card.power_on()
    t = Terminal(card, issued)
    if where is not None:
        t.select(where)
    return t


def counting_random():
    """Random bytes 00.., 01.., ...: each draw differs and is counted."""
    drawn: list[bytes] = []

    def random(n: int) -> bytes:
        value = bytes((len(drawn) + 0x10,)) * n
        drawn.append(value)
        return value

    return random, drawn


def verify_cn(card: VirtualCard, digits: str) -> int:
    """VERIFY of a PIN of any length, compressed numeric (part 5 §6.14)."""
    block = security.pin_block(digits)
    return sw_of(card.execute(h("00 20 00 00") + bytes((len(block),)) + block))


def card_file(tmp_path: Path, profile: str = "employee-new") -> Path:
    path = tmp_path / "card.json"
    profiles.new_card(profile, path)
    return path


def on_disk(path: Path) -> dict:
    return json.loads(path.read_text("utf-8"))


class _Killed(BaseException):
    """The process dies (not an Exception: nothing in the card may catch it)."""


class _DiesOnSecondWrite(RecordingStore):
    def save(self, state: CardState) -> None:
        if len(self.saved) == 1:
            raise _Killed
        super().save(state)


def _sm4(key: bytes, block: bytes) -> bytes:
    """One SM4 block, from the cipher library itself (not cardio.security)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _fixture_key(profile: str, name: KeyName) -> bytes:
    """A key as the fixture's card file writes it (secrets.keys)."""
    doc = json.loads((data_dir("cards") / f"{profile}.json").read_text("utf-8"))
    return bytes.fromhex(doc["secrets"]["keys"][name.value])


# ---------------------------------------------------------------------------------------
# Part 9 §7.3, part 4 §8-§9: the keys and the algorithms, written out
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["employee-new", "locked", "t0-employee-new"])
def test_p9_7_3_card_keys_are_the_test_issuers_masters_dispersed_for_this_card(profile):
    state = profiles.load(profile)
    expected = card_keys(fixture_issuer(), state.card.identification_code, state.historical)
    assert state.keys == expected
    assert set(state.keys) == set(KeyName)
    assert len(set(state.keys.values())) == len(KeyName)  # one key per purpose


def test_p9_7_3_two_cards_never_share_a_key():
    a, b = profiles.load("employee-new").keys, profiles.load("employee-enabled").keys
    assert not set(a.values()) & set(b.values())


def test_p4_9_3_2_internal_authenticate_sm4_written_out():
    """Part 4 §8.4.2 and §9.3.2, block by block: KS = SM4(IRK, R1 ‖ 00×8);
    Y = SM4(KS, R2 ‖ 00×8); the answer is Y's left half XOR its right half."""
    irk = _fixture_key("employee-new", KeyName.IRK)
    r1, r2 = h("01 23 45 67 89 AB CD EF"), h("FE DC BA 98 76 54 32 10")
    session = _sm4(irk, r1 + bytes(8))
    y = _sm4(session, r2 + bytes(8))
    t = terminal()
    assert t.send("00 88 00 00 10" + (r1 + r2).hex() + "00") == _xor(y[:8], y[8:]) + h("90 00")


def test_p4_8_2_4_2_mac_of_pin_unblock_written_out_is_accepted():
    """Part 4 §8.2.4.2: the MAC of 84 24 00 00 04 (Lc counting the MAC) padded 80 00…
    to one block, CBC from a zero IV under SM4(PUK, challenge ‖ 00×8), the last block's
    four 4-byte pieces XORed. Part 7 §13.3: the locked PIN counts again."""
    puk = _fixture_key("locked", KeyName.PUK)
    t = terminal("locked")
    assert t.external_authenticate(KeyName.PUK) == OK
    challenge = t.challenge()
    session = _sm4(puk, challenge + bytes(8))
    header = h("84 24 00 00 04")
    block = header + b"\x80" + bytes(10)
    last = _sm4(session, _xor(bytes(16), block))
    mac = _xor(_xor(last[0:4], last[4:8]), _xor(last[8:12], last[12:16]))
    assert t.send(header + mac) == h("90 00")
    assert pin_status(t.card) == (0x01, 0x01, 6, 6)
    assert verify(t.card, ENABLED_PIN) == OK


def test_p4_8_3_encrypted_pin_written_out_is_accepted():
    """Part 4 §8.3.3.2: LD ‖ PIN (cn) ‖ 80 00… to one block, SM4-ECB under the PUK's
    session key; the MAC over the header and the cryptogram (§8.2.4.2)."""
    puk = _fixture_key("employee-new", KeyName.PUK)
    t = terminal()
    assert t.external_authenticate(KeyName.PUK) == OK
    challenge = t.challenge()
    session = _sm4(puk, challenge + bytes(8))
    cryptogram = _sm4(session, h("03 24 68 02 80") + bytes(11))
    header = h("84 24 00 01 14")
    chained = _sm4(session, _xor(bytes(16), header + cryptogram[:11]))
    last = _sm4(session, _xor(chained, cryptogram[11:] + b"\x80" + bytes(10)))
    mac = _xor(_xor(last[0:4], last[4:8]), _xor(last[8:12], last[12:16]))
    assert t.send(header + cryptogram + mac) == h("90 00")
    assert verify(t.card, "246802") == OK


# ---------------------------------------------------------------------------------------
# Part 5 §6.5 GET CHALLENGE
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("le", [0x04, 0x08, 0x10])
def test_p5_6_5_get_challenge_le_04_08_10_on_an_sm4_card(le):
    random, drawn = counting_random()
    t = terminal(random=random)
    assert t.send(bytes((0x00, 0x84, 0x00, 0x00, le))) == drawn[0] + h("90 00")
    assert len(drawn[0]) == le


@pytest.mark.parametrize("le", [0x04, 0x08])
def test_p5_6_5_get_challenge_le_04_08_on_a_des_card(le):
    random, drawn = counting_random()
    t = terminal(state=des_state(), random=random)
    assert t.send(bytes((0x00, 0x84, 0x00, 0x00, le))) == drawn[0] + h("90 00")
    assert len(drawn[0]) == le


def test_p5_6_5_get_challenge_le_10_on_a_des_card_is_6700():
    """Part 5 §6.5, part 4 §8.4.1: an 8-byte-block card takes randoms of 4 or 8 bytes."""
    random, drawn = counting_random()
    t = terminal(state=des_state(), random=random)
    assert t.send("00 84 00 00 10") == h("67 00")
    assert drawn == []


@pytest.mark.parametrize("le", ["", "00", "01", "03", "05", "09", "0F", "11", "20", "FF"])
@pytest.mark.parametrize("profile", ["employee-new", "t0-employee-new"])
def test_p5_6_5_get_challenge_any_other_le_is_6700_and_draws_nothing(profile, le):
    """Part 5 table 18: a wrong Le is 6700 (not 6Cxx), on a T=0 card too."""
    random, drawn = counting_random()
    t = terminal(profile, random=random)
    assert t.send("00 84 00 00 " + le) == h("67 00")
    assert drawn == []
    assert t.send("00 C0 00 00 08") in (h("6F 00"), h("6D 00"))  # nothing waits


@pytest.mark.parametrize("apdu", ["00 84 01 00 08", "00 84 00 01 08", "00 84 80 80 08"])
def test_p5_6_5_get_challenge_p1_p2_is_6a86(apdu):
    assert terminal().send(apdu) == h("6A 86")


def test_p5_6_5_get_challenge_with_data_is_6700():
    assert terminal().send("00 84 00 00 02 00 00 08") == h("67 00")


def test_p5_6_5_get_challenge_under_another_class_is_6e00():
    assert terminal().send("80 84 00 00 08") == h("6E 00")


@pytest.mark.parametrize("le", [0x04, 0x08, 0x10])
def test_p4_8_4_2_each_challenge_length_feeds_the_session_key(le):
    """Part 4 §8.4.2: a 4, 8 or 16-byte random, padded with 00 to a block."""
    t = terminal()
    challenge = t.challenge(le)
    assert t.external_authenticate(KeyName.RKSSSE, challenge=challenge) == OK


@pytest.mark.parametrize("le", [0x04, 0x08])
def test_p4_8_4_1_each_challenge_length_feeds_a_des_session_key(le):
    t = terminal(state=des_state())
    challenge = t.challenge(le)
    assert t.external_authenticate(KeyName.RKSSSE, challenge=challenge) == OK


def test_p5_6_5_a_challenge_is_used_once():
    store = RecordingStore()
    t = terminal(store=store)
    challenge = t.challenge()
    assert t.external_authenticate(KeyName.RKSSSE, challenge=challenge) == OK
    saves = len(store.saved)
    assert t.external_authenticate(KeyName.RKSSSE, challenge=challenge) == 0x6984
    assert len(store.saved) == saves  # no try spent without a challenge


def test_p5_6_5_only_the_last_challenge_counts():
    t = terminal()
    first = t.challenge()
    t.challenge()
    assert t.external_authenticate(KeyName.RKSSSE, challenge=first) == 0x63C2


def test_p5_6_5_a_refused_command_also_spends_the_challenge():
    t = terminal()
    challenge = t.challenge()
    bad = security.authentication(t.alg, t.key(KeyName.BK), challenge, RAW)
    assert t.sw(h("00 82 00 07 10") + bad + RAW) == 0x63C2
    assert t.external_authenticate(KeyName.RKSSSE, challenge=challenge) == 0x6984
    assert t.card.state.tries_of(KeyName.RKSSSE) == 2  # the second guess cost nothing


@pytest.mark.parametrize(
    "between",
    [
        SELECT_SSSE,  # a successful SELECT (of the DF already current)
        "00 A4 00 00 02 AB CD",  # a failing SELECT
        "00 A4 02 00 02 EF 05",  # an EF
        "00 B2 01 2C 00",  # 6Cxx
        "80 CA 00 C1 00",  # GET DATA
        "00 20 00 00",  # the empty VERIFY
        "00 88 00 00 10" + "00" * 16 + "00",  # INTERNAL AUTHENTICATE
        "00 84 00 00 03",  # a GET CHALLENGE refused
        "00 FF 00 00",  # unknown INS
        "FF A4 00 00 02 3F 00",  # unknown CLA
        "00",  # too short
        "",  # nothing at all
        "00 B2 01 2C 00 00 20",  # extended length
        "00 C0 00 00 08",  # GET RESPONSE on a card that is not T=0-style: 6D00
        "84 24 00 00 02 00 00",  # a MAC-protected command, malformed
    ],
)
def test_p5_6_5_a_challenge_is_spent_by_the_next_command_whatever_it_is(between):
    t = terminal()
    challenge = t.challenge()
    t.send(between)
    assert t.external_authenticate(KeyName.RKSSSE, challenge=challenge) == 0x6984
    assert t.card.state.tries_of(KeyName.RKSSSE) == 3


def test_p5_6_5_a_challenge_does_not_survive_a_reset():
    t = terminal()
    challenge = t.challenge()
    t.card.reset()
    t.select("SSSE")
    assert t.external_authenticate(KeyName.RKSSSE, challenge=challenge) == 0x6984


# ---------------------------------------------------------------------------------------
# Part 5 §6.7 INTERNAL AUTHENTICATE, part 7 §5.4 (is the card genuine?)
# ---------------------------------------------------------------------------------------


R1, R2 = h("11 22 33 44 55 66 77 88"), h("99 AA BB CC DD EE FF 00")


@pytest.mark.parametrize("profile", ["employee-new", "pension-new", "locked", "not-activated"])
def test_p5_6_7_internal_authenticate_answers_the_irk_cryptogram(profile):
    t = terminal(profile)
    expected = security.authentication(t.alg, t.key(KeyName.IRK), R1, R2)
    assert t.send(h("00 88 00 00 10") + R1 + R2 + h("00")) == expected + h("90 00")
    assert t.send(h("00 88 00 00 10") + R1 + R2) == expected + h("90 00")  # Le absent


def test_p5_6_7_internal_authenticate_on_a_des_card():
    t = terminal(state=des_state())
    expected = security.authentication(Algorithm.DES, t.key(KeyName.IRK), R1, R2)
    assert len(expected) == 8
    assert t.send(h("00 88 00 00 10") + R1 + R2 + h("00")) == expected + h("90 00")


def test_p5_6_7_internal_authenticate_lc_11_with_key_version_01():
    t = terminal()
    expected = security.authentication(t.alg, t.key(KeyName.IRK), R1, R2)
    assert t.send(h("00 88 00 00 11") + R1 + R2 + h("01 00")) == expected + h("90 00")


@pytest.mark.parametrize("version", [0x00, 0x02, 0x03, 0xFF])
def test_p5_6_7_internal_authenticate_another_key_version_is_6a88(version):
    """Part 5 table 23: 6A88 key not found (the card holds key version 01 only)."""
    t = terminal()
    assert t.send(h("00 88 00 00 11") + R1 + R2 + bytes((version, 0))) == h("6A 88")


@pytest.mark.parametrize("apdu", ["00 88 01 00 10", "00 88 00 01 10", "00 88 00 80 10"])
def test_p5_6_7_internal_authenticate_p1_p2_is_6a86(apdu):
    assert terminal().send(h(apdu) + R1 + R2 + h("00")) == h("6A 86")


@pytest.mark.parametrize("length", [0, 1, 8, 15, 18, 32])
def test_p5_6_7_internal_authenticate_lc_other_than_10_11_is_6700(length):
    data = bytes(range(1, length + 1))
    apdu = h("00 88 00 00") + (bytes((length,)) + data if length else b"") + h("00")
    assert terminal().send(apdu) == h("67 00")


def test_p5_6_7_internal_authenticate_short_le_is_6c08():
    assert terminal().send(h("00 88 00 00 10") + R1 + R2 + h("04")) == h("6C 08")


def test_p5_6_7_internal_authenticate_depends_on_both_halves():
    t = terminal()
    answers = {
        data_of(t.send(h("00 88 00 00 10") + r1 + r2 + h("00")))
        for r1, r2 in [(R1, R2), (R2, R1), (R1, R1), (bytes(8), R2)]
    }
    assert len(answers) == 4


def test_p5_6_7_internal_authenticate_costs_nothing_and_changes_nothing():
    store = RecordingStore()
    t = terminal(store=store)
    before = t.card.state
    for _ in range(5):
        assert sw_of(t.send(h("00 88 00 00 10") + R1 + R2 + h("00"))) == OK
    assert store.saved == []
    assert t.card.state == before


def test_p5_6_7_t0_card_announces_the_answer_with_6108():
    """Part 2 §9.3.1.4: INTERNAL AUTHENTICATE is case 4: 61 08, then GET RESPONSE."""
    t = terminal("t0-employee-new")
    expected = security.authentication(t.alg, t.key(KeyName.IRK), R1, R2)
    assert t.send(h("00 88 00 00 10") + R1 + R2 + h("00")) == h("61 08")
    assert t.send("00 C0 00 00 08") == expected + h("90 00")


def test_p7_5_4_counterfeit_card_fails_the_authenticity_check():
    """Part 7 §5.4: the terminal recomputes the answer with the IRK dispersed from the
    issuer's master; the counterfeit card's IRK comes from another issuer."""
    state = profiles.make("counterfeit")
    t = terminal(state=state)
    genuine_irk = card_keys(fixture_issuer(), state.card.identification_code, state.historical)[
        KeyName.IRK
    ]
    other_irk = card_keys(counterfeit_issuer(), state.card.identification_code, state.historical)[
        KeyName.IRK
    ]
    answer = data_of(t.send(h("00 88 00 00 10") + R1 + R2 + h("00")))
    assert answer != security.authentication(t.alg, genuine_irk, R1, R2)
    assert answer == security.authentication(t.alg, other_irk, R1, R2)


def test_p7_5_4_counterfeit_profile_file_also_fails_it():
    state = profiles.load("counterfeit")
    genuine = card_keys(fixture_issuer(), state.card.identification_code, state.historical)
    t = terminal("counterfeit")
    answer = data_of(t.send(h("00 88 00 00 10") + R1 + R2 + h("00")))
    assert len(answer) == 8
    assert answer != security.authentication(t.alg, genuine[KeyName.IRK], R1, R2)


def test_p7_5_4_a_genuine_card_passes_the_authenticity_check():
    state = profiles.make("employee-new")
    t = terminal(state=state)
    genuine = card_keys(fixture_issuer(), state.card.identification_code, state.historical)
    answer = data_of(t.send(h("00 88 00 00 10") + R1 + R2 + h("00")))
    assert answer == security.authentication(t.alg, genuine[KeyName.IRK], R1, R2)


# ---------------------------------------------------------------------------------------
# Part 5 §6.4 EXTERNAL AUTHENTICATE, part 7 §6.6
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SSSE_KEYS + DF04_KEYS)
def test_p5_6_4_external_authenticate_each_key_by_its_p2(name):
    where = "DF04" if name in DF04_KEYS else "SSSE"
    store = RecordingStore()
    t = terminal(where=where, store=store)
    assert t.external_authenticate(name) == OK
    # decrement, then restore; the block commands' keys keep no counter (part 7 §13)
    expected = [] if name in UNCOUNTED else [2, 3]
    assert [s.tries_of(name) for s in store.saved] == expected
    assert t.card.state.key_tries == t.issued.key_tries  # every counter full again


@pytest.mark.parametrize("name", SSSE_KEYS + DF04_KEYS)
def test_p5_6_4_p2_names_the_key_another_keys_cryptogram_fails(name):
    """The cryptogram of any other key under this P2 fails, and costs this key a try
    (none for the block commands' keys, part 7 §13.1-§13.2: 63C3, nothing counted)."""
    where = "DF04" if name in DF04_KEYS else "SSSE"
    t = terminal(where=where)
    others = [k for k in SSSE_KEYS + DF04_KEYS + [KeyName.IRK] if k is not name]
    for other in others[:3]:
        t.card.reset()
        t.select(where)
        wrong = 0x63C3 if name in UNCOUNTED else 0x63C2
        assert t.external_authenticate(name, using=t.key(other)) == wrong
        assert t.external_authenticate(name) == OK  # and back to 3
    assert {k: t.card.state.tries_of(k) for k in REFERENCE} == dict.fromkeys(REFERENCE, 3)


@pytest.mark.parametrize("name", SSSE_KEYS)
def test_p5_6_4_an_ssse_key_is_global_reference_data_also_from_df04(name):
    """Table 14: b8 = 0 names a key of the SSSE, whatever DF is current below it."""
    assert terminal(where="DF04").external_authenticate(name) == OK


def test_p5_6_4_external_authenticate_on_a_des_card():
    t = terminal(state=des_state())
    assert t.external_authenticate(KeyName.RKSSSE) == OK
    assert t.external_authenticate(KeyName.PUK, using=t.key(KeyName.UK)) == 0x63C2


def test_p5_6_4_lc_11_with_key_version_01():
    t = terminal()
    assert t.external_authenticate(KeyName.RKSSSE, version=0x01) == OK


@pytest.mark.parametrize("version", [0x00, 0x02, 0xFF])
def test_p5_6_4_another_key_version_is_6a88_without_a_try(version):
    store = RecordingStore()
    t = terminal(store=store)
    assert t.external_authenticate(KeyName.RKSSSE, version=version) == 0x6A88
    assert store.saved == []


def test_p5_6_4_no_challenge_is_6984_without_a_try():
    store = RecordingStore()
    t = terminal(store=store)
    data = t.auth_data(KeyName.RKSSSE, bytes(8)) + RAW
    assert t.sw(h("00 82 00 07 10") + data) == 0x6984
    assert store.saved == []


def test_p5_6_4_external_authenticate_wrong_cryptogram_costs_a_try():
    """Part 7 §6.6: 63C2, 63C1, 63C0 (the key locks), then 6983 without comparing."""
    store = RecordingStore()
    t = terminal(store=store)
    wrong = t.key(KeyName.UK)
    codes = [t.external_authenticate(KeyName.RKSSSE, using=wrong) for _ in range(3)]
    assert codes == [0x63C2, 0x63C1, 0x63C0]
    assert [s.tries_of(KeyName.RKSSSE) for s in store.saved] == [2, 1, 0]
    saves = len(store.saved)
    assert t.external_authenticate(KeyName.RKSSSE) == 0x6983  # the right one, too late
    assert t.sw(h("00 82 00 07 10") + bytes(16)) == 0x6983  # no challenge: still 6983 first
    assert len(store.saved) == saves  # nothing compared, nothing written
    assert t.sw("00 B0 87 00 00") == 0x6982  # and the key proved nothing
    # the other keys are untouched
    assert {k: t.card.state.tries_of(k) for k in REFERENCE if k is not KeyName.RKSSSE} == {
        k: 3 for k in REFERENCE if k is not KeyName.RKSSSE
    }


def test_p7_6_6_right_cryptogram_restores_the_counter_to_3():
    t = terminal()
    wrong = t.key(KeyName.STKSSSE)
    assert t.external_authenticate(KeyName.PUK, using=wrong) == 0x63C2
    assert t.external_authenticate(KeyName.PUK, using=wrong) == 0x63C1
    assert t.external_authenticate(KeyName.PUK) == OK
    assert t.card.state.tries_of(KeyName.PUK) == 3
    assert t.external_authenticate(KeyName.PUK, using=wrong) == 0x63C2


def test_p7_6_6_right_cryptogram_decrements_on_disk_then_restores():
    """The PIN's order (docs/card.md §4): the decrement is durable before the compare."""
    store = RecordingStore()
    t = terminal(store=store)
    before = t.card.state
    assert t.external_authenticate(KeyName.PUK) == OK
    puk_2 = before.with_(key_tries={**before.key_tries, KeyName.PUK: 2})
    assert store.saved == [puk_2, before.with_(key_tries={**before.key_tries, KeyName.PUK: 3})]


def test_p7_6_6_killed_between_decrement_and_restore_never_gains_a_try():
    store = _DiesOnSecondWrite()
    t = terminal(store=store)
    with pytest.raises(_Killed):
        t.external_authenticate(KeyName.PUK)
    assert [s.tries_of(KeyName.PUK) for s in store.saved] == [2]


def test_p7_6_6_the_key_counter_survives_a_reset_and_is_in_the_card_file(tmp_path):
    path = card_file(tmp_path)
    with FileStore(path) as fs:
        state = fs.open()
        t = Terminal(VirtualCard(state, fs), state)
        t.card.power_on()
        t.select("SSSE")
        assert t.external_authenticate(KeyName.PUK, using=t.key(KeyName.BK)) == 0x63C2
        assert on_disk(path)["key_tries"]["PUK"] == 2
        t.card.reset()
        assert t.card.state.tries_of(KeyName.PUK) == 2
        t.select("SSSE")
        assert t.external_authenticate(KeyName.PUK, using=t.key(KeyName.BK)) == 0x63C1
        assert on_disk(path)["key_tries"] == {
            "STKSSSE": 3, "UK": 3, "BK": 3, "PUK": 1, "RKSSSE": 3,
            "STKDF04": 3, "LKDF04": 3, "RK1DF04": 3, "UK1DF04": 3,
        }  # fmt: skip
    with FileStore(path) as fs:  # the card taken out and put back: the file says 1
        state = fs.open()
        assert state.tries_of(KeyName.PUK) == 1
        t = Terminal(VirtualCard(state, fs), state)
        t.card.power_on()
        t.select("SSSE")
        assert t.external_authenticate(KeyName.PUK) == OK
        assert on_disk(path)["key_tries"]["PUK"] == 3


def test_p7_6_6_a_locked_key_stays_locked_in_the_card_file(tmp_path):
    path = card_file(tmp_path)
    with FileStore(path) as fs:
        state = fs.open()
        t = Terminal(VirtualCard(state, fs), state)
        t.card.power_on()
        t.select("SSSE")
        for _ in range(3):
            t.external_authenticate(KeyName.RKSSSE, using=t.key(KeyName.UK))
    with FileStore(path) as fs:
        state = fs.open()
        assert on_disk(path)["key_tries"]["RKSSSE"] == 0
        t = Terminal(VirtualCard(state, fs), state)
        t.card.power_on()
        t.select("SSSE")
        assert t.external_authenticate(KeyName.RKSSSE) == 0x6983


@pytest.mark.parametrize("p2", [0x00, 0x80])
@pytest.mark.parametrize("where", ["SSSE", "DF04"])
def test_p5_6_4_p2_00_and_80_are_6a86(where, p2):
    """Table 14: 00 is the reserved key; 80 is key number 0 of the current DF."""
    store = RecordingStore()
    t = terminal(where=where, store=store)
    assert t.external_authenticate(KeyName.PUK, p2=p2) == 0x6A86
    assert store.saved == []


def test_p5_6_4_p1_not_00_is_6a86():
    t = terminal()
    challenge = t.challenge()
    data = t.auth_data(KeyName.PUK, challenge) + RAW
    assert t.sw(h("00 82 01 06 10") + data) == 0x6A86


@pytest.mark.parametrize(
    ("where", "p2"),
    [
        ("SSSE", 0x01),  # no key 01
        ("SSSE", 0x03),
        ("SSSE", 0x08),
        ("SSSE", 0x0F),
        ("SSSE", 0x82),  # DF04's keys, with the SSSE current
        ("SSSE", 0x83),
        ("SSSE", 0x84),
        ("SSSE", 0x85),
        ("SSSE", 0x86),  # UK2DF04: not on our card
        ("DF04", 0x81),
        ("DF04", 0x86),
        ("DF04", 0x01),
        ("MF", 0x06),  # no keys at the MF
        ("MF", 0x07),
        ("MF", 0x84),
    ],
)
def test_p5_6_4_an_unknown_or_other_df_key_is_6a88_without_a_try(where, p2):
    store = RecordingStore()
    t = terminal(where=where, store=store)
    assert t.external_authenticate(KeyName.PUK, p2=p2) == 0x6A88
    assert store.saved == []


def test_p5_6_4_a_df04_key_works_only_with_df04_selected():
    t = terminal()
    assert t.external_authenticate(KeyName.RK1DF04) == 0x6A88
    t.select("DF04")
    assert t.external_authenticate(KeyName.RK1DF04) == OK
    t.select("MF")
    assert t.external_authenticate(KeyName.RK1DF04) == 0x6A88
    assert t.card.state.tries_of(KeyName.RK1DF04) == 3


@pytest.mark.parametrize("length", [0, 8, 15, 18])
def test_p5_6_4_lc_other_than_10_11_is_6700_without_a_try(length):
    store = RecordingStore()
    t = terminal(store=store)
    t.challenge()
    data = bytes(length)
    apdu = h("00 82 00 07") + (bytes((length,)) + data if length else b"")
    assert t.sw(apdu) == 0x6700
    assert store.saved == []


def test_p5_6_4_external_authenticate_under_another_class_is_6e00():
    t = terminal()
    challenge = t.challenge()
    assert t.sw(h("80 82 00 07 10") + t.auth_data(KeyName.RKSSSE, challenge) + RAW) == 0x6E00


def test_p7_6_6_a_failed_authentication_proves_nothing():
    t = terminal("locked")
    assert t.external_authenticate(KeyName.PUK, using=t.key(KeyName.STKSSSE)) == 0x63C2
    assert t.pin_change(0x00) == 0x6982
    assert pin_status(t.card) == (0x01, 0x01, 0, 6)


def test_p7_6_6_a_key_state_ends_at_reset():
    t = terminal()
    assert t.external_authenticate(KeyName.RKSSSE) == OK
    assert sw_of(t.send("00 B0 87 00 08")) == OK
    t.card.reset()
    t.select("SSSE")
    assert t.sw("00 B0 87 00 08") == 0x6982
    t.card.power_off()
    t.card.power_on()
    t.select("SSSE")
    assert t.sw("00 B0 87 00 08") == 0x6982


def test_p7_6_6_an_ssse_key_state_lasts_through_df04_and_ends_at_the_mf():
    """Part 7 §6.6, docs/card.md §4: an SSSE key's state belongs to the SSSE and what
    lies under it; selecting the MF leaves it."""
    t = terminal()
    assert t.external_authenticate(KeyName.RKSSSE) == OK
    assert t.sw(SELECT_DF04) == OK
    assert t.sw(SELECT_SSSE) == OK
    assert sw_of(t.send("00 B0 87 00 08")) == OK
    assert t.sw("00 A4 02 00 02 EF 05") == OK  # an EF: the DF stays
    assert t.sw(SELECT_SSSE) == OK  # the current DF again
    assert sw_of(t.send("00 B0 87 00 08")) == OK
    t.select("MF")
    t.select("SSSE")
    assert t.sw("00 B0 87 00 08") == 0x6982


def test_p7_6_6_a_df04_key_state_ends_when_df04_is_left():
    t = terminal(where="DF04")
    assert t.external_authenticate(KeyName.LKDF04) == OK
    assert t.sw(SELECT_SSSE) == OK
    assert t.sw(SELECT_DF04) == OK
    assert t.sw(t.protected(KeyName.STKDF04, 0x1E, 0x00, 0x01)) == 0x6982
    assert not t.card.state.application_blocked


def test_p7_6_6_a_df04_key_state_lasts_while_df04_stays_current():
    t = terminal(where="DF04")
    assert t.external_authenticate(KeyName.LKDF04) == OK
    assert t.sw("00 A4 02 00 02 EF 05") == OK  # an EF of DF04
    assert t.sw(SELECT_DF04) == OK  # DF04 again (by FID)
    assert t.sw("00 A4 04 00 06 D1 56 00 00 05 03") == OK  # and by its AID
    assert t.sw(t.protected(KeyName.STKDF04, 0x1E, 0x00, 0x01)) == OK


def test_p7_6_6_the_puk_state_ends_when_the_ssse_is_left():
    t = terminal("locked")
    assert t.external_authenticate(KeyName.PUK) == OK
    t.select("MF")
    t.select("SSSE")
    assert t.pin_change(0x00) == 0x6982
    assert pin_status(t.card)[2] == 0


def test_p7_6_6_a_failure_of_one_key_keeps_another_keys_state():
    t = terminal()
    assert t.external_authenticate(KeyName.RKSSSE) == OK
    assert t.external_authenticate(KeyName.PUK, using=bytes(16)) == 0x63C2
    assert sw_of(t.send("00 B0 87 00 08")) == OK


# ---------------------------------------------------------------------------------------
# V2.0 table 3: EF07 and EF08 are read under RKSSSE
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "length"),
    [
        ("00 B0 87 00 00", 256),  # EF07 by SFI, Le 00
        ("00 B0 87 00 10", 16),
        ("00 B0 88 00 20", 32),  # EF08 by SFI
        ("00 B0 87 FF 01", 1),
    ],
)
def test_v2_table3_read_binary_after_rksse_answers_zeros(apdu, length):
    t = terminal()
    assert t.sw(apdu) == 0x6982
    assert t.external_authenticate(KeyName.RKSSSE) == OK
    assert t.send(apdu) == bytes(length) + h("90 00")


def test_v2_table3_read_binary_of_the_current_ef_after_rksse():
    t = terminal()
    assert t.sw("00 A4 02 00 02 EF 07") == OK
    assert t.sw("00 B0 00 00 08") == 0x6982
    assert t.external_authenticate(KeyName.RKSSSE) == OK
    assert t.send("00 B0 02 F8 08") == bytes(8) + h("90 00")


@pytest.mark.parametrize("name", [k for k in SSSE_KEYS if k is not KeyName.RKSSSE])
def test_v2_table3_another_ssse_key_does_not_open_ef07(name):
    t = terminal()
    assert t.external_authenticate(name) == OK
    assert t.sw("00 B0 87 00 08") == 0x6982


def test_v2_table3_the_pin_does_not_open_ef07():
    t = terminal()
    assert verify(t.card, INITIAL_PIN) == OK
    assert t.sw("00 B0 87 00 08") == 0x6982


# ---------------------------------------------------------------------------------------
# Part 5 §6.8 PIN CHANGE/UNBLOCK 84 24, part 7 §13.3
# ---------------------------------------------------------------------------------------


def _puk_ready(profile: str = "locked", **kwargs) -> Terminal:
    t = terminal(profile, **kwargs)
    assert t.external_authenticate(KeyName.PUK) == OK
    return t


def test_p5_6_8_without_puk_authentication_is_6982():
    store = RecordingStore()
    t = terminal("locked", store=store)
    assert t.pin_change(0x00) == 0x6982
    assert t.pin_change(0x01, "2468") == 0x6982
    assert store.saved == []


@pytest.mark.parametrize("name", [KeyName.RKSSSE, KeyName.UK, KeyName.STKSSSE, KeyName.BK])
def test_p5_6_8_another_keys_authentication_is_not_enough(name):
    t = terminal("locked")
    assert t.external_authenticate(name) == OK
    assert t.pin_change(0x00) == 0x6982
    assert pin_status(t.card)[2] == 0


def test_p5_6_8_without_a_challenge_is_6984():
    store = RecordingStore()
    t = _puk_ready(store=store)
    saves = len(store.saved)
    challenge = t.challenge()
    t.send("80 CA 00 C1 00")  # spends it
    apdu = t.protected(KeyName.PUK, 0x24, 0x00, 0x00, challenge=challenge)
    assert t.sw(apdu) == 0x6984
    assert len(store.saved) == saves


@pytest.mark.parametrize(
    "apdu",
    [
        "84 24 00 00",  # no data, no MAC
        "84 24 00 00 02 AB CD",  # half a MAC
        "84 24 00 00 03 AB CD EF",
        "84 24 00 01 10" + "00" * 16,  # a PIN element without its MAC
    ],
)
def test_p5_6_8_a_missing_mac_is_refused_6700(apdu):
    """Table 26: Lc 04 (unblock), 0C or 14 (change); table 27 answers any other Lc 6700
    (6987, "MAC missing", is part 7 §7.4's for UPDATE, and not in table 27)."""
    store = RecordingStore()
    t = _puk_ready(store=store)
    saves = len(store.saved)
    t.challenge()
    assert t.send(apdu) == h("67 00")
    assert len(store.saved) == saves


def _wrong_mac_apdu(t: Terminal, how: str, challenge: bytes) -> bytes:
    """An 84 24 APDU for `challenge` whose MAC is wrong in the way `how` says."""
    other_card = profiles.load("employee-enabled").keys[KeyName.PUK]
    wrong_keys = {
        "another key of the card (STKSSSE)": t.key(KeyName.STKSSSE),
        "another card's PUK": other_card,
        "the PUK's master key": fixture_issuer().masters[KeyName.PUK],
        "all-zero key": bytes(16),
    }
    if how in wrong_keys:
        return t.protected(KeyName.PUK, 0x24, 0, 0, challenge=challenge, using=wrong_keys[how])
    if how.startswith("changed header"):
        unblock = t.protected(KeyName.PUK, 0x24, 0, 0, challenge=challenge)
        return unblock[:3] + b"\x01" + unblock[4:]  # as P2 01, Lc 04: an empty PIN
    element = t.pin_element(challenge, "2468")
    change = t.protected(KeyName.PUK, 0x24, 0, 1, element, challenge=challenge)
    assert change[5:21] == element
    if how.startswith("changed data"):
        return change[:6] + bytes((change[6] ^ 0x01,)) + change[7:]
    assert how == "changed MAC"
    return change[:-1] + bytes((change[-1] ^ 0x80,))


WRONG_MACS = [
    "another key of the card (STKSSSE)",
    "another card's PUK",
    "the PUK's master key",
    "all-zero key",
    "changed header: unblock's MAC sent as P2 01 (empty PIN)",
    "changed data: one bit of the PIN element",
    "changed MAC",
]


@pytest.mark.parametrize("how", WRONG_MACS)
def test_p5_6_8_wrong_mac_is_6988_and_changes_nothing(how):
    store = RecordingStore()
    t = _puk_ready(store=store)
    before = t.card.state
    saves = len(store.saved)
    apdu = _wrong_mac_apdu(t, how, t.challenge())
    assert t.send(apdu) == h("69 88")
    assert t.card.state == before
    assert len(store.saved) == saves
    assert pin_status(t.card) == (0x01, 0x01, 0, 6)


def test_p5_6_8_a_mac_for_another_challenge_is_6988():
    t = _puk_ready()
    first = t.challenge()
    t.challenge()
    assert t.sw(t.protected(KeyName.PUK, 0x24, 0, 0, challenge=first)) == 0x6988
    assert pin_status(t.card)[2] == 0


def test_p5_6_8_a_mac_for_another_command_is_6988():
    """The MAC covers CLA INS P1 P2 Lc: 84 18's MAC is not 84 24's."""
    t = _puk_ready("not-activated")
    challenge = t.challenge()
    activate = t.protected(KeyName.PUK, 0x18, 0, 0, challenge=challenge)
    assert t.sw(activate[:1] + b"\x24" + activate[2:]) == 0x6988


@pytest.mark.parametrize(
    ("p2", "length"),
    [
        (0x00, 0x14),  # unblock takes a MAC only
        (0x00, 0x0C),
        (0x00, 0x08),
        (0x01, 0x0C),  # an 8-byte element: DES, not SM4
        (0x01, 0x08),
        (0x01, 0x05),
        (0x01, 0x24),  # two SM4 blocks: beyond table 26's 14
    ],
)
def test_p5_6_8_lc_rules_on_an_sm4_card(p2, length):
    """Table 26: unblock Lc 04; change Lc 04 (empty PIN) or 14 (one SM4 block + MAC)."""
    store = RecordingStore()
    t = _puk_ready(store=store)
    saves = len(store.saved)
    body = bytes(range(length - 4))
    assert t.sw(t.protected(KeyName.PUK, 0x24, 0x00, p2, body)) == 0x6700
    assert len(store.saved) == saves


@pytest.mark.parametrize(("digits", "lc"), [("2468", 0x0C), ("24680135", 0x0C), ("1" * 16, 0x14)])
def test_p5_6_8_lc_0c_or_14_on_a_des_card(digits, lc):
    """Table 26: one DES block (LD + up to 7 bytes) + MAC is Lc 0C; LD + 8 bytes
    (16 digits) takes two blocks, Lc 14."""
    t = terminal(state=des_state("locked"))
    assert t.external_authenticate(KeyName.PUK) == OK
    apdu = t.pin_change_apdu(0x01, digits)
    assert apdu[4] == lc
    assert t.sw(apdu) == OK
    assert pin_status(t.card) == (0x01, 0x01, 6, 6)
    assert verify_cn(t.card, digits) == OK


@pytest.mark.parametrize("apdu_p1_p2", [(0x01, 0x00), (0x00, 0x02), (0x00, 0x80), (0x00, 0xFF)])
def test_p5_6_8_p1_p2_is_6a86(apdu_p1_p2):
    p1, p2 = apdu_p1_p2
    t = _puk_ready()
    assert t.sw(t.protected(KeyName.PUK, 0x24, p1, p2)) == 0x6A86
    assert pin_status(t.card)[2] == 0


@pytest.mark.parametrize("profile", ["locked", "employee-new", "employee-enabled"])
def test_p5_6_8_p2_00_unblock_resets_the_tries_and_keeps_the_pin(profile):
    store = RecordingStore()
    t = terminal(profile, store=store)
    if not t.card.state.blocked:
        verify(t.card, "000000")
        verify(t.card, "000000")
    assert t.external_authenticate(KeyName.PUK) == OK
    before = t.card.state
    assert t.pin_change(0x00) == OK
    assert store.saved[-1] == before.with_(tries_left=6) == t.card.state  # nothing else
    old = ENABLED_PIN if before.pin_state is PinState.ENABLED else INITIAL_PIN
    assert status_query(t.card) == 0x63C6
    assert verify(t.card, "000000") == 0x63C5  # it counts again, from the limit
    assert verify(t.card, old) == OK


@pytest.mark.parametrize("digits", ["2468", "13579", "246802", "1234567890", "9" * 16])
@pytest.mark.parametrize("profile", ["locked", "employee-new", "disabled"])
def test_p5_6_8_p2_01_sets_a_new_pin_enabled(profile, digits):
    store = RecordingStore()
    t = _puk_ready(profile, store=store)
    if profile == "employee-new":
        verify(t.card, "000000")
    before = t.card.state
    assert t.pin_change(0x01, digits) == OK
    after = t.card.state
    assert after == before.with_(pin=after.pin, tries_left=6, pin_state=PinState.ENABLED)
    assert store.saved[-1] == after  # one write holds it all
    assert after.pin.matches(digits)
    assert not t.card.verified
    assert pin_status(t.card) == (0x01, 0x01, 6, 6)
    assert status_query(t.card) == 0x63C6  # a PIN is held: the terminal must ask for it
    assert verify_cn(t.card, digits) == OK


def test_p5_6_8_p2_01_the_old_pin_no_longer_works():
    t = _puk_ready("employee-enabled")
    assert t.pin_change(0x01, "975310") == OK
    assert verify(t.card, ENABLED_PIN) == 0x63C5
    assert verify(t.card, "975310") == OK


@pytest.mark.parametrize("profile", ["locked", "employee-enabled", "disabled"])
def test_p5_6_8_p2_01_with_123456_is_initial(profile):
    t = _puk_ready(profile)
    before = t.card.state
    assert t.pin_change(0x01, INITIAL_PIN) == OK
    after = t.card.state
    assert after == before.with_(pin=after.pin, tries_left=6, pin_state=PinState.INITIAL)
    assert pin_status(t.card) == (0x01, 0x00, 6, 6)
    assert verify(t.card, INITIAL_PIN) == OK


@pytest.mark.parametrize("profile", ["locked", "employee-enabled", "employee-new"])
def test_p5_6_8_p2_01_lc_04_empties_the_pin_disabled(profile):
    """§6.8.3: an empty PIN element makes the card's PIN empty; §6.14.5: the empty
    VERIFY then answers 9000, and any PIN typed fails without costing a try."""
    store = RecordingStore()
    t = _puk_ready(profile, store=store)
    before = t.card.state
    apdu = t.pin_change_apdu(0x01)
    assert apdu[4] == 0x04
    assert t.sw(apdu) == OK
    after = t.card.state
    assert after == before.with_(pin=after.pin, tries_left=6, pin_state=PinState.DISABLED)
    assert after.pin.matches("")
    assert store.saved[-1] == after
    assert pin_status(t.card) == (0x01, 0x02, 6, 6)
    assert t.send("00 20 00 00") == h("90 00")
    assert t.send("00 20 00 00 00") == h("90 00")
    saves = len(store.saved)
    old = ENABLED_PIN if before.pin_state is PinState.ENABLED else INITIAL_PIN
    assert verify(t.card, old) == 0x63C6
    assert verify(t.card, "000000") == 0x63C6
    assert len(store.saved) == saves
    # CHANGE PIN without a current PIN sets one again (part 5 §6.3.3)
    assert t.send("80 5E 01 00 04 FF 86 42 00") == h("90 00")
    assert pin_status(t.card) == (0x01, 0x01, 6, 6)
    assert verify(t.card, "864200") == OK


@pytest.mark.parametrize(
    ("plain", "why"),
    [
        (h("12 3A 56"), "a nibble that is not a digit"),
        (h("12"), "2 digits"),
        (h("12 3F"), "3 digits"),
        (h("1F 34"), "F before the end"),
        (h("12 34 56 78 90 12 34 56 78"), "18 digits"),
    ],
)
def test_p5_6_8_a_pin_element_that_is_no_pin_is_6a80(plain, why):
    store = RecordingStore()
    t = _puk_ready(store=store)
    before = t.card.state
    challenge = t.challenge()
    session = security.session_key(t.alg, t.key(KeyName.PUK), challenge)
    element = security.encrypt(t.alg, session, plain)
    apdu = t.protected(KeyName.PUK, 0x24, 0, 1, element, challenge=challenge)
    assert t.send(apdu) == h("6A 80"), why
    assert t.card.state == before


def test_p5_6_8_a_pin_element_that_does_not_decrypt_is_6a80():
    """Part 4 §8.3.4: the LD and padding of a forged element (with a right MAC) fail."""
    t = _puk_ready()
    before = t.card.state
    apdu = t.protected(KeyName.PUK, 0x24, 0, 1, bytes(range(16)))
    assert t.send(apdu) == h("6A 80")
    assert t.card.state == before


def test_p5_6_8_a_pin_element_under_another_key_is_refused():
    """Encrypted under the MAC's session key of another challenge: 6A80, nothing done."""
    t = _puk_ready()
    before = t.card.state
    stale = t.challenge()
    challenge = t.challenge()
    element = t.pin_element(stale, "2468")
    apdu = t.protected(KeyName.PUK, 0x24, 0, 1, element, challenge=challenge)
    assert t.sw(apdu) == 0x6A80
    assert t.card.state == before


def test_p5_6_8_a_replayed_apdu_is_refused_and_changes_nothing():
    store = RecordingStore()
    t = _puk_ready(store=store)
    apdu = t.pin_change_apdu(0x01, "2468")
    assert t.sw(apdu) == OK
    assert t.send("80 5E 01 00 05 24 68 FF 13 57") == h("90 00")  # the holder changes it
    after = t.card.state
    saves = len(store.saved)
    assert t.sw(apdu) == 0x6984  # no challenge now
    t.challenge()
    assert t.sw(apdu) == 0x6988  # and against a new one the MAC is wrong
    assert t.card.state == after
    assert len(store.saved) == saves
    assert verify_cn(t.card, "1357") == OK


@pytest.mark.parametrize(("p2", "digits"), [(0x00, None), (0x01, "2468")])
def test_p5_6_8_a_pin_verified_before_it_is_verified_no_more(p2, digits):
    """The PIN (or its counter) was replaced: the holder proves it again."""
    t = terminal("employee-enabled")
    assert verify(t.card, ENABLED_PIN) == OK
    assert status_query(t.card) == OK
    assert t.external_authenticate(KeyName.PUK) == OK
    assert t.pin_change(p2, digits) == OK
    assert not t.card.verified
    assert status_query(t.card) == 0x63C6


def test_p5_6_8_a_replay_right_after_success_is_refused():
    t = _puk_ready()
    apdu = t.pin_change_apdu(0x00)
    assert t.sw(apdu) == OK
    assert t.sw(apdu) == 0x6984


def test_p5_6_8_the_puk_state_serves_several_commands_until_reset():
    t = _puk_ready()
    assert t.pin_change(0x00) == OK
    assert t.pin_change(0x01, "2468") == OK
    t.card.reset()
    t.select("SSSE")
    assert t.pin_change(0x01, "1357") == 0x6982
    assert verify_cn(t.card, "2468") == OK


def test_p5_6_8_works_from_df04_after_the_ssse_puk():
    t = _puk_ready()
    t.select("DF04")  # the SSSE's PUK state lasts under the SSSE
    assert t.pin_change(0x00) == OK
    assert pin_status(t.card)[2] == 6


def test_p5_6_8_a_locked_puk_cannot_be_used():
    """Part 7 §13.3: repeated failures lock the unblock key."""
    t = terminal("locked")
    for code in (0x63C2, 0x63C1, 0x63C0):
        assert t.external_authenticate(KeyName.PUK, using=bytes(16)) == code
    assert t.external_authenticate(KeyName.PUK) == 0x6983
    assert t.pin_change(0x00) == 0x6982
    assert pin_status(t.card)[2] == 0


def test_p5_6_8_is_one_durable_write():
    """A kill at any instant leaves the old state or the whole new one: the PIN, its
    state and the counter travel in the one write after the PUK's two."""
    store = RecordingStore()
    t = _puk_ready(store=store)
    saves = len(store.saved)
    before = t.card.state
    assert t.pin_change(0x01, "2468") == OK
    (written,) = store.saved[saves:]
    assert written == before.with_(pin=written.pin, tries_left=6, pin_state=PinState.ENABLED)


def test_p5_6_8_pin_change_unblock_on_a_t0_card():
    t = _puk_ready("t0-employee-new")
    assert t.pin_change(0x01, "864200") == OK
    assert verify(t.card, "864200") == OK


def test_p5_6_8_pin_change_unblock_on_a_des_card():
    t = terminal(state=des_state("locked"))
    assert t.external_authenticate(KeyName.PUK) == OK
    assert t.pin_change(0x00) == OK
    assert pin_status(t.card) == (0x01, 0x01, 6, 6)
    assert verify(t.card, ENABLED_PIN) == OK


# ---------------------------------------------------------------------------------------
# 84 18: our activation (docs/card.md §9), under PIN CHANGE/UNBLOCK's rules
# ---------------------------------------------------------------------------------------


def test_ours_84_18_activates_after_the_puk_and_changes_nothing_else():
    store = RecordingStore()
    t = _puk_ready("not-activated", store=store)
    before = t.card.state
    saves = len(store.saved)
    apdu = t.protected(KeyName.PUK, 0x18, 0x00, 0x00)
    assert apdu[4] == 0x04
    assert t.sw(apdu) == OK
    assert store.saved[saves:] == [before.with_(life_cycle=LifeCycle.ACTIVE)]
    assert t.card.state == t.issued.with_(life_cycle=LifeCycle.ACTIVE)
    assert pin_status(t.card) == (0x01, 0x00, 6, 6)
    assert verify(t.card, INITIAL_PIN) == OK  # PIN commands work now


def test_ours_84_18_without_the_puk_is_6982():
    t = terminal("not-activated")
    assert t.sw(t.protected(KeyName.PUK, 0x18, 0, 0)) == 0x6982
    assert t.external_authenticate(KeyName.RKSSSE) == OK
    assert t.sw(t.protected(KeyName.PUK, 0x18, 0, 0)) == 0x6982
    assert pin_status(t.card)[0] == 0x00


def test_ours_84_18_without_a_challenge_is_6984():
    t = _puk_ready("not-activated")
    challenge = t.challenge()
    t.send("00 20 00 00")
    assert t.sw(t.protected(KeyName.PUK, 0x18, 0, 0, challenge=challenge)) == 0x6984
    assert pin_status(t.card)[0] == 0x00


@pytest.mark.parametrize("key", [KeyName.STKSSSE, KeyName.IRK, KeyName.UK])
def test_ours_84_18_a_mac_under_another_key_is_6988(key):
    t = _puk_ready("not-activated")
    assert t.sw(t.protected(KeyName.PUK, 0x18, 0, 0, using=t.key(key))) == 0x6988
    assert pin_status(t.card)[0] == 0x00


def test_ours_84_18_a_mac_for_84_24_is_6988():
    t = _puk_ready("not-activated")
    unblock = t.protected(KeyName.PUK, 0x24, 0, 0)
    assert t.sw(unblock[:1] + b"\x18" + unblock[2:]) == 0x6988
    assert pin_status(t.card)[0] == 0x00


@pytest.mark.parametrize(
    "apdu", ["84 18 00 00", "84 18 00 00 02 AB CD", "84 18 00 00 05 00 00 00 00 00"]
)
def test_ours_84_18_lc_other_than_04_is_6700(apdu):
    t = _puk_ready("not-activated")
    t.challenge()
    assert t.send(apdu) == h("67 00")


@pytest.mark.parametrize(("p1", "p2"), [(0x00, 0x01), (0x01, 0x00)])
def test_ours_84_18_p1_p2_is_6a86(p1, p2):
    t = _puk_ready("not-activated")
    assert t.sw(t.protected(KeyName.PUK, 0x18, p1, p2)) == 0x6A86


def test_ours_84_18_on_an_active_card_keeps_it_active():
    t = _puk_ready("employee-new")
    assert t.sw(t.protected(KeyName.PUK, 0x18, 0, 0)) == OK
    assert t.card.state.life_cycle is LifeCycle.ACTIVE


def test_ours_real_only_card_answers_84_18_6d00_but_84_24_normally():
    """docs/card.md §9: a real card does not know our activation; 84 24 is the
    standard's."""
    t = terminal(state=profiles.make("not-activated", real_only=True))
    assert t.external_authenticate(KeyName.PUK) == OK
    assert t.sw(t.protected(KeyName.PUK, 0x18, 0, 0)) == 0x6D00
    assert t.card.state.life_cycle is LifeCycle.NOT_ACTIVATED
    locked = terminal(state=profiles.make("locked", real_only=True))
    assert locked.external_authenticate(KeyName.PUK) == OK
    assert locked.pin_change(0x00) == OK
    assert locked.card.state.tries_left == 6
    assert locked.pin_change(0x01, "2468") == OK
    assert verify_cn(locked.card, "2468") == OK


@pytest.mark.parametrize("p2", [0x00, 0x01, 0x02])
@pytest.mark.parametrize("profile", ["locked", "not-activated", "employee-new"])
def test_ours_retired_84_5e_is_6e00_and_changes_nothing(profile, p2):
    """Issue 12 retired 84 5E 00 00/01/02: 5E is CHANGE PIN's INS under CLA 80."""
    store = RecordingStore()
    t = terminal(profile, store=store)
    t.challenge()
    body = h("11 11 11") if p2 == 0 else b""
    apdu = bytes((0x84, 0x5E, 0x00, p2, len(body) + 4)) + body + h("DE AD BE EF")
    assert t.send(apdu) == h("6E 00")
    assert store.saved == []


# ---------------------------------------------------------------------------------------
# Part 5 §6.1 APPLICATION BLOCK, part 7 §13.2
# ---------------------------------------------------------------------------------------


def _block_df04(t: Terminal) -> None:
    t.select("DF04")
    assert t.external_authenticate(KeyName.LKDF04) == OK
    assert t.sw(t.protected(KeyName.STKDF04, 0x1E, 0x00, 0x01)) == OK


def test_p5_6_1_application_block_then_select_df04_is_9303():
    store = RecordingStore()
    t = terminal(where=None, store=store)
    before = t.card.state
    _block_df04(t)
    assert store.saved[-1] == before.with_(application_blocked=True) == t.card.state
    t.select("SSSE")
    assert t.send(SELECT_DF04) == h("93 03")
    assert t.send("00 A4 04 00 06 D1 56 00 00 05 03 00") == h("93 03")
    # nothing changed: the SSSE is still current
    assert t.send("00 B2 02 2C 03") == h("02 01 31 90 00")


@pytest.mark.parametrize(
    "apdu",
    [
        "00 B2 81 2C 0A",  # READ RECORD
        "00 B2 01 04 0A",
        "00 84 00 00 08",  # GET CHALLENGE
        "00 20 00 00 03 12 34 56",  # VERIFY
        "00 20 00 00",  # the empty VERIFY
        "80 5E 01 00 07 12 34 56 FF 65 43 21",  # CHANGE PIN
        "80 CA 00 C1 00",  # GET DATA
        "00 88 00 00 10" + "00" * 16 + "00",  # INTERNAL AUTHENTICATE
        "00 82 00 83 10" + "00" * 16,  # EXTERNAL AUTHENTICATE
        "00 B0 87 00 00",  # READ BINARY
        "84 1E 00 01 04 00 00 00 00",  # APPLICATION BLOCK again
        "84 24 00 00 04 00 00 00 00",
    ],
)
def test_p7_13_2_while_blocked_df04_is_current_every_command_is_9303(apdu):
    store = RecordingStore()
    t = terminal(where=None, store=store)
    _block_df04(t)
    state = t.card.state
    saves = len(store.saved)
    assert t.send(apdu) == h("93 03")
    assert t.card.state == state
    assert len(store.saved) == saves  # no try spent, nothing written


def test_p7_13_2_select_of_another_application_still_works():
    t = terminal(where=None)
    _block_df04(t)
    assert sw_of(transmit(t.card, SELECT_SSSE)) == OK
    assert t.send("00 B2 02 2C 03") == h("02 01 31 90 00")
    assert verify(t.card, INITIAL_PIN) == OK  # the SSSE and the PIN work on
    assert sw_of(t.send(SELECT_MF)) == OK


def test_p5_6_1_application_block_survives_a_reset_and_is_in_the_card_file(tmp_path):
    path = card_file(tmp_path)
    with FileStore(path) as fs:
        state = fs.open()
        t = Terminal(VirtualCard(state, fs), state)
        t.card.power_on()
        _block_df04(t)
        assert on_disk(path)["application_blocked"] is True
        t.card.reset()
        t.select("SSSE")
        assert t.send(SELECT_DF04) == h("93 03")
    with FileStore(path) as fs:
        state = fs.open()
        assert state.application_blocked
        t = Terminal(VirtualCard(state, fs), state)
        t.card.power_on()
        t.select("SSSE")
        assert t.send(SELECT_DF04) == h("93 03")
        assert t.send("00 B2 02 2C 03") == h("02 01 31 90 00")  # the SSSE reads on


def test_p5_6_1_application_block_without_lkdf04_is_6982():
    store = RecordingStore()
    t = terminal(where="DF04", store=store)
    assert t.sw(t.protected(KeyName.STKDF04, 0x1E, 0x00, 0x01)) == 0x6982
    assert t.external_authenticate(KeyName.RK1DF04) == OK  # another DF04 key: no better
    assert t.sw(t.protected(KeyName.STKDF04, 0x1E, 0x00, 0x01)) == 0x6982
    assert not t.card.state.application_blocked
    assert all(not s.application_blocked for s in store.saved)


@pytest.mark.parametrize("key", [KeyName.LKDF04, KeyName.STKSSSE, KeyName.RK1DF04, KeyName.PUK])
def test_p5_6_1_application_block_mac_not_under_stkdf04_is_6988(key):
    t = terminal(where="DF04")
    assert t.external_authenticate(KeyName.LKDF04) == OK
    assert t.sw(t.protected(KeyName.STKDF04, 0x1E, 0, 1, using=t.key(key))) == 0x6988
    assert not t.card.state.application_blocked
    assert verify(t.card, INITIAL_PIN) == OK  # DF04 works on
    assert t.send("00 B2 81 28 0A")[-2:] == h("90 00")


def test_p5_6_1_application_block_without_a_challenge_is_6984():
    t = terminal(where="DF04")
    assert t.external_authenticate(KeyName.LKDF04) == OK
    challenge = t.challenge()
    t.send("00 B2 81 2C 0A")
    assert t.sw(t.protected(KeyName.STKDF04, 0x1E, 0, 1, challenge=challenge)) == 0x6984
    assert not t.card.state.application_blocked


def test_p5_6_1_application_block_with_the_ssse_current_is_6985():
    """Part 5 §6.1: it blocks the current application; ours is DF04 only."""
    t = terminal(where="SSSE")
    assert t.sw(t.protected(KeyName.STKDF04, 0x1E, 0, 1)) == 0x6985
    assert not t.card.state.application_blocked


@pytest.mark.parametrize(("p1", "p2"), [(0x00, 0x00), (0x01, 0x01), (0x00, 0x02)])
def test_p5_6_1_application_block_p1_p2_is_6a86(p1, p2):
    t = terminal(where="DF04")
    assert t.external_authenticate(KeyName.LKDF04) == OK
    assert t.sw(t.protected(KeyName.STKDF04, 0x1E, p1, p2)) == 0x6A86
    assert not t.card.state.application_blocked


@pytest.mark.parametrize(
    "apdu", ["84 1E 00 01", "84 1E 00 01 02 AB CD", "84 1E 00 01 08" + "00" * 8]
)
def test_p5_6_1_application_block_lc_other_than_04_is_6700(apdu):
    t = terminal(where="DF04")
    assert t.external_authenticate(KeyName.LKDF04) == OK
    t.challenge()
    assert t.send(apdu) == h("67 00")
    assert not t.card.state.application_blocked


def test_p5_6_1_application_block_on_a_des_card():
    t = terminal(state=des_state(), where=None)
    _block_df04(t)
    t.select("SSSE")
    assert t.send(SELECT_DF04) == h("93 03")


def test_p7_13_2_select_of_an_ef_in_the_blocked_df04_is_9303():
    t = terminal(where=None)
    _block_df04(t)
    assert t.send("00 A4 02 00 02 EF 05") == h("93 03")


def test_p7_13_2_failed_lkdf04_authentications_do_not_lock_the_key():
    t = terminal(where="DF04")
    for _ in range(3):
        t.external_authenticate(KeyName.LKDF04, using=bytes(16))
    assert t.external_authenticate(KeyName.LKDF04) == OK


def test_keys_table_matches_the_references_used_here():
    """The references above are part 9 table B1's (RKSSSE 07 ours): the same as KEYS."""
    assert {k.name: k.reference for k in KEYS if k.name is not KeyName.IRK} == REFERENCE


# ---------------------------------------------------------------------------------------
# The card's algorithm (part 7 §5.3), and a card that cannot write (part 7 §14)
# ---------------------------------------------------------------------------------------


def test_p7_5_3_a_des_card_says_so_in_its_fci():
    """9F0C { 86 01 01 }: the terminal computes its cryptograms with DES."""
    t = terminal(state=des_state(), where=None)
    fci = data_of(transmit(t.card, SELECT_SSSE + " 00"))
    assert fci.endswith(h("9F 0C 03 86 01 01"))


@pytest.mark.parametrize(
    "apdu",
    [
        "00 88 00 00 10" + "00" * 16 + "00",  # INTERNAL AUTHENTICATE
        "00 82 00 06 10" + "00" * 16,  # EXTERNAL AUTHENTICATE: before the try is spent
    ],
)
def test_p5_6_7_an_ssf33_card_answers_6a81(apdu):
    """Tables 16 and 23: 6A81, function not supported: no library computes SSF33
    (docs/security.md)."""
    store = RecordingStore()
    state = profiles.load("employee-new").with_(algorithm=Algorithm.SSF33)
    t = terminal(state=state, store=store)
    t.challenge()
    assert t.send(apdu) == h("6A 81")
    assert store.saved == []


class _FullDisk(RecordingStore):
    """Takes `room` writes, then every write fails as a full disk does."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def save(self, state: CardState) -> None:
        if len(self.saved) >= self.room:
            raise OSError(28, "No space left on device")
        super().save(state)


@pytest.mark.parametrize("room", [0, 1])
def test_p7_14_external_authenticate_that_cannot_be_written_is_6581_and_proves_nothing(room):
    """docs/card.md §7: the decrement (room 0) or the restore (room 1) cannot be
    written: 6581, and the key is not proved."""
    store = _FullDisk(room)
    t = terminal(store=store)
    assert t.external_authenticate(KeyName.RKSSSE) == 0x6581
    assert t.sw("00 B0 87 00 08") == 0x6982
    assert t.card.state.tries_of(KeyName.RKSSSE) == (3 if room == 0 else 2)


def test_p7_14_pin_change_unblock_that_cannot_be_written_is_6581_and_changes_nothing():
    store = _FullDisk(2)  # the PUK's decrement and restore, then nothing
    t = _puk_ready(store=store)
    before = t.card.state
    assert t.pin_change(0x01, "2468") == 0x6581
    assert t.card.state == before
    assert verify_cn(t.card, "2468") == 0x6983  # still locked, the PIN unchanged
