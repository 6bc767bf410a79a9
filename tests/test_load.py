"""Load: TERMINALS terminal processes x PAYMENTS payments against `pos-host serve` on a real
PostgreSQL, with one reply in ten dropped after the host committed (drop-reply=0.1).

Each terminal is tests/load_terminal.py: the terminal's settlement core (PlatformLink with
its pending-reversal journal and day-book, under its own XDG_DATA_HOME) over HTTP with a
short client timeout, so that a dropped reply costs little. It writes what it believes of
each payment to a results file. Afterwards, checked in PostgreSQL itself:

- a (sender, msgid) has at most one settlement; each settlement is what its 2102 was
  answered (infcode 0), every 2102 answered so has one, and a reversed one names the 2601
  that reversed it;
- every payment a terminal was told is settled is there, 'settled', with its setl_id and
  amount; every 2102 that got no answer is reversed or absent, never 'settled'; every
  2102 refused or that never reached the host left no settlement at all;
- no 'settled' row that no terminal was told about, except in the one place a SIGKILL
  allows (the answer recorded in the day-book, the results line not yet written), and
  then it is in that terminal's day-book; a settlement whose answer was in flight at the
  kill is reversed by recover() at the restart;
- each holder's balance is the start minus the account part of its 'settled' rows;
- each terminal's reconcile() (3201, and 3202 were they to differ) is balanced, its
  totals are the host's for that terminal, and its day-book holds exactly the host's
  'settled' rows of that terminal; no reversal is left pending.

The second test SIGKILLs the host once in the middle, at a moment when a settlement is
committed there and its terminal has not yet recorded the answer (the host is restarted
on the same port and database; the terminals meet HostUnreachable / NoAnswer and carry
on), and SIGKILLs one terminal at such a moment of its own (it is restarted with the same
id and data folder, reverses what it left pending, and finishes its payments). The same
checks hold, and each settlement caught in flight ends reversed, or settled and told.

Each test takes about 95-110 s of load on a 2-CPU machine whose fsync takes 4 ms (about
40 payments a second in all; some 45 s of each terminal's time is the 0.3 s timeouts of
its ~150 dropped replies). `-s` prints the figures and the outcomes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import load_terminal
import pytest

from host.client import DEFAULT_INSTITUTION
from host.daybook import DayBook
from host.platform import REVERSED_FIRST, sender_of

pytestmark = [
    pytest.mark.slow,  # about 100 s each: thousands of payments, SIGKILLs
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

ROOT = Path(__file__).resolve().parent.parent
TERMINAL_SCRIPT = Path(__file__).with_name("load_terminal.py")

TERMINALS = 8
PAYMENTS = 500  # per terminal: the 8 x 500
CLIENT_TIMEOUT = 0.3  # s: a dropped reply costs this much
FAULTS = "drop-reply=0.1"
RUN_DEADLINE = 900.0  # s for the whole load: far beyond what it takes (test output says)
START_DEADLINE = 30.0  # s for the host to listen
VICTIM = 2  # the terminal the second test kills
HOST_KILL_AT = 0.3  # share of all payments done when the host is killed
TERMINAL_KILL_AT = 0.55  # ... when the terminal is


# --- the host -----------------------------------------------------------------------------


@dataclass
class Host:
    """`pos-host --db URL serve` with the faults, as a child process."""

    db: str
    log: Path
    port: int = 0
    url: str = ""
    proc: subprocess.Popen[str] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "host.cli",
                    "--db",
                    self.db,
                    "serve",
                    "--listen",
                    f"127.0.0.1:{self.port}",  # 0 at first; the same port at a restart
                    "--faults",
                    FAULTS,
                    "--faults-seed",
                    str(self.starts),
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_DEADLINE)
        line = self.proc.stdout.readline() if ready else ""
        found = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", line)
        if not found:
            self.kill9()
            pytest.fail(f"pos-host serve did not start: {line!r}\n{self.log.read_text()}")
        self.url, self.port = found.group(1), int(found.group(2))

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self._reap()
        return code

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait(60)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def drops(self) -> int:
        return self.log.read_text("utf-8", "replace").count("injected fault drop-reply")


# --- the terminals ------------------------------------------------------------------------


@dataclass
class Terminal:
    """One tests/load_terminal.py process: its id, its data folder, its results."""

    terminal_id: str
    folder: Path
    seed: int
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    kills: list[list[str]] = field(default_factory=list)  # pending files at each kill

    @property
    def data(self) -> Path:
        return self.folder / "xdg"

    @property
    def results(self) -> Path:
        return self.folder / "results.jsonl"

    @property
    def stderr(self) -> Path:
        return self.folder / "stderr.txt"

    @property
    def pending_folder(self) -> Path:
        return self.data / "shebao-pos" / "pending" / self.terminal_id

    @property
    def daybook(self) -> DayBook:
        return DayBook(self.data / "shebao-pos" / "daybook" / self.terminal_id)

    def start(self, url: str) -> None:
        self.runs += 1
        env = {k: v for k, v in os.environ.items() if k != "SHEBAO_POS_HOME"}
        env["XDG_DATA_HOME"] = str(self.data)  # cardio.resources.user_dir() follows it
        err: IO[bytes]
        with self.stderr.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(TERMINAL_SCRIPT),
                    "--url",
                    url,
                    "--terminal-id",
                    self.terminal_id,
                    "--payments",
                    str(PAYMENTS),
                    "--seed",
                    str(self.seed),
                    "--timeout",
                    str(CLIENT_TIMEOUT),
                    "--results",
                    str(self.results),
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )

    def pending_files(self) -> list[str]:
        try:
            return sorted(p.stem for p in self.pending_folder.glob("*.json"))
        except OSError:
            return []

    def kill9(self) -> list[str]:
        """SIGKILL it: the pending reversals it leaves behind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)
        left = self.pending_files()
        self.kills.append(left)
        return left

    def records(self) -> list[dict[str, Any]]:
        found = []
        if not self.results.exists():
            return found
        for raw in self.results.read_text("utf-8").splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a line torn by the SIGKILL
            if isinstance(record, dict):
                found.append(record)
        return found

    def outcomes(self) -> int:
        if not self.results.exists():
            return 0
        return self.results.read_text("utf-8").count('{"i": ')


@pytest.fixture
def processes() -> Iterator[list[Host | Terminal]]:
    """Whatever a test started is killed after it, whatever happened."""
    started: list[Host | Terminal] = []
    yield started
    for thing in started:
        proc = thing.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)


# --- the load -----------------------------------------------------------------------------


@dataclass
class Run:
    host: Host
    terminals: list[Terminal]
    start_balances: dict[str, int]
    seconds: float = 0.0


def balances(db: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(db) as conn:
        return {ssn: fen for ssn, fen in conn.execute("SELECT ssn, balance_fen FROM holders")}


def progress(terminals: list[Terminal]) -> float:
    return sum(t.outcomes() for t in terminals) / (TERMINALS * PAYMENTS)


def wait_progress(terminals: list[Terminal], share: float, deadline: float) -> None:
    while progress(terminals) < share:
        assert time.monotonic() < deadline, f"the load stalled at {progress(terminals):.0%}"
        for t in terminals:
            assert t.proc is not None
            if t.proc.poll() not in (None, 0):
                pytest.fail(f"{t.terminal_id} failed:\n{t.stderr.read_text()[-4000:]}")
        time.sleep(0.05)


def start_load(tmp_path: Path, pg_url: str, processes: list[Host | Terminal]) -> Run:
    host = Host(pg_url, tmp_path / "host.log")
    processes.append(host)
    host.start()  # a new database: pos-host seeds it with fixtures/holders
    start = balances(pg_url)
    assert start and sum(start.values()) > 0
    terminals = []
    for k in range(TERMINALS):
        folder = tmp_path / f"T{k + 1:02d}"
        folder.mkdir()
        terminals.append(Terminal(f"LOAD-{k + 1:02d}", folder, seed=1000 + k))
    processes.extend(terminals)
    for t in terminals:
        t.start(host.url)
    return Run(host, terminals, start)


def finish_load(run: Run, began: float, deadline: float) -> None:
    for t in run.terminals:
        assert t.proc is not None
        try:
            code = t.proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{t.terminal_id} did not finish in {RUN_DEADLINE:g} s")
        assert code == 0, f"{t.terminal_id} failed:\n{t.stderr.read_text()[-4000:]}"
    run.seconds = time.monotonic() - began
    assert run.host.stop() == 0
    log = run.host.log.read_text("utf-8", "replace")
    assert "Traceback" not in log, log[-4000:]
    assert "handle failed" not in log, log[-4000:]  # an engine error: HTTP 500


# --- the checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    sender: str
    msgid: str
    setl_id: str
    ssn: str
    status: str
    acct_fen: int
    medfee_fen: int
    day: str
    ended_msgid: str | None


def settlement_rows(db: str) -> list[Row]:
    import psycopg

    with psycopg.connect(db) as conn:
        return [
            Row(*r)
            for r in conn.execute(
                "SELECT sender, msgid, setl_id, ssn, status, acct_fen, medfee_fen, day, "
                "ended_msgid FROM settlements"
            )
        ]


def messages(db: str) -> dict[tuple[str, str], tuple[str, int | None]]:
    """(sender, msgid): (infno, the answer's infcode; None for a reversal's placeholder)."""
    import psycopg

    with psycopg.connect(db) as conn:
        found = {}
        for sender, msgid, infno, digest, answer in conn.execute(
            "SELECT sender, msgid, infno, digest, answer FROM messages"
        ):
            code = json.loads(answer).get("infcode")
            found[sender, msgid] = (infno, None if digest == REVERSED_FIRST else int(code))
        return found


def check(run: Run, db: str) -> Counter[str]:
    """Every invariant of the module's docstring; a summary for the test's output."""
    rows = settlement_rows(db)
    now = balances(db)

    # Once: one settlement per (sender, msgid) at most.
    twice = {k: n for k, n in Counter((r.sender, r.msgid) for r in rows).items() if n > 1}
    assert not twice, f"settled more than once: {twice}"
    by_msg = {(r.sender, r.msgid): r for r in rows}
    assert {r.status for r in rows} <= {"settled", "reversed"}, Counter(r.status for r in rows)

    # Never lost at the host: a settlement is the answer its 2102 got, a 2102 answered
    # infcode 0 has its settlement, and a reversed one names the 2601 that reversed it.
    stored = messages(db)
    for r in rows:
        assert stored.get((r.sender, r.msgid)) == ("2102", 0), (r, stored.get((r.sender, r.msgid)))
        if r.status == "reversed":
            assert r.ended_msgid is not None, r
            assert stored.get((r.sender, r.ended_msgid)) == ("2601", 0), r
    answered = {k for k, (infno, code) in stored.items() if infno == "2102" and code == 0}
    assert answered == set(by_msg), answered ^ set(by_msg)

    # Money: each balance is the start minus what stands settled against it.
    taken: Counter[str] = Counter()
    for r in rows:
        if r.status == "settled":
            taken[r.ssn] += r.acct_fen
    expected = {ssn: fen - taken[ssn] for ssn, fen in run.start_balances.items()}
    assert now == expected, {s: (now[s], expected[s]) for s in now if now[s] != expected[s]}
    assert sum(now.values()) == sum(run.start_balances.values()) - sum(taken.values())

    summary: Counter[str] = Counter()
    host_settled = 0
    for t in run.terminals:
        records = t.records()
        outcomes = [r for r in records if "i" in r]
        events = [r for r in records if "event" in r]
        where = sender_of(DEFAULT_INSTITUTION, t.terminal_id)  # the host's name for it

        # Every payment has exactly one outcome; the run ended with a reconciliation.
        indices = Counter(r["i"] for r in outcomes)
        assert sorted(indices) == list(range(PAYMENTS)), f"{where}: payments missing"
        assert max(indices.values()) == 1, f"{where}: a payment recorded twice"
        starts = [e for e in events if e["event"] == "start"]
        assert len(starts) == t.runs, f"{where}: {starts}"
        assert all(e["left"] == 0 for e in starts), f"{where}: {starts}"
        done = [e for e in events if e["event"] == "done"]
        assert len(done) == 1 and done[0]["pending"] == [], f"{where}: {done}"
        assert t.pending_files() == [], f"{where}: reversals left pending"

        # What the terminal was told, against the host's rows of it.
        told_settled: set[str] = set()
        known: set[str] = set()  # every 2102 message id the terminal sent
        for r in outcomes:
            summary[r["outcome"]] += 1
            for msgid, came in r["attempts"]:
                known.add(msgid)
                row = by_msg.get((where, msgid))
                if came == "unreached" or came.startswith("refused:"):
                    assert row is None, f"{where}: {msgid} {came} yet settled: {row}"
                    summary[f"2102 {came}"] += 1
                elif came == "no-answer":
                    assert row is None or row.status == "reversed", f"{where}: {msgid}: {row}"
                    summary["2102 no-answer"] += 1
                    summary[f"2102 no-answer, host row {row.status if row else 'none'}"] += 1
            if r["outcome"] == "settled":
                row = by_msg.get((where, r["msgid"]))
                assert row is not None, f"{where}: settled {r['msgid']} is not at the host"
                assert row.status == "settled", f"{where}: told settled, host says {row}"
                assert (row.setl_id, row.acct_fen) == (r["setl_id"], r["acct_fen"]), row
                assert r["acct_fen"] == r["amount"], r  # the default policy: all from account
                told_settled.add(r["msgid"])
            elif r["outcome"] == "not-through":
                row = by_msg.get((where, r["msgid"]))
                assert row is None or row.status == "reversed", f"{where}: {r} but {row}"
                summary["not-through confirmed" if r["confirmed"] else "not-through pending"] += 1
            else:
                assert r["outcome"] == "refused", r
                summary[f"refused {r['stage']} {r['kind']}"] += 1

        # The host's rows of this terminal that no outcome line names: only a SIGKILL
        # between the day-book and the results line leaves one settled (then it is in
        # the day-book); a settlement whose answer was in flight ends reversed.
        mine = [r for r in rows if r.sender == where]
        settled = {r.msgid: r for r in mine if r.status == "settled"}
        host_settled += len(settled)
        unreported = set(settled) - told_settled
        strays = [r for r in mine if r.msgid not in known]
        if not t.kills:
            assert not unreported, f"{where}: settled, never told: {unreported}"
            assert not strays, f"{where}: settlements of messages it never sent: {strays}"
        else:
            assert len(unreported) <= len(t.kills), f"{where}: {unreported}"
            assert len(strays) <= len(t.kills), f"{where}: {strays}"
            for pending in t.kills:
                for msgid in pending:
                    row = by_msg.get((where, msgid))
                    assert row is None or row.status == "reversed", f"{where}: {msgid}: {row}"
                    summary["killed with a pending settlement, host row " + _state(row)] += 1
            # The restart found what the kill left (an empty file, torn at its making,
            # names a 2102 never sent: the journal skips it).
            restarted = [e["pending"] for e in starts[1:]]
            assert len(restarted) == len(t.kills), (restarted, t.kills)
            for found, left in zip(restarted, t.kills, strict=True):
                assert set(found) <= set(left), (found, left)

        # 3201: balanced, and the day-book is exactly the host's settled rows.
        reconciled = [e for e in events if e["event"] == "reconcile"]
        assert len(reconciled) == 1, f"{where}: {reconciled}"
        rec = reconciled[0]
        assert rec["balanced"] is True and rec["differences"] == [], f"{where}: {rec}"
        day = dt.date.fromisoformat(rec["day"])
        book = {e.setl_id: e for e in t.daybook.entries(day)}
        assert set(book) == {r.setl_id for r in settled.values()}, f"{where}: day-book differs"
        assert all(book[r.setl_id].acct_fen == r.acct_fen for r in settled.values())
        totals = rec["totals"]
        assert totals["count"] == len(settled), (where, totals)
        assert totals["acct_fen"] == sum(r.acct_fen for r in settled.values()), (where, totals)
        assert totals["medfee_fen"] == sum(r.medfee_fen for r in settled.values())
        assert all(r.day == rec["day"] for r in mine)
        summary["host 'settled' rows"] += len(settled)
        summary["host 'reversed' rows"] += len(mine) - len(settled)
        for e in done:
            for key, n in e["stats"].items():
                if "no-answer" in key or "unreachable" in key or "host-error" in key:
                    summary[f"retried {key}"] += n

    assert host_settled == sum(1 for r in rows if r.status == "settled")
    assert summary["settled"] > TERMINALS * PAYMENTS // 2  # the load really paid
    assert summary["2102 no-answer"] > 0  # and really lost answers
    return summary


def _state(row: Row | None) -> str:
    return row.status if row is not None else "none"


def report(run: Run, summary: Counter[str], extra: str = "") -> None:
    print(
        f"\n{TERMINALS} terminals x {PAYMENTS} payments in {run.seconds:.1f} s "
        f"({TERMINALS * PAYMENTS / run.seconds:.0f} payments/s), host dropped "
        f"{run.host.drops()} replies{extra}"
    )
    for key, n in sorted(summary.items()):
        print(f"  {key}: {n}")


# --- the tests ----------------------------------------------------------------------------


def test_load_with_dropped_replies(
    pg_url: str, tmp_path: Path, processes: list[Host | Terminal]
) -> None:
    began = time.monotonic()
    deadline = began + RUN_DEADLINE
    run = start_load(tmp_path, pg_url, processes)
    finish_load(run, began, deadline)
    report(run, check(run, pg_url))


def in_flight(db: Any, terminals: list[Terminal]) -> list[tuple[Terminal, str]]:
    """The settlements committed at the host whose terminal has not yet recorded the
    answer (its pending reversal is still there): the answer is on its way, or lost."""
    found = []
    for t in terminals:
        pending = t.pending_files()
        if pending:
            rows = db.execute(
                "SELECT msgid FROM settlements WHERE sender = %s AND msgid = ANY(%s) "
                "AND status = 'settled'",
                (sender_of(DEFAULT_INSTITUTION, t.terminal_id), pending),
            ).fetchall()
            found += [(t, msgid) for (msgid,) in rows]
    return found


def wait_in_flight(
    db: Any, terminals: list[Terminal], deadline: float
) -> list[tuple[Terminal, str]]:
    while time.monotonic() < deadline:
        found = in_flight(db, terminals)
        if found:
            return found
        time.sleep(0.001)
    pytest.fail("no settlement was ever caught between the host's commit and its answer")


def test_load_with_host_and_terminal_killed(
    pg_url: str, tmp_path: Path, processes: list[Host | Terminal]
) -> None:
    """The host is killed while a settlement is committed and its answer not yet in; so
    is a terminal, which then finds the pending reversal at its restart and sends it."""
    import psycopg

    began = time.monotonic()
    deadline = began + RUN_DEADLINE
    run = start_load(tmp_path, pg_url, processes)
    host, victim = run.host, run.terminals[VICTIM]
    with psycopg.connect(pg_url, autocommit=True) as db:
        wait_progress(run.terminals, HOST_KILL_AT, deadline)
        wait_in_flight(db, run.terminals, deadline)
        port = host.port
        host.kill9()
        down = time.monotonic()
        at_host_kill = in_flight(db, run.terminals)  # the terminals wait on a dead host
        time.sleep(0.5)  # they meet a host that is not there
        host.start()
        assert host.port == port
        host_down = time.monotonic() - down

        wait_progress(run.terminals, TERMINAL_KILL_AT, deadline)
        for _ in range(10):  # until the kill leaves a settled, unanswered settlement
            wait_in_flight(db, [victim], deadline)
            victim.kill9()
            caught = [m for t, m in in_flight(db, [victim])]
            victim.start(host.url)  # the same id and data folder: recovers, goes on
            if caught:
                break
        assert caught, f"{victim.terminal_id} was never killed with a settlement in flight"
        assert victim.outcomes() < PAYMENTS, "the victim had finished before the kill"

    finish_load(run, began, deadline)
    summary = check(run, pg_url)
    rows = {(r.sender, r.msgid): r for r in settlement_rows(pg_url)}
    for t, msgid in at_host_kill + [(victim, m) for m in caught]:
        row = rows[sender_of(DEFAULT_INSTITUTION, t.terminal_id), msgid]
        told = [r for r in t.records() if r.get("msgid") == msgid]
        if row.status == "settled":  # its answer made it out before the kill: told so
            assert [r["outcome"] for r in told] == ["settled"], (t.terminal_id, msgid, told)
        else:
            assert row.status == "reversed", row
        key = "victim" if t is victim and msgid in caught else "host kill"
        summary[f"in flight at the {key}, ended {row.status}"] += 1
    report(
        run,
        summary,
        f"; host down {host_down:.1f} s; {victim.terminal_id} killed {len(victim.kills)}x, "
        f"pending at the kills {victim.kills}",
    )
    assert host.starts == 2
    assert all(m in victim.kills[-1] for m in caught)


def test_results_of_a_torn_line_are_skipped(tmp_path: Path) -> None:
    """The results reader (both sides) skips a line a SIGKILL tore in two."""
    t = Terminal("X", tmp_path, 0)
    path = t.results
    path.write_text('{"i": 0, "outcome": "settled"}\n{"event": "start"}\n{"i": 1, "outc')
    assert load_terminal.Results(path).done() == 1
    assert [r.get("i") for r in t.records()] == [0, None]


def test_payments_repeat_per_seed_and_index() -> None:
    """A restarted terminal makes the payments the killed one would have made."""
    choices = load_terminal.holders()
    assert len(choices) == len(load_terminal.PROFILES)
    first = [load_terminal.payment(7, i, choices) for i in range(50)]
    assert first == [load_terminal.payment(7, i, choices) for i in range(50)]
    assert all(1 <= amount <= load_terminal.MAX_AMOUNT for _, _, amount in first)
    assert len({ssn for ssn, _, _ in first}) > 1
