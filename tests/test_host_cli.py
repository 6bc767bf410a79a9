"""`pos-host`, run for real as a subprocess (sys.executable -m host.cli).

Loss reports and voice queries take no PIN (S18); each command prints a clear result;
output never shows a full ID or a full name.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from platform_helpers import DAY_ONE, INSTITUTION, Clock, Message, counter, pay

from cardio.resources import HOME_VARIABLE
from host import cli
from host.sqlite import SqliteHost

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "holders" / "holders.json"

ZHANG = "310104198503122174"  # 张伟, 500.00 yuan
LI = "310101197911020480"  # 李秀英, 1280.50 yuan
CHEN = "310110195601300847"  # 陈桂兰, 0.00 yuan
WANG = "310115199207253261"  # 王芳, 30.00 yuan
NOBODY = "11010519491231002X"  # valid, no account
X_SSN = "11010819750614118X"  # added by x_holder(): 欧阳娜娜, 123.45 yuan
COMMANDS = ["report-loss", "cancel-loss", "balance", "history"]
NAMES = {ZHANG: "张伟", LI: "李秀英", CHEN: "陈桂兰", WANG: "王芳", X_SSN: "欧阳娜娜"}


def pos_host(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def ok(*args: str) -> str:
    done = pos_host(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert done.stderr == ""
    return done.stdout


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "host.sqlite3"


def x_holder(db: Path, tmp_path: Path) -> None:
    seed = tmp_path / "x.json"
    seed.write_text(
        json.dumps(
            {
                "holders": [
                    {
                        "ssn": X_SSN,
                        "name": "欧阳娜娜",
                        "phone": "13900001234",
                        "scheme": "310",
                        "balance_fen": 12345,
                    }
                ]
            },
            ensure_ascii=False,
        ),
        "utf-8",
    )
    h = SqliteHost(db, seed=SEED)
    h.seed(seed)
    h.close()


def settle(db: Path, ssn: str, amount: str, terminal: str = "POS-01", minute: int = 0) -> Message:
    """A 2102 of `amount` yuan through the engine on the database file, at 10:`minute`."""
    h = SqliteHost(db, seed=SEED)
    try:
        return pay(counter(h, terminal, Clock(DAY_ONE.replace(minute=minute))), ssn, amount)
    finally:
        h.close()


def balc(answer: Message) -> Decimal:
    """The balance after a 2102 that went through."""
    assert answer["infcode"] == 0, answer
    after: Decimal = answer["output"]["setlinfo"]["balc"]
    return after


def default_db() -> Path:
    return Path(os.environ[HOME_VARIABLE]) / "host.sqlite3"


# --- loss reports ----------------------------------------------------------------------


def test_report_loss_by_ssn_then_balance_says_reported_lost(db):
    out = ok("report-loss", "--ssn", ZHANG, "--db", str(db))
    assert out == (
        "reported lost: the card of 张* (3101**********2174) is now refused at every terminal\n"
    )
    assert ok("balance", "--ssn", ZHANG, "--db", str(db)) == (
        "张* (3101**********2174): personal account balance 500.00 yuan; card reported lost\n"
    )
    assert settle(db, ZHANG, "1.00")["err_type"] == "lost"
    assert not default_db().exists()


def test_report_loss_by_id(db):
    out = ok("--db", str(db), "report-loss", "--id", LI)
    assert out == (
        "reported lost: the card of 李** (3101**********0480) is now refused at every terminal\n"
    )
    assert ok("--db", str(db), "balance", "--id", LI).endswith("card reported lost\n")


def test_report_loss_by_id_with_lower_case_x(db, tmp_path):
    x_holder(db, tmp_path)
    out = ok("report-loss", "--id", X_SSN.lower(), "--db", str(db))
    assert out == (
        "reported lost: the card of 欧阳** (1101**********118X) is now refused at every terminal\n"
    )
    assert ok("balance", "--ssn", X_SSN, "--db", str(db)) == (
        "欧阳** (1101**********118X): personal account balance 123.45 yuan; card reported lost\n"
    )
    assert settle(db, X_SSN, "0.01")["err_type"] == "lost"
    out = ok("cancel-loss", "--id", X_SSN.lower(), "--db", str(db))
    assert out == "loss report cancelled: the card of 欧阳** (1101**********118X) works again\n"
    assert ok("balance", "--ssn", X_SSN.lower(), "--db", str(db)).endswith("card in use\n")


def test_cancel_loss(db):
    ok("report-loss", "--ssn", ZHANG, "--db", str(db))
    out = ok("cancel-loss", "--ssn", ZHANG, "--db", str(db))
    assert out == "loss report cancelled: the card of 张* (3101**********2174) works again\n"
    assert ok("balance", "--ssn", ZHANG, "--db", str(db)) == (
        "张* (3101**********2174): personal account balance 500.00 yuan; card in use\n"
    )
    assert balc(settle(db, ZHANG, "1.00")) == Decimal("499.00")


def test_cancel_loss_of_a_card_never_reported(db):
    """Exit 0, the card works as wanted; but it says there was no report to cancel."""
    out = ok("cancel-loss", "--ssn", WANG, "--db", str(db))
    assert out == (
        "no loss report to cancel: the card of 王* (3101**********3261) was not "
        "reported lost and works; nothing changed\n"
    )


def test_report_loss_twice_says_it_already_was(db):
    ok("report-loss", "--ssn", WANG, "--db", str(db))
    out = ok("report-loss", "--ssn", WANG, "--db", str(db))
    assert out == (
        "already reported lost: the card of 王* (3101**********3261) is refused "
        "at every terminal; nothing changed\n"
    )


# --- balance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ssn", "line"),
    [
        (ZHANG, "张* (3101**********2174): personal account balance 500.00 yuan; card in use\n"),
        (LI, "李** (3101**********0480): personal account balance 1280.50 yuan; card in use\n"),
        (CHEN, "陈** (3101**********0847): personal account balance 0.00 yuan; card in use\n"),
        (WANG, "王* (3101**********3261): personal account balance 30.00 yuan; card in use\n"),
    ],
)
def test_balance_output_is_exact(db, ssn, line):
    assert ok("balance", "--ssn", ssn, "--db", str(db)) == line


def test_balance_after_payments(db):
    balc(settle(db, LI, "123.45"))
    balc(settle(db, LI, "0.05"))
    assert settle(db, LI, "9999.99")["err_type"] == "insufficient"
    assert ok("balance", "--ssn", LI, "--db", str(db)) == (
        "李** (3101**********0480): personal account balance 1157.00 yuan; card in use\n"
    )
    assert balc(settle(db, LI, "1156.99")) == Decimal("0.01")
    assert ok("balance", "--id", LI, "--db", str(db)) == (
        "李** (3101**********0480): personal account balance 0.01 yuan; card in use\n"
    )


def test_db_before_or_after_the_subcommand_is_the_same_file(db):
    balc(settle(db, ZHANG, "0.01"))
    expected = "张* (3101**********2174): personal account balance 499.99 yuan; card in use\n"
    assert ok("--db", str(db), "balance", "--ssn", ZHANG) == expected
    assert ok("balance", "--db", str(db), "--ssn", ZHANG) == expected
    assert ok("balance", "--ssn", ZHANG, "--db", str(db)) == expected
    assert not default_db().exists()


def test_without_db_the_default_lives_under_shebao_pos_home():
    assert not default_db().exists()
    out = ok("balance", "--ssn", ZHANG)
    assert out.endswith("personal account balance 500.00 yuan; card in use\n")
    assert default_db().is_file()
    ok("report-loss", "--ssn", ZHANG)
    assert ok("balance", "--ssn", ZHANG).endswith("card reported lost\n")


# --- history ---------------------------------------------------------------------------


def test_history_lists_the_settlements_oldest_first(db):
    """Only what the engine settled, by the time it was settled (not by when it was sent):
    refusals (a short account, a lost card) and other holders' settlements are not listed."""
    late = balc(settle(db, ZHANG, "12.50", "POS-02", minute=5))
    assert settle(db, ZHANG, "600.00", "POS-01", minute=0)["err_type"] == "insufficient"
    balc(settle(db, LI, "1.00", minute=1))
    ok("report-loss", "--ssn", ZHANG, "--db", str(db))
    assert settle(db, ZHANG, "0.10", "POS-03", minute=2)["err_type"] == "lost"
    ok("cancel-loss", "--ssn", ZHANG, "--db", str(db))
    early = balc(settle(db, ZHANG, "487.50", "POS-01", minute=1))
    assert (late, early) == (Decimal("487.50"), Decimal("0.00"))
    h = SqliteHost(db)
    try:
        with h.atomic() as sql:
            ids = sql.rows("SELECT setl_id FROM settlements WHERE ssn = ? ORDER BY msgid", (ZHANG,))
    finally:
        h.close()
    [(late_id,), (early_id,)] = ids  # in the order they were sent
    out = ok("history", "--ssn", ZHANG, "--db", str(db))
    assert [line.split() for line in out.splitlines()] == [
        ["2026-11-30", "10:01:00", f"{INSTITUTION}/POS-01", "SETTLED", "487.50"]
        + ["account", "487.50", "balance", "0.00", early_id],
        ["2026-11-30", "10:05:00", f"{INSTITUTION}/POS-02", "SETTLED", "12.50"]
        + ["account", "12.50", "balance", "487.50", late_id],
    ]
    assert ok("history", "--id", ZHANG, "--db", str(db)) == out


def test_history_without_payments(db):
    assert ok("history", "--ssn", CHEN, "--db", str(db)) == "no payments yet\n"


# --- a database made by an older version -----------------------------------------------

# The account debit of older versions kept its payments in a `transactions` table beside
# the holders. Such a database still opens and works; that table is left as it is.
OLD_TABLE = """
CREATE TABLE transactions (
    txn_id            TEXT PRIMARY KEY,
    terminal_id       TEXT NOT NULL,
    card_number       TEXT NOT NULL,
    ssn               TEXT NOT NULL,
    amount_fen        INTEGER NOT NULL CHECK (amount_fen > 0),
    time              TEXT NOT NULL,
    status            TEXT NOT NULL,
    balance_after_fen INTEGER
);
CREATE INDEX transactions_by_ssn ON transactions (ssn, time);
"""

OLD_PAYMENTS = [
    ("pay-1", "POS-01", "A93230742", ZHANG, 1250, "2025-03-01T09:00:01+08:00", "DEBITED", 48750),
    (
        "pay-2",
        "POS-02",
        "A93230742",
        ZHANG,
        90000,
        "2025-03-01T09:05:00+08:00",
        "INSUFFICIENT",
        48750,
    ),
]


def old_database(db: Path) -> None:
    """The holders as every version made them, then the old table and its payments."""
    SqliteHost(db, seed=SEED).close()
    con = sqlite3.connect(db)
    try:
        con.executescript(OLD_TABLE)
        con.executemany("INSERT INTO transactions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", OLD_PAYMENTS)
        con.execute("UPDATE holders SET balance_fen = 48750 WHERE ssn = ?", (ZHANG,))
        con.commit()
    finally:
        con.close()


def old_table(db: Path) -> list[tuple[object, ...]]:
    """The `transactions` table's definition, its indexes', and its rows."""
    con = sqlite3.connect(db)
    try:
        return [
            *con.execute(
                "SELECT type, name, sql FROM sqlite_schema WHERE tbl_name = 'transactions' "
                "ORDER BY name"
            ),
            *con.execute("SELECT rowid, * FROM transactions ORDER BY rowid"),
        ]
    finally:
        con.close()


def test_a_database_with_the_old_debit_table_opens_and_works(db):
    old_database(db)
    before = old_table(db)
    assert len(before) == 3 + len(OLD_PAYMENTS)  # the table, its key, its index; the rows
    zhang = "张* (3101**********2174): personal account balance {} yuan; card in use\n"
    assert ok("balance", "--ssn", ZHANG, "--db", str(db)) == zhang.format("487.50")
    assert ok("history", "--ssn", ZHANG, "--db", str(db)) == "no payments yet\n"
    assert balc(settle(db, ZHANG, "7.50")) == Decimal("480.00")
    assert ok("balance", "--id", ZHANG, "--db", str(db)) == zhang.format("480.00")
    [line] = ok("history", "--ssn", ZHANG, "--db", str(db)).splitlines()
    assert line.split()[2:-1] == [
        f"{INSTITUTION}/POS-01",
        "SETTLED",
        "7.50",
        "account",
        "7.50",
        "balance",
        "480.00",
    ]
    assert old_table(db) == before


# --- errors ----------------------------------------------------------------------------

BAD_NUMBERS = [
    ("310104198503122175", "check digit"),  # 张伟's number with a wrong last digit
    ("11010519491231002Y", "17 digits and a digit or X"),
    ("3101041985031221", "18 characters"),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("number", "why"), BAD_NUMBERS)
@pytest.mark.parametrize("flag", ["--ssn", "--id"])
def test_a_bad_number_exits_2_with_one_line(db, command, number, why, flag):
    done = pos_host(command, flag, number, "--db", str(db))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n")
    assert done.stderr.startswith("pos-host: ")
    assert why in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_check_digit_changes_nothing(db):
    pos_host("report-loss", "--ssn", "310104198503122175", "--db", str(db))
    assert ok("balance", "--ssn", ZHANG, "--db", str(db)).endswith("card in use\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_holder_exits_1_with_one_line(db, command):
    done = pos_host(command, "--ssn", NOBODY, "--db", str(db))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("pos-host: ")
    assert "no holder" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_ssn_and_id_exits_2(db, command):
    done = pos_host(command, "--db", str(db))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--ssn" in done.stderr and "--id" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_ssn_and_id_together_exit_2(db, command):
    done = pos_host(command, "--ssn", ZHANG, "--id", ZHANG, "--db", str(db))
    assert done.returncode == 2


def test_no_command_exits_2(db):
    assert pos_host("--db", str(db)).returncode == 2


def test_a_damaged_database_exits_1_with_one_line(db):
    db.write_bytes(b"not a database\n" * 500)
    done = pos_host("balance", "--ssn", ZHANG, "--db", str(db))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("pos-host: ")
    assert str(db) in done.stderr
    assert "Traceback" not in done.stderr


# --- no PIN ----------------------------------------------------------------------------


def _all_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_actions(sub)


def test_no_command_has_a_pin_option():
    parser = cli.build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subs) == 1
    assert sorted(subs[0].choices) == sorted([*COMMANDS, "serve", "reconcile"])
    for action in _all_actions(parser):
        assert "pin" not in (action.dest or "").lower()
        for option in action.option_strings:
            assert "pin" not in option.lower()


@pytest.mark.parametrize("command", COMMANDS)
def test_pin_is_rejected(db, command):
    done = pos_host(command, "--ssn", ZHANG, "--pin", "123456", "--db", str(db))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--pin" in done.stderr
    done = pos_host("--pin", "123456", "--db", str(db), command, "--ssn", ZHANG)
    assert done.returncode == 2
    assert ok("balance", "--ssn", ZHANG, "--db", str(db)).endswith("card in use\n")


# --- masking ---------------------------------------------------------------------------


@pytest.mark.slow  # a CLI run per field and command
def test_output_never_shows_the_full_id_or_name(db, tmp_path):
    x_holder(db, tmp_path)
    for ssn in (ZHANG, LI, X_SSN):
        balc(settle(db, ssn, "1.00"))
    runs = []
    for ssn in (ZHANG, LI, CHEN, WANG, X_SSN):
        for flag, number in (("--ssn", ssn), ("--id", ssn.lower())):
            for command in ("balance", "history", "report-loss", "balance", "cancel-loss"):
                runs.append((ssn, pos_host(command, flag, number, "--db", str(db))))
    for command in COMMANDS:  # errors name the number too
        runs.append((NOBODY, pos_host(command, "--ssn", NOBODY, "--db", str(db))))
        runs.append((NOBODY, pos_host(command, "--id", NOBODY.lower(), "--db", str(db))))
    leaks = []
    for ssn, done in runs:
        text = done.stdout + done.stderr
        assert text.strip(), done.args
        if ssn.upper() in text.upper():
            leaks.append((done.args[3:5], "full ID", text))
        name = NAMES.get(ssn)
        if name and name in text:
            leaks.append((done.args[3:5], "full name", text))
    assert leaks == []
