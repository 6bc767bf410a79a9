"""The embedded settlement host (host.sqlite.SqliteHost), against the issue "Settlement".

Holders seeded from fixtures/holders/holders.json (they match the card profiles), amounts
in integer fen, what the engine settles (2102, host/platform.py) kept across reopening and
across processes, lost cards refused, a damaged database file reported as a HostError.
The engine's own rules (idempotency, refusals, the split) are tests/test_platform.py's.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from platform_helpers import Message, counter, money_total, pay, settlements

import host.sqlite as host_sqlite
from cardio import identity
from cardio.card import profiles
from cardio.resources import HOME_VARIABLE
from host import cli
from host.api import Holder, HostError
from host.sqlite import SqliteHost

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "holders" / "holders.json"
SEED_DOC = json.loads(SEED.read_text("utf-8"))

ZHANG = "310104198503122174"  # 张伟, employee-new, 500.00 yuan
LI = "310101197911020480"  # 李秀英, employee-enabled, 1280.50 yuan
ZHOU = "310106197012050397"  # 周志强, locked, 50.00 yuan
NOBODY = "11010519491231002X"  # a valid ID with no account
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


def settled(answer: Message) -> Message:
    """The settlement of a 2102 that went through."""
    assert answer["infcode"] == 0, answer
    info: Message = answer["output"]["setlinfo"]
    return info


def refusal(answer: Message) -> str:
    """The kind of a 2102's refusal."""
    assert answer["infcode"] == -1, answer
    return str(answer["err_type"])


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
    assert raw(db, "SELECT SUM(balance_fen) FROM holders") == [(SEEDED_TOTAL,)]
    # Only the holders: the engine makes its tables when it first opens the database, and
    # the account debit's `transactions` table of older versions is never made.
    assert raw(db, "SELECT name FROM sqlite_schema") == [
        ("holders",),
        ("sqlite_autoindex_holders_1",),
    ]


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
    first = pay(counter(h), ZHANG, "12.34")
    assert settled(first)["balc"] == Decimal("487.66")
    [(setl_id, msgid, *_)] = settlements(h)
    h.report_loss(LI)
    h.close()

    h = SqliteHost(db, seed=SEED)
    try:
        assert balance(h, ZHANG) == 50000 - 1234
        li = h.holder(LI)
        assert li is not None and li.lost is True and li.balance_fen == 128050
        assert [row[:2] for row in settlements(h)] == [(setl_id, msgid)]
        again = pay(counter(h), ZHANG, "12.34", str(msgid))  # the same message, sent again
        assert again == first
        assert balance(h, ZHANG) == 50000 - 1234
        assert len(settlements(h)) == 1
        assert raw(db, "SELECT COUNT(*) FROM holders") == [(10,)]
    finally:
        h.close()


def test_reopen_with_a_seed_after_all_money_is_spent_does_not_refill(db):
    h = SqliteHost(db, seed=SEED)
    assert settled(pay(counter(h), ZHANG, "500.00"))["balc"] == Decimal("0.00")
    h.close()
    h = SqliteHost(db, seed=SEED)
    try:
        assert balance(h, ZHANG) == 0
    finally:
        h.close()


def test_lower_case_x_is_the_same_holder(host, tmp_path):
    host.seed(x_seed(tmp_path))
    assert host.holder(X_SSN.lower()) == Holder(
        X_SSN, "欧阳娜娜", "13900001234", "310", 12345, False
    )


# --- two processes on one file ---------------------------------------------------------

# argv: db, terminal, ssn, count, go. A terminal of its own, signed in, then `count`
# settlements of 1.00 yuan each once `go` exists: one line each, [err_type, balc].
CHILD_PAYER = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, "tests")
from platform_helpers import counter, pay
from host.sqlite import SqliteHost
db, name, ssn, count, go = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
pos = counter(SqliteHost(Path(db)), dev_no=name)
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.001)
for i in range(count):
    answer = pay(pos, ssn, "1.00")
    balc = answer["output"].get("setlinfo", {}).get("balc")
    print(json.dumps([answer.get("err_type", ""), str(balc)]), flush=True)
"""


def test_two_processes_settling_at_once_never_overdraw(host, db, tmp_path):
    """周志强 has 50.00 yuan; two terminals, each its own process on the one database
    file, try 40 settlements of 1.00 yuan each at once."""
    go = tmp_path / "go"
    logs = [tmp_path / f"err-{name}.txt" for name in ("POS-A", "POS-B")]
    children = []
    for name, log in zip(("POS-A", "POS-B"), logs, strict=True):
        with log.open("w") as err:
            children.append(
                subprocess.Popen(
                    [sys.executable, "-c", CHILD_PAYER, str(db), name, ZHOU, "40", str(go)],
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
    paid = [Decimal(balc) for kind, balc in answers if kind == ""]
    refused = [balc for kind, balc in answers if kind == "insufficient"]
    assert (len(paid), len(refused)) == (50, 30)
    assert sorted(paid) == [Decimal(f) / 100 for f in range(0, 5000, 100)]  # each balance once
    assert refused == ["0.00"] * 30
    assert balance(host, ZHOU) == 0
    assert raw(db, "SELECT COUNT(*), SUM(acct_fen) FROM settlements WHERE ssn = ?", ZHOU) == [
        (50, 5000)
    ]
    assert money_total(host) == SEEDED_TOTAL


def test_the_database_refuses_a_negative_balance(host, db):
    con = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("UPDATE holders SET balance_fen = -1 WHERE ssn = ?", (ZHANG,))
    finally:
        con.close()
    assert balance(host, ZHANG) == 50000


# --- loss reports ----------------------------------------------------------------------


def test_report_loss_and_cancel_loss(host):
    lost = host.report_loss(ZHANG)
    assert lost == Holder(ZHANG, "张伟", "13812345678", "310", 50000, True)
    assert host.holder(ZHANG) == lost
    assert host.report_loss(ZHANG).lost is True  # a second report changes nothing
    pos = counter(host)
    assert refusal(pay(pos, ZHANG, "1.00")) == "lost"
    assert host.holder(LI).lost is False  # only that holder
    assert settled(pay(pos, LI, "1.00"))["balc"] == Decimal("1279.50")

    back = host.cancel_loss(ZHANG)
    assert back == Holder(ZHANG, "张伟", "13812345678", "310", 50000, False)
    assert settled(pay(pos, ZHANG, "1.00"))["balc"] == Decimal("499.00")
    assert balance(host, ZHANG) == 49900


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
        assert refusal(pay(counter(h), ZHANG, "0.01")) == "lost"
        assert balance(h, ZHANG) == 50000
    finally:
        h.close()


# --- a damaged database ----------------------------------------------------------------


def _use(db: Path) -> None:
    h = SqliteHost(db, seed=SEED)
    try:
        h.holder(ZHANG)
        pay(counter(h), ZHANG, "1.00")
    finally:
        h.close()


def _made(db: Path) -> None:
    h = SqliteHost(db, seed=SEED)
    try:
        pos = counter(h)
        for _ in range(20):
            settled(pay(pos, ZHANG, "0.10"))
    finally:
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


# --- a crash on the first start --------------------------------------------------------

FIRST_START = """
import os, signal, sys
from pathlib import Path
from host import sqlite
def crash(self, path):
    os.kill(os.getpid(), signal.SIGKILL)
sqlite.SqliteHost.seed = crash
sqlite.SqliteHost(Path(sys.argv[1]), seed=Path(sys.argv[2]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_crash_before_the_first_seeding_does_not_leave_a_host_without_holders(db):
    """Killed after the database file was made but before it was seeded: the next start
    must still know the holders (else every payment is refused as an unknown person)."""
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
        assert raw(db, "SELECT SUM(balance_fen) FROM holders") == [(SEEDED_TOTAL,)]
        assert settled(pay(counter(host), ZHANG, "1.00"))["balc"] == Decimal("499.00")
    finally:
        host.close()


def test_a_directory_in_place_of_the_database_gives_a_host_error(db):
    db.mkdir()
    with pytest.raises(HostError, match="not a usable host database"):
        SqliteHost(db, seed=SEED)
