"""Crash safety of the platform engine (host/platform.py over host/sqlite.py): a terminal
killed with SIGKILL at random points while it settles.

A child process signs in (9001), looks its payers up (1101), then settles (2102) in a
loop, every 7th step a reversal (2601) of an earlier settlement. Each message is printed
whole BEFORE Platform.handle ('send <msgid> <request>') and its answer after it ('done
<msgid> <answer>'). After each SIGKILL the database must open, and:
- each 2102 has at most one settlements row, each one answered infcode 0 exactly one,
  with the answered setl_id; each answered message's stored answer is the one printed;
- nothing is stored that was never sent;
- replaying every stored message in commit order, each settlement's balc_fen is the
  holder's balance minus its acct_fen, each reversal gives back exactly its acct_fen
  once, and the balances are the result; sum(balances) + sum(acct_fen of 'settled' rows)
  is the seeded total;
- the message in flight, sent again as it was (through Platform.handle in this process),
  gets its stored answer if it had committed, or runs now, and never makes a second row;
  or a 2601 for an in-flight 2102 reverses it, or leaves it a refusal ('reversed'), and
  the 2102 sent after that debits nothing.
No timing is asserted. The clock is fixed (one day), so the sign-in stays valid.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from platform_helpers import DAY_ONE, INSTITUTION, LI, ZHANG, ZHOU, money_total

from host import wire
from host.platform import Platform
from host.sqlite import SqliteHost
from host.store import ssn_of
from host.wire import fen_of

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
    pytest.mark.slow,  # SIGKILLs the host many times
]

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "holders" / "holders.json"
SEED_DOC = json.loads(SEED.read_text("utf-8"))
SEEDED = {h["ssn"]: h["balance_fen"] for h in SEED_DOC["holders"]}
SCHEMES = {h["ssn"]: h["scheme"] for h in SEED_DOC["holders"]}
SEEDED_TOTAL = 376050

CHEN = "310110195601300847"  # 0.00 yuan, insutype 170: always refused (insufficient)
# Step i settles for PAYERS[i % 7] (ZHOU: 4.00 yuan and more, so he runs dry), except
# i % 7 == 6: a 2601 of step i - 1 (ZHANG), i - 2 (CHEN, refused) or i - 3 (LI).
PAYERS = [LI, ZHANG, ZHOU, LI, CHEN, ZHANG]
DEV_NO = "POS-CRASH"
SENDER = f"{INSTITUTION}/{DEV_NO}"

# argv: db, kill number, payers, ZHOU, schemes (ssn=scheme,...)
PAYER = """
import sys
from decimal import Decimal
from pathlib import Path
sys.path.insert(0, "tests")
from platform_helpers import DAY_ONE, Terminal, bill
from host import wire
from host.platform import Platform
from host.sqlite import SqliteHost
from host.store import psn_no_of

k = int(sys.argv[2])
payers = sys.argv[3].split(",")
dry = sys.argv[4]
schemes = dict(p.split("=") for p in sys.argv[5].split(","))
host = SqliteHost(Path(sys.argv[1]))
platform = Platform(host, clock=lambda: DAY_ONE)
term = Terminal(platform, dev_no="POS-CRASH")
serial = 0

def send(infno, data):
    global serial
    serial += 1
    request = term.request(infno, data, f"{term.fixmedins_code}{k:04d}{serial:014d}")
    print("send", request["msgid"], wire.dumps(request).decode(), flush=True)
    answer = wire.loads(wire.dumps(platform.handle(wire.loads(wire.dumps(request)))))
    print("done", request["msgid"], wire.dumps(answer).decode(), flush=True)
    return request, answer

print("ready", flush=True)
_, signed = send("9001", {"signIn": {"opter_no": "clerk-1", "mac": "", "ip": "::1"}})
assert signed["infcode"] == 0, signed
term.sign_no = signed["output"]["signinoutb"]["sign_no"]
for ssn in sorted(set(payers)):
    send("1101", {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": ssn,
                           "psn_cert_type": "01"}})
settled = []
i = 0
while True:
    if i % 7 == 6:
        target, psn_no = settled[i - 1 - (i // 7) % 3]
        _, answer = send("2601", {"data": {"psn_no": psn_no, "omsgid": target,
                                           "oinfno": "2102"}})
        assert answer["infcode"] == 0, answer
        settled.append(None)
    else:
        ssn = payers[i % 7]  # i % 7 is 0 to 5 here
        fen = (400 if ssn == dry else 1) + i % 5
        psn_no = psn_no_of(ssn)
        amount = str(Decimal(fen) / 100)
        request, answer = send(
            "2102", bill(psn_no, (("X0001", amount),), insutype=schemes[ssn])
        )
        settled.append((request["msgid"], psn_no))
    i += 1
"""

KILLS = 40
MIN_KILLS = 30
BUDGET_S = 22.0
REVERSAL_ID = 10**14 - 1  # the parent's own 2601: a serial the child never reaches

Message = dict[str, Any]


def run_and_kill(db: Path, k: int, rng: random.Random) -> list[str]:
    schemes = ",".join(f"{s}={SCHEMES[s]}" for s in sorted(set(PAYERS)))
    child = subprocess.Popen(
        [sys.executable, "-c", PAYER, str(db), str(k), ",".join(PAYERS), ZHOU, schemes],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
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
            time.sleep(rng.uniform(0.0, 0.12))  # sometimes while it starts or opens the db
        else:
            ready.wait(timeout=30)  # "ready" (or the end if it died)
            time.sleep(rng.uniform(0.0, 0.3))
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


def parse(lines: list[str]) -> tuple[dict[str, Message], dict[str, Message]]:
    """(requests sent, answers got), by message id, in order. The last line may be cut
    short by the kill: then it is not taken."""
    sent: dict[str, Message] = {}
    done: dict[str, Message] = {}
    for line in lines:
        word, _, rest = line.partition(" ")
        msgid, _, body = rest.partition(" ")
        if word not in ("send", "done"):
            continue
        try:
            message = wire.loads(body)
        except wire.WireError:
            continue  # a line the kill cut short
        (sent if word == "send" else done)[msgid] = message
    return sent, done


def stored(host: SqliteHost) -> tuple[list[tuple], list[tuple]]:
    """(messages in commit order, settlements in commit order)."""
    with host.atomic() as sql:
        messages = sql.rows(
            "SELECT sender, msgid, infno, digest, answer FROM messages ORDER BY rowid"
        )
        rows = sql.rows(
            "SELECT setl_id, sender, msgid, ssn, acct_fen, balc_fen, status, ended_sender, "
            "ended_msgid FROM settlements ORDER BY rowid"
        )
    return messages, rows


def balances(host: SqliteHost) -> dict[str, int]:
    with host.atomic() as sql:
        return {str(r[0]): int(str(r[1])) for r in sql.rows("SELECT ssn, balance_fen FROM holders")}


def check_books(host: SqliteHost) -> tuple[dict[tuple[str, str], Message], dict[tuple, tuple]]:
    """Replays every stored message in commit order: each settlement's balc_fen is the
    balance before minus its acct_fen, each reversal gives its acct_fen back once, and
    the holders' balances are what is left. Stored answers by (sender, msgid), and
    settlements by (sender, msgid)."""
    messages, rows = stored(host)
    per_message = Counter((r[1], r[2]) for r in rows)
    doubled = [m for m, n in per_message.items() if n > 1]
    assert not doubled, f"settled twice: {doubled}"
    by_message = {(r[1], r[2]): r for r in rows}
    by_reversal = {(r[7], r[8]): r for r in rows if r[8] is not None}
    answers = {(m[0], m[1]): wire.loads(m[4]) for m in messages}
    assert set(by_message) <= set(answers), "a settlement without its message"
    running = dict(SEEDED)
    for sender, msgid, infno, _digest, _body in messages:
        answer = answers[(sender, msgid)]
        if infno == "2102":
            row = by_message.get((sender, msgid))
            if row is None:
                assert answer["infcode"] == -1, (msgid, answer)
                continue
            setl_id, _, _, ssn, acct, balc, status, *_ = row
            running[ssn] -= acct
            assert balc == running[ssn] >= 0, (msgid, balc, running[ssn])
            info = answer["output"]["setlinfo"]
            assert answer["infcode"] == 0 and info["setl_id"] == setl_id, (msgid, answer)
            assert fen_of(info["acct_pay"], "acct_pay") == acct
            assert fen_of(info["balc"], "balc") == balc
            assert status in ("settled", "reversed"), (msgid, status)
        elif infno == "2601":
            assert answer["infcode"] == 0, (msgid, answer)
            row = by_reversal.get((sender, msgid))
            if row is not None:
                assert row[6] == "reversed", row
                running[row[3]] += row[4]
    for row in rows:
        if row[6] == "reversed":
            assert (row[7], row[8]) in answers, f"{row[0]} reversed by no stored message"
        else:
            assert row[8] is None, row
    assert balances(host) == running
    assert money_total(host) == SEEDED_TOTAL
    return answers, by_message


def check_answered(
    k: int,
    sent: dict[str, Message],
    done: dict[str, Message],
    answers: dict[tuple[str, str], Message],
    by_message: dict[tuple, tuple],
) -> None:
    """What the child was told is what is stored; nothing is stored it never sent."""
    assert set(done) <= set(sent)
    prefix = f"{INSTITUTION}{k:04d}"
    named = set(sent) | {
        r["input"]["data"]["omsgid"] for r in sent.values() if r["infno"] == "2601"
    }
    mine = {msgid for sender, msgid in answers if msgid.startswith(prefix)}
    assert mine <= named, f"stored but never sent: {sorted(mine - named)}"
    for msgid, answer in done.items():
        assert answers.get((SENDER, msgid)) == answer, f"{msgid} was answered otherwise"
        if sent[msgid]["infno"] == "2102":
            row = by_message.get((SENDER, msgid))
            if answer["infcode"] == 0:
                assert row is not None and row[0] == answer["output"]["setlinfo"]["setl_id"]
            else:
                assert row is None, msgid


def settlement_of(host: SqliteHost, msgid: str) -> list[tuple]:
    with host.atomic() as sql:
        return sql.rows(
            "SELECT setl_id, ssn, acct_fen, status FROM settlements WHERE sender = ? AND msgid = ?",
            (SENDER, msgid),
        )


def handle(platform: Platform, request: Message) -> Message:
    """As over HTTP: the request and the answer through the wire's bytes."""
    answer: Message = wire.loads(wire.dumps(platform.handle(wire.loads(wire.dumps(request)))))
    return answer


def retry_in_flight(
    host: SqliteHost,
    platform: Platform,
    answers: dict[tuple[str, str], Message],
    request: Message,
    reverse: bool,
    k: int,
) -> str:
    """The message in flight at the kill, sent again as it was (or, for a 2102, reversed
    first); what happened, for the summary."""
    msgid = request["msgid"]
    infno = request["infno"]
    before = answers.get((SENDER, msgid))
    rows_before = settlement_of(host, msgid)
    money_before = balances(host)

    if infno == "2102" and reverse:
        reversal = dict(request)
        reversal.update(
            infno="2601",
            msgid=f"{INSTITUTION}{k:04d}{REVERSAL_ID:014d}",
            input={
                "data": {
                    "psn_no": request["input"]["druginfo"]["psn_no"],
                    "omsgid": msgid,
                    "oinfno": "2102",
                }
            },
        )
        reversed_ = handle(platform, reversal)
        assert reversed_["infcode"] == 0, reversed_
        assert handle(platform, reversal) == reversed_  # the same reversal again: replayed
        again = handle(platform, request)
        rows_after = settlement_of(host, msgid)
        ssn = ssn_of(request["input"]["druginfo"]["psn_no"])
        assert ssn is not None
        if before is None:  # had not committed: now it never settles
            assert again["infcode"] == -1 and again.get("err_type") == "reversed", again
            assert rows_after == []
            assert balances(host) == money_before
            outcome = "reversed before it arrived"
        else:  # had committed: its first answer, and the money is back if it was taken
            assert again == before
            assert len(rows_after) == len(rows_before) <= 1
            expected = dict(money_before)
            if rows_before:
                assert rows_after[0][3] == "reversed"
                if rows_before[0][3] == "settled":
                    expected[ssn] += rows_before[0][2]
            assert balances(host) == expected
            outcome = "reversed after it committed"
        check_books(host)
        return outcome

    first = handle(platform, request)
    if before is not None:
        assert first == before, (msgid, first, before)  # the stored answer, as it was
    again = handle(platform, request)
    assert again == first  # and from now on always that one
    check_books(host)
    rows_after = settlement_of(host, msgid)
    after = balances(host)
    if infno == "9001":
        assert first["infcode"] == 0, first
    elif infno == "2102":
        assert len(rows_after) <= 1
        if before is not None:
            assert rows_after == rows_before and after == money_before
        else:
            assert rows_before == []
            taken = rows_after[0][2] if first["infcode"] == 0 else 0
            assert len(rows_after) == (first["infcode"] == 0)
            ssn = ssn_of(request["input"]["druginfo"]["psn_no"])
            assert ssn is not None
            assert after == {**money_before, ssn: money_before[ssn] - taken}
    elif infno == "2601":
        assert first["infcode"] == 0, first
        omsgid = request["input"]["data"]["omsgid"]
        target = settlement_of(host, omsgid)
        expected = dict(money_before)
        if target:
            assert target[0][3] == "reversed"
            if before is None:  # the reversal ran now: the money back, once
                expected[target[0][1]] += target[0][2]
        assert after == expected
    else:
        assert after == money_before
    return f"{infno} {'replayed' if before is not None else 'run now'}"


def test_sigkill_at_random_points_never_loses_or_doubles_a_settlement(tmp_path):
    db = tmp_path / "host.sqlite3"
    SqliteHost(db, seed=SEED).close()
    rng = random.Random(20261130)
    started = time.monotonic()
    kills = answered = 0
    outcomes: Counter[str] = Counter()
    for k in range(KILLS):
        if k >= MIN_KILLS and time.monotonic() - started > BUDGET_S:
            break
        lines = run_and_kill(db, k, rng)
        kills += 1
        sent, done = parse(lines)
        host = SqliteHost(db, seed=SEED)  # the database opens after the kill
        try:
            platform = Platform(host, clock=lambda: DAY_ONE)
            answers, by_message = check_books(host)
            check_answered(k, sent, done, answers, by_message)
            answered += len(done)
            undone = [m for m in sent if m not in done]
            assert len(undone) <= 1, undone  # one message at a time
            if undone:
                request = sent[undone[0]]
                reverse = rng.random() < 0.5
                outcomes[retry_in_flight(host, platform, answers, request, reverse, k)] += 1
            else:
                outcomes["nothing in flight"] += 1
        finally:
            host.close()
    assert kills >= MIN_KILLS
    print(f"{kills} kills, {answered} answered messages; in flight: {dict(outcomes)}")
