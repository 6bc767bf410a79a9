"""`pos-host serve` and `pos-host reconcile`, and the desk's commands over PostgreSQL, run
for real as subprocesses (sys.executable -m host.cli), as tests/test_host_cli.py does.

The settlements are made through the engine (host/platform.py) by a terminal's own link
(terminal/settlement.py's PlatformLink), which writes the terminal's day-book as
pos-terminal does; reconcile reads it back with --daybook. Every failure is one
`pos-host: …` line: exit 2 for what was given (an option, a path, a file's content),
1 for what happened; never a traceback; no full ID or name in any output.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from host_server_helpers import start_server

from host import policy as policies
from host.client import InsuranceClient, Settlement
from host.daybook import DayBook, Entry
from host.desk import open_store
from host.platform import Platform
from host.store import Store
from host.transport import EmbeddedTransport, HttpTransport
from terminal.journal import Journal
from terminal.settlement import PlatformLink

ROOT = Path(__file__).resolve().parent.parent
INSTITUTION = "H31010100001"

ZHANG = "310104198503122174"  # 张伟, 310, 500.00 yuan
LI = "310101197911020480"  # 李秀英, 310, 1280.50 yuan
ZHOU = "310106197012050397"  # 周志强, 310, 50.00 yuan
CHEN = "310110195601300847"  # 陈桂兰, 170, 0.00 yuan
NAMES = {ZHANG: "张伟", LI: "李秀英", ZHOU: "周志强", CHEN: "陈桂兰"}

CHINA = dt.timezone(dt.timedelta(hours=8))
DAY = dt.date(2026, 11, 2)
MORNING = dt.datetime(2026, 11, 2, 10, 0, 0, tzinfo=CHINA)

# Pool 0.7 of everything for 310, rounded down to the fen; the rest from the account,
# then cash.
POLICY = {
    "insutypes": {
        "310": {
            "name": "职工基本医疗保险",
            "pool": {"ratio": "0.70", "deductible": "0.00", "items": ["*"]},
            "shortfall": "cash",
        },
        "*": {"name": "其他", "pool": None, "shortfall": "refuse"},
    }
}


def pos_host(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONIOENCODING="utf-8", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def ok(*args: str, cwd: Path = ROOT) -> str:
    done = pos_host(*args, cwd=cwd)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert done.stderr == ""
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The run failed with `code` and said why in one `pos-host: …` line."""
    assert done.returncode == code, (done.args, done.returncode, done.stdout, done.stderr)
    # argparse's own errors name the subcommand: `pos-host serve: …` (cardio/usage.py)
    assert re.match(r"pos-host( [a-z-]+)?: ", done.stderr), done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return done.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY, ensure_ascii=False), "utf-8")
    return path


# --- a terminal paying through the engine -------------------------------------------------


class Counter:
    """One terminal: its link to the engine over `store` (in process, through the wire
    codec), its pending reversals and its day-book under `user/`, as link_over makes
    them; the platform's and the terminal's clock fixed on DAY."""

    def __init__(self, store: Store, user: Path, terminal: str, policy: Path | None) -> None:
        rules = policies.load(policy) if policy is not None else policies.DEFAULT
        platform = Platform(store, rules, clock=lambda: MORNING)
        client = InsuranceClient(
            EmbeddedTransport(platform.handle), device=terminal, clock=lambda: MORNING
        )
        self.folder = user / "daybook" / terminal
        self.link = PlatformLink(client, Journal(user / "pending" / terminal), DayBook(self.folder))

    def pay(self, ssn: str, fen: int) -> Settlement:
        person = self.link.person(ssn, "")
        assert person is not None
        return self.link.settle(person, fen, "")

    def cancel(self, settlement: Settlement) -> None:
        self.link.cancel(Entry.of(settlement))


def day_of_payments(db: str, user: Path, policy: Path | None) -> dict[str, Settlement]:
    """POS-01: 张伟 12.50 and 李秀英 3.33; POS-02: 李秀英 20.00 (cancelled) and 周志强
    200.00 (50.00 from the account, the rest of the holder's part in cash)."""
    store = open_store(db)
    try:
        one = Counter(store, user, "POS-01", policy)
        two = Counter(store, user, "POS-02", policy)
        made = {
            "zhang": one.pay(ZHANG, 1250),
            "li": one.pay(LI, 333),
            "li-cancelled": two.pay(LI, 2000),
            "zhou": two.pay(ZHOU, 20000),
        }
        two.cancel(made["li-cancelled"])
    finally:
        store.close()
    return made


# What reconcile prints for that day under POLICY, split on blanks.
HOST_LINES = [
    f"{INSTITUTION}/POS-01 settled 2 total 15.83 fund 11.08 account 4.75 cash 0.00".split(),
    f"{INSTITUTION}/POS-02 cancelled 1 total 20.00 fund 14.00 account 6.00 cash 0.00".split(),
    f"{INSTITUTION}/POS-02 settled 1 total 200.00 fund 140.00 account 50.00 cash 10.00".split(),
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "host.sqlite3"


@pytest.fixture
def user(tmp_path: Path) -> Path:
    return tmp_path / "terminal-user"


@pytest.fixture
def paid(db: Path, user: Path, tmp_path: Path) -> dict[str, Settlement]:
    return day_of_payments(str(db), user, policy_file(tmp_path))


def reconcile(db: Path | str, *extra: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return pos_host("--db", str(db), "reconcile", "--date", DAY.isoformat(), *extra, cwd=cwd)


# --- reconcile ------------------------------------------------------------------------------


def test_reconcile_of_an_empty_day_says_no_settlements(db):
    assert ok("--db", str(db), "reconcile", "--date", "2026-11-02") == (
        f"2026-11-02  institution {INSTITUTION}\nno settlements\n"
    )


def test_reconcile_without_a_date_is_today(db):
    out = ok("reconcile", "--db", str(db))
    assert out.splitlines()[0] == f"{dt.date.today().isoformat()}  institution {INSTITUTION}"


def test_reconcile_of_an_empty_day_with_an_empty_daybook_is_balanced(db, tmp_path):
    book = tmp_path / "daybook" / "POS-09"
    book.mkdir(parents=True)
    done = reconcile(db, "--daybook", str(book))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"2026-11-02  institution {INSTITUTION}",
        "no settlements",
        "3201 POS-09: balanced (0 settlements in its day-book)",
    ]


def test_reconcile_prints_each_terminal_and_status_with_its_totals(db, paid):
    out = ok("reconcile", "--db", str(db), "--date", "2026-11-02")
    lines = out.splitlines()
    assert lines[0] == f"2026-11-02  institution {INSTITUTION}"
    assert [line.split() for line in lines[1:]] == HOST_LINES


def test_reconcile_of_another_day_or_institution_has_none(db, paid):
    assert ok("--db", str(db), "reconcile", "--date", "2026-11-03").splitlines()[1:] == [
        "no settlements"
    ]
    out = ok("--db", str(db), "reconcile", "--date", "2026-11-02", "--institution", "H3101019999")
    assert out.splitlines() == ["2026-11-02  institution H3101019999", "no settlements"]


def test_reconcile_with_each_terminals_daybook_is_balanced(db, user, paid):
    done = reconcile(
        db, "--daybook", str(user / "daybook" / "POS-01"), "--daybook", str(user / "daybook/POS-02")
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert [line.split() for line in lines[1:4]] == HOST_LINES
    assert lines[4:] == [
        "3201 POS-01: balanced (2 settlements in its day-book)",
        "3201 POS-02: balanced (1 settlements in its day-book)",
    ]


def test_a_daybook_folder_given_with_a_trailing_slash_is_the_same_terminal(db, user, paid):
    done = reconcile(db, "--daybook", str(user / "daybook" / "POS-01") + "/")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.splitlines()[-1] == "3201 POS-01: balanced (2 settlements in its day-book)"


def _book_without(user: Path, tmp_path: Path, terminal: str, setl_id: str) -> Path:
    """A copy of the terminal's day-book whose line for `setl_id` is gone (a crash between
    the platform's answer and the record)."""
    copy = tmp_path / "copies" / terminal
    shutil.copytree(user / "daybook" / terminal, copy)
    page = copy / f"{DAY.isoformat()}.jsonl"
    kept = [line for line in page.read_text("utf-8").splitlines() if setl_id not in line]
    page.write_text("".join(f"{line}\n" for line in kept), "utf-8")
    return copy


def test_a_daybook_missing_a_settlement_is_not_balanced_and_3202_names_it(db, user, paid, tmp_path):
    missing = paid["zhang"].setl_id
    book = _book_without(user, tmp_path, "POS-01", missing)
    done = reconcile(db, "--daybook", str(book), "--daybook", str(user / "daybook" / "POS-02"))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert [line.split() for line in lines[1:4]] == HOST_LINES
    assert lines[4:] == [
        "3201 POS-01: NOT balanced (1 settlements in its day-book)",
        "  the host: the host has 2 settlements, 15.83 yuan in all, 11.08 from the fund, "
        "4.75 from accounts",
        f"  3202 {missing}: not in the institution's details",
        "3201 POS-02: balanced (1 settlements in its day-book)",
    ]


def test_a_daybook_with_other_amounts_is_not_balanced(db, user, paid, tmp_path):
    copy = tmp_path / "copies" / "POS-01"
    shutil.copytree(user / "daybook" / "POS-01", copy)
    page = copy / f"{DAY.isoformat()}.jsonl"
    records = [json.loads(line) for line in page.read_text("utf-8").splitlines()]
    for record in records:
        if record.get("setl_id") == paid["li"].setl_id:
            record["medfee_fen"] += 1
    page.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    done = reconcile(db, "--daybook", str(copy))
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == f"  3202 {paid['li'].setl_id}: amounts differ"


def test_reconcile_output_shows_no_full_id_or_name(db, user, paid, tmp_path):
    book = _book_without(user, tmp_path, "POS-01", paid["zhang"].setl_id)
    done = reconcile(db, "--daybook", str(book))
    text = done.stdout + done.stderr
    for ssn, name in NAMES.items():
        assert ssn not in text and name not in text


# Was a bug (fixed): host/desk.py cmd_reconcile takes the terminal's id from `Path(folder).name`
# (_check_daybook, `terminal = folder.name`): `--daybook .` (the clerk in the day-book
# folder) gives "", so 3201/3202 go without dev_no and compare this one terminal's book
# with the whole institution's day: "3201 : NOT balanced", exit 1. Fix: `folder.resolve()`
# (or `folder.absolute()`) before taking `.name`, and refuse a folder without a name.
def test_a_daybook_given_as_dot_is_that_terminal(db, user, paid):
    done = reconcile(db.resolve(), "--daybook", ".", cwd=user / "daybook" / "POS-01")
    assert done.stdout.splitlines()[-1:] == [
        "3201 POS-01: balanced (2 settlements in its day-book)"
    ], done.stdout
    assert done.returncode == 0


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_a_daybook_that_is_not_a_folder_exits_2_with_one_line(db, tmp_path, kind):
    path = tmp_path / "POS-01"
    if kind == "file":
        path.write_text("{}\n", "utf-8")
    err = one_line_error(reconcile(db, "--daybook", str(path)), 2)
    assert "day-book folder" in err and str(path) in err


# Was a bug (fixed): host/desk.py cmd_reconcile checks each --daybook (in _check_daybook, `if not
# folder.is_dir()`) only after it opened (made, prepared) the host database and printed
# the host's totals: a refused run has output on stdout and has written a database,
# though a UsageError means "nothing was sent or written" (cardio/errors.py). Fix: check
# every `args.daybook` folder with is_dir() at the top of cmd_reconcile, before
# open_platform.
def test_a_bad_daybook_is_refused_before_anything_is_printed_or_written(db, tmp_path):
    done = reconcile(db, "--daybook", str(tmp_path / "absent"))
    one_line_error(done, 2)
    assert done.stdout == ""
    assert not db.exists()


@pytest.mark.parametrize("date", ["2026-13-01", "2026-02-30", "yesterday", "30/11/2026", "2026"])
def test_a_bad_date_exits_2_with_one_line(db, date):
    done = pos_host("--db", str(db), "reconcile", "--date", date)
    err = one_line_error(done, 2)
    assert done.stdout == ""
    assert "--date" in err and "2026-11-30" in err
    assert not db.exists()  # told before the database is opened


# Was a bug (fixed): host/desk.py cmd_reconcile, `day = _day(args.date) if args.date else today`: an
# empty --date (`--date "$DAY"` with DAY unset) silently reconciles today instead of
# being refused as the empty --db is. Fix: `if args.date is not None`, so that _day("")
# raises its UsageError.
def test_an_empty_date_exits_2(db):
    done = pos_host("--db", str(db), "reconcile", "--date", "")
    one_line_error(done, 2)


# Was a bug (fixed): host/desk.py cmd_reconcile takes any --institution: an empty one prints the
# host's side ("institution " and "no settlements"), then the 3201 is refused by the
# engine and the run ends exit 1 with the platform's words "pos-host: fixmedins_code is
# missing; send it", which name no option. Fix: in cmd_reconcile, before open_platform,
# raise UsageError("the --institution code is empty; give the pharmacy's code, such as
# H31010100001") for a blank one (and one over the envelope's 30 characters).
def test_an_empty_institution_exits_2_with_one_line(db, tmp_path):
    book = tmp_path / "daybook" / "POS-01"
    book.mkdir(parents=True)
    done = reconcile(db, "--institution", "", "--daybook", str(book))
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr  # was 1 (fixed)
    assert "--institution" in done.stderr
    assert done.stdout == ""


def test_a_damaged_database_is_one_line_exit_1(db):
    db.write_bytes(b"not a database\n" * 500)
    err = one_line_error(pos_host("--db", str(db), "reconcile", "--date", "2026-11-02"), 1)
    assert str(db) in err


# --- history ------------------------------------------------------------------------------


def test_history_lists_the_engines_settlements_masked(db, paid):
    out = ok("history", "--ssn", LI, "--db", str(db))
    lines = out.splitlines()
    assert len(lines) == 2
    time = MORNING.strftime("%Y-%m-%d %H:%M:%S")
    rows = {line.split()[-1]: line.split() for line in lines}
    assert rows[paid["li"].setl_id] == [
        *time.split(),
        f"{INSTITUTION}/POS-01",
        "SETTLED",
        "3.33",
        "account",
        "1.00",
        "balance",
        "1279.50",
        paid["li"].setl_id,
    ]
    assert rows[paid["li-cancelled"].setl_id][2:5] == [
        f"{INSTITUTION}/POS-02",
        "CANCELLED",
        "20.00",
    ]
    assert LI not in out and NAMES[LI] not in out
    other = ok("history", "--id", ZHOU, "--db", str(db))
    assert paid["zhou"].setl_id in other and paid["li"].setl_id not in other
    assert ZHOU not in other and NAMES[ZHOU] not in other


def test_history_of_a_holder_without_settlements(db, paid):
    assert ok("history", "--ssn", CHEN, "--db", str(db)) == "no payments yet\n"


# --- serve: what was given ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "words"),
    [
        ("127.0.0.1", "has no port"),
        ("127.0.0.1:", "not a number from 0 to 65535"),
        ("127.0.0.1:65536", "not a number from 0 to 65535"),
        ("127.0.0.1:http", "not a number from 0 to 65535"),
        (":8765", "has no host"),
        ("::1:8765", "needs brackets"),
    ],
)
def test_serve_with_a_bad_listen_exits_2_with_one_line(db, listen, words):
    done = pos_host("--db", str(db), "serve", "--listen", listen)
    assert words in one_line_error(done, 2)
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("faults", "words"),
    [
        ("lose=0.5", "no fault named"),
        ("error=1.5", "not a number from 0 to 1"),
        ("drop-reply=-0.1", "not a number from 0 to 1"),
        ("error=nan", "not a number from 0 to 1"),
        ("error", "has no value"),
        ("", "empty"),
        ("error=0.1,error=0.2", "twice"),
    ],
)
def test_serve_with_bad_faults_exits_2_with_one_line(db, faults, words):
    done = pos_host("--db", str(db), "serve", "--listen", "127.0.0.1:0", "--faults", faults)
    assert words in one_line_error(done, 2)
    assert done.stdout == ""


def test_serve_with_a_bad_faults_seed_exits_2(db):
    done = pos_host("--db", str(db), "serve", "--faults", "error=0.1", "--faults-seed", "x")
    one_line_error(done, 2)


# Was a bug (fixed): host/desk.py cmd_serve opens the host database (open_platform: made, seeded,
# prepared) before run_serve checks --listen and --faults (host/server.py run_serve):
# a refused `serve` has written a database. UsageError: "nothing was sent or written".
# Fix: in cmd_serve, parse_faults(...) and parse_listen(args.listen) before
# open_platform (or pass the parsed values to run_serve).
def test_a_refused_serve_writes_no_database(db):
    one_line_error(pos_host("--db", str(db), "serve", "--listen", "127.0.0.1"), 2)
    assert not db.exists()


BAD_POLICIES = [
    ("{not json", "not a usable policy file"),
    ('{"insutypes": {}}', '"insutypes"'),
    ('{"insutypes": {"310": {"pool": {"ratio": "1.5"}}}}', "ratio must be from 0 to 1"),
    ('{"insutypes": {"310": {"shortfall": "later"}}}', '"shortfall"'),
]


# Was a bug (fixed): host/policy.py load() raises HostError (exit 1) for a --policy file that is
# missing or whose content is bad, but the project's rule (cardio/errors.py Exit.USAGE:
# "what was given (an option, a file's content, a typed value)") is exit 2, as this same
# CLI does for a --daybook that is not a folder and cardio/issuer.py for a bad key file.
# Fix: a `class PolicyError(HostError)` with `exit_code = Exit.USAGE` in host/policy.py,
# raised by load() and _rule() (tests/test_platform.py's pytest.raises(HostError) hold).
@pytest.mark.parametrize(("text", "words"), BAD_POLICIES)
def test_serve_with_a_bad_policy_file_exits_2_with_one_line(db, tmp_path, text, words):
    path = tmp_path / "policy.json"
    path.write_text(text, "utf-8")
    done = pos_host("--db", str(db), "serve", "--listen", "127.0.0.1:0", "--policy", str(path))
    assert done.returncode != 0
    err = done.stderr
    assert words in err and str(path) in err
    assert err.count("\n") == 1 and err.startswith("pos-host: ") and "Traceback" not in err
    assert not db.exists()  # the policy is read first
    assert done.returncode == 2  # was 1 (fixed)


# Was a bug (fixed): see above: a --policy path that does not exist is what was given (exit 2); it
# exits 1.
@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_serve_with_a_policy_that_is_not_a_file_exits_2_with_one_line(db, tmp_path, kind):
    path = tmp_path / "policy.json"
    if kind == "folder":
        path.mkdir()
    done = pos_host("--db", str(db), "serve", "--listen", "127.0.0.1:0", "--policy", str(path))
    assert done.returncode != 0
    err = done.stderr
    assert str(path) in err and "policy" in err
    assert err.count("\n") == 1 and err.startswith("pos-host: ") and "Traceback" not in err
    assert done.returncode == 2  # was 1 (fixed)


def test_serve_on_a_port_in_use_exits_1_with_one_line(db):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = pos_host("--db", str(db), "serve", "--listen", f"127.0.0.1:{port}")
    assert "in use" in one_line_error(done, 1)


# --- serve: a served host with a policy -----------------------------------------------------


@pytest.mark.slow  # a served host: a few seconds
def test_a_served_host_splits_a_2101_as_its_policy_says(db, tmp_path):
    server = start_server(str(db), tmp_path / "served", "--policy", str(policy_file(tmp_path)))
    try:
        client = InsuranceClient(HttpTransport(server.url, timeout=10), device="POS-07")
        try:
            person = client.person(ZHANG)
            assert person.balance_fen == 50000
            pre = client.presettle(person, 1001, "")
            assert (pre.setl_id, pre.medfee_fen, pre.fund_fen, pre.acct_fen, pre.cash_fen) == (
                "",
                1001,
                700,  # 0.7 of 10.01, rounded down to the fen
                301,
                0,
            )
            assert pre.balance_after_fen == 50000 - 301
            raw = client.call("2101", client._bill(person, 1001, ""))["setlinfo"]
            assert raw["hifp_pay"] == Decimal("7.00")
            assert raw["pool_prop_selfpay"] == Decimal("0.70")
            assert raw["psn_cash_pay"] == Decimal("0.00")
            done = client.settle(person, 1001, "", client.new_msgid())
            assert (done.fund_fen, done.acct_fen, done.balance_after_fen) == (700, 301, 49699)
            # 陈桂兰 (170) falls under "*": no pool, a short account is refused
            chen = client.person(CHEN)
            with pytest.raises(Exception, match="less than"):
                client.presettle(chen, 100, "")
        finally:
            client.transport.close()
    finally:
        assert server.stop() == 0, server.log()
    assert "Traceback" not in server.log()
    assert ok("balance", "--ssn", ZHANG, "--db", str(db)) == (
        "张* (3101**********2174): personal account balance 496.99 yuan; card in use\n"
    )
    out = ok("--db", str(db), "reconcile", "--date", dt.date.today().isoformat())
    assert out.splitlines()[1].split() == [
        *f"{INSTITUTION}/POS-07 settled 1 total 10.01 fund 7.00 account 3.01 cash 0.00".split()
    ]


def test_a_served_host_without_a_policy_pays_from_the_account_alone(db, tmp_path):
    server = start_server(str(db), tmp_path / "served")
    try:
        client = InsuranceClient(HttpTransport(server.url, timeout=10), device="POS-08")
        try:
            pre = client.presettle(client.person(ZHANG), 1001, "")
            assert (pre.fund_fen, pre.acct_fen, pre.cash_fen) == (0, 1001, 0)
        finally:
            client.transport.close()
    finally:
        assert server.stop() == 0, server.log()


# --- --db: empty, unreachable, PostgreSQL ---------------------------------------------------

DESK_RUNS = [
    ("balance", "--ssn", ZHANG),
    ("report-loss", "--ssn", ZHANG),
    ("cancel-loss", "--id", ZHANG),
    ("history", "--ssn", ZHANG),
    ("reconcile", "--date", "2026-11-02"),
    ("serve", "--listen", "127.0.0.1:0"),
]


@pytest.mark.parametrize("run", DESK_RUNS, ids=lambda r: r[0])
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_db_exits_2_with_one_line(run, empty):
    done = pos_host("--db", empty, *run)
    assert "--db" in one_line_error(done, 2)
    assert done.stdout == ""
    done = pos_host(run[0], "--db", empty, *run[1:])  # after the command too
    assert "--db" in one_line_error(done, 2)


@pytest.mark.parametrize("run", DESK_RUNS, ids=lambda r: r[0])
def test_an_unreachable_postgresql_exits_1_with_one_line(run):
    url = f"postgresql://desk:s3cret-pw@127.0.0.1:{closed_port()}/nowhere"
    done = pos_host("--db", url, *run)
    err = one_line_error(done, 1)
    assert "cannot reach the PostgreSQL database" in err
    assert "s3cret-pw" not in err  # the password is never shown
    assert done.stdout == ""


# Was a bug (fixed): host/postgres.py PostgresStore._connect: a --db URL that is not a usable one is
# what was given, but it exits 1: a malformed URL raises HostError ("is not a usable
# PostgreSQL URL", psycopg.ProgrammingError), and a bad port or option is told as "cannot
# reach the PostgreSQL database ...; check that it runs" (psycopg.OperationalError from
# parsing the conninfo). Fix: in PostgresStore.__init__ (or host/desk.py open_store),
# parse the URL first with psycopg.conninfo.conninfo_to_dict(url) and raise UsageError
# ("... is not a usable PostgreSQL URL; give postgresql://user@host/db") on its error.
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://desk:s3cret-pw@127.0.0.1:notaport/db",
        "postgres://desk:s3cret-pw%zz@/db",
    ],
)
def test_a_postgresql_url_that_cannot_be_used_exits_2_with_one_line(url):
    done = pos_host("--db", url, "balance", "--ssn", ZHANG)
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("pos-host: ")
    assert "s3cret-pw" not in done.stderr and "Traceback" not in done.stderr
    assert done.returncode == 2  # was 1 (fixed)


@pytest.mark.slow  # a PostgreSQL database and a CLI run per command
def test_the_desk_commands_over_postgresql(pg_url):
    db = ("--db", pg_url)
    assert ok(*db, "balance", "--ssn", ZHANG) == (
        "张* (3101**********2174): personal account balance 500.00 yuan; card in use\n"
    )
    assert ok(*db, "report-loss", "--ssn", ZHANG) == (
        "reported lost: the card of 张* (3101**********2174) is now refused at every terminal\n"
    )
    assert ok("report-loss", "--id", ZHANG.lower(), *db).startswith("already reported lost")
    assert ok(*db, "balance", "--id", ZHANG).endswith("card reported lost\n")
    assert ok(*db, "cancel-loss", "--ssn", ZHANG) == (
        "loss report cancelled: the card of 张* (3101**********2174) works again\n"
    )
    assert ok(*db, "cancel-loss", "--ssn", ZHANG).startswith("no loss report to cancel")
    assert ok(*db, "history", "--ssn", ZHANG) == "no payments yet\n"
    assert ok(*db, "reconcile", "--date", "2026-11-02").splitlines()[1:] == ["no settlements"]
    done = pos_host(*db, "balance", "--ssn", "11010519491231002X")
    assert "no holder" in one_line_error(done, 1)


@pytest.mark.slow  # a PostgreSQL database and a CLI run per command
def test_reconcile_and_history_over_postgresql(pg_url, user, tmp_path):
    paid = day_of_payments(pg_url, user, policy_file(tmp_path))
    done = reconcile(
        pg_url, "--daybook", str(user / "daybook/POS-01"), "--daybook", str(user / "daybook/POS-02")
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    lines = done.stdout.splitlines()
    assert [line.split() for line in lines[1:4]] == HOST_LINES
    assert lines[4:] == [
        "3201 POS-01: balanced (2 settlements in its day-book)",
        "3201 POS-02: balanced (1 settlements in its day-book)",
    ]
    book = _book_without(user, tmp_path, "POS-02", paid["zhou"].setl_id)
    done = reconcile(pg_url, "--daybook", str(book))
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == (
        f"  3202 {paid['zhou'].setl_id}: not in the institution's details"
    )
    out = ok("--db", pg_url, "history", "--ssn", ZHOU)
    assert out.split() == [
        *MORNING.strftime("%Y-%m-%d %H:%M:%S").split(),
        f"{INSTITUTION}/POS-02",
        "SETTLED",
        "200.00",
        "account",
        "50.00",
        "balance",
        "0.00",
        paid["zhou"].setl_id,
    ]
    assert ok("--db", pg_url, "balance", "--ssn", ZHOU).startswith(
        "周** (3101**********0397): personal account balance 0.00 yuan"
    )
    assert ZHOU not in out and NAMES[ZHOU] not in out


def test_a_settlement_row_edited_by_hand_is_one_line_naming_it(tmp_path: Path) -> None:
    """`history` of a holder whose settlement row holds text where fen belong: one line
    naming the row, exit 1, never a traceback."""
    import sqlite3

    db = tmp_path / "host.db"
    store = open_store(str(db))
    Platform(store)  # makes the platform's tables
    store.close()
    con = sqlite3.connect(db)
    con.execute(
        "INSERT INTO settlements VALUES ('S-EDITED', 'M1', 'P310101197911020480', "
        "'310101197911020480', 'X/1', 'm', 'X', '310', 'twelve', 0, 0, 0, 0, 0, 0, 0, "
        "'2026-11-30 10:00:00', '2026-11-30', 'settled', NULL, NULL, NULL)"
    )
    con.commit()
    con.close()
    done = pos_host("--db", str(db), "history", "--ssn", "310101197911020480")
    line = one_line_error(done, 1)
    assert "'S-EDITED'" in line and "correct or delete that row" in line
