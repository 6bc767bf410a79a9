"""The outlet's flows of the national standard (part 7 §13; docs/card.md §5).

Each operation: the card's check (INTERNAL AUTHENTICATE, 00 88), GET CHALLENGE, the PUK's
EXTERNAL AUTHENTICATE (00 82 00 06), GET CHALLENGE, then the MAC-protected command.
Proven here, beside tests/test_outlet.py:

- unblock (84 24 00 00 04): the PIN's tries back to the limit, the PIN unchanged, in
  process and through `cardio outlet unblock`;
- cancel-pin leaves the card without a PIN: the empty VERIFY answers 9000;
- the PUK's three tries: a wrong PUK (the issuer's other keys right) costs one (63C2,
  63C1, 63C0, logged as the outlet key's, not a PIN's), then 6983 for every key, the
  right one too (KeyLockedError); the right key before that restores them; keys of
  another issuer never reach the PUK (the card's check fails first);
- the card: a challenge serves exactly the next command; 84 24 without the PUK's
  authentication in this session is 6982, without a challenge 6984, with a wrong MAC
  6988; none of them changes the card file;
- a wrong MAC (6988) is a WrongKeyError too; a key source of the wrong algorithm fails
  before anything but the card's read reaches the card.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cardio import security
from cardio.card import profiles, store
from cardio.card.state import CardState, LifeCycle, PinState
from cardio.issuer import Issuer, KeyName, counterfeit_issuer, fixture_issuer
from cardio.keysource import CardIdentity, KeySource, KeySourceError, MasterKeySource
from cardio.model import Algorithm
from cardio.outlet import (
    KeyLockedError,
    NotOurCardError,
    Operation,
    Outcome,
    Outlet,
    OutletLog,
    WrongKeyError,
    fixture_master_key,
)
from cardio.protocol import PinStatus, SocialSecurityCard
from cardio.readers.virtual import VirtualReader

SM4 = Algorithm.SM4
ENABLED_PIN = "802613"  # fixtures/README.md: employee-enabled, and locked before it locked
NEW_PIN = "592046"
LOCKED_SSN = "310106197012050397"
ENABLED_SSN = "310101197911020480"
OPERATOR = "counter-3"
KEY_TRY_LIMIT = 3
OK = b"\x90\x00"
GET_CHALLENGE = bytes.fromhex("0084000008")
INTERNAL_AUTH = "> 00 88 00 00 10 "  # the card's check, as traced
PUK_AUTH = bytes.fromhex("0082000610")
EMPTY_VERIFY = bytes.fromhex("00200000")


# --- helpers ---------------------------------------------------------------------------


def new_card(tmp_path: Path, profile: str) -> Path:
    path = tmp_path / f"{profile}.json"
    profiles.new_card(profile, path)
    return path


def disk(path: Path) -> CardState:
    return store.read(path)


def doc(path: Path) -> dict[str, object]:
    return json.loads(path.read_text("utf-8"))


def with_puk_tries(before: bytes, tries: int) -> dict[str, object]:
    """The card file `before` with only the PUK's counter changed."""
    expected = json.loads(before)
    expected["key_tries"]["PUK"] = tries
    return expected


def changed_puk_issuer() -> Issuer:
    """The fixture issuer with the PUK master changed (one bit): a card passes the check
    with its keys (the IRK is right) and then refuses the PUK."""
    issuer = fixture_issuer()
    masters = dict(issuer.masters)
    masters[KeyName.PUK] = bytes((masters[KeyName.PUK][0] ^ 0x01,)) + masters[KeyName.PUK][1:]
    return Issuer(issuer.algorithm, masters)


def changed_puk() -> MasterKeySource:
    return MasterKeySource(changed_puk_issuer())


def cardio(*args: object, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "cardio.cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        env=env,
        check=False,
    )


def results(log: Path) -> list[str]:
    """The first word of each line's result: "started", a status word, "refused:"..."""
    return [
        str(json.loads(line)["result"]).split()[0] for line in log.read_text("utf-8").splitlines()
    ]


def run(
    path: Path,
    operation: Operation,
    ssn: str,
    log: Path,
    keys: KeySource | None = None,
    new_pin: str | None = None,
    trace: list[str] | None = None,
) -> Outcome | Exception:
    reader = VirtualReader(path, trace=trace.append if trace is not None else None)
    try:
        desk = Outlet(reader, keys or fixture_master_key(), operator=OPERATOR, log=OutletLog(log))
        try:
            return desk.run(operation, ssn, new_pin)
        except Exception as e:  # the test inspects it
            return e
    finally:
        reader.close()


class Session:
    """A card session on a VirtualReader, the SSSE selected, with the card's own PUK."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.puk = disk(path).keys[KeyName.PUK]
        self.reader = VirtualReader(path)
        self.reader.connect()
        SocialSecurityCard(self.reader).select_application()

    def close(self) -> None:
        self.reader.close()

    def send(self, apdu: bytes) -> bytes:
        return self.reader.transmit(apdu)

    def challenge(self) -> bytes:
        answer = self.send(GET_CHALLENGE)
        assert answer[-2:] == OK and len(answer) == 8 + 2
        return answer[:-2]

    def puk_auth(self, challenge: bytes, key: bytes | None = None) -> bytes:
        raw = bytes(range(0x20, 0x28))
        return PUK_AUTH + security.authentication(SM4, key or self.puk, challenge, raw) + raw

    def prove_puk(self) -> None:
        assert self.send(self.puk_auth(self.challenge())) == OK

    def unblock(self, challenge: bytes) -> bytes:
        return security.secure_apdu(SM4, self.puk, challenge, 0x84, 0x24, 0x00, 0x00, b"")

    def reset(self, challenge: bytes, new_pin: str) -> bytes:
        session = security.session_key(SM4, self.puk, challenge)
        body = security.encrypt(SM4, session, security.pin_block(new_pin))
        return security.secure_apdu(SM4, self.puk, challenge, 0x84, 0x24, 0x00, 0x01, body)


@pytest.fixture
def session_on(tmp_path: Path):
    made: list[Session] = []

    def make(profile: str) -> Session:
        made.append(Session(new_card(tmp_path, profile)))
        return made[-1]

    yield make
    for s in made:
        s.close()


# --- unblock: the tries back to the limit, the PIN unchanged ---------------------------------


def test_unblock_a_locked_card_then_the_same_pin_works(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    before = disk(path)
    assert (before.pin_state, before.tries_left, before.try_limit) == (PinState.ENABLED, 0, 6)
    assert before.pin.matches(ENABLED_PIN)
    log = tmp_path / "outlet.log"
    trace: list[str] = []

    outcome = run(path, Operation.UNBLOCK, LOCKED_SSN, log, trace=trace)

    assert isinstance(outcome, Outcome), repr(outcome)
    assert outcome.ok and outcome.operation is Operation.UNBLOCK
    heads = ("> 84 ", "> 00 84 ", "> 00 82 ", "> 00 88 ")
    sent = [ln[2:16] for ln in trace if ln.startswith(heads)]
    assert sent == [
        "00 88 00 00 10",
        "00 84 00 00 08",
        "00 82 00 06 10",
        "00 84 00 00 08",
        "84 24 00 00 04",
    ]
    assert "> 84 24 00 00 04 ** ** ** **" in trace  # the MAC is not shown
    after = disk(path)
    assert after.tries_left == after.try_limit == 6
    assert after.pin_state is PinState.ENABLED
    assert after.pin.matches(ENABLED_PIN)  # the PIN is the holder's, unchanged
    assert not after.pin.matches(NEW_PIN)
    assert results(log) == ["started", "9000"]
    assert ENABLED_PIN not in log.read_text("utf-8")

    reader = VirtualReader(path)
    try:
        reader.connect()
        card = SocialSecurityCard(reader)
        card.select_application()
        assert card.pin_status() == PinStatus(LifeCycle.ACTIVE, PinState.ENABLED, 6, 6)
        assert card.verify(NEW_PIN).sw == 0x63C5  # a wrong one counts again
        assert card.verify(ENABLED_PIN).sw == 0x9000  # the same PIN works
        assert card.pin_status().tries_left == 6
    finally:
        reader.close()


def test_unblock_changes_only_the_pin_counter_in_the_card_file(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    before = doc(path)
    assert before["tries_left"] == 0
    outcome = run(path, Operation.UNBLOCK, LOCKED_SSN, tmp_path / "o.log")
    assert isinstance(outcome, Outcome) and outcome.ok, repr(outcome)
    assert doc(path) == {**before, "tries_left": before["try_limit"]}


def test_unblock_a_card_with_tries_spent_but_not_locked(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    reader = VirtualReader(path)
    try:
        reader.connect()
        card = SocialSecurityCard(reader)
        card.select_application()
        assert card.verify(NEW_PIN).sw == 0x63C5
        assert card.verify(NEW_PIN).sw == 0x63C4
    finally:
        reader.close()
    assert disk(path).tries_left == 4
    outcome = run(path, Operation.UNBLOCK, ENABLED_SSN, tmp_path / "o.log")
    assert isinstance(outcome, Outcome) and outcome.ok, repr(outcome)
    after = disk(path)
    assert after.tries_left == 6 and after.pin.matches(ENABLED_PIN)
    assert after.pin_state is PinState.ENABLED


def test_unblock_through_the_cli(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    before = doc(path)
    log = tmp_path / "outlet.log"
    result = cardio(
        "outlet", "unblock", "--card", path, "--id", LOCKED_SSN, "--test-key", "--log", log
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "operation   unblock: done" in result.stdout.splitlines()
    assert "now         ACTIVE / PIN ENABLED / 6 of 6 tries" in result.stdout.splitlines()
    assert disk(path).pin.matches(ENABLED_PIN)
    assert doc(path) == {**before, "tries_left": before["try_limit"]}
    assert results(log) == ["started", "9000"]
    assert "unblock" in cardio("outlet", "--help").stdout


def test_card_unblock_command_keeps_the_pin(session_on) -> None:
    """84 24 00 00 04 MAC on the card itself (part 5 §6.8, P2 00)."""
    s = session_on("locked")
    s.prove_puk()
    assert s.send(s.unblock(s.challenge())) == OK
    state = disk(s.path)
    assert state.tries_left == 6 and state.pin.matches(ENABLED_PIN)


# --- cancel-pin: no PIN left, the empty VERIFY answers 9000 ----------------------------------


def test_cancel_pin_then_the_empty_verify_answers_9000(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    result = cardio("send", "--card", path, EMPTY_VERIFY.hex())
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-1] == "< 63 C6"  # a PIN, not verified in this session

    outcome = run(path, Operation.CANCEL_PIN, ENABLED_SSN, tmp_path / "o.log")
    assert isinstance(outcome, Outcome) and outcome.ok, repr(outcome)
    after = disk(path)
    assert after.pin_state is PinState.DISABLED and after.pin.matches("")
    assert not after.pin.matches(ENABLED_PIN)

    # a new session, nothing verified: the card holds no PIN (part 5 §6.14.5)
    result = cardio("send", "--card", path, EMPTY_VERIFY.hex())
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == ["> 00 20 00 00", "< 90 00"]
    # the old PIN is no PIN of this card any more, and guessing costs no try
    reader = VirtualReader(path)
    try:
        reader.connect()
        card = SocialSecurityCard(reader)
        card.select_application()
        assert card.verify(ENABLED_PIN).ok is False
        assert card.pin_status() == PinStatus(LifeCycle.ACTIVE, PinState.DISABLED, 6, 6)
    finally:
        reader.close()
    assert disk(path).tries_left == 6


def test_cancel_pin_command_has_no_pin_data(session_on) -> None:
    """84 24 00 01 04 MAC: P2 01 without PIN data empties the PIN (S16)."""
    s = session_on("employee-enabled")
    s.prove_puk()
    challenge = s.challenge()
    command = security.secure_apdu(SM4, s.puk, challenge, 0x84, 0x24, 0x00, 0x01, b"")
    assert command[:5] == bytes.fromhex("8424000104") and len(command) == 9
    assert s.send(command) == OK
    assert s.send(EMPTY_VERIFY) == OK
    assert disk(s.path).pin_state is PinState.DISABLED


# --- the PUK's three tries --------------------------------------------------------------------


def test_three_wrong_keys_lock_the_puk_then_even_the_right_key_is_refused(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    wrong = changed_puk()
    for left in (2, 1, 0):
        outcome = run(path, Operation.RESET_PIN, LOCKED_SSN, log, wrong, NEW_PIN)
        assert isinstance(outcome, WrongKeyError), repr(outcome)
        assert f"({left} tries left on the card)" in str(outcome)
        assert doc(path) == with_puk_tries(before, left)
    trace: list[str] = []
    for keys in (wrong, fixture_master_key()):
        outcome = run(path, Operation.RESET_PIN, LOCKED_SSN, log, keys, NEW_PIN, trace)
        assert isinstance(outcome, KeyLockedError), repr(outcome)
        assert "unblocking key is locked" in str(outcome)
        assert doc(path) == with_puk_tries(before, 0)
    assert "< 69 83" in trace
    assert not any(ln.startswith("> 84 ") for ln in trace)
    # keys of another issuer: refused by the card's check, before the locked PUK is asked
    trace.clear()
    other = MasterKeySource(counterfeit_issuer())
    outcome = run(path, Operation.RESET_PIN, LOCKED_SSN, log, other, NEW_PIN, trace)
    assert isinstance(outcome, NotOurCardError), repr(outcome)
    assert not any(ln.startswith(("> 00 84 ", "> 00 82 ", "> 84 ")) for ln in trace)
    assert doc(path) == with_puk_tries(before, 0)
    assert results(log) == ["started", "63C2", "started", "63C1", "started", "63C0"] + [
        "started",
        "6983",
    ] * 2 + ["refused:"]
    state = disk(path)
    assert state.tries_left == 0 and state.pin.matches(ENABLED_PIN)  # still locked
    assert NEW_PIN not in log.read_text("utf-8")


def test_a_locked_puk_through_the_cli_is_one_line(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    text = path.read_text("utf-8")
    locked = json.loads(text)
    locked["key_tries"]["PUK"] = 0
    path.write_text(json.dumps(locked, ensure_ascii=False, indent=2) + "\n", "utf-8")
    assert disk(path).tries_of(KeyName.PUK) == 0
    before = path.read_bytes()
    log = tmp_path / "o.log"
    result = cardio(
        "outlet", "cancel-pin", "--card", path, "--id", ENABLED_SSN, "--test-key", "--log", log
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("cardio: the card's unblocking key is locked")
    assert "send the card back to its issuer" in line
    assert path.read_bytes() == before
    assert results(log) == ["started", "6983"]


def test_the_right_key_after_two_wrong_ones_restores_the_puk_tries(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    log = tmp_path / "o.log"
    wrong = changed_puk()
    for _ in range(2):
        assert isinstance(run(path, Operation.CANCEL_PIN, ENABLED_SSN, log, wrong), WrongKeyError)
    assert disk(path).tries_of(KeyName.PUK) == 1
    outcome = run(path, Operation.CANCEL_PIN, ENABLED_SSN, log)
    assert isinstance(outcome, Outcome) and outcome.ok, repr(outcome)
    after = disk(path)
    assert after.tries_of(KeyName.PUK) == KEY_TRY_LIMIT
    assert after.pin_state is PinState.DISABLED


def test_a_wrong_key_spends_a_try_durably_before_the_comparison(session_on) -> None:
    """The counter is on disk as soon as the command is answered (docs/card.md §4)."""
    s = session_on("employee-enabled")
    wrong = bytes(16)
    assert s.send(s.puk_auth(s.challenge(), wrong)) == b"\x63\xc2"
    assert disk(s.path).tries_of(KeyName.PUK) == 2
    s.prove_puk()
    assert disk(s.path).tries_of(KeyName.PUK) == KEY_TRY_LIMIT


# --- the card's side: challenge, authentication, MAC --------------------------------------------


def test_84_24_without_the_puk_authentication_is_6982(session_on) -> None:
    s = session_on("locked")
    before = s.path.read_bytes()
    command = s.unblock(s.challenge())  # a right MAC, but no EXTERNAL AUTHENTICATE
    assert s.send(command) == b"\x69\x82"
    assert s.send(s.reset(s.challenge(), NEW_PIN)) == b"\x69\x82"
    assert s.path.read_bytes() == before


def test_the_puk_authentication_ends_with_a_reset(session_on) -> None:
    s = session_on("locked")
    before = s.path.read_bytes()
    s.prove_puk()
    s.reader.reset()
    SocialSecurityCard(s.reader).select_application()
    assert s.send(s.unblock(s.challenge())) == b"\x69\x82"
    assert s.path.read_bytes() == before


def test_84_24_without_a_challenge_is_6984(session_on) -> None:
    s = session_on("locked")
    before = s.path.read_bytes()
    challenge = s.challenge()
    assert s.send(s.puk_auth(challenge)) == OK  # it spent the challenge
    assert s.send(s.unblock(challenge)) == b"\x69\x84"
    assert s.path.read_bytes() == before


def test_a_challenge_serves_exactly_the_next_command(session_on) -> None:
    s = session_on("locked")
    before = s.path.read_bytes()
    challenge = s.challenge()
    SocialSecurityCard(s.reader).select_application()  # any command spends it
    assert s.send(s.puk_auth(challenge)) == b"\x69\x84"  # and no PUK try is spent
    assert s.path.read_bytes() == before
    s.prove_puk()
    challenge = s.challenge()
    assert s.send(EMPTY_VERIFY)[-2:] == b"\x69\x83"  # the locked PIN: spends the challenge
    assert s.send(s.unblock(challenge)) == b"\x69\x84"
    assert s.path.read_bytes() == before


@pytest.mark.parametrize("flip", [0, 5, -1], ids=["first-cryptogram-byte", "in-body", "mac"])
def test_84_24_with_a_wrong_mac_or_body_is_6988(session_on, flip: int) -> None:
    s = session_on("locked")
    before = s.path.read_bytes()
    s.prove_puk()
    command = bytearray(s.reset(s.challenge(), NEW_PIN))
    at = flip if flip < 0 else 5 + flip
    command[at] ^= 0x01
    assert s.send(bytes(command)) == b"\x69\x88"
    assert s.path.read_bytes() == before
    assert disk(s.path).tries_left == 0


def test_the_mac_of_another_key_is_6988(session_on) -> None:
    s = session_on("locked")
    before = s.path.read_bytes()
    s.prove_puk()
    other = disk(s.path).keys[KeyName.STKSSSE]
    challenge = s.challenge()
    command = security.secure_apdu(SM4, other, challenge, 0x84, 0x24, 0x00, 0x00, b"")
    assert s.send(command) == b"\x69\x88"
    assert s.path.read_bytes() == before


# --- the outlet's answers to 6988 and to a key source that cannot serve the card ---------------


class BadMac:
    """The fixture issuer's keys, but every protected command's MAC is off by one bit."""

    def __init__(self) -> None:
        self.keys = fixture_master_key()

    def terminal_number(self) -> str:
        return self.keys.terminal_number()

    def internal_auth(self, card: CardIdentity, r1: bytes, r2: bytes) -> bytes:
        return self.keys.internal_auth(card, r1, r2)

    def external_auth(
        self, key: KeyName, card: CardIdentity, challenge: bytes, raw: bytes
    ) -> bytes:
        return self.keys.external_auth(key, card, challenge, raw)

    def secure_apdu(self, *args: object) -> bytes:
        apdu = self.keys.secure_apdu(*args)  # type: ignore[arg-type]
        return apdu[:-1] + bytes((apdu[-1] ^ 0x01,))


def test_a_mac_the_card_refuses_is_a_wrong_key_and_changes_nothing(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    log = tmp_path / "o.log"
    trace: list[str] = []
    outcome = run(path, Operation.RESET_PIN, LOCKED_SSN, log, BadMac(), NEW_PIN, trace)
    assert isinstance(outcome, WrongKeyError), repr(outcome)
    assert "tries left" not in str(outcome)
    assert trace[-1] == "< 69 88"
    assert path.read_bytes() == before  # the PUK's try was given back by its success
    assert results(log) == ["started", "6988"]


def test_a_des_key_source_on_an_sm4_card_fails_before_any_authentication(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    log = tmp_path / "o.log"
    des = Issuer(Algorithm.DES, dict(fixture_issuer().masters))
    trace: list[str] = []
    outcome = run(path, Operation.CANCEL_PIN, ENABLED_SSN, log, MasterKeySource(des), trace=trace)
    assert isinstance(outcome, KeySourceError), repr(outcome)
    assert "the card uses SM4 but the issuer holds DES keys" in str(outcome)
    # not even the card's check: its answer cannot be computed for an SM4 card
    assert trace, "the card was read"
    assert not any(ln.startswith(("> 00 88 ", "> 00 84 ", "> 00 82 ", "> 84 ")) for ln in trace)
    assert path.read_bytes() == before
    assert results(log) == ["failed:"]  # nothing that could change the card: no intent line


def test_a_des_key_file_on_an_sm4_card_through_the_cli_is_one_line(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    key = tmp_path / "des.json"
    masters = {k.value: v.hex().upper() for k, v in fixture_issuer().masters.items()}
    key.write_text(json.dumps({"algorithm": "DES", "keys": masters}), "ascii")
    key.chmod(0o600)
    log = tmp_path / "o.log"
    result = cardio(
        "outlet", "cancel-pin", "--card", path, "--id", ENABLED_SSN, "--key", key, "--log", log
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "cardio: the card uses SM4 but the issuer holds DES keys; use keys made for SM4 cards"
    ]
    assert path.read_bytes() == before
    assert results(log) == ["failed:"]


@pytest.mark.parametrize("issuer", ["other-issuer", "changed-puk"])
def test_the_wrong_key_message_names_only_options_the_cli_has(tmp_path: Path, issuer: str) -> None:
    path = new_card(tmp_path, "employee-enabled")
    key = tmp_path / "other.json"
    keys = counterfeit_issuer() if issuer == "other-issuer" else changed_puk_issuer()
    masters = {k.value: v.hex().upper() for k, v in keys.masters.items()}
    key.write_text(json.dumps({"algorithm": "SM4", "keys": masters}), "ascii")
    key.chmod(0o600)
    result = cardio(
        "outlet",
        "cancel-pin",
        "--card",
        path,
        "--id",
        ENABLED_SSN,
        "--key",
        key,
        "--log",
        tmp_path / "o.log",
    )
    assert result.returncode == 1
    usage = cardio("outlet", "--help").stdout
    assert "--key or --psam" in result.stderr
    for option in ("--key", "--psam"):
        assert option in usage, option


def test_the_log_of_a_refused_key_does_not_call_it_a_wrong_pin(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    log = tmp_path / "o.log"
    outcome = run(path, Operation.CANCEL_PIN, ENABLED_SSN, log, changed_puk())
    assert isinstance(outcome, WrongKeyError), repr(outcome)
    last = json.loads(log.read_text("utf-8").splitlines()[-1])
    assert last["result"] == "63C2 outlet key refused, 2 tries left"
    assert "PIN" not in str(last["result"])
