"""The service outlet: `cardio.outlet` and `cardio outlet` (docs/card.md §4, §5).

docs/terminal-rules.md S6 (reset at an outlet with the holder's ID), S7 (the online query
password, not the card PIN), S13 (activation), S14 (restore the initial PIN), S15 (the
new PIN's rules), S16 (cancel the PIN), S17 (a locked card is unblocked only here).

Each operation runs three ways: in process (Outlet over a VirtualReader), through the
`cardio outlet` CLI on a card file (--card), and through the real PC/SC stack (pcscd +
vpcd + `cardio serve`, CLI with --reader). After each, the card is checked through the
same channel: VERIFY, GET DATA, and a PharmacyFlow driven by a small worker.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flow_driver import Worker
from pcsc_stack import slot_name

from cardio import cli
from cardio.card import profiles, store
from cardio.card.state import CardState, LifeCycle, PinState
from cardio.identity import check_digit, id_problem
from cardio.outlet import (
    IdMismatchError,
    KeyFileError,
    Operation,
    Outlet,
    OutletLog,
    PinPolicyError,
    WrongKeyError,
    fixture_master_key,
    load_key,
)
from cardio.protocol import PinStatus, SocialSecurityCard
from cardio.readers.base import Reader
from cardio.readers.virtual import VirtualReader
from cardio.resources import data_dir
from terminal import rules
from terminal.flow.pharmacy import PharmacyFlow, Purpose, facts_of
from terminal.flow.view import Stage
from terminal.rules import Decision, Settings

INITIAL_PIN = "123456"
ENABLED_PIN = "802613"  # fixtures/README.md: employee-enabled, and locked before it locked
NEW_PIN = "592046"  # breaks no S15 rule for any test holder
OTHER_PIN = "470358"
OPERATOR = "counter-3 王芳"
VIRTUAL_PCD = "Virtual PCD 00 00"

UPGRADE = dt.date(2025, 4, 13)
AFTER = Settings(upgrade_date=UPGRADE, today=UPGRADE + dt.timedelta(days=30))

# The fixture holders (fixtures/cards), written out so the tests do not trust the code.
LOCKED_SSN = "310106197012050397"  # born 1970-12-05
ENABLED_SSN = "310101197911020480"  # born 1979-11-02
NOT_ACTIVATED_SSN = "310112200104080624"  # born 2001-04-08
EMPLOYEE_NEW_SSN = "310104198503122174"  # born 1985-03-12
X_SSN = "31010419850312118X"  # same birth date as employee-new, check digit X

OTHER_KEY = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")

LOG_FIELDS = {"time", "operator", "card_number", "operation", "result"}

# operation -> (profile it is meant for, that holder's ID)
TARGETS = {
    "reset-pin": ("locked", LOCKED_SSN),
    "restore-initial": ("employee-enabled", ENABLED_SSN),
    "cancel-pin": ("employee-enabled", ENABLED_SSN),
    "activate": ("not-activated", NOT_ACTIVATED_SSN),
}
# operation -> (P1 P2 Lc of its MAC-protected command, §7)
APDU_HEADS = {
    "reset-pin": "84 5E 00 00 07",
    "restore-initial": "84 5E 00 01 04",
    "cancel-pin": "84 5E 00 02 04",
    "activate": "84 18 00 00 04",
}


# --- helpers ---------------------------------------------------------------------------


def new_card(tmp_path: Path, profile: str, name: str | None = None) -> Path:
    path = tmp_path / (name or f"{profile}.json")
    profiles.new_card(profile, path)
    return path


def disk(path: Path) -> CardState:
    return store.read(path)


def s7(ssn: str) -> str:
    """S7 written out: the last 8 characters of the ID, a final X read as 0."""
    tail = ssn[-8:]
    return tail[:7] + ("0" if tail[7] in "Xx" else tail[7])


def cardio(*args: object, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess:
    """`cardio ARGS` as a child process; stdin is a pipe (never a tty)."""
    env = dict(os.environ, PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "cardio.cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=env,
    )


def outlet_args(
    operation: str,
    target: list[str],
    id_number: str,
    log: Path,
    *key: str,
    operator: str = OPERATOR,
) -> list[str]:
    return [
        "outlet",
        operation,
        *target,
        "--id",
        id_number,
        *key,
        "--operator",
        operator,
        "--log",
        str(log),
    ]


def pins_twice(new_pin: str | None) -> str:
    return f"{new_pin}\n{new_pin}\n" if new_pin is not None else ""


def log_lines(path: Path) -> list[dict[str, object]]:
    """Every line of the outlet log, "started" (intent) lines included."""
    lines = path.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def log_entries(path: Path) -> list[dict[str, object]]:
    """One entry per operation: its result line. Each "started" line, written before a
    MAC-protected command, must be followed by that operation's result line (same op)."""
    waiting: dict[object, dict[str, object]] = {}
    results = []
    for entry in log_lines(path):
        if entry["result"] == "started":
            assert entry["op"] not in waiting, entry
            waiting[entry["op"]] = entry
            continue
        results.append(entry)
        intent = waiting.pop(entry["op"], None)
        if intent is not None:
            for name in ("operator", "host", "card_number", "holder_id", "operation"):
                assert intent[name] == entry[name], (name, intent, entry)
            assert intent["time"] <= entry["time"]
    assert waiting == {}, f"a started line without its result: {waiting}"
    return results


def assert_started_then(path: Path, *results: str) -> None:
    """The raw log: a "started" line before each sent command's result (first words)."""
    assert [str(e["result"]).split()[0] for e in log_lines(path)] == list(results)


def assert_no_pins(text: str, *pins: str) -> None:
    for secret in {INITIAL_PIN, ENABLED_PIN, NEW_PIN, OTHER_PIN, *pins}:
        assert secret not in text, f"PIN {secret} found in {text!r}"


def privileged(trace: list[str]) -> list[str]:
    """Trace lines of MAC-protected commands or GET CHALLENGE."""
    return [ln for ln in trace if ln.startswith("> 84 ") or ln.startswith("> 00 84 ")]


def key_file(tmp_path: Path, key: bytes, mode: int, name: str = "issuer.key") -> Path:
    path = tmp_path / name
    path.write_text(key.hex(" ").upper() + "\n", "ascii")
    path.chmod(mode)
    return path


class Recording(VirtualReader):
    """A VirtualReader that keeps every raw APDU it sends (MACs and PIN bytes unmasked)."""

    def __init__(self, card_path: Path, **kw) -> None:
        self.raw: list[bytes] = []
        self.responses: list[bytes] = []
        super().__init__(card_path, **kw)

    def _exchange(self, apdu: bytes) -> bytes:
        self.raw.append(bytes(apdu))
        response = super()._exchange(apdu)
        self.responses.append(response)
        return response


def run_in_process(
    path: Path,
    operation: str,
    id_number: str,
    log: Path,
    new_pin: str | None = None,
    key: bytes | None = None,
    operator: str = OPERATOR,
):
    """Outlet.run over a traced VirtualReader; returns (outcome or exception, trace)."""
    trace: list[str] = []
    reader = VirtualReader(path, trace=trace.append)
    try:
        desk = Outlet(
            reader,
            key if key is not None else fixture_master_key(),
            operator=operator,
            log=OutletLog(log),
        )
        try:
            result = desk.run(Operation(operation), id_number, new_pin)
        except Exception as e:  # the test inspects it
            result = e
    finally:
        reader.close()
    return result, trace


def keys(flow: PharmacyFlow) -> list[str]:
    return [ln.key for ln in flow.view.lines]


# --- the three channels ----------------------------------------------------------------


@dataclass
class Desk:
    """One way to reach the outlet and, after it, the card."""

    kind: str
    log: Path
    served: Callable | None = None
    _cards: dict[Path, object] = field(default_factory=dict)
    _readers: list[Reader] = field(default_factory=list)

    def _serve(self, path: Path):
        assert self.served is not None
        if path not in self._cards:
            card = self.served(path)
            assert card.reader == VIRTUAL_PCD
            self._cards[path] = card
        return self._cards[path]

    def do(
        self,
        operation: str,
        path: Path,
        id_number: str,
        new_pin: str | None = None,
        now: str | None = None,
    ) -> None:
        """The operation, which must succeed; `now` is the CLI's state line expected after."""
        ssn = disk(path).holder.ssn
        if self.kind == "in-process":
            outcome, trace = run_in_process(path, operation, id_number, self.log, new_pin)
            assert not isinstance(outcome, BaseException), repr(outcome)
            assert outcome.ok and outcome.sw == 0x9000
            assert outcome.operation is Operation(operation)
            assert outcome.query_password == s7(ssn)
            heads = [ln[2:16] for ln in privileged(trace)]
            assert heads == ["00 84 00 00 08", APDU_HEADS[operation]]
            assert_no_pins("\n".join(trace))
            return
        if self.kind == "cli":
            target = ["--card", str(path)]
        else:
            target = ["--reader", self._serve(path).reader]
        result = cardio(
            *outlet_args(operation, target, id_number, self.log, "--test-key"),
            stdin=pins_twice(new_pin),
        )
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        lines = result.stdout.splitlines()
        assert f"operation   {operation}: done" in lines
        if now is not None:
            assert f"now         {now}" in lines
        assert f"online query password (查询密码, not the card PIN): {s7(ssn)}" in lines
        assert_no_pins(result.stdout + result.stderr)
        if self.kind == "pcsc":
            assert_no_pins(self._serve(path).output())

    @contextlib.contextmanager
    def reader(self, path: Path) -> Iterator[Reader]:
        """A connected reader on the card, closed after."""
        if self.kind == "pcsc":
            from cardio.readers.pcsc import PcscReader

            reader: Reader = PcscReader(self._serve(path).reader)
        else:
            reader = VirtualReader(path)
        try:
            reader.connect()
            yield reader
        finally:
            reader.close()

    def logged(self) -> list[dict[str, object]]:
        return log_entries(self.log)


@pytest.fixture(params=["in-process", "cli", pytest.param("pcsc", marks=pytest.mark.pcsc)])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Desk:
    served = request.getfixturevalue("served") if request.param == "pcsc" else None
    return Desk(request.param, tmp_path / "logs" / "outlet.log", served)


def assert_logged_once(desk: Desk, operation: str, path: Path, start: dt.datetime) -> None:
    entries = desk.logged()
    assert len(entries) == 1
    assert_started_then(desk.log, "started", "9000")
    entry = entries[0]
    assert set(entry) >= LOG_FIELDS
    assert entry["operator"] == OPERATOR
    assert entry["operation"] == operation
    assert entry["card_number"] == disk(path).card.card_number
    assert str(entry["result"]).split()[0] == "9000"
    when = dt.datetime.fromisoformat(str(entry["time"]))
    assert when.tzinfo is not None
    assert start.replace(microsecond=0) <= when <= dt.datetime.now().astimezone()
    assert_no_pins(desk.log.read_text("utf-8"))
    assert stat.S_IMODE(desk.log.stat().st_mode) == 0o600


# --- each operation, then the card in use (S17/S6, S14, S16, S13) ------------------------


def test_s17_s6_reset_pin_unblocks_a_locked_card_then_it_is_usable(
    desk: Desk, tmp_path: Path
) -> None:
    path = new_card(tmp_path, "locked")
    before = disk(path)
    assert (before.pin_state, before.tries_left, before.try_limit) == (PinState.ENABLED, 0, 6)
    start = dt.datetime.now().astimezone()

    desk.do("reset-pin", path, LOCKED_SSN, NEW_PIN, now="ACTIVE / PIN ENABLED / 6 of 6 tries")

    after = disk(path)
    assert after.pin_state is PinState.ENABLED
    assert after.tries_left == after.try_limit == 6
    assert after.pin.matches(NEW_PIN)
    assert not after.pin.matches(ENABLED_PIN)
    assert_logged_once(desk, "reset-pin", path, start)

    with desk.reader(path) as reader:
        card = SocialSecurityCard(reader)
        card.select_application()
        assert card.pin_status() == PinStatus(LifeCycle.ACTIVE, PinState.ENABLED, 6, 6)
        assert card.verify(NEW_PIN).sw == 0x9000
        assert card.pin_status().tries_left == 6
        # and a payment at the terminal asks for the new PIN and takes it
        worker = Worker(reader)
        flow = worker.start(Purpose.PAY, AFTER)
        assert flow.view.stage is Stage.PIN
        worker.enter(flow, NEW_PIN)
        assert worker.sent == ["ReadCard", "Verify"]
        assert flow.view.success is True
        assert keys(flow) == ["authorised", "amount"]
    assert disk(path).tries_left == 6


def test_s14_restore_initial_then_the_terminal_forces_a_change_again(
    desk: Desk, tmp_path: Path
) -> None:
    path = new_card(tmp_path, "employee-enabled")
    assert disk(path).pin_state is PinState.ENABLED
    start = dt.datetime.now().astimezone()

    desk.do("restore-initial", path, ENABLED_SSN, now="ACTIVE / PIN INITIAL / 6 of 6 tries")

    after = disk(path)
    assert after.pin_state is PinState.INITIAL
    assert after.tries_left == after.try_limit == 6
    assert after.pin.matches(INITIAL_PIN)
    assert_logged_once(desk, "restore-initial", path, start)

    with desk.reader(path) as reader:
        card = SocialSecurityCard(reader)
        card.select_application()
        assert card.pin_status() == PinStatus(LifeCycle.ACTIVE, PinState.INITIAL, 6, 6)
        assert card.verify(INITIAL_PIN).sw == 0x9000
        # S8 + S14: redone at a pharmacy after the upgrade date: the forced change
        worker = Worker(reader)
        flow = worker.start(Purpose.PAY, AFTER)
        assert worker.sent == ["ReadCard"]
        assert flow.view.stage is Stage.NEW_PIN
        assert keys(flow) == ["amount", "forced_change", "new_pin"]
        worker.enter(flow, NEW_PIN)
        worker.enter(flow, NEW_PIN)
        assert worker.sent == ["ReadCard", "ChangePin"]
        assert flow.view.success is True
        assert keys(flow) == ["changed", "authorised", "amount"]
    done = disk(path)
    assert done.pin_state is PinState.ENABLED and done.pin.matches(NEW_PIN)


def test_s16_cancel_pin_then_no_pin_is_asked(desk: Desk, tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    start = dt.datetime.now().astimezone()

    desk.do("cancel-pin", path, ENABLED_SSN, now="ACTIVE / PIN DISABLED / 6 of 6 tries")

    after = disk(path)
    assert after.pin_state is PinState.DISABLED
    assert after.tries_left == after.try_limit == 6
    assert after.life_cycle is LifeCycle.ACTIVE
    assert_logged_once(desk, "cancel-pin", path, start)

    with desk.reader(path) as reader:
        worker = Worker(reader)
        flow = worker.start(Purpose.PAY, AFTER)
        assert worker.sent == ["ReadCard"]
        assert flow.info is not None
        assert flow.info.status == PinStatus(LifeCycle.ACTIVE, PinState.DISABLED, 6, 6)
        assert rules.decide(facts_of(flow.info), AFTER) is Decision.NO_PIN
        assert flow.view.stage is Stage.CONFIRM_AMOUNT  # the holder confirms the amount
        worker.enter(flow, "")
        assert worker.sent == ["ReadCard"]
        assert flow.view.stage is Stage.RESULT
        assert flow.view.success is True
        assert keys(flow) == ["no_pin", "authorised", "amount"]
    assert disk(path).pin_state is PinState.DISABLED


def test_s13_activate_then_a_pin_change_is_allowed(desk: Desk, tmp_path: Path) -> None:
    path = new_card(tmp_path, "not-activated")
    with desk.reader(path) as reader:
        assert SocialSecurityCard(reader).verify(INITIAL_PIN).sw == 0x6985
        worker = Worker(reader)
        flow = worker.start(Purpose.CHANGE, AFTER)
        assert flow.view.success is False
        assert keys(flow) == ["not_activated"]
    assert disk(path).life_cycle is LifeCycle.NOT_ACTIVATED
    start = dt.datetime.now().astimezone()

    desk.do("activate", path, NOT_ACTIVATED_SSN, now="ACTIVE / PIN INITIAL / 6 of 6 tries")

    after = disk(path)
    assert after.life_cycle is LifeCycle.ACTIVE
    assert after.pin_state is PinState.INITIAL
    assert after.tries_left == 6
    assert_logged_once(desk, "activate", path, start)

    with desk.reader(path) as reader:
        card = SocialSecurityCard(reader)
        card.select_application()
        assert card.pin_status() == PinStatus(LifeCycle.ACTIVE, PinState.INITIAL, 6, 6)
        assert card.verify(INITIAL_PIN).sw == 0x9000
        worker = Worker(reader)
        flow = worker.start(Purpose.CHANGE, AFTER)
        # not refused; still on its initial PIN after the upgrade: the forced change (S8)
        assert flow.view.stage is Stage.NEW_PIN
        assert keys(flow) == ["forced_change", "new_pin"]
        for text in (NEW_PIN, NEW_PIN):
            worker.enter(flow, text)
        assert worker.sent == ["ReadCard", "ChangePin"]
        assert flow.view.success is True
        assert keys(flow) == ["changed"]
    done = disk(path)
    assert done.pin_state is PinState.ENABLED and done.pin.matches(NEW_PIN)


# --- wrong key: 6988, "key is wrong", card unchanged ---------------------------------------


@pytest.mark.parametrize("operation", list(TARGETS))
def test_wrong_key_in_process_6988_and_card_unchanged(tmp_path: Path, operation: str) -> None:
    profile, ssn = TARGETS[operation]
    path = new_card(tmp_path, profile)
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    new_pin = NEW_PIN if operation == "reset-pin" else None
    result, trace = run_in_process(path, operation, ssn, log, new_pin, key=OTHER_KEY)
    assert isinstance(result, WrongKeyError)
    assert "key is wrong" in str(result)
    sent = privileged(trace)
    assert [ln[2:16] for ln in sent] == ["00 84 00 00 08", APDU_HEADS[operation]]
    assert trace[trace.index(sent[1]) + 1] == "< 69 88"
    assert path.read_bytes() == before
    (entry,) = log_entries(log)
    assert entry["operation"] == operation
    assert str(entry["result"]).split()[0] == "6988"
    assert_started_then(log, "started", "6988")
    assert_no_pins(log.read_text("utf-8"))


@pytest.mark.parametrize("operation", list(TARGETS))
def test_wrong_key_cli_exit_1_key_is_wrong_card_unchanged(tmp_path: Path, operation: str) -> None:
    profile, ssn = TARGETS[operation]
    path = new_card(tmp_path, profile)
    before = path.read_bytes()
    key = key_file(tmp_path, OTHER_KEY, 0o600)
    log = tmp_path / "outlet.log"
    new_pin = NEW_PIN if operation == "reset-pin" else None
    result = cardio(
        *outlet_args(operation, ["--card", str(path)], ssn, log, "--key", str(key)),
        stdin=pins_twice(new_pin),
    )
    assert result.returncode == 1
    assert "key is wrong" in result.stderr
    assert result.stdout == ""
    assert path.read_bytes() == before
    (entry,) = log_entries(log)
    assert str(entry["result"]).split()[0] == "6988"
    assert_no_pins(result.stderr + log.read_text("utf-8"))


def test_wrong_key_over_pcsc_6988_and_card_unchanged(tmp_path: Path, served) -> None:
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    card = served(path, 0, "-v")
    assert card.reader == VIRTUAL_PCD
    key = key_file(tmp_path, OTHER_KEY, 0o600)
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--reader", VIRTUAL_PCD], LOCKED_SSN, log, "--key", str(key)),
        stdin=pins_twice(NEW_PIN),
    )
    assert result.returncode == 1
    assert "key is wrong" in result.stderr
    assert path.read_bytes() == before
    served_log = card.output()
    assert "> 84 5E 00 00 07 ** ** ** ** ** ** **" in served_log  # the MAC too
    assert "< 69 88" in served_log
    assert_no_pins(served_log + result.stderr + log.read_text("utf-8"))


def test_the_right_key_from_a_private_key_file_works(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    key = key_file(tmp_path, fixture_master_key(), 0o600)
    assert load_key(key) == b"TEST-ONLY-SM4KEY"
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("cancel-pin", ["--card", str(path)], ENABLED_SSN, log, "--key", str(key))
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert disk(path).pin_state is PinState.DISABLED


def sm4(key: bytes, mode, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    encryptor = Cipher(algorithms.SM4(key), mode).encryptor()
    return encryptor.update(data) + encryptor.finalize()


@pytest.mark.parametrize("operation", list(TARGETS))
def test_mac_is_the_one_of_section_7_written_out(tmp_path: Path, operation: str) -> None:
    """Card key = SM4-ECB(master, card id code); MAC = first 4 bytes of the last SM4-CBC
    block over CLA INS P1 P2 Lc' || data, ISO 9797-1 method 2, IV = challenge || 00*8."""
    from cryptography.hazmat.primitives.ciphers import modes

    profile, ssn = TARGETS[operation]
    path = new_card(tmp_path, profile)
    state = disk(path)
    card_key = sm4(b"TEST-ONLY-SM4KEY", modes.ECB(), state.card.identification_code)
    assert card_key == state.card_key
    reader = Recording(path)
    try:
        desk = Outlet(
            reader, fixture_master_key(), operator=OPERATOR, log=OutletLog(tmp_path / "o.log")
        )
        new_pin = NEW_PIN if operation == "reset-pin" else None
        assert desk.run(Operation(operation), ssn, new_pin).ok
    finally:
        reader.close()
    (at,) = [i for i, a in enumerate(reader.raw) if a[0] == 0x84]
    assert reader.raw[at - 1] == bytes.fromhex("0084000008")
    challenge = reader.responses[at - 1][:-2]
    assert reader.responses[at - 1][-2:] == b"\x90\x00" and len(challenge) == 8
    apdu = reader.raw[at]
    assert apdu[:5] == bytes.fromhex(APDU_HEADS[operation].replace(" ", ""))
    assert len(apdu) == 5 + apdu[4]
    data = apdu[5:-4]
    assert data == (bytes.fromhex(NEW_PIN) if operation == "reset-pin" else b"")
    padded = apdu[:5] + data + b"\x80"
    padded += bytes(-len(padded) % 16)
    expected = sm4(card_key, modes.CBC(challenge + bytes(8)), padded)[-16:][:4]
    assert apdu[-4:] == expected
    assert reader.responses[at] == b"\x90\x00"


@pytest.mark.parametrize(
    ("operation", "state"),
    [
        ("reset-pin", PinState.ENABLED),
        ("restore-initial", PinState.INITIAL),
        ("cancel-pin", PinState.DISABLED),
    ],
)
def test_every_pin_operation_unblocks_a_locked_card(
    tmp_path: Path, operation: str, state: PinState
) -> None:
    path = new_card(tmp_path, "locked")
    assert disk(path).tries_left == 0
    new_pin = NEW_PIN if operation == "reset-pin" else None
    outcome, _ = run_in_process(path, operation, LOCKED_SSN, tmp_path / "o.log", new_pin)
    assert not isinstance(outcome, BaseException), repr(outcome)
    after = disk(path)
    assert (after.pin_state, after.tries_left) == (state, 6)


# --- replay: a captured MAC-protected APDU is refused later -----------------------------


def replay(path: Path, apdu: str) -> None:
    """The captured APDU alone (6984), then after a fresh GET CHALLENGE (6988)."""
    before = path.read_bytes()
    result = cardio("send", "--card", path, apdu)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("> 84 ")
    assert lines[1] == "< 69 84"
    assert path.read_bytes() == before

    result = cardio("send", "--card", path, "00 84 00 00 08", apdu)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0] == "> 00 84 00 00 08"
    assert lines[1].endswith(" 90 00") and len(lines[1].split()) == 1 + 8 + 2
    assert lines[3] == "< 69 88"
    assert path.read_bytes() == before


@pytest.mark.parametrize("operation", list(TARGETS))
def test_replay_in_the_same_session_right_after_is_refused(tmp_path: Path, operation: str) -> None:
    """The challenge was spent by the command it protected: the same bytes again get 6984."""
    profile, ssn = TARGETS[operation]
    path = new_card(tmp_path, profile)
    reader = Recording(path)
    try:
        desk = Outlet(
            reader, fixture_master_key(), operator=OPERATOR, log=OutletLog(tmp_path / "o.log")
        )
        new_pin = NEW_PIN if operation == "reset-pin" else None
        assert desk.run(Operation(operation), ssn, new_pin).ok
        (raw,) = [a for a in reader.raw if a[0] == 0x84]
        before = path.read_bytes()
        assert reader.transmit_raw(raw) == b"\x69\x84"
        assert path.read_bytes() == before
    finally:
        reader.close()


def test_replayed_restore_initial_is_refused(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    trace: list[str] = []
    recording = Recording(path, trace=trace.append)
    try:
        desk = Outlet(
            recording, fixture_master_key(), operator=OPERATOR, log=OutletLog(tmp_path / "o.log")
        )
        assert desk.run(Operation.RESTORE_INITIAL, ENABLED_SSN).ok
    finally:
        recording.close()
    captured = [ln for ln in trace if ln.startswith("> 84 ")]
    assert captured == ["> 84 5E 00 01 04 ** ** ** **"]  # the trace hides the MAC
    (raw,) = [a for a in recording.raw if a[0] == 0x84]  # an eavesdropper's copy
    assert len(raw) == 5 + 4
    apdu = raw.hex(" ").upper()
    # S14: redone at a pharmacy, so a successful replay would be visible
    reader = VirtualReader(path)
    try:
        reader.connect()
        assert SocialSecurityCard(reader).change_pin(INITIAL_PIN, NEW_PIN).ok
    finally:
        reader.close()
    assert disk(path).pin_state is PinState.ENABLED

    replay(path, apdu)

    after = disk(path)
    assert after.pin_state is PinState.ENABLED
    assert after.pin.matches(NEW_PIN)
    assert not after.pin.matches(INITIAL_PIN)


def test_replayed_reset_pin_is_refused(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    trace: list[str] = []
    reader = Recording(path, trace=trace.append)
    try:
        desk = Outlet(
            reader, fixture_master_key(), operator=OPERATOR, log=OutletLog(tmp_path / "o.log")
        )
        assert desk.run(Operation.RESET_PIN, LOCKED_SSN, NEW_PIN).ok
    finally:
        reader.close()
    (raw,) = [a for a in reader.raw if a[0] == 0x84]
    assert raw[:5] == bytes.fromhex("845E000007")
    assert raw[5:8] == bytes.fromhex(NEW_PIN)
    # the trace masks the PIN bytes and the MAC over them: with the challenge (traced
    # too) and the issuer key, the MAC would give the PIN back by brute force
    (line,) = [ln for ln in trace if ln.startswith("> 84 ")]
    assert line == "> 84 5E 00 00 07 ** ** ** ** ** ** **"
    assert raw[8:].hex(" ").upper() not in "\n".join(trace)
    # the holder changes the PIN afterwards; a replay must not bring NEW_PIN back
    reader2 = VirtualReader(path)
    try:
        reader2.connect()
        assert SocialSecurityCard(reader2).change_pin(NEW_PIN, OTHER_PIN).ok
    finally:
        reader2.close()

    replay(path, raw.hex(" ").upper())

    after = disk(path)
    assert after.pin.matches(OTHER_PIN)
    assert not after.pin.matches(NEW_PIN)
    assert after.tries_left == 6


# --- the holder's ID first (S6, S16, S17: "with the holder's ID") ------------------------


WRONG_IDS = [
    pytest.param(EMPLOYEE_NEW_SSN, id="another-holder"),
    pytest.param("", id="empty"),
    pytest.param("0", id="one-digit"),
]


@pytest.mark.parametrize("wrong_id", WRONG_IDS)
@pytest.mark.parametrize("operation", list(TARGETS))
def test_id_mismatch_in_process_sends_nothing(
    tmp_path: Path, operation: str, wrong_id: str
) -> None:
    profile, ssn = TARGETS[operation]
    path = new_card(tmp_path, profile)
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    new_pin = NEW_PIN if operation == "reset-pin" else None
    result, trace = run_in_process(path, operation, wrong_id, log, new_pin)
    assert isinstance(result, IdMismatchError)
    assert "does not match" in str(result)
    assert "nothing was sent" in str(result)
    assert trace, "the card must have been read to compare the ID"
    assert privileged(trace) == []
    assert not any(ln.startswith("> 84") for ln in trace)
    assert path.read_bytes() == before
    (entry,) = log_entries(log)
    assert_started_then(log, "refused:")  # nothing was to be sent: no intent line
    assert entry["operation"] == operation
    assert str(entry["result"]).startswith("refused")
    assert entry["card_number"] == disk(path).card.card_number
    assert_no_pins(log.read_text("utf-8"))


@pytest.mark.parametrize("operation", list(TARGETS))
def test_id_mismatch_cli_exit_1_card_byte_identical(tmp_path: Path, operation: str) -> None:
    profile, ssn = TARGETS[operation]
    path = new_card(tmp_path, profile)
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    new_pin = NEW_PIN if operation == "reset-pin" else None
    # one digit off in the sequence part: the check digit does not save it
    wrong = ssn[:14] + str((int(ssn[14]) + 1) % 10) + ssn[15:]
    assert wrong != ssn
    result = cardio(
        *outlet_args(operation, ["--card", str(path)], wrong, log, "--test-key"),
        stdin=pins_twice(new_pin),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "does not match" in result.stderr
    assert "nothing was sent" in result.stderr
    assert path.read_bytes() == before
    (entry,) = log_entries(log)
    assert str(entry["result"]).startswith("refused")
    assert_no_pins(result.stderr + log.read_text("utf-8"))


def test_id_mismatch_cli_in_process_reader_sees_no_privileged_apdu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[Recording] = []

    def recording(card_path: Path, **kw) -> Recording:
        reader = Recording(card_path, **kw)
        made.append(reader)
        return reader

    monkeypatch.setattr(cli, "VirtualReader", recording)
    monkeypatch.setattr(sys, "stdin", io.StringIO(pins_twice(NEW_PIN)))
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    out = io.StringIO()
    code = cli.main(
        outlet_args(
            "reset-pin", ["--card", str(path)], ENABLED_SSN, tmp_path / "o.log", "--test-key"
        ),
        out=out,
    )
    assert code == 1
    assert out.getvalue() == ""
    assert "does not match" in capsys.readouterr().err
    assert len(made) == 1 and made[0].raw
    assert [a for a in made[0].raw if a[0] == 0x84 or a[:2] == b"\x00\x84"] == []
    assert path.read_bytes() == before


def test_id_mismatch_over_pcsc_sends_nothing(tmp_path: Path, served) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    card = served(path, 0, "-v")
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args(
            "restore-initial", ["--reader", VIRTUAL_PCD], EMPLOYEE_NEW_SSN, log, "--test-key"
        )
    )
    assert result.returncode == 1
    assert "does not match" in result.stderr
    served_log = card.output()
    assert "> 00 A4 04 00" in served_log  # the card was read
    assert "> 84 " not in served_log
    assert "> 00 84 " not in served_log
    assert path.read_bytes() == before


def make_x_card(tmp_path: Path) -> Path:
    """employee-new with its holder's ID changed to a valid one ending in X."""
    assert check_digit(X_SSN[:17]) == "X"
    assert id_problem(X_SSN) is None
    path = new_card(tmp_path, "employee-new", "x-holder.json")
    doc = json.loads(path.read_text("utf-8"))
    doc["holder"]["ssn"] = X_SSN
    assert doc["holder"]["birth_date"] == "1985-03-12"  # consistent with the ID
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", "utf-8")
    assert disk(path).holder.ssn == X_SSN
    return path


@pytest.mark.parametrize("given", [X_SSN, X_SSN.lower(), X_SSN[:17] + "x"])
def test_id_check_is_case_insensitive_for_a_final_x(tmp_path: Path, given: str) -> None:
    path = make_x_card(tmp_path)
    log = tmp_path / "outlet.log"
    result = cardio(*outlet_args("cancel-pin", ["--card", str(path)], given, log, "--test-key"))
    assert (result.returncode, result.stderr) == (0, "")
    assert disk(path).pin_state is PinState.DISABLED
    outcome, _ = run_in_process(path, "restore-initial", given, log)
    assert not isinstance(outcome, BaseException), repr(outcome)
    assert disk(path).pin_state is PinState.INITIAL


def test_id_with_x_read_as_0_is_not_the_holders_id(tmp_path: Path) -> None:
    path = make_x_card(tmp_path)
    before = path.read_bytes()
    result, trace = run_in_process(path, "cancel-pin", X_SSN[:17] + "0", tmp_path / "o.log")
    assert isinstance(result, IdMismatchError)
    assert privileged(trace) == []
    assert path.read_bytes() == before


# --- the key file ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_key_file_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    key = key_file(tmp_path, fixture_master_key(), mode)  # even the right key
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("cancel-pin", ["--card", str(path)], ENABLED_SSN, log, "--key", str(key))
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "chmod 600" in result.stderr
    assert str(key) in result.stderr
    assert path.read_bytes() == before
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(key)


def test_missing_key_file(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    missing = tmp_path / "no-such.key"
    result = cardio(
        *outlet_args(
            "cancel-pin",
            ["--card", str(path)],
            ENABLED_SSN,
            tmp_path / "o.log",
            "--key",
            str(missing),
        )
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no such key file" in result.stderr
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before


def test_key_and_test_key_are_mutually_exclusive(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    key = key_file(tmp_path, fixture_master_key(), 0o600)
    result = cardio(
        *outlet_args(
            "cancel-pin",
            ["--card", str(path)],
            ENABLED_SSN,
            tmp_path / "o.log",
            "--key",
            str(key),
            "--test-key",
        )
    )
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
    assert path.read_bytes() == before
    assert not (tmp_path / "o.log").exists()


def test_fixture_test_key_file_only_through_test_key(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    fixture_key = data_dir("keys") / "TEST-ONLY-master-key.hex"
    assert stat.S_IMODE(fixture_key.stat().st_mode) & 0o077  # a checkout makes it 0644
    result = cardio(
        *outlet_args(
            "cancel-pin",
            ["--card", str(path)],
            ENABLED_SSN,
            tmp_path / "o.log",
            "--key",
            str(fixture_key),
        )
    )
    assert result.returncode == 1
    assert "chmod 600" in result.stderr
    assert path.read_bytes() == before


def test_id_is_required_exits_2(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    result = cardio(
        "outlet", "cancel-pin", "--card", path, "--test-key", "--log", tmp_path / "o.log"
    )
    assert result.returncode == 2
    assert "--id" in result.stderr and "required" in result.stderr
    assert path.read_bytes() == before
    assert not (tmp_path / "o.log").exists()


def test_no_key_given_exits_2(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    result = cardio(
        *outlet_args("cancel-pin", ["--card", str(path)], ENABLED_SSN, tmp_path / "o.log")
    )
    assert result.returncode == 2
    assert "--key" in result.stderr and "--test-key" in result.stderr
    assert "required" in result.stderr
    assert path.read_bytes() == before
    assert not (tmp_path / "o.log").exists()


# --- reset-pin: the new PIN, twice, S15, never on a command line or in the output ---------


def test_reset_pin_reads_the_new_pin_twice_from_stdin(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--card", str(path)], LOCKED_SSN, log, "--test-key"),
        stdin=f"{NEW_PIN}\n{NEW_PIN}\n",
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert disk(path).pin.matches(NEW_PIN)
    assert NEW_PIN not in result.stdout
    assert NEW_PIN not in log.read_text("utf-8")


@pytest.mark.parametrize(
    "stdin",
    [f"{NEW_PIN}\n{OTHER_PIN}\n", f"{NEW_PIN}\n", f"{NEW_PIN}\n{NEW_PIN[:5]}\n"],
    ids=["different", "only-once", "second-short"],
)
def test_reset_pin_mismatch_refused_and_nothing_sent(tmp_path: Path, stdin: str) -> None:
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--card", str(path)], LOCKED_SSN, log, "--test-key"), stdin=stdin
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "do not match" in result.stderr
    assert path.read_bytes() == before
    assert_no_pins(result.stderr)
    if log.exists():
        assert_no_pins(log.read_text("utf-8"))


def test_reset_pin_mismatch_in_process_main_touches_no_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[Recording] = []

    def recording(card_path: Path, **kw) -> Recording:
        reader = Recording(card_path, **kw)
        made.append(reader)
        return reader

    monkeypatch.setattr(cli, "VirtualReader", recording)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{NEW_PIN}\n{OTHER_PIN}\n"))
    path = new_card(tmp_path, "locked")
    code = cli.main(
        outlet_args(
            "reset-pin", ["--card", str(path)], LOCKED_SSN, tmp_path / "o.log", "--test-key"
        ),
        out=io.StringIO(),
    )
    assert code == 1
    assert "do not match" in capsys.readouterr().err
    assert sum(len(r.raw) for r in made) == 0


LOCKED_BORN = dt.date(1970, 12, 5)
S15_BAD = [
    ("777777", "same-digits"),
    ("000000", "same-digits"),
    ("123456", "consecutive"),
    ("654321", "consecutive"),
    ("345678", "consecutive"),
    ("197012", "birth-date"),  # YYYYMMDD windows
    ("970120", "birth-date"),
    ("701205", "birth-date"),
    ("120570", "birth-date"),  # MMDDYY
    ("051270", "birth-date"),  # DDMMYY
    ("12345", "not-six-digits"),
    ("1234567", "not-six-digits"),
    ("59204a", "not-six-digits"),
    (s7(LOCKED_SSN), "not-six-digits"),  # S7: the query password is not a PIN
]


@pytest.mark.parametrize(("bad", "rule"), S15_BAD)
def test_reset_pin_s15_violation_refused_in_process(tmp_path: Path, bad: str, rule: str) -> None:
    path = new_card(tmp_path, "locked")
    assert disk(path).holder.birth_date == LOCKED_BORN
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    result, trace = run_in_process(path, "reset-pin", LOCKED_SSN, log, bad)
    assert isinstance(result, PinPolicyError)
    assert result.violation.value == rule
    assert privileged(trace) == []
    assert path.read_bytes() == before
    text = log.read_text("utf-8")
    (entry,) = log_entries(log)
    assert str(entry["result"]).startswith("refused")
    assert bad not in text
    assert bad not in str(result)


@pytest.mark.parametrize(("bad", "rule"), S15_BAD)
def test_reset_pin_s15_violation_refused_cli(tmp_path: Path, bad: str, rule: str) -> None:
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--card", str(path)], LOCKED_SSN, log, "--test-key"),
        stdin=f"{bad}\n{bad}\n",
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"breaks the PIN rules ({rule})" in result.stderr
    assert bad not in result.stderr
    assert path.read_bytes() == before
    assert bad not in log.read_text("utf-8")
    assert disk(path).tries_left == 0


def test_reset_pin_no_command_line_option_for_a_pin(tmp_path: Path) -> None:
    help_text = cardio("outlet", "--help")
    assert help_text.returncode == 0
    assert "--pin" not in help_text.stdout and "--new-pin" not in help_text.stdout
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    for extra in (["--pin", NEW_PIN], ["--new-pin", NEW_PIN], [NEW_PIN]):
        result = cardio(
            *outlet_args(
                "reset-pin", ["--card", str(path)], LOCKED_SSN, tmp_path / "o.log", "--test-key"
            ),
            *extra,
            stdin=pins_twice(NEW_PIN),
        )
        assert result.returncode == 2, extra
        assert path.read_bytes() == before


def test_reset_pin_never_in_stdout_stderr_log_or_card_file(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--card", str(path)], LOCKED_SSN, log, "--test-key"),
        stdin=pins_twice(NEW_PIN),
    )
    assert result.returncode == 0
    for text in (result.stdout, result.stderr, log.read_text("utf-8")):
        assert NEW_PIN not in text
        assert NEW_PIN.encode().hex() not in text.lower()
        assert bytes.fromhex(NEW_PIN).hex(" ") not in text.lower()


def test_reset_pin_with_no_pin_on_stdin_refused_and_nothing_changed(tmp_path: Path) -> None:
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    result = cardio(
        *outlet_args(
            "reset-pin", ["--card", str(path)], LOCKED_SSN, tmp_path / "o.log", "--test-key"
        ),
        stdin="",
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("cardio: ")
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before


# --- S7: the online query password -----------------------------------------------------------


def test_s7_query_password_shown_and_labelled_not_the_card_pin(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    result = cardio(
        *outlet_args(
            "restore-initial", ["--card", str(path)], ENABLED_SSN, tmp_path / "o.log", "--test-key"
        )
    )
    assert result.returncode == 0
    (line,) = [ln for ln in result.stdout.splitlines() if "查询密码" in ln]
    assert line == "online query password (查询密码, not the card PIN): 11020480"
    assert "not the card PIN" in line


def test_s7_query_password_of_a_holder_whose_id_ends_in_x(tmp_path: Path) -> None:
    path = make_x_card(tmp_path)
    result = cardio(
        *outlet_args(
            "restore-initial", ["--card", str(path)], X_SSN, tmp_path / "o.log", "--test-key"
        )
    )
    assert (result.returncode, result.stderr) == (0, "")
    (line,) = [ln for ln in result.stdout.splitlines() if "查询密码" in ln]
    assert line == "online query password (查询密码, not the card PIN): 03121180"
    outcome, _ = run_in_process(path, "cancel-pin", X_SSN, tmp_path / "o.log")
    assert not isinstance(outcome, BaseException), repr(outcome)
    assert outcome.query_password == "03121180"


# --- the outlet log -----------------------------------------------------------------------


def test_outlet_log_one_result_line_per_operation_refused_too(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    number = disk(path).card.card_number
    log = tmp_path / "audit" / "outlet.log"
    target = ["--card", str(path)]
    start = dt.datetime.now().astimezone().replace(microsecond=0)

    runs = [
        ("cancel-pin", ENABLED_SSN, None, 0),
        ("restore-initial", EMPLOYEE_NEW_SSN, None, 1),  # wrong ID
        ("reset-pin", ENABLED_SSN, "777777", 1),  # S15
        ("reset-pin", ENABLED_SSN, NEW_PIN, 0),
        ("restore-initial", ENABLED_SSN, None, 0),
    ]
    for operation, id_number, new_pin, code in runs:
        result = cardio(
            *outlet_args(operation, target, id_number, log, "--test-key"), stdin=pins_twice(new_pin)
        )
        assert result.returncode == code, (operation, result.stderr)
    key = key_file(tmp_path, OTHER_KEY, 0o600)
    result = cardio(*outlet_args("cancel-pin", target, ENABLED_SSN, log, "--key", str(key)))
    assert result.returncode == 1
    end = dt.datetime.now().astimezone()

    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text("utf-8")
    assert text.endswith("\n")
    entries = log_entries(log)
    assert len(entries) == 6
    # an intent line before each command sent to the card; none before a refusal
    assert_started_then(
        log,
        "started",
        "9000",
        "refused:",
        "refused:",
        "started",
        "9000",
        "started",
        "9000",
        "started",
        "6988",
    )
    for entry in entries:
        assert set(entry) >= LOG_FIELDS
        assert entry["operator"] == OPERATOR
        assert entry["card_number"] == number
        when = dt.datetime.fromisoformat(str(entry["time"]))
        assert when.tzinfo is not None and start <= when <= end
    assert [e["operation"] for e in entries] == [
        "cancel-pin",
        "restore-initial",
        "reset-pin",
        "reset-pin",
        "restore-initial",
        "cancel-pin",
    ]
    results = [str(e["result"]) for e in entries]
    assert results[0].split()[0] == "9000"
    assert results[1].startswith("refused") and "does not match" in results[1]
    assert results[2].startswith("refused") and "same-digits" in results[2]
    assert results[3].split()[0] == "9000"
    assert results[4].split()[0] == "9000"
    assert results[5].split()[0] == "6988"
    assert_no_pins(text, "777777")
    assert disk(path).pin_state is PinState.INITIAL


def test_outlet_log_default_operator_and_in_process(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    log = tmp_path / "outlet.log"
    outcome, _ = run_in_process(path, "cancel-pin", ENABLED_SSN, log, operator="desk-7")
    assert not isinstance(outcome, BaseException), repr(outcome)
    (entry,) = log_entries(log)
    assert_started_then(log, "started", "9000")
    assert entry["operator"] == "desk-7"
    assert entry["operation"] == "cancel-pin"
    assert entry["card_number"] == "A14933182"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_outlet_log_over_pcsc(tmp_path: Path, served) -> None:
    path = new_card(tmp_path, "locked")
    card = served(path, 0, "-v")
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--reader", slot_name(0)], LOCKED_SSN, log, "--test-key"),
        stdin=pins_twice(NEW_PIN),
    )
    assert (result.returncode, result.stderr) == (0, "")
    (entry,) = log_entries(log)
    assert entry["card_number"] == "A87171845"
    assert entry["operation"] == "reset-pin"
    assert str(entry["result"]).split()[0] == "9000"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert_no_pins(log.read_text("utf-8") + result.stdout + card.output())
    assert disk(path).pin.matches(NEW_PIN)


def test_outlet_log_records_a_reset_refused_for_a_pin_mismatch(tmp_path: Path) -> None:
    """'Every operation is recorded ... refused operations logged too': a reset-pin refused
    because the two entries differ is such an operation (nothing is sent to the card)."""
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--card", str(path)], LOCKED_SSN, log, "--test-key"),
        stdin=f"{NEW_PIN}\n{OTHER_PIN}\n",
    )
    assert result.returncode == 1
    assert path.read_bytes() == before
    assert log.exists(), "the refused reset-pin (PIN mismatch) left no line in the outlet log"
    (entry,) = log_entries(log)
    assert set(entry) >= LOG_FIELDS
    assert entry["operator"] == OPERATOR
    assert entry["operation"] == "reset-pin"
    assert str(entry["result"]).startswith("refused")
    assert "do not match" in str(entry["result"])
    assert_no_pins(log.read_text("utf-8"))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
