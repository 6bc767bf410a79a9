"""Crash safety of the embedded host: a payer killed with SIGKILL at random points.

A child process pays in a loop (each payment: its transaction id printed BEFORE the
debit call, 'done <txn_id>' printed after it returns). After each kill the database
must open, hold each printed payment once or not at all, hold every 'done' payment,
and keep sum(balances) + sum(DEBITED amounts) equal to the seeded total. A retry of
the payment in flight at the kill debits at most once. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from host.api import DebitStatus
from host.sqlite import SqliteHost

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
    pytest.mark.slow,  # SIGKILLs the host many times
]

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "holders" / "holders.json"
SEED_DOC = json.loads(SEED.read_text("utf-8"))
SEEDED = {h["ssn"]: h["balance_fen"] for h in SEED_DOC["holders"]}
SEEDED_TOTAL = 376050

ZHANG = "310104198503122174"  # 500.00 yuan
LI = "310101197911020480"  # 1280.50 yuan
ZHOU = "310106197012050397"  # 50.00 yuan: runs dry, then INSUFFICIENT
CHEN = "310110195601300847"  # 0.00 yuan: always INSUFFICIENT
PAYERS = [LI, ZHANG, ZHOU, LI, CHEN, ZHANG, LI]

# argv: db, prefix. Payment i: ssn PAYERS[i % 7], amount 1 + i % 5 fen (ZHOU: 40 + i % 5).
PAYER = """
import sys
from pathlib import Path
from host.sqlite import SqliteHost
payers = sys.argv[3].split(",")
host = SqliteHost(Path(sys.argv[1]))
print("ready", flush=True)
i = 0
while True:
    ssn = payers[i % len(payers)]
    amount = (40 if ssn == sys.argv[4] else 1) + i % 5
    txn = f"{sys.argv[2]}-{i}"
    print("pay", txn, ssn, amount, flush=True)
    d = host.debit(txn, "POS-CRASH", "CARD00001", ssn, amount)
    print("done", txn, d.status.value, d.balance_after_fen, flush=True)
    i += 1
"""

KILLS = 45
BUDGET_S = 25.0


def rows(db: Path) -> dict[str, tuple]:
    con = sqlite3.connect(db)
    try:
        return {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT txn_id, ssn, amount_fen, status, balance_after_fen FROM transactions "
                "ORDER BY rowid"
            )
        }
    finally:
        con.close()


def check_books(host: SqliteHost, db: Path) -> dict[str, tuple]:
    """Every balance is the seeded one minus its DEBITED rows; each DEBITED row's balance
    after is the one before minus its amount; the grand total never changes."""
    recorded = rows(db)
    running = dict(SEEDED)
    for txn, (ssn, amount, status, after) in recorded.items():
        if status == DebitStatus.DEBITED:
            running[ssn] -= amount
            assert after == running[ssn], (txn, after, running[ssn])
        elif status == DebitStatus.INSUFFICIENT:
            assert after == running[ssn] < amount, (txn, after, running[ssn])
        else:
            raise AssertionError(f"{txn}: unexpected status {status}")
    for ssn, fen in running.items():
        holder = host.holder(ssn)
        assert holder is not None and holder.balance_fen == fen >= 0, (ssn, fen)
    balances, debited = host.total_fen()
    assert balances + debited == SEEDED_TOTAL
    assert balances == sum(running.values())
    return recorded


def run_and_kill(db: Path, prefix: str, rng: random.Random) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", PAYER, str(db), prefix, ",".join(PAYERS), ZHOU],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:  # keeps the pipe empty, so the child never waits on a print
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line.rstrip("\n"))
            ready.set()
        ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0.0, 0.08))  # sometimes while it starts or opens the db
        else:
            ready.wait(timeout=30)  # "ready" (or the end if it died)
            time.sleep(rng.uniform(0.0, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        reader.join(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    out = "\n".join(lines)
    assert child.returncode == -signal.SIGKILL, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    return lines


def test_sigkill_at_random_points_never_loses_or_doubles_a_payment(tmp_path):
    db = tmp_path / "host.sqlite3"
    SqliteHost(db, seed=SEED).close()
    rng = random.Random(20240611)
    started = time.monotonic()
    kills = paid = pending_retries = replayed_retries = 0
    for k in range(KILLS):
        if k >= 40 and time.monotonic() - started > BUDGET_S:
            break
        lines = run_and_kill(db, f"k{k}", rng)
        kills += 1
        printed: dict[str, tuple[str, int]] = {}
        done: dict[str, tuple[str, str]] = {}
        for line in lines:
            words = line.split()
            if words[:1] == ["pay"] and len(words) == 4:
                printed[words[1]] = (words[2], int(words[3]))
            elif words[:1] == ["done"] and len(words) == 4:
                done[words[1]] = (words[2], words[3])
        assert set(done) <= set(printed)

        host = SqliteHost(db, seed=SEED)  # the database opens after the kill
        try:
            recorded = check_books(host, db)
            mine = {t: r for t, r in recorded.items() if t.startswith(f"k{k}-")}
            assert set(mine) <= set(printed)  # nothing recorded that was never asked for
            for txn, (ssn, amount) in printed.items():
                if txn in recorded:
                    assert recorded[txn][:2] == (ssn, amount), txn
            for txn, (status, after) in done.items():
                assert txn in recorded, f"{txn} was answered but is not recorded"
                assert recorded[txn][2] == status and str(recorded[txn][3]) == after, txn
            paid += len(done)

            undone = [t for t in printed if t not in done]
            assert len(undone) <= 1  # one payment at a time
            if undone:
                pending_retries += 1
                txn = undone[0]
                ssn, amount = printed[txn]
                before = recorded.get(txn)
                retry = host.debit(txn, "POS-CRASH", "CARD00001", ssn, amount)
                assert retry.replayed is (before is not None)
                replayed_retries += retry.replayed
                if before is not None:
                    assert (retry.status.value, retry.balance_after_fen) == (before[2], before[3])
                again = host.debit(txn, "POS-CRASH", "CARD00001", ssn, amount)
                assert again.replayed is True
                assert (again.status, again.balance_after_fen) == (
                    retry.status,
                    retry.balance_after_fen,
                )
                after = check_books(host, db)
                assert list(after).count(txn) == 1
                debited_before = sum(r[1] for r in recorded.values() if r[2] == DebitStatus.DEBITED)
                debited_after = sum(r[1] for r in after.values() if r[2] == DebitStatus.DEBITED)
                expected = amount if (before is None and retry.ok) else 0
                assert debited_after - debited_before == expected
        finally:
            host.close()
    assert kills >= 40
    print(
        f"{kills} kills, {paid} answered payments, {pending_retries} retries of a payment "
        f"in flight ({replayed_retries} found recorded)"
    )


FIRST_START = """
import os, signal, sys
from pathlib import Path
from host import sqlite
def crash(self, path):
    os.kill(os.getpid(), signal.SIGKILL)
sqlite.SqliteHost.seed = crash
sqlite.SqliteHost(Path(sys.argv[1]), seed=Path(sys.argv[2]))
"""


def test_a_crash_before_the_first_seeding_does_not_leave_a_host_without_holders(tmp_path):
    """Killed after the database file was made but before it was seeded: the next start
    must still know the holders (else every payment is refused as UNKNOWN_HOLDER)."""
    db = tmp_path / "host.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", FIRST_START, str(db), str(SEED)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert db.exists()
    host = SqliteHost(db, seed=SEED)
    try:
        assert host.holder(ZHANG) is not None, "the holders were never seeded"
        assert host.total_fen() == (SEEDED_TOTAL, 0)
        assert host.debit("first", "POS-01", "A93230742", ZHANG, 100).ok
    finally:
        host.close()
