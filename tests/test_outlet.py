"""The service outlet: `cardio.outlet` and `cardio outlet` (docs/card.md §4, §5).

docs/terminal-rules.md S6 (reset at an outlet with the holder's ID), S7 (the online query
password, not the card PIN), S13 (activation), S14 (restore the initial PIN), S15 (the
new PIN's rules), S16 (cancel the PIN), S17 (a locked card is unblocked only here).

Each operation runs four ways: in process (Outlet over a VirtualReader), through the
`cardio outlet` CLI on a card file (--card) with the issuer's master keys (--test-key)
or with a virtual PSAM (--psam PSAMFILE), and through the real PC/SC stack (pcscd + vpcd
+ `cardio serve`, CLI with --reader). After each, the card is checked through the same
channel: VERIFY, GET DATA, and a PharmacyFlow driven by a small worker.

Each operation is the reader API's flow (part 7 §5.4, §13). The outlet reads the card
with its key source, so the card proves itself during the read (INTERNAL AUTHENTICATE,
00 88, after EF05; on a 3.00 card RKSSSE's GET CHALLENGE and 00 82 00 07 follow, before
EF06, so that the holder's ID can be read) and before the ID is compared; DF04 is not
read. Then GET CHALLENGE, the PUK's EXTERNAL AUTHENTICATE (00 82 00 06), GET CHALLENGE,
then the MAC-protected command (84 24, or our 84 18), under the card's own PUK, dispersed
from the issuer's master keys. A card that fails the check (counterfeit, or keys of
another issuer) gets nothing that can change it: no challenge, no 00 82, no PUK try
spent; nor does a card whose holder's ID does not match, or a new PIN that breaks S15.
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

from cardio import cli, security
from cardio.card import profiles, store
from cardio.card.state import CardState, LifeCycle, PinState
from cardio.identity import check_digit, id_problem
from cardio.issuer import Issuer, KeyName, counterfeit_issuer, fixture_issuer, parse_issuer
from cardio.keysource import CardIdentity, KeySource, MasterKeySource
from cardio.model import Algorithm
from cardio.outlet import (
    IdMismatchError,
    KeyFileError,
    NotOurCardError,
    Operation,
    Outlet,
    OutletLog,
    PinPolicyError,
    WrongKeyError,
    fixture_master_key,
    load_key,
)
from cardio.protocol import PinStatus, SocialSecurityCard
from cardio.psam import state as psam_state
from cardio.psam import store as psam_store
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
COUNTERFEIT_SSN = "310109198306141933"  # the counterfeit profile's holder (another issuer)

SM4 = Algorithm.SM4  # every fixture card's algorithm
KEY_TRY_LIMIT = 3  # EXTERNAL AUTHENTICATE's tries per key (docs/card.md §4)

LOG_FIELDS = {"time", "operator", "card_number", "operation", "result"}

# operation -> (profile it is meant for, that holder's ID): the `cardio outlet` choices,
# one for every Operation
TARGETS = {
    "reset-pin": ("locked", LOCKED_SSN),
    "restore-initial": ("employee-enabled", ENABLED_SSN),
    "cancel-pin": ("employee-enabled", ENABLED_SSN),
    "activate": ("not-activated", NOT_ACTIVATED_SSN),
    "unblock": ("locked", LOCKED_SSN),
}
ALL_TARGETS = TARGETS
# operation -> CLA INS P1 P2 Lc of its MAC-protected command (part 5 §6.8 table 25;
# Lc: 16 bytes of encrypted PIN block and 4 of MAC, or the MAC alone)
APDU_HEADS = {
    "reset-pin": "84 24 00 01 14",
    "restore-initial": "84 24 00 01 14",
    "cancel-pin": "84 24 00 01 04",
    "activate": "84 18 00 00 04",
    "unblock": "84 24 00 00 04",
}
INTERNAL_AUTH = "00 88 00 00 10"  # INTERNAL AUTHENTICATE, r1 || r2 (part 5 §6.7): the card's IRK
GET_CHALLENGE = "00 84 00 00 08"
PUK_AUTH = "00 82 00 06 10"  # EXTERNAL AUTHENTICATE, P2 06: the SSSE's PUK (part 9 table B1)
RKSSSE_AUTH = "00 82 00 07 10"  # EXTERNAL AUTHENTICATE, P2 07: RKSSSE, a 3.00 card's EF06
SELECT_EF06 = "> 00 A4 02 00 02 EF 06"
# what the outlet's read of the card sends with its key source (check_card): the card's
# check, and on a 3.00 card RKSSSE's authentication before the holder's data is read
READ_CHECK = [INTERNAL_AUTH]
READ_CHECK_V3 = [INTERNAL_AUTH, GET_CHALLENGE, RKSSSE_AUTH]


def flow(operation: str) -> list[str]:
    """The headers of the operation's own commands, the last four it sends, after the
    card is read and the ID compared: the PUK's authentication and the protected command."""
    return [GET_CHALLENGE, PUK_AUTH, GET_CHALLENGE, APDU_HEADS[operation]]


def sequence(operation: str) -> list[str]:
    """The headers of every authentication and protected command of an operation on a
    2.00 card: the read's check of the card, then the operation's flow."""
    return [*READ_CHECK, *flow(operation)]


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
    """Trace lines of every authentication and protected command the outlet sends: the
    read's check of the card (INTERNAL AUTHENTICATE; on a 3.00 card GET CHALLENGE and
    RKSSSE's EXTERNAL AUTHENTICATE too), then the flow's GET CHALLENGE, EXTERNAL
    AUTHENTICATE and the MAC-protected command."""
    return [ln for ln in trace if ln.startswith(("> 84 ", "> 00 84 ", "> 00 82 ", "> 00 88 "))]


def assert_only_the_reads_check(trace: list[str], check: list[str] = READ_CHECK) -> None:
    """The card was read with the outlet's keys and refused after that read: its check
    (nothing in it can change the card) came before the holder's data was read, and
    nothing else of an authentication was sent: no challenge of the flow, no 00 82 00 06,
    no protected command."""
    sent = privileged(trace)
    assert [ln[2:16] for ln in sent] == check
    holder = [i for i, ln in enumerate(trace) if ln.startswith(SELECT_EF06)]
    assert holder, "the holder's ID must have been read to compare it"
    assert trace.index(sent[-1]) < holder[0]
    assert changing(trace) == []


def changing(trace: list[str]) -> list[str]:
    """Trace lines of commands that can change the card: the protected ones (CLA 84) and
    the PUK's EXTERNAL AUTHENTICATE (a wrong key spends one of its tries)."""
    return [ln for ln in trace if ln.startswith(("> 84 ", f"> {PUK_AUTH} "))]


def key_file(tmp_path: Path, issuer: Issuer, mode: int, name: str = "issuer.json") -> Path:
    """A master-key file (cardio/issuer.py's JSON format) of `issuer`'s masters."""
    path = tmp_path / name
    doc = {
        "algorithm": issuer.algorithm.name,
        "keys": {k.value: v.hex().upper() for k, v in issuer.masters.items()},
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", "ascii")
    path.chmod(mode)
    return path


def changed_issuer(name: KeyName = KeyName.PUK) -> Issuer:
    """The fixture issuer with one master key changed (one bit)."""
    issuer = fixture_issuer()
    masters = dict(issuer.masters)
    masters[name] = bytes((masters[name][0] ^ 0x01,)) + masters[name][1:]
    return Issuer(issuer.algorithm, masters)


WRONG_ISSUERS = {"counterfeit": counterfeit_issuer, "changed-puk": changed_issuer}


def card_doc(path: Path) -> dict[str, object]:
    return json.loads(path.read_text("utf-8"))


def assert_only_puk_tries_spent(path: Path, before: bytes, spent: int = 1) -> None:
    """The card file is `before` but for the PUK's EXTERNAL AUTHENTICATE counter."""
    expected = json.loads(before)
    assert expected["key_tries"]["PUK"] == KEY_TRY_LIMIT
    expected["key_tries"]["PUK"] -= spent
    assert card_doc(path) == expected
    assert disk(path).tries_of(KeyName.PUK) == KEY_TRY_LIMIT - spent


def card_puk(path: Path) -> bytes:
    """The card's own PUK, from its file's secrets."""
    return bytes.fromhex(card_doc(path)["secrets"]["keys"]["PUK"])  # type: ignore[index]


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
    keys: KeySource | None = None,
    operator: str = OPERATOR,
):
    """Outlet.run over a traced VirtualReader; returns (outcome or exception, trace)."""
    trace: list[str] = []
    reader = VirtualReader(path, trace=trace.append)
    try:
        desk = Outlet(
            reader,
            keys if keys is not None else fixture_master_key(),
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
    psam: Path | None = None  # kind "psam": the PSAM file the CLI is given (--psam)
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
            sent = privileged(trace)
            assert [ln[2:16] for ln in sent] == sequence(operation)
            for line in sent:  # each answered 9000 (the challenges with their bytes)
                assert trace[trace.index(line) + 1].endswith("90 00"), line
            assert_no_pins("\n".join(trace))
            return
        if self.kind == "pcsc":
            target = ["--reader", self._serve(path).reader]
        else:
            target = ["--card", str(path)]
        key = ["--psam", str(self.psam)] if self.kind == "psam" else ["--test-key"]
        result = cardio(
            *outlet_args(operation, target, id_number, self.log, *key),
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


def psam_file(tmp_path: Path, name: str = "psam.json") -> Path:
    """A virtual PSAM holding the test issuer's masters, made as an operator makes one:
    `cardio card new --profile psam FILE`."""
    path = tmp_path / name
    made = cardio("card", "new", "--profile", "psam", path)
    assert (made.returncode, made.stderr) == (0, ""), made.stderr
    assert psam_store.is_psam_file(path)
    return path


@pytest.fixture(params=["in-process", "cli", "psam", pytest.param("pcsc", marks=pytest.mark.pcsc)])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Desk:
    served = request.getfixturevalue("served") if request.param == "pcsc" else None
    psam = psam_file(tmp_path) if request.param == "psam" else None
    return Desk(request.param, tmp_path / "logs" / "outlet.log", served, psam)


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


# --- keys of another issuer, a counterfeit card: the check fails, nothing else is sent --------

NOT_OURS = "the card failed the authenticity check with this outlet's keys"


def assert_refused_unchanged(path: Path, before: bytes, log: Path, operation: str) -> None:
    """The card file byte for byte as before (no PUK try spent), and one "refused:" line
    in the log without an intent line: nothing was to be sent that could change the card."""
    assert path.read_bytes() == before
    assert disk(path).tries_of(KeyName.PUK) == KEY_TRY_LIMIT
    (entry,) = log_entries(log)
    assert_started_then(log, "refused:")
    assert entry["operation"] == operation
    assert str(entry["result"]).startswith(f"refused: {NOT_OURS}")
    assert_no_pins(log.read_text("utf-8"))


@pytest.mark.parametrize("operation", list(ALL_TARGETS))
def test_keys_of_another_issuer_fail_the_card_check_and_send_nothing_else(
    tmp_path: Path, operation: str
) -> None:
    """counterfeit_issuer()'s keys: the card's INTERNAL AUTHENTICATE answer is not theirs
    (NotOurCardError, a WrongKeyError); no GET CHALLENGE, no 00 82, no PUK try spent."""
    profile, ssn = ALL_TARGETS[operation]
    path = new_card(tmp_path, profile)
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    new_pin = NEW_PIN if operation == "reset-pin" else None
    keys = MasterKeySource(counterfeit_issuer())
    result, trace = run_in_process(path, operation, ssn, log, new_pin, keys=keys)
    assert isinstance(result, NotOurCardError), repr(result)
    assert isinstance(result, WrongKeyError)
    assert str(result).startswith(NOT_OURS)
    assert "nothing was sent to change it" in str(result)
    assert "tries left" not in str(result)
    sent = privileged(trace)
    assert [ln[2:16] for ln in sent] == [INTERNAL_AUTH]
    assert trace[trace.index(sent[0]) + 1].endswith("90 00")  # it answered, but not right
    assert changing(trace) == []
    assert_refused_unchanged(path, before, log, operation)


@pytest.mark.parametrize("operation", list(ALL_TARGETS))
def test_a_counterfeit_card_at_the_outlet_costs_no_puk_try(tmp_path: Path, operation: str) -> None:
    """The counterfeit profile (its keys from another issuer) with the right keys: the
    same refusal, and the card file byte for byte as before."""
    path = new_card(tmp_path, "counterfeit")
    assert disk(path).holder.ssn == COUNTERFEIT_SSN
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    new_pin = NEW_PIN if operation == "reset-pin" else None
    result, trace = run_in_process(path, operation, COUNTERFEIT_SSN, log, new_pin)
    assert isinstance(result, NotOurCardError), repr(result)
    assert [ln[2:16] for ln in privileged(trace)] == [INTERNAL_AUTH]
    assert_refused_unchanged(path, before, log, operation)


def test_a_counterfeit_card_through_the_cli_costs_no_puk_try(tmp_path: Path) -> None:
    path = new_card(tmp_path, "counterfeit")
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--card", str(path)], COUNTERFEIT_SSN, log, "--test-key"),
        stdin=pins_twice(NEW_PIN),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"cardio: {NOT_OURS}")
    assert "--key or --psam" in line  # both are `cardio outlet` options now
    assert_refused_unchanged(path, before, log, "reset-pin")


@pytest.mark.parametrize("operation", list(TARGETS))
def test_keys_of_another_issuer_through_the_cli_exit_1_nothing_sent(
    tmp_path: Path, operation: str
) -> None:
    profile, ssn = TARGETS[operation]
    path = new_card(tmp_path, profile)
    before = path.read_bytes()
    key = key_file(tmp_path, counterfeit_issuer(), 0o600)
    log = tmp_path / "outlet.log"
    new_pin = NEW_PIN if operation == "reset-pin" else None
    result = cardio(
        *outlet_args(operation, ["--card", str(path)], ssn, log, "--key", str(key)),
        stdin=pins_twice(new_pin),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"cardio: {NOT_OURS}")
    assert "Traceback" not in result.stderr
    assert_refused_unchanged(path, before, log, operation)
    assert_no_pins(result.stderr)


def test_keys_of_another_issuer_over_pcsc_send_nothing_after_the_check(
    tmp_path: Path, served
) -> None:
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    card = served(path, 0, "-v")
    assert card.reader == VIRTUAL_PCD
    key = key_file(tmp_path, counterfeit_issuer(), 0o600)
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--reader", VIRTUAL_PCD], LOCKED_SSN, log, "--key", str(key)),
        stdin=pins_twice(NEW_PIN),
    )
    assert result.returncode == 1
    assert NOT_OURS in result.stderr
    assert_refused_unchanged(path, before, log, "reset-pin")
    served_log = card.output()
    assert f"> {INTERNAL_AUTH} " in served_log  # the card was checked
    for head in ("> 00 84 ", "> 00 82 ", "> 84 "):
        assert head not in served_log, head
    assert_no_pins(served_log + result.stderr + log.read_text("utf-8"))


# --- the PUK alone differs: the check passes, EXTERNAL AUTHENTICATE fails, one try spent -----


@pytest.mark.parametrize("operation", list(ALL_TARGETS))
def test_a_changed_puk_in_process_63c2_and_only_a_puk_try_spent(
    tmp_path: Path, operation: str
) -> None:
    """Keys with the issuer's IRK but another PUK: the card passes the check, then refuses
    the PUK (63C2); the protected command is never sent."""
    profile, ssn = ALL_TARGETS[operation]
    path = new_card(tmp_path, profile)
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    new_pin = NEW_PIN if operation == "reset-pin" else None
    keys = MasterKeySource(changed_issuer())
    result, trace = run_in_process(path, operation, ssn, log, new_pin, keys=keys)
    assert isinstance(result, WrongKeyError), repr(result)
    assert not isinstance(result, NotOurCardError)
    assert "refused the outlet's key (2 tries left on the card)" in str(result)
    assert "--key or --psam" in str(result)
    sent = privileged(trace)
    assert [ln[2:16] for ln in sent] == [INTERNAL_AUTH, GET_CHALLENGE, PUK_AUTH]
    assert trace[trace.index(sent[2]) + 1] == "< 63 C2"
    assert not any(ln.startswith("> 84 ") for ln in trace)
    assert_only_puk_tries_spent(path, before)
    (entry,) = log_entries(log)
    assert entry["operation"] == operation
    assert entry["result"] == "63C2 outlet key refused, 2 tries left"
    assert_started_then(log, "started", "63C2")
    assert_no_pins(log.read_text("utf-8"))


def test_a_key_file_with_a_changed_puk_is_refused_by_the_card(tmp_path: Path) -> None:
    """Only the PUK differs from the card's issuer's: the card still refuses it."""
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    key = key_file(tmp_path, changed_issuer(), 0o600)
    log = tmp_path / "o.log"
    result = cardio(
        *outlet_args("cancel-pin", ["--card", str(path)], ENABLED_SSN, log, "--key", str(key))
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("cardio: the card refused the outlet's key (2 tries left on the card)")
    assert_only_puk_tries_spent(path, before)
    assert [e["result"] for e in log_entries(log)] == ["63C2 outlet key refused, 2 tries left"]


def test_a_changed_puk_over_pcsc_63c2_and_only_a_puk_try_spent(tmp_path: Path, served) -> None:
    path = new_card(tmp_path, "locked")
    before = path.read_bytes()
    card = served(path, 0, "-v")
    assert card.reader == VIRTUAL_PCD
    key = key_file(tmp_path, changed_issuer(), 0o600)
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--reader", VIRTUAL_PCD], LOCKED_SSN, log, "--key", str(key)),
        stdin=pins_twice(NEW_PIN),
    )
    assert result.returncode == 1
    assert "refused the outlet's key (2 tries left on the card)" in result.stderr
    assert_only_puk_tries_spent(path, before)
    served_log = card.output()
    assert f"> {INTERNAL_AUTH} " in served_log
    assert f"> {PUK_AUTH} " in served_log
    assert "< 63 C2" in served_log
    assert "> 84 " not in served_log  # no protected command after the refusal
    assert_no_pins(served_log + result.stderr + log.read_text("utf-8"))


def test_a_locked_puk_is_logged_as_the_puk_s_not_a_pin_s(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    doc = card_doc(path)
    doc["key_tries"]["PUK"] = 0  # type: ignore[index]
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", "utf-8")
    log = tmp_path / "outlet.log"
    result, _ = run_in_process(path, "cancel-pin", ENABLED_SSN, log)
    assert "locked" in str(result)
    (entry,) = log_entries(log)
    assert entry["result"] == "6983 the card's PUK is locked"


def test_the_right_key_from_a_private_key_file_works(tmp_path: Path) -> None:
    path = new_card(tmp_path, "employee-enabled")
    key = key_file(tmp_path, fixture_issuer(), 0o600)
    # the file's keys give the fixture issuer's cryptograms, not another issuer's
    state = disk(path)
    card = CardIdentity(SM4, state.card.identification_code, state.historical)
    challenge, raw = bytes(range(8)), bytes(range(8, 16))
    loaded = load_key(key).external_auth(KeyName.PUK, card, challenge, raw)
    assert loaded == fixture_master_key().external_auth(KeyName.PUK, card, challenge, raw)
    assert loaded == security.authentication(SM4, state.keys[KeyName.PUK], challenge, raw)
    assert loaded != MasterKeySource(counterfeit_issuer()).external_auth(
        KeyName.PUK, card, challenge, raw
    )
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("cancel-pin", ["--card", str(path)], ENABLED_SSN, log, "--key", str(key))
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert disk(path).pin_state is PinState.DISABLED
    assert disk(path).tries_of(KeyName.PUK) == KEY_TRY_LIMIT


def sm4_ecb(key: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(data) + encryptor.finalize()


def sm4_cbc_last(key: bytes, data: bytes) -> bytes:
    """The last block of SM4-CBC from a zero IV."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.SM4(key), modes.CBC(bytes(16))).encryptor()
    return (encryptor.update(data) + encryptor.finalize())[-16:]


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


PIN_OF = {"reset-pin": NEW_PIN, "restore-initial": INITIAL_PIN}


@pytest.mark.parametrize("operation", list(ALL_TARGETS))
def test_protected_command_is_the_one_of_part_4_written_out(tmp_path: Path, operation: str) -> None:
    """The card's PUK = the issuer's PUK master dispersed province, city, card (part 9
    §7.3); EXTERNAL AUTHENTICATE's cryptogram = SM4(session key, raw || 00*8), halves
    XORed (part 4 §9.3.2); the command's session key = SM4(PUK, challenge || 00*8); the
    PIN block LD || PIN || 80 00.. encrypted (§8.3); the MAC over CLA INS P1 P2 Lc ||
    data, padded 80 00.., SM4-CBC from a zero IV, the last block's four pieces XORed
    (§8.2.4.2). The 84 24 (or 84 18) APDU is security.secure_apdu's, byte for byte."""
    profile, ssn = ALL_TARGETS[operation]
    path = new_card(tmp_path, profile)
    doc = card_doc(path)
    puk = card_puk(path)
    ident = bytes.fromhex(doc["card"]["identification_code"])  # type: ignore[index]
    historical = bytes.fromhex(str(doc["atr_historical"]))
    assert puk == disk(path).keys[KeyName.PUK]
    # the card's PUK, dispersed step by step from the issuer's master (part 9 §7.3)
    assert ident[:3] == bytes.fromhex("310000")  # region 310000 (Shanghai)
    province, city, serial = b"310000sh", b"310000sx", historical[5:13]
    assert security.dispersion_factors(ident, historical) == (province, city, serial)
    key = fixture_issuer().masters[KeyName.PUK]
    for factor in (province, city, serial):
        key = sm4_ecb(key, factor + xor(factor, b"\xff" * 8))
    assert key == puk

    reader = Recording(path)
    try:
        desk = Outlet(
            reader, fixture_master_key(), operator=OPERATOR, log=OutletLog(tmp_path / "o.log")
        )
        assert desk.run(Operation(operation), ssn, PIN_OF.get(operation)).ok
    finally:
        reader.close()
    heads = [bytes.fromhex(h.replace(" ", "")) for h in flow(operation)]
    # the card was read first, checked during the read (INTERNAL AUTHENTICATE, before
    # the holder's data); then exactly the four commands of the flow, the last sent
    assert [a[:5] for a in reader.raw[-4:]] == heads
    read = reader.raw[:-4]
    checks = [i for i, a in enumerate(read) if a[:2] in (b"\x00\x84", b"\x00\x82", b"\x00\x88")]
    assert [read[i][:5] for i in checks] == [bytes.fromhex("0088000010")]
    assert not any(a[0] == 0x84 for a in read)
    (at,) = checks
    assert at < read.index(bytes.fromhex("00A4020002EF06"))  # before the holder's ID
    assert all(r[-2:] == b"\x90\x00" for r in [reader.responses[at], *reader.responses[-4:]])
    internal = reader.raw[at]
    get1, auth, get2, command = reader.raw[-4:]
    challenge1, challenge2 = reader.responses[-4][:-2], reader.responses[-2][:-2]
    assert len(challenge1) == len(challenge2) == 8 and challenge1 != challenge2

    # INTERNAL AUTHENTICATE: 00 88 00 00 10 r1(8) r2(8) 00 (part 5 §6.7); the card answers
    # SM4(SM4(IRK, r1 || 00*8), r2 || 00*8), halves XORed, with its own IRK (part 4 §9.3.2)
    assert len(internal) == 5 + 16 + 1 and internal[-1] == 0x00
    r1, r2 = internal[5:13], internal[13:21]
    irk = bytes.fromhex(doc["secrets"]["keys"]["IRK"])  # type: ignore[index]
    y = sm4_ecb(sm4_ecb(irk, r1 + bytes(8)), r2 + bytes(8))
    assert reader.responses[at][:-2] == xor(y[:8], y[8:])

    # EXTERNAL AUTHENTICATE: 00 82 00 06 10 cryptogram(8) raw(8) (part 5 §6.4)
    assert len(auth) == 5 + 16
    cryptogram, raw = auth[5:13], auth[13:21]
    session1 = sm4_ecb(puk, challenge1 + bytes(8))
    assert session1 == security.session_key(SM4, puk, challenge1)
    y = sm4_ecb(session1, raw + bytes(8))
    assert cryptogram == xor(y[:8], y[8:])
    assert cryptogram == security.authentication(SM4, puk, challenge1, raw)

    # the protected command, under the second challenge's session key
    session2 = sm4_ecb(puk, challenge2 + bytes(8))
    assert session2 == security.session_key(SM4, puk, challenge2)
    new_pin = PIN_OF.get(operation)
    body = b""
    if new_pin is not None:
        block = security.pin_block(new_pin)
        assert block == bytes.fromhex(new_pin)  # 6 digits: 3 bytes of packed BCD
        plain = bytes((3,)) + block + b"\x80" + bytes(11)  # LD || PIN || 80 00..
        body = sm4_ecb(session2, plain)
        assert body == security.encrypt(SM4, session2, block)
        assert block not in command  # the PIN never travels in the clear
    header = heads[3]
    assert header[4] == len(body) + 4  # Lc counts the MAC
    padded = header + body + b"\x80"
    padded += bytes(-len(padded) % 16)
    last = sm4_cbc_last(session2, padded)
    mac = xor(xor(last[0:4], last[4:8]), xor(last[8:12], last[12:16]))
    assert command == header + body + mac
    cla, ins, p1, p2 = header[:4]
    assert command == security.secure_apdu(SM4, puk, challenge2, cla, ins, p1, p2, body)
    assert get1 == get2 == bytes.fromhex("0084000008")


@pytest.mark.parametrize(
    ("operation", "state"),
    [
        ("reset-pin", PinState.ENABLED),
        ("restore-initial", PinState.INITIAL),
        ("cancel-pin", PinState.DISABLED),
        ("unblock", PinState.ENABLED),
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
    assert after.tries_of(KeyName.PUK) == KEY_TRY_LIMIT


# --- replay: a captured MAC-protected APDU is refused later -----------------------------


def puk_proved(reader: Reader, puk: bytes) -> None:
    """The SSSE selected and the PUK's EXTERNAL AUTHENTICATE passed (as the outlet does,
    with the card's own PUK): the challenge it used is spent."""
    SocialSecurityCard(reader).select_application()
    answer = reader.transmit(bytes.fromhex("0084000008"))
    assert answer[-2:] == b"\x90\x00"
    raw = bytes(range(0x10, 0x18))
    cryptogram = security.authentication(SM4, puk, answer[:-2], raw)
    assert reader.transmit(bytes.fromhex("0082000610") + cryptogram + raw) == b"\x90\x00"


def replay(path: Path, apdu: bytes) -> None:
    """The captured APDU in a new session (6982: no PUK authentication), after a fresh
    GET CHALLENGE too (6982); then with the PUK proved again (by the outlet's key), alone
    (6984: no challenge left) and after a fresh GET CHALLENGE (6988: the MAC was for
    another challenge). The card file never changes."""
    before = path.read_bytes()
    text = apdu.hex(" ").upper()
    result = cardio("send", "--card", path, text)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"> {text[:14]} ** ")
    assert lines[1] == "< 69 82"
    assert path.read_bytes() == before

    result = cardio("send", "--card", path, GET_CHALLENGE, text)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0] == f"> {GET_CHALLENGE}"
    assert lines[1].endswith(" 90 00") and len(lines[1].split()) == 1 + 8 + 2
    assert lines[3] == "< 69 82"
    assert path.read_bytes() == before

    reader = VirtualReader(path)
    try:
        reader.connect()
        puk_proved(reader, card_puk(path))
        assert reader.transmit(apdu) == b"\x69\x84"
        assert reader.transmit(bytes.fromhex("0084000008"))[-2:] == b"\x90\x00"
        assert reader.transmit(apdu) == b"\x69\x88"
    finally:
        reader.close()
    assert path.read_bytes() == before


@pytest.mark.parametrize("operation", list(ALL_TARGETS))
def test_replay_in_the_same_session_right_after_is_refused(tmp_path: Path, operation: str) -> None:
    """The challenge was spent by the command it protected: the same bytes again get 6984
    (the PUK is still proved in this session), and 6988 after a fresh challenge."""
    profile, ssn = ALL_TARGETS[operation]
    path = new_card(tmp_path, profile)
    reader = Recording(path)
    try:
        desk = Outlet(
            reader, fixture_master_key(), operator=OPERATOR, log=OutletLog(tmp_path / "o.log")
        )
        new_pin = NEW_PIN if operation == "reset-pin" else None
        assert desk.run(Operation(operation), ssn, new_pin).ok
        (raw,) = [a for a in reader.raw if a[0] == 0x84]
        assert raw[:5] == bytes.fromhex(APDU_HEADS[operation].replace(" ", ""))
        before = path.read_bytes()
        assert reader.transmit_raw(raw) == b"\x69\x84"
        assert reader.transmit_raw(bytes.fromhex("0084000008"))[-2:] == b"\x90\x00"
        assert reader.transmit_raw(raw) == b"\x69\x88"
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
    assert captured == ["> 84 24 00 01 14" + " **" * 20]  # the trace hides PIN block and MAC
    (raw,) = [a for a in recording.raw if a[0] == 0x84]  # an eavesdropper's copy
    assert len(raw) == 5 + 16 + 4
    # S14: redone at a pharmacy, so a successful replay would be visible
    reader = VirtualReader(path)
    try:
        reader.connect()
        assert SocialSecurityCard(reader).change_pin(INITIAL_PIN, NEW_PIN).ok
    finally:
        reader.close()
    assert disk(path).pin_state is PinState.ENABLED

    replay(path, raw)

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
    assert raw[:5] == bytes.fromhex("8424000114")
    assert bytes.fromhex(NEW_PIN) not in raw  # encrypted under the session key
    # the trace masks the PIN block and the MAC over it: with the challenge (traced too)
    # and the issuer key, either would give the PIN back by brute force
    (line,) = [ln for ln in trace if ln.startswith("> 84 ")]
    assert line == "> 84 24 00 01 14" + " **" * 20
    text = "\n".join(trace)
    assert raw[5:21].hex(" ").upper() not in text
    assert raw[21:].hex(" ").upper() not in text
    # the holder changes the PIN afterwards; a replay must not bring NEW_PIN back
    reader2 = VirtualReader(path)
    try:
        reader2.connect()
        assert SocialSecurityCard(reader2).change_pin(NEW_PIN, OTHER_PIN).ok
    finally:
        reader2.close()

    replay(path, raw)

    after = disk(path)
    assert after.pin.matches(OTHER_PIN)
    assert not after.pin.matches(NEW_PIN)
    assert after.tries_left == 6
    assert after.tries_of(KeyName.PUK) == KEY_TRY_LIMIT


# --- the holder's ID first (S6, S16, S17: "with the holder's ID") ------------------------


WRONG_IDS = [
    pytest.param(EMPLOYEE_NEW_SSN, id="another-holder"),
    pytest.param("", id="empty"),
    pytest.param("0", id="one-digit"),
]


@pytest.mark.parametrize("wrong_id", WRONG_IDS)
@pytest.mark.parametrize("operation", list(ALL_TARGETS))
def test_id_mismatch_in_process_sends_nothing(
    tmp_path: Path, operation: str, wrong_id: str
) -> None:
    profile, ssn = ALL_TARGETS[operation]
    path = new_card(tmp_path, profile)
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    new_pin = NEW_PIN if operation == "reset-pin" else None
    result, trace = run_in_process(path, operation, wrong_id, log, new_pin)
    assert isinstance(result, IdMismatchError)
    assert "does not match" in str(result)
    assert "nothing was sent" in str(result)
    assert trace, "the card must have been read to compare the ID"
    # the read's check of the card only (00 88 changes nothing): no challenge, no 00 82
    assert_only_the_reads_check(trace)
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


def test_a_3_00_card_reset_pin_end_to_end_its_ssn_read_after_rksse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cardio outlet reset-pin` on a 3.00 card (EF06 readable only after RKSSSE): the
    read checks the card (00 88), opens EF06 with RKSSSE (GET CHALLENGE, 00 82 00 07),
    reads the holder's ID, which matches; then the flow's four commands reset the PIN.
    The locked card is unblocked with the new PIN, no key's try spent, DF04 not read."""
    made: list[Recording] = []

    def recording(card_path: Path, **kw) -> Recording:
        reader = Recording(card_path, **kw)
        made.append(reader)
        return reader

    monkeypatch.setattr(cli, "VirtualReader", recording)
    monkeypatch.setattr(sys, "stdin", io.StringIO(pins_twice(NEW_PIN)))
    path = tmp_path / "locked-3.00.json"
    profiles.new_card("locked", path, spec_version="3.00")
    assert disk(path).card.spec_version == "3.00"
    assert disk(path).holder.ssn == LOCKED_SSN
    number = disk(path).card.card_number
    log = tmp_path / "outlet.log"
    out = io.StringIO()
    code = cli.main(
        outlet_args("reset-pin", ["--card", str(path)], LOCKED_SSN, log, "--test-key"), out=out
    )
    err = capsys.readouterr().err
    assert (code, err) == (0, ""), err
    lines = out.getvalue().splitlines()
    assert "operation   reset-pin: done" in lines
    assert "now         ACTIVE / PIN ENABLED / 6 of 6 tries" in lines
    assert f"online query password (查询密码, not the card PIN): {s7(LOCKED_SSN)}" in lines
    assert_no_pins(out.getvalue())

    (reader,) = made
    heads = [a[:5] for a in reader.raw]
    checks = [
        i for i, a in enumerate(reader.raw) if a[:2] in (b"\x00\x84", b"\x00\x82", b"\x00\x88")
    ]
    protected = [i for i, a in enumerate(reader.raw) if a[0] == 0x84]
    wanted = [*READ_CHECK_V3, *flow("reset-pin")]
    assert [heads[i] for i in [*checks, *protected]] == [
        bytes.fromhex(h.replace(" ", "")) for h in wanted
    ]
    # the flow's four commands one after the other (the CLI reads the card's state after)
    flow_at = [*checks[3:], *protected]
    assert flow_at == list(range(flow_at[0], flow_at[0] + 4))
    assert all(reader.responses[i][-2:] == b"\x90\x00" for i in [*checks, *protected])
    ef06 = reader.raw.index(bytes.fromhex("00A4020002EF06"))
    # the check and RKSSSE during the read, before the holder's data; the flow after it
    assert checks[2] < ef06 < checks[3]
    # DF04 not read: one application selected by its AID, the SSSE (DF04 is by its AID too)
    assert [a[:4] for a in reader.raw].count(bytes.fromhex("00A40400")) == 1

    after = disk(path)
    assert after.pin_state is PinState.ENABLED
    assert after.pin.matches(NEW_PIN)
    assert after.tries_left == after.try_limit == 6
    for key in (KeyName.PUK, KeyName.RKSSSE):
        assert after.tries_of(key) == KEY_TRY_LIMIT
    assert_started_then(log, "started", "9000")
    (entry,) = log_entries(log)
    assert entry["operation"] == "reset-pin"
    assert entry["card_number"] == number
    assert_no_pins(log.read_text("utf-8"))


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
    assert_only_the_reads_check(trace)
    assert path.read_bytes() == before


# --- the key file ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_key_file_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    key = key_file(tmp_path, fixture_issuer(), mode)  # even the right keys
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
    key = key_file(tmp_path, fixture_issuer(), 0o600)
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
    fixture_key = data_dir("keys") / "TEST-ONLY-issuer.json"
    assert stat.S_IMODE(fixture_key.stat().st_mode) & 0o077  # a checkout makes it 0644
    # --test-key is that file's issuer: the same cryptograms as its keys give
    state = disk(path)
    card = CardIdentity(SM4, state.card.identification_code, state.historical)
    public = MasterKeySource(parse_issuer(fixture_key.read_text("utf-8"), str(fixture_key)))
    challenge, raw = bytes(8), bytes(range(8))
    for name in (KeyName.PUK, KeyName.IRK):
        given = fixture_master_key().external_auth(name, card, challenge, raw)
        assert given == public.external_auth(name, card, challenge, raw)
        assert given == security.authentication(SM4, state.keys[name], challenge, raw)
    # --key refuses it: a key file readable by others is not one
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
    assert "chmod 600" in result.stderr and str(fixture_key) in result.stderr
    assert path.read_bytes() == before
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(fixture_key)
    # --test-key: the fixture card takes it
    result = cardio(
        *outlet_args(
            "cancel-pin", ["--card", str(path)], ENABLED_SSN, tmp_path / "o.log", "--test-key"
        )
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert disk(path).pin_state is PinState.DISABLED


# --- --psam: a PSAM instead of the master keys (docs/psam.md) ---------------------------------


def test_reset_pin_through_a_psam_file_end_to_end(tmp_path: Path) -> None:
    """`cardio outlet reset-pin --psam PSAMFILE`: every cryptogram from the virtual PSAM
    (made by `cardio card new --profile psam`), the locked card unblocked with the new PIN,
    the PUK's tries whole, one started line and its 9000."""
    path = new_card(tmp_path, "locked")
    psam = psam_file(tmp_path)
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("reset-pin", ["--card", str(path)], LOCKED_SSN, log, "--psam", str(psam)),
        stdin=pins_twice(NEW_PIN),
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    lines = result.stdout.splitlines()
    assert "operation   reset-pin: done" in lines
    assert "now         ACTIVE / PIN ENABLED / 6 of 6 tries" in lines
    after = disk(path)
    assert after.pin.matches(NEW_PIN) and after.tries_left == 6
    assert after.tries_of(KeyName.PUK) == KEY_TRY_LIMIT
    assert_started_then(log, "started", "9000")
    assert_no_pins(result.stdout + log.read_text("utf-8"))
    assert psam_store.is_psam_file(psam)  # still a PSAM file, usable again
    again = cardio(
        *outlet_args("unblock", ["--card", str(path)], LOCKED_SSN, log, "--psam", str(psam))
    )
    assert (again.returncode, again.stderr) == (0, "")
    assert disk(path).pin.matches(NEW_PIN)


def test_a_psam_gives_the_same_outlet_apdus_as_the_master_keys(tmp_path: Path) -> None:
    """In process, PsamKeySource over the PSAM file's reader: the same five commands."""
    from cardio.psam_source import open_psam

    path = new_card(tmp_path, "employee-enabled")
    keys = open_psam(str(psam_file(tmp_path)))
    log = tmp_path / "o.log"
    outcome, trace = run_in_process(path, "cancel-pin", ENABLED_SSN, log, keys=keys)
    assert not isinstance(outcome, BaseException), repr(outcome)
    assert [ln[2:16] for ln in privileged(trace)] == sequence("cancel-pin")
    assert disk(path).pin_state is PinState.DISABLED


def test_a_psam_of_another_issuer_fails_the_card_check_and_costs_no_puk_try(
    tmp_path: Path,
) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    psam = tmp_path / "other-psam.json"
    psam_store.create(psam, psam_state.make(counterfeit_issuer()))
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("cancel-pin", ["--card", str(path)], ENABLED_SSN, log, "--psam", str(psam))
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"cardio: {NOT_OURS}")
    assert_refused_unchanged(path, before, log, "cancel-pin")


def test_a_counterfeit_card_with_a_psam_costs_no_puk_try(tmp_path: Path) -> None:
    path = new_card(tmp_path, "counterfeit")
    before = path.read_bytes()
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args(
            "restore-initial",
            ["--card", str(path)],
            COUNTERFEIT_SSN,
            log,
            "--psam",
            str(psam_file(tmp_path)),
        )
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"cardio: {NOT_OURS}")
    assert_refused_unchanged(path, before, log, "restore-initial")


@pytest.mark.parametrize("other", [["--key", "KEY"], ["--test-key"]], ids=["key", "test-key"])
def test_psam_and_the_other_key_options_are_mutually_exclusive(
    tmp_path: Path, other: list[str]
) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    key = key_file(tmp_path, fixture_issuer(), 0o600)
    other = [str(key) if a == "KEY" else a for a in other]
    log = tmp_path / "o.log"
    result = cardio(
        *outlet_args(
            "cancel-pin",
            ["--card", str(path)],
            ENABLED_SSN,
            log,
            "--psam",
            str(psam_file(tmp_path)),
            *other,
        )
    )
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr
    assert path.read_bytes() == before
    assert not log.exists()


@pytest.mark.parametrize("given", ["card", "empty"])
def test_a_psam_that_is_no_psam_is_one_line_exit_2(tmp_path: Path, given: str) -> None:
    path = new_card(tmp_path, "employee-enabled")
    before = path.read_bytes()
    spec = str(path) if given == "card" else ""
    log = tmp_path / "o.log"
    result = cardio(
        *outlet_args("cancel-pin", ["--card", str(path)], ENABLED_SSN, log, "--psam", spec)
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("cardio: ")
    assert ("is not a PSAM file" if given == "card" else "--psam path is empty") in line
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before
    assert not log.exists()


def test_the_psam_in_a_pcsc_reader_serves_the_outlet(tmp_path: Path, served) -> None:
    """`--reader` the card's slot, `--psam` the PSAM's: both through pcscd."""
    path = new_card(tmp_path, "locked")
    card = served(path, 0, "-v")
    psam = served(psam_file(tmp_path), 1)
    assert (card.reader, psam.reader) == (slot_name(0), slot_name(1))
    log = tmp_path / "outlet.log"
    result = cardio(
        *outlet_args("unblock", ["--reader", card.reader], LOCKED_SSN, log, "--psam", psam.reader)
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert "operation   unblock: done" in result.stdout.splitlines()
    after = disk(path)
    assert after.tries_left == 6 and after.pin.matches(ENABLED_PIN)
    served_log = card.output()
    assert f"> {INTERNAL_AUTH} " in served_log and "> 84 24 00 00 04 " in served_log
    assert_started_then(log, "started", "9000")


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
    for option in ("--key", "--test-key", "--psam"):
        assert option in result.stderr, option
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
    assert_only_the_reads_check(trace)
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
    for issuer, name in ((counterfeit_issuer(), "other.json"), (changed_issuer(), "puk.json")):
        key = key_file(tmp_path, issuer, 0o600, name)
        result = cardio(*outlet_args("cancel-pin", target, ENABLED_SSN, log, "--key", str(key)))
        assert result.returncode == 1
    end = dt.datetime.now().astimezone()

    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text("utf-8")
    assert text.endswith("\n")
    entries = log_entries(log)
    assert len(entries) == 7
    # an intent line before each command that may change the card; none before a refusal
    # (another issuer's keys: refused at the read, by the card's check, before any
    # challenge; the wrong ID and the S15 PIN: refused after the read, before any challenge)
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
        "refused:",
        "started",
        "63C2",
    )
    for entry in entries:
        assert set(entry) >= LOG_FIELDS
        assert entry["operator"] == OPERATOR
        when = dt.datetime.fromisoformat(str(entry["time"]))
        assert when.tzinfo is not None and start <= when <= end
    # The card failed its check during the read (another issuer's keys): its line still
    # names it, from what the card says of itself, unchecked.
    assert [e["card_number"] for e in entries] == [number] * 7
    assert all(e["holder_id"] for e in entries)
    assert [e["operation"] for e in entries] == [
        "cancel-pin",
        "restore-initial",
        "reset-pin",
        "reset-pin",
        "restore-initial",
        "cancel-pin",
        "cancel-pin",
    ]
    results = [str(e["result"]) for e in entries]
    assert results[0].split()[0] == "9000"
    assert results[1].startswith("refused") and "does not match" in results[1]
    assert results[2].startswith("refused") and "same-digits" in results[2]
    assert results[3].split()[0] == "9000"
    assert results[4].split()[0] == "9000"
    assert results[5].startswith("refused") and "authenticity check" in results[5]
    assert results[6] == "63C2 outlet key refused, 2 tries left"
    assert_no_pins(text, "777777")
    assert disk(path).pin_state is PinState.INITIAL
    assert disk(path).tries_of(KeyName.PUK) == KEY_TRY_LIMIT - 1  # the changed PUK's try only


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
