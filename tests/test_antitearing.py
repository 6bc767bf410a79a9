"""Anti-tearing (docs/card.md §4, §7): kill the card's process at any instant, never gain a try.

A child process (the venv's python, a script given with -c) opens a card file through
FileStore + VirtualCard and sends a fixed cycle of PIN commands forever, writing the
status word of each answer to stdout as soon as it has it. The test kills it with
SIGKILL after a random delay, many times, and then checks the card file against a
model of the PIN counter:

- the file always loads (also while the child runs);
- if the child printed n answers, the file holds the model's state after those n
  commands, or one the (n+1)th command passes through on its way; nothing else;
- the answers printed are the model's answers;
- nothing but the PIN fields changed; the next process gets the lock and finds no
  temp files.

No assertion depends on timing: the delays only choose where the kills land.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import card_child
import pytest

from cardio import pin
from cardio.card import profiles, store
from cardio.card.state import CardState, PinState

pytestmark = pytest.mark.slow  # each test SIGKILLs cardio processes many times

PY = sys.executable
LIMIT = 15  # the largest try limit the format allows: more room between blocks

A, B, WRONG = "123456", "975318", "000000"


@dataclass(frozen=True)
class Pin:
    """What the model knows about the card's PIN: the digits, the state, the counter."""

    digits: str
    state: PinState
    tries: int

    def on_disk(self, card: CardState) -> bool:
        return (
            card.tries_left == self.tries
            and card.pin_state is self.state
            and card.pin.matches(self.digits)
        )


Command = tuple[str, ...]  # ("verify", pin) or ("change", old, new)


def apdu(command: Command) -> bytes:
    if command[0] == "verify":
        return bytes.fromhex("0020000003") + pin.encode(command[1])
    return bytes.fromhex("805E010007") + pin.change_block(command[1], command[2])


def step(now: Pin, command: Command) -> tuple[str, list[Pin]]:
    """The answer to `command`, and every state the card file passes through (§4)."""
    if now.tries == 0:
        return "6983", []
    decremented = Pin(now.digits, now.state, now.tries - 1)
    if command[1] != now.digits:
        return f"63c{now.tries - 1:x}", [decremented]
    if command[0] == "verify":
        return "9000", [decremented, Pin(now.digits, now.state, LIMIT)]
    return "9000", [decremented, Pin(command[2], PinState.ENABLED, LIMIT)]


def fixed_fields(card: CardState) -> dict[str, Any]:
    """The file's content apart from the PIN fields: no command here may change it."""
    doc = card.to_json()
    for key in ("tries_left", "pin_state"):
        del doc[key]
    del doc["secrets"]["pin_salt"], doc["secrets"]["pin_sha256"]
    return doc


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Path, CardState]:
    """A card file made from a profile and then edited by hand: try limit 15."""
    path = tmp_path / "card.json"
    profiles.new_card("employee-new", path)
    doc = json.loads(path.read_text("utf-8"))
    doc["try_limit"] = doc["tries_left"] = LIMIT
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), "utf-8")
    template = store.read(path)
    assert (template.tries_left, template.try_limit) == (LIMIT, LIMIT)
    assert template.pin_state is PinState.INITIAL and template.pin.matches(A)
    return path, template


def reset_card(path: Path, template: CardState) -> Pin:
    store.create(path, template, force=True)
    return Pin(A, PinState.INITIAL, LIMIT)


def run_and_kill(
    path: Path, commands: list[Command], rng: random.Random
) -> tuple[list[str], list[CardState]]:
    """Start the child, kill it at a random instant; its answers and the states seen meanwhile."""
    child = card_child.start(path, [apdu(c) for c in commands])
    seen: list[CardState] = []
    try:
        assert child.stdout is not None
        if rng.random() < 0.2:  # anywhere from start-up through opening the file
            time.sleep(rng.uniform(0, 0.08))
        else:
            assert child.stdout.readline() == b"ready\n"
            deadline = time.monotonic() + rng.uniform(0, 0.008)
            while time.monotonic() < deadline:
                seen.append(store.read(path))  # loadable at every instant
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert child.stdout is not None
    lines = child.stdout.read().decode("ascii").splitlines()
    child.stdout.close()
    if lines and lines[0] == "ready":
        lines = lines[1:]
    # ready is printed once, first; a partial line cannot happen (each write < PIPE_BUF)
    assert all(len(line) == 4 for line in lines), lines[:5]
    return lines, seen


def check_after_kill(
    path: Path,
    template: CardState,
    before: Pin,
    commands: list[Command],
    answers: list[str],
    seen: list[CardState],
) -> Pin:
    """Check one killed run against the model; return the state now on disk."""
    now = before
    passed: list[Pin] = [before]
    for i, answer in enumerate(answers):
        expected, states = step(now, commands[i % len(commands)])
        assert answer == expected, (i, before, answers[: i + 1])
        passed += states
        if states:
            now = states[-1]
    _, in_flight = step(now, commands[len(answers) % len(commands)])
    allowed = [now, *in_flight]
    passed += in_flight

    after = store.read(path)  # the file loads after the kill
    assert fixed_fields(after) == fixed_fields(template)
    if all(c[0] == "verify" for c in commands):  # VERIFY changes tries_left and nothing else
        assert after == template.with_(tries_left=after.tries_left)
    matching = [p for p in allowed if p.on_disk(after)]
    assert matching, (
        f"after {len(answers)} answers from {before}: file has tries {after.tries_left}, "
        f"{after.pin_state}; allowed {allowed}"
    )
    for card in seen:
        assert fixed_fields(card) == fixed_fields(template)
        assert any(p.on_disk(card) for p in passed), (card.tries_left, card.pin_state, passed)

    # the killed process held the lock: the next one gets it, and no temp file is left
    with store.FileStore(path) as fs:
        assert fs.open() == after
        leftovers = sorted(p.name for p in path.parent.iterdir() if ".tmp-" in p.name)
        assert leftovers == []
    return matching[-1]


def kill_loop(
    path: Path,
    template: CardState,
    commands: list[Command],
    *,
    kills: int,
    seed: int,
    reset_below: int,
) -> tuple[int, list[int]]:
    rng = random.Random(seed)
    now = reset_card(path, template)
    total_answers = 0
    tries_after: list[int] = []
    for _ in range(kills):
        if now.tries < reset_below:
            now = reset_card(path, template)
        answers, seen = run_and_kill(path, commands, rng)
        now = check_after_kill(path, template, now, commands, answers, seen)
        total_answers += len(answers)
        tries_after.append(now.tries)
    return total_answers, tries_after


def test_kill_during_wrong_pins_never_gains_a_try(fresh: tuple[Path, CardState]) -> None:
    path, template = fresh
    rng = random.Random(1)
    now = reset_card(path, template)
    last = LIMIT
    total_answers = 0
    for _ in range(70):
        if now.tries == 0:  # blocked: a fresh card file
            now = reset_card(path, template)
            last = LIMIT
        last_before = now
        answers, seen = run_and_kill(path, [("verify", WRONG)], rng)
        # each load while the child ran: the counter never went up
        for card in seen:
            assert card.tries_left <= last, (last, [c.tries_left for c in seen])
            last = card.tries_left
        now = check_after_kill(path, template, last_before, [("verify", WRONG)], answers, seen)
        assert now.tries <= last_before.tries
        assert now.tries <= last
        assert now.tries in (
            max(last_before.tries - len(answers), 0),
            max(last_before.tries - len(answers) - 1, 0),
        )
        last = now.tries
        total_answers += len(answers)
    assert total_answers > 0  # some kills landed while PINs were being compared


def test_kill_during_alternating_wrong_and_right_pins(fresh: tuple[Path, CardState]) -> None:
    path, template = fresh
    total, tries_after = kill_loop(
        path, template, [("verify", WRONG), ("verify", A)], kills=60, seed=2, reset_below=1
    )
    # the sequence wrong, right, ... from any count t >= 1 stays within t-2 .. LIMIT,
    # and a kill never leaves more tries than the model allows (checked per kill)
    assert all(t <= LIMIT for t in tries_after)
    assert total > 0


def test_kill_during_change_pin_is_old_or_complete_new_never_a_mix(
    fresh: tuple[Path, CardState],
) -> None:
    path, template = fresh
    cycle: list[Command] = [
        ("change", A, B),  # A -> B: ENABLED, counter at the limit, one write
        ("change", WRONG, A),  # wrong old PIN: one try spent, nothing else
        ("change", B, A),  # back to A
        ("verify", WRONG),
    ]
    total, tries_after = kill_loop(path, template, cycle, kills=60, seed=3, reset_below=4)
    assert total > 0
    assert all(t <= LIMIT for t in tries_after)
