"""One pharmacy terminal under load, as a process of its own (tests/test_load.py).

    python tests/load_terminal.py --url URL --terminal-id ID --payments N --seed S \
        --timeout 0.3 --results FILE

It drives the terminal's own settlement core (terminal/settlement.py's PlatformLink, built
by terminal/cli.py's link_over, so its pending reversals and day-book live in the user
data folder: run it with XDG_DATA_HOME set and SHEBAO_POS_HOME unset) over HTTP, with no
UI and no card. The card's part of a payment (reading it, the PIN) is not what this is
about: the card is checked before the host is asked anything and never moves money, so
each payment is just the host's 1101, 2101 and 2102 for a fixture holder whose card a
terminal would accept.

Payment i (0-based) is the same on every run: its holder and amount come from
Random(f"{seed}:{i}"). Each outcome is one JSON line appended and fsync'd to the results
file, after the terminal knows it:

- {"i", "outcome": "settled", "msgid", "setl_id", "amount", "acct_fen", "ssn"}
- {"i", "outcome": "not-through", "msgid", "confirmed"}: no answer to the 2102; reversed
  (confirmed) or the reversal still pending (it is sent again before the next payment);
- {"i", "outcome": "refused", "stage", "kind", "msgid"}: the platform said no (msgid is
  the 2102's when the 2102 was refused, else "");

each with "attempts": every 2102 sent for it as [msgid, what came back] ("answered",
"no-answer", "unreached", "refused:<kind>"). A restarted terminal (killed with SIGKILL)
goes on from the first payment without an outcome line; a torn last line is ignored.

Lines without "i": {"event": "start", "pending": [...], "left": n} after recover() at
start (the pending reversals a killed run left, and how many are still pending);
{"event": "reconcile", ...} with reconcile()'s result at the end; {"event": "done",
"pending": [...], "stats": {...}}. A failure is a traceback on stderr and exit 1.

NoAnswer and HostUnreachable on 9001, 1101, 2101, 3201 and 3202 are retried: they move
no money. A 2102 that meets HostUnreachable never arrived (the link forgets it) and is
sent again under a new message id; one that meets NoAnswer is the link's to reverse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cardio.card import profiles
from host.client import PlatformRefused, Settlement
from host.transport import HostUnreachable, HttpTransport, NoAnswer
from terminal.cli import link_over
from terminal.settlement import NotThrough, PlatformLink

T = TypeVar("T")

# Holders whose cards a terminal accepts (fixtures/README.md): not the not-activated,
# locked, disabled or counterfeit cards, which the terminal refuses before the host.
# pension-new's account is empty: its payments are refused (insufficient), on purpose.
PROFILES = (
    "employee-new",
    "employee-enabled",
    "legacy-medical",
    "t0-employee-new",
    "resident-new",
    "pension-new",
)
MAX_AMOUNT = 99  # fen: the balances last through thousands of payments
RETRY_FOR = 120.0  # s: a host that answers nothing for this long fails the run
UNREACHABLE_PAUSE = 0.05  # s between tries while the host is down


def holders() -> list[tuple[str, str]]:
    """(ssn, card number) of each usable fixture holder."""
    found = []
    for name in PROFILES:
        state = profiles.load(name)
        found.append((state.holder.ssn, state.card.card_number))
    return found


def payment(seed: int, i: int, choices: list[tuple[str, str]]) -> tuple[str, str, int]:
    rng = random.Random(f"{seed}:{i}")
    ssn, card = rng.choice(choices)
    return ssn, card, rng.randint(1, MAX_AMOUNT)


class Results:
    """The results file: JSON lines, each appended and fsync'd before the next step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def done(self) -> int:
        """How many payments have an outcome: the next one to make."""
        if not self.path.exists():
            return 0
        seen = set()
        for raw in self.path.read_text("utf-8").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # torn by the kill
            if isinstance(record, dict) and "i" in record:
                seen.add(record["i"])
        return len(seen)

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


class Terminal:
    def __init__(self, link: PlatformLink, results: Results) -> None:
        self.link = link
        self.results = results
        self.stats: Counter[str] = Counter()
        self.attempts: list[list[str]] = []
        settle = link.client.settle

        def recorded(person: Any, amount_fen: int, card_number: str, msgid: str) -> Settlement:
            """The client's 2102, each message id and what came of it noted for the record."""
            try:
                answer = settle(person, amount_fen, card_number, msgid)
            except NoAnswer:
                self.attempts.append([msgid, "no-answer"])
                raise
            except HostUnreachable:
                self.attempts.append([msgid, "unreached"])
                raise
            except PlatformRefused as e:
                self.attempts.append([msgid, f"refused:{e.kind}"])
                raise
            self.attempts.append([msgid, "answered"])
            return answer

        link.client.settle = recorded  # type: ignore[method-assign]

    def retrying(self, stage: str, step: Callable[[], T]) -> T:
        """`step` until the host answers it; for steps that move no money (and settle(),
        whose NoAnswer is its sign-in's and whose HostUnreachable never arrived)."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                return step()
            except NoAnswer:
                self.stats[f"{stage} no-answer"] += 1
            except HostUnreachable:
                self.stats[f"{stage} unreachable"] += 1
                time.sleep(UNREACHABLE_PAUSE)
            except PlatformRefused as e:
                if e.kind != "host_error":
                    raise
                self.stats[f"{stage} host-error"] += 1
                time.sleep(UNREACHABLE_PAUSE)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{stage}: the host answered nothing for {RETRY_FOR:g} s")

    def recover(self) -> None:
        pending = [p.msgid for p in self.link.journal.pending()]
        deadline = time.monotonic() + RETRY_FOR
        left = self.link.recover()
        while left and time.monotonic() < deadline:
            time.sleep(UNREACHABLE_PAUSE)
            left = self.link.recover()
        self.results.write({"event": "start", "pid": os.getpid(), "pending": pending, "left": left})
        if left:
            raise RuntimeError(f"{left} pending reversals could not be sent in {RETRY_FOR:g} s")

    def pay(self, i: int, ssn: str, card: str, amount: int) -> None:
        self.attempts = []
        record: dict[str, Any] = {"i": i, "ssn": ssn, "amount": amount}
        stage = "1101"
        try:
            person = self.retrying("1101", lambda: self.link.person(ssn, card))
            if person is None:
                raise PlatformRefused("unknown_person", "no such person")
            found = person
            stage = "2101"
            self.retrying(stage, lambda: self.link.presettle(found, amount, card))
            stage = "2102"
            settlement = self.retrying(stage, lambda: self.link.settle(found, amount, card))
        except NotThrough as e:
            self.stats["not-through confirmed" if e.confirmed else "not-through pending"] += 1
            record.update(outcome="not-through", msgid=self.attempts[-1][0], confirmed=e.confirmed)
        except PlatformRefused as e:
            self.stats[f"refused {e.kind}"] += 1
            msgid = self.attempts[-1][0] if self.attempts else ""
            record.update(outcome="refused", stage=stage, kind=e.kind, msgid=msgid)
        else:
            self.stats["settled"] += 1
            record.update(
                outcome="settled",
                msgid=settlement.msgid,
                setl_id=settlement.setl_id,
                acct_fen=settlement.acct_fen,
                medfee_fen=settlement.medfee_fen,
            )
        record["attempts"] = self.attempts
        self.results.write(record)

    def reconcile(self) -> None:
        result = self.retrying("3201", self.link.reconcile)
        self.results.write(
            {
                "event": "reconcile",
                "day": result.day.isoformat(),
                "balanced": result.balanced,
                "description": result.description,
                "totals": dataclasses.asdict(result.totals),
                "host_totals": result.host_totals,
                "differences": result.differences,
            }
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--terminal-id", required=True)
    parser.add_argument("--payments", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=0.3, help="client timeout, s")
    parser.add_argument("--results", type=Path, required=True)
    args = parser.parse_args(argv)
    if "SHEBAO_POS_HOME" in os.environ:
        parser.error("unset SHEBAO_POS_HOME: the terminal's files go under XDG_DATA_HOME")

    choices = holders()
    results = Results(args.results)
    with HttpTransport(args.url, timeout=args.timeout) as transport:
        terminal = Terminal(link_over(transport, args.terminal_id), results)
        terminal.recover()  # what a killed run left pending is reversed before anything
        for i in range(results.done(), args.payments):
            terminal.pay(i, *payment(args.seed, i, choices))
        terminal.reconcile()
        pending = [p.msgid for p in terminal.link.journal.pending()]
        results.write({"event": "done", "pending": pending, "stats": dict(terminal.stats)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
