"""Anti-tearing of the keyed commands (docs/card.md §4, §5, §7): a PIN reload
(`84 24 00 01` with a new PIN), an unblock (`84 24 00 00`) and EXTERNAL AUTHENTICATE,
killed at any instant, never leave a mix of old and new state and never gain a try.

Two techniques, as tests/test_antitearing.py:

- in process, a store that "dies" at its n-th write, before or after the write lands,
  for every n of two whole cycles of commands (fast and exhaustive over the writes);
  the writes themselves are checked one by one against the model;
- a child process (the venv's python, a script given with -c) running the card on the
  card file, killed with SIGKILL at random instants, many times (marked `slow`).

The card's challenge is fixed (`VirtualCard(random=...)`), so every command, MACs and
cryptograms included, is computed once by the test with cardio.security and the card's
own PUK. A model of what is on disk (PIN digits, PIN state, PIN tries, the PUK's tries)
gives, for each command, its answer and every state the file passes through on the way:

- EXTERNAL AUTHENTICATE: the PUK's counter decremented on disk, then (right cryptogram)
  back at 3 on disk; a wrong one stops at the decrement;
- `84 24 00 01` with a PIN: the new PIN hash, its state and the PIN's counter at the
  limit in one write; `84 24 00 00`: the counter at the limit in one write;
- VERIFY: decremented, then (right PIN) restored.

After every kill the file is one of the states the model allows at that point: the
state after the answers the card gave, or one the next command passes through. Every
other field is as it was. No assertion depends on timing.
"""

from __future__ import annotations

import hmac
import random
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import card_child
import pytest

from cardio import pin, security
from cardio.card import profiles, store
from cardio.card.card import VirtualCard
from cardio.card.state import KEY_TRY_LIMIT, CardState, PinState
from cardio.issuer import KeyName
from cardio.model import Algorithm

PY = sys.executable
LIMIT = 2  # the PIN's try limit: two wrong VERIFYs block it, so the unblock restores a block
A, B, WRONG = pin.INITIAL_PIN, "975318", "000000"
CHALLENGE = bytes.fromhex("A1A2A3A4A5A6A7A8")  # every GET CHALLENGE answers it
RAW = bytes.fromhex("0102030405060708")
SSSE = bytes.fromhex("00A404000F") + "sx1.sh.社会保障".encode("gbk")


# --- the model ------------------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    """What the model knows of the card file: the PIN and the PUK's counter."""

    digits: str
    state: PinState
    tries: int
    puk: int

    def on_disk(self, card: CardState) -> bool:
        return (
            card.tries_left == self.tries
            and card.pin_state is self.state
            and card.tries_of(KeyName.PUK) == self.puk
            and card.pin.matches(self.digits)
        )


Command = tuple[str, ...]
# ("select",), ("challenge",), ("external", "right"|"wrong"), ("reload", pin),
# ("unblock",), ("verify", pin)

CYCLE: list[Command] = [
    ("select",),
    ("challenge",),
    ("external", "wrong"),  # the PUK's counter 3 -> 2 on disk, stop
    ("challenge",),
    ("external", "right"),  # 2 -> 1 on disk, then back to 3 on disk
    ("challenge",),
    ("reload", B),  # PIN B, ENABLED, tries at the limit: one write
    ("verify", WRONG),
    ("verify", WRONG),  # blocked
    ("verify", B),  # 6983: blocked, nothing written
    ("challenge",),
    ("unblock",),  # tries at the limit, PIN B kept: one write
    ("verify", B),
    ("challenge",),
    ("reload", A),  # back to 123456: INITIAL (docs/card.md §4)
]
WRONG_KEYS: list[Command] = [("select",), ("challenge",), ("external", "wrong")]


def step(now: Disk, proved: bool, command: Command) -> tuple[str, list[Disk], bool]:
    """The answer to `command`, every state the card file passes through, and whether
    the PUK is proved afterwards (docs/card.md §4-§5)."""
    kind = command[0]
    if kind in ("select", "challenge"):
        return "9000", [], proved  # a SELECT of the SSSE keeps the SSSE's proved keys
    if kind == "external":
        if now.puk == 0:
            return "6983", [], proved
        decremented = replace(now, puk=now.puk - 1)
        if command[1] == "wrong":
            return f"63c{now.puk - 1:x}", [decremented], proved
        return "9000", [decremented, replace(now, puk=KEY_TRY_LIMIT)], True
    if kind in ("reload", "unblock"):
        if not proved:
            return "6982", [], proved
        if kind == "unblock":
            return "9000", [replace(now, tries=LIMIT)], proved
        state = PinState.INITIAL if command[1] == pin.INITIAL_PIN else PinState.ENABLED
        return "9000", [Disk(command[1], state, LIMIT, now.puk)], proved
    assert kind == "verify"
    if now.tries == 0:
        return "6983", [], proved
    decremented = replace(now, tries=now.tries - 1)
    if command[1] != now.digits:
        return f"63c{now.tries - 1:x}", [decremented], proved
    return "9000", [decremented, replace(now, tries=LIMIT)], proved


def run_model(start: Disk, commands: list[Command], n: int) -> tuple[list[str], list[Disk]]:
    """The answers to the first n commands (cycling) and every write they make, in order."""
    now, proved = start, False
    answers: list[str] = []
    writes: list[Disk] = []
    for i in range(n):
        answer, states, proved = step(now, proved, commands[i % len(commands)])
        answers.append(answer)
        writes += states
        if states:
            now = states[-1]
    return answers, writes


# --- the commands, by hand ----------------------------------------------------------------


def apdu(command: Command, card: CardState) -> bytes:
    """The bytes of one command for `card`, whose challenge is always CHALLENGE."""
    alg = Algorithm(card.algorithm)
    puk = card.keys[KeyName.PUK]
    kind = command[0]
    if kind == "select":
        return SSSE
    if kind == "challenge":
        return bytes.fromhex("0084000008")
    if kind == "external":
        cryptogram = security.authentication(alg, puk, CHALLENGE, RAW)
        if command[1] == "wrong":
            cryptogram = bytes(b ^ 0xFF for b in cryptogram)
        return bytes.fromhex("0082000610") + cryptogram + RAW
    if kind == "reload":
        session = security.session_key(alg, puk, CHALLENGE)
        body = security.encrypt(alg, session, security.pin_block(command[1]))
        return security.secure_apdu(alg, puk, CHALLENGE, 0x84, 0x24, 0x00, 0x01, body)
    if kind == "unblock":
        return security.secure_apdu(alg, puk, CHALLENGE, 0x84, 0x24, 0x00, 0x00, b"")
    assert kind == "verify"
    return bytes.fromhex("0020000003") + pin.encode(command[1])


def fixed_fields(card: CardState) -> dict[str, Any]:
    """The file apart from the fields these commands may change."""
    doc = card.to_json()
    del doc["tries_left"], doc["pin_state"], doc["key_tries"][KeyName.PUK.value]
    del doc["secrets"]["pin_salt"], doc["secrets"]["pin_sha256"]
    return doc


START = Disk(A, PinState.INITIAL, LIMIT, KEY_TRY_LIMIT)


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Path, CardState]:
    """An employee-new card (SM4, ACTIVE, PIN 123456 INITIAL) with a PIN try limit of 2."""
    path = tmp_path / "card.json"
    template = profiles.make("employee-new").with_(try_limit=LIMIT, tries_left=LIMIT)
    store.create(path, template)
    template = store.read(path)
    assert Algorithm(template.algorithm) is Algorithm.SM4
    assert START.on_disk(template)
    return path, template


def reset_card(path: Path, template: CardState) -> Disk:
    store.create(path, template, force=True)
    return START


def test_the_model_is_the_card_when_nothing_is_killed(fresh: tuple[Path, CardState]) -> None:
    """Two cycles in process: every answer and every write, in order, as the model has them."""
    path, template = fresh
    n = 2 * len(CYCLE)
    expected_answers, expected_writes = run_model(START, CYCLE, n)
    assert expected_answers[: len(CYCLE)] == [
        "9000", "9000", "63c2", "9000", "9000", "9000", "9000",
        "63c1", "63c0", "6983", "9000", "9000", "9000", "9000", "9000",
    ]  # fmt: skip
    with store.FileStore(path) as fs:
        writes: list[CardState] = []

        class Recording:
            def save(self, state: CardState) -> None:
                fs.save(state)
                writes.append(state)

        card = VirtualCard(fs.open(), Recording(), random=lambda n: CHALLENGE[:n])
        card.power_on()
        answers = [card.execute(apdu(c, template))[-2:].hex() for c in CYCLE * 2]
    assert answers == expected_answers
    assert len(writes) == len(expected_writes) == 20
    for written, model in zip(writes, expected_writes, strict=True):
        assert model.on_disk(written), (written.tries_left, written.pin_state, model)
        assert fixed_fields(written) == fixed_fields(template)
    assert START.on_disk(store.read(path))


def test_external_authenticate_decrements_on_disk_before_it_compares(
    fresh: tuple[Path, CardState], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the instant the cryptogram is compared, the file already holds the decrement."""
    path, template = fresh
    compare = hmac.compare_digest
    on_disk_at_compare: list[int] = []

    def spy(a: Any, b: Any) -> bool:
        if len(a) == security.AUTH_LENGTH:  # the cryptogram (a MAC is 4 bytes)
            on_disk_at_compare.append(store.read(path).tries_of(KeyName.PUK))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs, random=lambda n: CHALLENGE[:n])
        card.power_on()
        sws = [
            card.execute(apdu(c, template))[-2:].hex()
            for c in [
                ("select",),
                ("challenge",),
                ("external", "wrong"),
                ("challenge",),
                ("external", "wrong"),
                ("challenge",),
                ("external", "right"),
            ]
        ]
    assert sws == ["9000", "9000", "63c2", "9000", "63c1", "9000", "9000"]
    assert on_disk_at_compare == [2, 1, 0]  # the right one too: 1 -> 0 before comparing
    assert store.read(path).tries_of(KeyName.PUK) == KEY_TRY_LIMIT


class Killed(BaseException):
    """The process dies here: nothing after it runs (not an Exception the card catches)."""


class DyingStore:
    """Passes writes to the file store, and dies at write number `at` (from 1): before
    it reaches the disk, or just after it landed."""

    def __init__(self, inner: store.FileStore, at: int, landed: bool) -> None:
        self.inner, self.at, self.landed = inner, at, landed
        self.count = 0

    def save(self, state: CardState) -> None:
        self.count += 1
        if self.count == self.at and not self.landed:
            raise Killed
        self.inner.save(state)
        if self.count == self.at:
            raise Killed


def test_dying_at_every_write_leaves_the_old_or_the_new_state(
    fresh: tuple[Path, CardState],
) -> None:
    path, template = fresh
    all_answers, all_writes = run_model(START, CYCLE, len(CYCLE))
    assert len(all_writes) == 10
    for at in range(1, len(all_writes) + 1):
        for landed in (False, True):
            reset_card(path, template)
            answers: list[str] = []
            with store.FileStore(path) as fs:
                dying = DyingStore(fs, at, landed)
                card = VirtualCard(fs.open(), dying, random=lambda n: CHALLENGE[:n])
                card.power_on()
                with pytest.raises(Killed):
                    for command in CYCLE:
                        answers.append(card.execute(apdu(command, template))[-2:].hex())
            where = f"write {at} ({'landed' if landed else 'lost'}), after {len(answers)} answers"
            # the answers given before the death are the model's, and no later one
            assert answers == all_answers[: len(answers)], where
            model_answers, model_writes = run_model(START, CYCLE, len(answers))
            _, with_next = run_model(START, CYCLE, len(answers) + 1)
            assert len(model_writes) < at <= len(with_next), where  # it died in the next one
            on_disk = store.read(path)
            expected = all_writes[at - 1] if landed else ([START, *all_writes][at - 1])
            assert expected.on_disk(on_disk), (where, on_disk.tries_left, on_disk.pin_state)
            assert fixed_fields(on_disk) == fixed_fields(template), where
            before = model_writes[-1] if model_writes else START
            gained(before, on_disk, CYCLE[len(answers) % len(CYCLE)], where)


def gained(before: Disk, after: CardState, in_flight: Command, where: str) -> None:
    """No counter higher than before the command in flight, unless that command is one
    meant to restore it (and the restore is what is on disk)."""
    restores_pin = in_flight[0] in ("reload", "unblock") or in_flight == ("verify", before.digits)
    if after.tries_left > before.tries:
        assert restores_pin and after.tries_left == LIMIT, (where, in_flight)
    if after.tries_of(KeyName.PUK) > before.puk:
        assert in_flight == ("external", "right"), (where, in_flight)
        assert after.tries_of(KeyName.PUK) == KEY_TRY_LIMIT, where


# --- SIGKILL of a child process -----------------------------------------------------------


def run_and_kill(
    path: Path, apdus: list[bytes], delay: float, *, early: bool = False, after: int = 0
) -> tuple[list[str], list[CardState]]:
    """Start the child, kill it `delay` s after its `after`th answer (or, when `early`,
    after start-up: anywhere through opening the file); its answers and the states
    loaded from the file meanwhile."""
    child = card_child.start(path, apdus, CHALLENGE)
    seen: list[CardState] = []
    lines: list[str] = []
    try:
        assert child.stdout is not None
        if early:
            time.sleep(delay)
        else:
            assert child.stdout.readline() == b"ready\n"
            lines.append("ready")
            while len(lines) <= after:
                lines.append(child.stdout.readline().decode("ascii").rstrip("\n"))
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                seen.append(store.read(path))  # loadable at every instant
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert child.stdout is not None
    lines += child.stdout.read().decode("ascii").splitlines()
    child.stdout.close()
    if lines and lines[0] == "ready":
        lines = lines[1:]
    assert all(len(line) == 4 for line in lines), lines[:5]  # each write < PIPE_BUF
    return lines, seen


def check_after_kill(
    path: Path,
    template: CardState,
    before: Disk,
    commands: list[Command],
    answers: list[str],
    seen: list[CardState],
) -> Disk:
    """Check one killed run against the model; the state now on disk."""
    expected, writes = run_model(before, commands, len(answers))
    assert answers == expected, (before, answers)
    now = writes[-1] if writes else before
    _, with_next = run_model(before, commands, len(answers) + 1)
    in_flight = with_next[len(writes) :]
    allowed = [now, *in_flight]
    passed = [before, *with_next]

    after = store.read(path)  # loads after the kill
    assert fixed_fields(after) == fixed_fields(template)
    matching = [d for d in allowed if d.on_disk(after)]
    assert matching, (
        f"after {len(answers)} answers from {before}: the file has PIN tries "
        f"{after.tries_left}, {after.pin_state}, PUK tries {after.tries_of(KeyName.PUK)}; "
        f"allowed {allowed}"
    )
    gained(now, after, commands[len(answers) % len(commands)], f"{len(answers)} answers")
    for card in seen:  # every load while the child ran: a state the model passes through
        assert fixed_fields(card) == fixed_fields(template)
        assert any(d.on_disk(card) for d in passed), (card.tries_left, card.pin_state)

    # the killed process held the lock: the next one gets it, and no temp file is left
    with store.FileStore(path) as fs:
        assert fs.open() == after
        leftovers = sorted(p.name for p in path.parent.iterdir() if ".tmp-" in p.name)
        assert leftovers == []
    return matching[-1]


def write_seconds(path: Path, template: CardState, commands: list[Command]) -> float:
    """How long one command's write takes, measured over cycles of `commands` in
    process on this file system (writes are most of a command's time)."""
    reset_card(path, template)
    _, writes = run_model(START, commands, 3 * len(commands))
    with store.FileStore(path) as fs:
        card = VirtualCard(fs.open(), fs, random=lambda n: CHALLENGE[:n])
        card.power_on()
        apdus = [apdu(c, template) for c in commands]
        start = time.monotonic()
        for a in apdus * 3:
            card.execute(a)
        return (time.monotonic() - start) / max(len(writes), 1)


KEYED = [i for i, c in enumerate(CYCLE) if c[0] in ("external", "reload", "unblock")]


@pytest.mark.slow  # SIGKILLs a python process 80 times
def test_kill_during_reload_unblock_and_external_authenticate(
    fresh: tuple[Path, CardState],
) -> None:
    path, template = fresh
    rng = random.Random(11)
    write = write_seconds(path, template, CYCLE)
    apdus = [apdu(c, template) for c in CYCLE]
    now = reset_card(path, template)
    total = 0
    killed_in: set[str] = set()
    for _ in range(80):
        if now.puk < 2:  # the run's first wrong EXTERNAL AUTHENTICATE must not lock it
            now = reset_card(path, template)
        choice = rng.random()
        if choice < 0.1:  # from start-up on
            answers, seen = run_and_kill(path, apdus, rng.uniform(0, 0.08), early=True)
        elif choice < 0.4:  # anywhere in the first cycle and a half
            answers, seen = run_and_kill(path, apdus, rng.uniform(0, 15 * write))
        else:  # once a keyed command has started: during its writes, or just after them
            target = rng.choice(KEYED)
            answers, seen = run_and_kill(path, apdus, rng.uniform(0, 2.5 * write), after=target)
        now = check_after_kill(path, template, now, CYCLE, answers, seen)
        total += len(answers)
        killed_in.add(CYCLE[len(answers) % len(CYCLE)][0])
    assert total > 0
    # kills landed inside each kind of command (the delays choose only where they land)
    assert {"external", "reload", "unblock"} <= killed_in, killed_in


@pytest.mark.slow  # SIGKILLs a python process 50 times
def test_kill_during_wrong_external_authenticates_never_gains_a_try(
    fresh: tuple[Path, CardState],
) -> None:
    path, template = fresh
    rng = random.Random(12)
    write = write_seconds(path, template, WRONG_KEYS)
    apdus = [apdu(c, template) for c in WRONG_KEYS]
    now = reset_card(path, template)
    last = now.puk
    for _ in range(50):
        if now.puk == 0:  # locked for good (no command restores a key): a fresh card file
            now = reset_card(path, template)
            last = now.puk
        before = now
        answers, seen = run_and_kill(path, apdus, rng.uniform(0, 5 * write), after=2)
        for card in seen:  # the PUK's counter never went up while the child ran
            assert card.tries_of(KeyName.PUK) <= last
            last = card.tries_of(KeyName.PUK)
        now = check_after_kill(path, template, before, WRONG_KEYS, answers, seen)
        spent = min(len(answers[2::3]), before.puk)
        assert now.puk in (before.puk - spent, max(before.puk - spent - 1, 0))
        assert now.puk <= last
        last = now.puk
