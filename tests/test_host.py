"""The embedded settlement host (host.sqlite.SqliteHost), against the issue "Settlement".

Holders seeded from fixtures/holders/holders.json (they match the card profiles), amounts
in integer fen, one debit = one SQL transaction, idempotent by transaction id, lost cards
refused, a damaged database file reported as a HostError.
"""

from __future__ import annotations

import inspect
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import host.sqlite as host_sqlite
from cardio import identity
from cardio.card import profiles
from cardio.resources import HOME_VARIABLE
from host import cli
from host.api import Debit, DebitStatus, Holder, HostError, SettlementHost, Transaction
from host.sqlite import SqliteHost

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "holders" / "holders.json"
SEED_DOC = json.loads(SEED.read_text("utf-8"))

ZHANG = "310104198503122174"  # 张伟, employee-new, 500.00 yuan
LI = "310101197911020480"  # 李秀英, employee-enabled, 1280.50 yuan
ZHOU = "310106197012050397"  # 周志强, locked, 50.00 yuan
CHEN = "310110195601300847"  # 陈桂兰, pension-new, 0.00 yuan
NOBODY = "11010519491231002X"  # a valid ID with no account
ZHANG_CARD = "A93230742"
SEEDED_TOTAL = 376050  # sum of the ten seeded balances, in fen

# One more holder, whose ID ends in X (none of the fixtures does), for lower-case x input.
X_SSN = "11010819750614118X"
X_HOLDER = {
    "ssn": X_SSN,
    "name": "欧阳娜娜",
    "phone": "13900001234",
    "scheme": "310",
    "balance_fen": 12345,
}

EXPECTED_HOLDERS = {
    # ssn: (name, phone, scheme, balance_fen)
    "310107198805211200": ("吴敏", "13500003333", "310", 80000),
    "310101197911020480": ("李秀英", "13987654321", "310", 128050),
    "310104198503122174": ("张伟", "13812345678", "310", 50000),
    "310105196209181517": ("赵建国", "13611223344", "310", 20000),
    "310106197012050397": ("周志强", "13700002222", "310", 5000),
    "310112200104080624": ("孙丽娟", "18800001111", "310", 10000),
    "310110195601300847": ("陈桂兰", "02164001234", "170", 0),
    "310115199207253261": ("王芳", "15000112233", "390", 3000),
    "310113199010102758": ("郑浩", "13312344321", "310", 50000),
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "host.sqlite3"


@pytest.fixture
def host(db: Path):
    h = SqliteHost(db, seed=SEED)
    yield h
    h.close()


def x_seed(tmp_path: Path) -> Path:
    path = tmp_path / "x-holder.json"
    path.write_text(json.dumps({"holders": [X_HOLDER]}, ensure_ascii=False), "utf-8")
    return path


def raw(db: Path, sql: str, *params):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def balance(host: SqliteHost, ssn: str) -> int:
    holder = host.holder(ssn)
    assert holder is not None
    return holder.balance_fen


def invariant(host: SqliteHost) -> int:
    balances, debited = host.total_fen()
    return balances + debited


# --- the interface -------------------------------------------------------------------


def test_settlement_host_protocol_methods():
    methods = {
        name
        for name, value in vars(SettlementHost).items()
        if not name.startswith("_") and callable(value)
    }
    assert methods == {"holder", "debit", "report_loss", "cancel_loss", "history"}


@pytest.mark.parametrize("name", ["holder", "debit", "report_loss", "cancel_loss", "history"])
def test_sqlite_host_implements_the_protocol(name):
    wanted = inspect.signature(getattr(SettlementHost, name))
    have = inspect.signature(getattr(SqliteHost, name))
    assert [(p.name, p.kind, p.annotation) for p in have.parameters.values()] == [
        (p.name, p.kind, p.annotation) for p in wanted.parameters.values()
    ]
    assert have.return_annotation == wanted.return_annotation


def test_sqlite_host_is_usable_where_a_settlement_host_is_expected(host):
    def pay(h: SettlementHost) -> Debit:
        return h.debit("proto-1", "POS-01", ZHANG_CARD, ZHANG, 1)

    assert pay(host).status is DebitStatus.DEBITED


# --- seeding -------------------------------------------------------------------------


def test_seed_file_is_the_one_the_cli_uses():
    assert json.loads(host_sqlite.seed_file().read_text("utf-8")) == SEED_DOC


def test_every_holder_matches_a_card_profile():
    holders = SEED_DOC["holders"]
    assert sorted(h["profile"] for h in holders) == profiles.names()
    for h in holders:
        state = profiles.load(h["profile"])
        assert (h["ssn"], h["name"], h["scheme"]) == (
            state.holder.ssn,
            state.holder.name,
            state.scheme,
        ), h["profile"]
        assert identity.id_problem(h["ssn"]) is None


def test_seed_balances_are_integer_fen():
    for h in SEED_DOC["holders"]:
        assert type(h["balance_fen"]) is int and h["balance_fen"] >= 0, h
    assert sum(h["balance_fen"] for h in SEED_DOC["holders"]) == SEEDED_TOTAL


def test_a_new_database_is_seeded(host, db):
    for ssn, (name, phone, scheme, fen) in EXPECTED_HOLDERS.items():
        assert host.holder(ssn) == Holder(ssn, name, phone, scheme, fen, False)
    assert raw(db, "SELECT COUNT(*) FROM holders") == [(10,)]
    assert raw(db, "SELECT DISTINCT typeof(balance_fen) FROM holders") == [("integer",)]
    assert host.total_fen() == (SEEDED_TOTAL, 0)
    assert raw(db, "SELECT COUNT(*) FROM transactions") == [(0,)]


def test_holder_unknown_is_none(host):
    assert host.holder(NOBODY) is None


def test_default_database_lives_under_shebao_pos_home():
    home = Path(os.environ[HOME_VARIABLE])
    assert host_sqlite.default_db() == home / "host.sqlite3"
    h = cli.open_host(None)
    try:
        assert h.path == home / "host.sqlite3"
        assert h.path.is_file()
        assert balance(h, ZHANG) == 50000
    finally:
        h.close()


def test_reopen_keeps_data_and_does_not_reseed(db):
    h = SqliteHost(db, seed=SEED)
    first = h.debit("reopen-1", "POS-01", ZHANG_CARD, ZHANG, 1234)
    h.report_loss(LI)
    h.close()

    h = SqliteHost(db, seed=SEED)
    try:
        assert balance(h, ZHANG) == 50000 - 1234
        li = h.holder(LI)
        assert li is not None and li.lost is True and li.balance_fen == 128050
        assert [t.txn_id for t in h.history(ZHANG)] == ["reopen-1"]
        again = h.debit("reopen-1", "POS-01", ZHANG_CARD, ZHANG, 1234)
        assert again.replayed and again.balance_after_fen == first.balance_after_fen
        assert balance(h, ZHANG) == 50000 - 1234
        assert raw(db, "SELECT COUNT(*) FROM holders") == [(10,)]
    finally:
        h.close()


def test_reopen_with_a_seed_after_all_money_is_spent_does_not_refill(db):
    h = SqliteHost(db, seed=SEED)
    assert h.debit("spend-all", "POS-01", ZHANG_CARD, ZHANG, 50000).balance_after_fen == 0
    h.close()
    h = SqliteHost(db, seed=SEED)
    try:
        assert balance(h, ZHANG) == 0
    finally:
        h.close()


# --- debit -----------------------------------------------------------------------------


def test_debit_decreases_the_balance_exactly(host):
    d = host.debit("d-1", "POS-01", ZHANG_CARD, ZHANG, 12345)
    assert (d.txn_id, d.status, d.amount_fen, d.balance_after_fen, d.replayed) == (
        "d-1",
        DebitStatus.DEBITED,
        12345,
        50000 - 12345,
        False,
    )
    assert d.ok
    assert balance(host, ZHANG) == 37655
    assert host.total_fen() == (SEEDED_TOTAL - 12345, 12345)
    d2 = host.debit("d-2", "POS-01", ZHANG_CARD, ZHANG, 1)
    assert d2.balance_after_fen == 37654 and balance(host, ZHANG) == 37654
    assert balance(host, LI) == 128050  # nobody else is touched
    [t1, t2] = host.history(ZHANG)
    assert t1 == Transaction(
        "d-1", "POS-01", ZHANG_CARD, ZHANG, 12345, d.time, DebitStatus.DEBITED, 37655
    )
    assert (t2.txn_id, t2.amount_fen, t2.balance_after_fen) == ("d-2", 1, 37654)


def test_debit_of_the_whole_balance_leaves_zero(host):
    d = host.debit("all", "POS-01", ZHANG_CARD, ZHANG, 50000)
    assert (d.status, d.balance_after_fen) == (DebitStatus.DEBITED, 0)
    assert balance(host, ZHANG) == 0


def test_debit_time_is_recorded(host):
    d = host.debit("t-1", "POS-01", ZHANG_CARD, ZHANG, 100)
    assert d.time and host.history(ZHANG)[0].time == d.time


@pytest.mark.parametrize(
    ("ssn", "amount", "fen"), [(ZHANG, 50001, 50000), (CHEN, 1, 0), (ZHOU, 5001, 5000)]
)
def test_insufficient_balance_is_refused_and_nothing_debited(host, db, ssn, amount, fen):
    d = host.debit("poor-1", "POS-01", "CARD00001", ssn, amount)
    assert (d.status, d.amount_fen, d.balance_after_fen, d.replayed) == (
        DebitStatus.INSUFFICIENT,
        amount,
        fen,
        False,
    )
    assert not d.ok
    assert balance(host, ssn) == fen
    assert host.total_fen() == (SEEDED_TOTAL, 0)
    [t] = host.history(ssn)  # recorded as refused
    assert (t.txn_id, t.status, t.amount_fen, t.balance_after_fen) == (
        "poor-1",
        DebitStatus.INSUFFICIENT,
        amount,
        fen,
    )
    assert raw(db, "SELECT COUNT(*) FROM transactions WHERE status = 'DEBITED'") == [(0,)]


def test_lost_card_is_refused(host):
    host.report_loss(ZHANG)
    d = host.debit("lost-1", "POS-01", ZHANG_CARD, ZHANG, 100)
    assert (d.status, d.amount_fen, d.balance_after_fen) == (DebitStatus.LOST, 100, 50000)
    assert not d.ok
    assert balance(host, ZHANG) == 50000
    assert host.total_fen() == (SEEDED_TOTAL, 0)
    assert [(t.txn_id, t.status) for t in host.history(ZHANG)] == [("lost-1", DebitStatus.LOST)]


def test_unknown_holder_is_refused(host):
    d = host.debit("who-1", "POS-01", "X00000001", NOBODY, 100)
    assert (d.status, d.amount_fen, d.balance_after_fen) == (DebitStatus.UNKNOWN_HOLDER, 100, None)
    assert not d.ok
    assert host.holder(NOBODY) is None
    assert host.total_fen() == (SEEDED_TOTAL, 0)
    again = host.debit("who-1", "POS-01", "X00000001", NOBODY, 100)
    assert (again.status, again.replayed) == (DebitStatus.UNKNOWN_HOLDER, True)


@pytest.mark.parametrize("amount", [0, -1, -5000])
def test_amount_not_above_zero_raises_and_records_nothing(host, db, amount):
    with pytest.raises(HostError):
        host.debit("zero-1", "POS-01", ZHANG_CARD, ZHANG, amount)
    assert balance(host, ZHANG) == 50000
    assert raw(db, "SELECT COUNT(*) FROM transactions") == [(0,)]
    d = host.debit("zero-1", "POS-01", ZHANG_CARD, ZHANG, 100)  # the id is still unused
    assert (d.status, d.replayed, d.balance_after_fen) == (DebitStatus.DEBITED, False, 49900)


@pytest.mark.parametrize("amount", [0.5, 100.25])
def test_amount_that_is_not_whole_fen_is_refused(host, db, amount):
    """The issue: the amount is kept as integer fen; a fraction of a fen is never stored."""
    with pytest.raises((HostError, TypeError)):
        host.debit("frac-1", "POS-01", ZHANG_CARD, ZHANG, amount)
    assert raw(db, "SELECT balance_fen, typeof(balance_fen) FROM holders WHERE ssn = ?", ZHANG) == [
        (50000, "integer")
    ]
    assert raw(db, "SELECT COUNT(*) FROM transactions") == [(0,)]


def test_lower_case_x_is_the_same_holder(host, tmp_path):
    host.seed(x_seed(tmp_path))
    assert host.holder(X_SSN.lower()) == Holder(
        X_SSN, "欧阳娜娜", "13900001234", "310", 12345, False
    )
    d = host.debit("x-1", "POS-01", "B00000001", X_SSN.lower(), 345)
    assert (d.status, d.balance_after_fen) == (DebitStatus.DEBITED, 12000)
    assert [t.ssn for t in host.history(X_SSN)] == [X_SSN]
    assert [t.txn_id for t in host.history(X_SSN.lower())] == ["x-1"]


# --- idempotency ---------------------------------------------------------------------


def test_same_txn_id_twice_debits_once(host):
    first = host.debit("idem-1", "POS-01", ZHANG_CARD, ZHANG, 2000)
    second = host.debit("idem-1", "POS-01", ZHANG_CARD, ZHANG, 2000)
    assert (first.replayed, second.replayed) == (False, True)
    assert (
        second.txn_id,
        second.status,
        second.amount_fen,
        second.balance_after_fen,
        second.time,
    ) == ("idem-1", DebitStatus.DEBITED, 2000, 48000, first.time)
    assert balance(host, ZHANG) == 48000
    assert len(host.history(ZHANG)) == 1
    assert host.total_fen() == (SEEDED_TOTAL - 2000, 2000)


def test_same_txn_id_with_another_amount_is_refused_and_debits_nothing(host):
    """A transaction id names one payment: reused for another amount or holder, it is a
    mistake to refuse, not a retry to answer."""
    first = host.debit("idem-2", "POS-01", ZHANG_CARD, ZHANG, 2000)
    with pytest.raises(HostError, match="already used for another payment"):
        host.debit("idem-2", "POS-01", ZHANG_CARD, ZHANG, 7000)
    with pytest.raises(HostError, match="already used for another payment"):
        host.debit("idem-2", "POS-01", ZHANG_CARD, "310101197911020488", 2000)
    again = host.debit("idem-2", "POS-01", ZHANG_CARD, ZHANG, 2000)
    assert (again.replayed, again.status, again.balance_after_fen, again.time) == (
        True,
        DebitStatus.DEBITED,
        48000,
        first.time,
    )
    assert balance(host, ZHANG) == 48000
    [t] = host.history(ZHANG)
    assert t.amount_fen == 2000


def test_a_refused_answer_is_replayed_too(host):
    first = host.debit("idem-3", "POS-01", ZHANG_CARD, ZHANG, 60000)
    assert first.status is DebitStatus.INSUFFICIENT
    second = host.debit("idem-3", "POS-01", ZHANG_CARD, ZHANG, 60000)
    assert (second.status, second.amount_fen, second.balance_after_fen, second.replayed) == (
        DebitStatus.INSUFFICIENT,
        60000,
        50000,
        True,
    )
    assert balance(host, ZHANG) == 50000


def test_lost_answer_is_replayed_after_the_loss_is_cancelled(host):
    host.report_loss(ZHANG)
    assert host.debit("idem-4", "POS-01", ZHANG_CARD, ZHANG, 100).status is DebitStatus.LOST
    host.cancel_loss(ZHANG)
    again = host.debit("idem-4", "POS-01", ZHANG_CARD, ZHANG, 100)
    assert (again.status, again.replayed) == (DebitStatus.LOST, True)
    assert balance(host, ZHANG) == 50000


def test_same_txn_id_from_another_host_object_on_the_same_file(host, db):
    first = host.debit("idem-5", "POS-01", ZHANG_CARD, ZHANG, 3000)
    other = SqliteHost(db, seed=SEED)
    try:
        second = other.debit("idem-5", "POS-02", ZHANG_CARD, ZHANG, 3000)
        assert (
            second.replayed,
            second.status,
            second.amount_fen,
            second.balance_after_fen,
            second.time,
        ) == (True, DebitStatus.DEBITED, 3000, 47000, first.time)
        assert balance(other, ZHANG) == 47000
    finally:
        other.close()
    assert balance(host, ZHANG) == 47000
    assert host.total_fen() == (SEEDED_TOTAL - 3000, 3000)


CHILD_DEBIT = """
import json, sys
from pathlib import Path
from host.sqlite import SqliteHost
h = SqliteHost(Path(sys.argv[1]))
d = h.debit(sys.argv[2], "POS-CHILD", sys.argv[3], sys.argv[4], int(sys.argv[5]))
print(json.dumps({"status": d.status.value, "amount": d.amount_fen,
                  "after": d.balance_after_fen, "time": d.time, "replayed": d.replayed}))
"""


def child_debit(db: Path, txn: str, ssn: str, amount: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD_DEBIT, str(db), txn, ZHANG_CARD, ssn, str(amount)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_same_txn_id_from_another_process(host, db):
    first = host.debit("idem-6", "POS-01", ZHANG_CARD, ZHANG, 4000)
    answer = child_debit(db, "idem-6", ZHANG, 4000)
    assert answer == {
        "status": "DEBITED",
        "amount": 4000,
        "after": 46000,
        "time": first.time,
        "replayed": True,
    }
    answer = child_debit(db, "idem-7", ZHANG, 500)
    assert (answer["status"], answer["after"], answer["replayed"]) == ("DEBITED", 45500, False)
    again = host.debit("idem-7", "POS-01", ZHANG_CARD, ZHANG, 500)
    assert (again.replayed, again.balance_after_fen, again.time) == (True, 45500, answer["time"])
    assert balance(host, ZHANG) == 45500
    assert host.total_fen() == (SEEDED_TOTAL - 4500, 4500)


# --- concurrency ---------------------------------------------------------------------

CHILD_LOOP = """
import json, sys, time
from pathlib import Path
from host.sqlite import SqliteHost
db, name, ssn, count, go = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
h = SqliteHost(Path(db))
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.001)
for i in range(count):
    d = h.debit(f"{name}-{i}", name, "CARD00001", ssn, 100)
    print(json.dumps([d.txn_id, d.status.value, d.balance_after_fen, d.replayed]), flush=True)
"""


def test_concurrent_debits_from_two_processes_never_overdraw(host, db, tmp_path):
    """周志强 has 50.00 yuan; two terminals try 40 payments of 1.00 yuan each at once."""
    go = tmp_path / "go"
    logs = [tmp_path / f"err-{name}.txt" for name in ("POS-A", "POS-B")]
    children = []
    for name, log in zip(("POS-A", "POS-B"), logs, strict=True):
        with log.open("w") as err:
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", CHILD_LOOP, str(db), name, ZHOU, "40", str(go)],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    cwd=ROOT,
                )
            )
    outputs = []
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        go.touch()
        for child in children:
            assert child.stdout is not None
            outputs.append(child.stdout.read())
            child.wait(timeout=120)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
    for child, log in zip(children, logs, strict=True):
        assert child.returncode == 0, log.read_text()
    answers = [json.loads(line) for out in outputs for line in out.splitlines()]
    assert len(answers) == 80
    debited = [a for a in answers if a[1] == "DEBITED"]
    refused = [a for a in answers if a[1] == "INSUFFICIENT"]
    assert (len(debited), len(refused)) == (50, 30)
    assert sorted(a[2] for a in debited) == list(range(0, 5000, 100))  # each balance once
    assert all(a[2] == 0 for a in refused)
    assert not any(a[3] for a in answers)
    assert balance(host, ZHOU) == 0
    assert host.total_fen() == (SEEDED_TOTAL - 5000, 5000)
    assert invariant(host) == SEEDED_TOTAL
    assert raw(
        db, "SELECT COUNT(*), SUM(amount_fen) FROM transactions WHERE status = 'DEBITED'"
    ) == [(50, 5000)]


def test_the_database_refuses_a_negative_balance(host, db):
    con = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("UPDATE holders SET balance_fen = -1 WHERE ssn = ?", (ZHANG,))
    finally:
        con.close()
    assert balance(host, ZHANG) == 50000


def test_the_sum_invariant_holds_over_a_mixed_run(host):
    payments = [
        (ZHANG, 100),
        (LI, 128050),
        (LI, 1),
        (CHEN, 1),
        (ZHOU, 4999),
        (ZHOU, 2),
        (NOBODY, 10),
        (ZHANG, 49900),
        (ZHANG, 1),
    ]
    for i, (ssn, amount) in enumerate(payments):
        host.debit(f"mix-{i}", "POS-01", "CARD00001", ssn, amount)
        assert invariant(host) == SEEDED_TOTAL
    assert host.total_fen() == (
        SEEDED_TOTAL - 100 - 128050 - 4999 - 49900,
        100 + 128050 + 4999 + 49900,
    )
    assert [balance(host, s) for s in (ZHANG, LI, CHEN, ZHOU)] == [0, 0, 0, 1]


# --- loss reports ----------------------------------------------------------------------


def test_report_loss_and_cancel_loss(host):
    lost = host.report_loss(ZHANG)
    assert lost == Holder(ZHANG, "张伟", "13812345678", "310", 50000, True)
    assert host.holder(ZHANG) == lost
    assert host.report_loss(ZHANG).lost is True  # a second report changes nothing
    assert host.debit("loss-1", "POS-01", ZHANG_CARD, ZHANG, 100).status is DebitStatus.LOST
    assert host.holder(LI).lost is False  # only that holder

    back = host.cancel_loss(ZHANG)
    assert back == Holder(ZHANG, "张伟", "13812345678", "310", 50000, False)
    d = host.debit("loss-2", "POS-01", ZHANG_CARD, ZHANG, 100)
    assert (d.status, d.balance_after_fen) == (DebitStatus.DEBITED, 49900)
    assert [(t.txn_id, t.status) for t in host.history(ZHANG)] == [
        ("loss-1", DebitStatus.LOST),
        ("loss-2", DebitStatus.DEBITED),
    ]


def test_report_loss_with_lower_case_x(host, tmp_path):
    host.seed(x_seed(tmp_path))
    assert host.report_loss(X_SSN.lower()).lost is True
    assert host.holder(X_SSN).lost is True
    assert host.cancel_loss(X_SSN.lower()).lost is False


@pytest.mark.parametrize("method", ["report_loss", "cancel_loss"])
def test_loss_report_for_an_unknown_holder_raises(host, method):
    with pytest.raises(HostError, match="no holder"):
        getattr(host, method)(NOBODY)


def test_loss_report_survives_reopening(db):
    h = SqliteHost(db, seed=SEED)
    h.report_loss(ZHANG)
    h.close()
    h = SqliteHost(db, seed=SEED)
    try:
        assert h.holder(ZHANG).lost is True
        assert h.debit("after-reopen", "POS-01", ZHANG_CARD, ZHANG, 1).status is (DebitStatus.LOST)
    finally:
        h.close()


# --- history ---------------------------------------------------------------------------


def test_history_is_in_payment_order_with_refused_rows(host):
    host.debit("h-1", "POS-01", ZHANG_CARD, ZHANG, 1000)
    host.debit("h-other", "POS-01", "CARD00002", LI, 1000)
    host.debit("h-2", "POS-02", ZHANG_CARD, ZHANG, 99999)
    host.report_loss(ZHANG)
    host.debit("h-3", "POS-01", ZHANG_CARD, ZHANG, 10)
    host.cancel_loss(ZHANG)
    host.debit("h-4", "POS-03", ZHANG_CARD, ZHANG, 49000)
    host.debit("h-2", "POS-02", ZHANG_CARD, ZHANG, 99999)  # a replay adds no row
    rows = host.history(ZHANG)
    assert [
        (t.txn_id, t.terminal_id, t.status, t.amount_fen, t.balance_after_fen) for t in rows
    ] == [
        ("h-1", "POS-01", DebitStatus.DEBITED, 1000, 49000),
        ("h-2", "POS-02", DebitStatus.INSUFFICIENT, 99999, 49000),
        ("h-3", "POS-01", DebitStatus.LOST, 10, 49000),
        ("h-4", "POS-03", DebitStatus.DEBITED, 49000, 0),
    ]
    assert all(t.ssn == ZHANG and t.card_number == ZHANG_CARD for t in rows)
    assert host.history(CHEN) == []


def test_history_orders_by_time_then_by_arrival(host, monkeypatch):
    stamps = iter(
        [
            "2025-03-01T09:00:01+08:00",
            "2025-03-01T09:00:01+08:00",
            "2025-03-01T09:00:02+08:00",
            "2025-03-01T09:00:02+08:00",
            "2025-03-01T09:00:02+08:00",
            "2025-03-01T09:00:03+08:00",
        ]
    )
    monkeypatch.setattr("host.sqlite.now", lambda: next(stamps))
    for name in ("e", "d", "c", "b", "a", "z"):
        host.debit(f"ord-{name}", "POS-01", ZHANG_CARD, ZHANG, 100)
    rows = host.history(ZHANG)
    assert [t.txn_id for t in rows] == ["ord-e", "ord-d", "ord-c", "ord-b", "ord-a", "ord-z"]
    assert [t.balance_after_fen for t in rows] == [49900, 49800, 49700, 49600, 49500, 49400]
    assert rows[-1].time == "2025-03-01T09:00:03+08:00"


@pytest.mark.slow  # real seconds
def test_history_of_real_payments_over_seconds(host):
    host.debit("s-1", "POS-01", ZHANG_CARD, ZHANG, 100)
    time.sleep(1.05)
    host.debit("s-2", "POS-01", ZHANG_CARD, ZHANG, 100)
    host.debit("s-3", "POS-01", ZHANG_CARD, ZHANG, 100)
    rows = host.history(ZHANG)
    assert [t.txn_id for t in rows] == ["s-1", "s-2", "s-3"]
    assert rows[0].time < rows[1].time <= rows[2].time


# --- a damaged database ----------------------------------------------------------------


def _use(db: Path) -> None:
    h = SqliteHost(db, seed=SEED)
    try:
        h.holder(ZHANG)
        h.history(ZHANG)
        h.total_fen()
        h.debit("after-damage", "POS-01", ZHANG_CARD, ZHANG, 100)
    finally:
        h.close()


def _made(db: Path) -> None:
    h = SqliteHost(db, seed=SEED)
    for i in range(20):
        h.debit(f"fill-{i}", "POS-01", ZHANG_CARD, ZHANG, 10)
    h.close()


def damage(db: Path, how: str) -> None:
    if how == "garbage":
        db.write_bytes(b"this is not a database at all\n" * 200)
        return
    _made(db)
    data = bytearray(db.read_bytes())
    if how == "header":
        data[:16] = b"\x00" * 16
    elif how == "truncated":
        data = data[: len(data) // 2]
    elif how == "holders-page":
        [(page_size,)] = raw(db, "PRAGMA page_size")
        [(root,)] = raw(db, "SELECT rootpage FROM sqlite_schema WHERE name = 'holders'")
        start = (root - 1) * page_size
        data[start : start + page_size] = b"\xa5" * page_size
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbage", "header", "truncated", "holders-page"])
def test_a_damaged_database_gives_a_host_error(db, how):
    damage(db, how)
    with pytest.raises(HostError) as caught:
        _use(db)
    message = str(caught.value)
    assert str(db) in message
    assert "\n" not in message
    assert "database" in message


def test_a_directory_in_place_of_the_database_gives_a_host_error(db):
    db.mkdir()
    with pytest.raises(HostError, match="not a usable host database"):
        SqliteHost(db, seed=SEED)
