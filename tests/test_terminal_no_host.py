"""`pos-terminal --no-host` and its default, through the command line's own path
(terminal.cli: parse_args, build, main), as issue 10 asks ("test what ships").

- `--no-host`: the app has no settlement host; a payment ends once the card has
  authorised it: 消费授权成功 and the amount, no debit, no receipt (a result that
  Escape closes), and no host database is opened or made.
- `--no-host --host-db X`: a one-line usage error, exit 2, X not made.
- neither: `build()` opens the host (`--host-db`, else the user data folder's database,
  here under the test's SHEBAO_POS_HOME: conftest.py), and a payment is debited there.

Card files are made from profiles in tmp_path; apps run at 80x24.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from terminal_helpers import (
    ENABLED_PIN,
    confirm,
    enter,
    file_bytes,
    holders,
    host_of,
    make_card,
    screen_text,
    settle,
    settled_rows,
    start_payment,
)

from cardio.resources import user_dir
from host.client import DEFAULT_INSTITUTION as INSTITUTION
from host.sqlite import SqliteHost, default_db
from terminal import strings
from terminal.cli import build, main, parse_args
from terminal.flow.view import Stage
from terminal.screens.menu import MenuScreen

SIZE = (80, 24)
AUTHORISED = "消费授权成功"
SETTLING = "正在结算，请稍候"
NO_PIN = "未启用密码"
ENTER_PIN = "请输入密码"
AMOUNT = "金额 12.50 元"
BALANCE_AFTER = "个人账户余额 "  # the receipt's balance line: {amount} 元
# the receipt's terminal line, {time}: the default PSAM's terminal number
RECEIPT_TERMINAL = "终端 310000000001  "
USAGE = "pos-terminal: --no-host and --host-db cannot go together; give one of them"


def ssn_of(profile: str) -> str:
    return holders()[profile]["ssn"]


def home_files() -> list[str]:
    """What the terminal left in the user data folder (SHEBAO_POS_HOME: a temp folder)."""
    home = user_dir()
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")) if home.exists() else []


# --- --no-host: a payment ends at the card's authorisation --------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["employee-enabled", "pension-new"])
async def test_no_host_payment_ends_at_the_card_authorisation(tmp_path: Path, profile: str) -> None:
    """`pos-terminal --card CARD --no-host`: employee-enabled with its PIN, and
    pension-new with 确认 (its account holds 0.00: a host would refuse it; without one
    nothing is asked): 消费授权成功 and the amount, and nothing of a settlement: no
    正在结算, no balance, no receipt line; Escape closes it as any result (it is no
    receipt); no host database anywhere."""
    card = make_card(tmp_path, profile)
    before = set(tmp_path.iterdir())
    args = parse_args(["--card", str(card), "--no-host"])
    assert args.no_host and args.host_db is None
    app = build(args)
    assert app.options.host is None
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        text = screen_text(app)
        assert AMOUNT in text
        if profile == "employee-enabled":
            assert ENTER_PIN in text
            await enter(pilot, ENABLED_PIN)
        else:
            assert NO_PIN in text
            await confirm(pilot)
        assert app.flow is not None
        view = app.flow.view
        assert view.stage is Stage.RESULT
        assert view.success is True
        assert not view.keep  # no money moved: not a receipt
        text = screen_text(app)
        assert AUTHORISED in text
        assert AMOUNT in text
        assert SETTLING not in text
        assert BALANCE_AFTER not in text
        assert RECEIPT_TERMINAL not in text
        assert "卡号 " not in text
        assert strings.text("zh", "take_card") in text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, MenuScreen) and app.flow is None
    assert set(tmp_path.iterdir()) == before  # no database beside the card
    assert not default_db().exists()
    # build() opened nothing in the user data folder but the default PSAM's file
    assert [f for f in home_files() if not f.startswith("cards")] == []
    assert "cards/psam.json" in home_files()


# --- --no-host --host-db: refused ------------------------------------------------------------


@pytest.mark.parametrize("order", ["no-host-first", "host-db-first"])
def test_no_host_with_host_db_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], order: str
) -> None:
    """Both options: exit 2 and one line on stderr naming both; no database made, nothing
    started."""
    card = make_card(tmp_path, "employee-enabled")
    db = tmp_path / "host.db"
    pair = [["--no-host"], ["--host-db", str(db)]]
    if order == "host-db-first":
        pair.reverse()
    argv = ["--card", str(card), *pair[0], *pair[1]]
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines == [f"{USAGE}; see pos-terminal --help"] * 2, lines
    assert not db.exists()
    assert home_files() == []


def test_no_host_with_host_db_exits_2_from_the_command(tmp_path: Path) -> None:
    """The same as a person meets it: `python -m terminal.cli ...` exits 2 with that one
    line and no traceback, the terminal never drawn."""
    card = make_card(tmp_path, "employee-enabled")
    before = file_bytes(card)
    db = tmp_path / "host.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "terminal.cli",
            "--card",
            str(card),
            "--no-host",
            "--host-db",
            str(db),
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"{USAGE}; see pos-terminal --help"]
    assert not db.exists()
    assert file_bytes(card) == before


# --- without --no-host: build() opens the host, and a payment is debited ---------------------


@pytest.mark.slow
@pytest.mark.parametrize("where", ["host-db", "default"])
async def test_without_no_host_a_payment_is_debited(tmp_path: Path, where: str) -> None:
    """`pos-terminal --card CARD [--host-db DB]`: the app has a host on DB (default: the
    user data folder's database), seeded with the fixture holders; employee-enabled pays
    12.50 with its PIN and the screen is the receipt (balance 1268.00, terminal 310000000001,
    the default PSAM's);
    the database, opened again, holds the one settlement that stands, from this terminal,
    and the account down by 12.50."""
    profile = "employee-enabled"
    card = make_card(tmp_path, profile)
    argv = ["--card", str(card)]
    db = default_db()
    if where == "host-db":
        db = tmp_path / "elsewhere" / "host.db"
        argv += ["--host-db", str(db)]
    args = parse_args(argv)
    assert not args.no_host
    app = build(args)
    host = host_of(app)  # the embedded platform's database
    assert host.path == db
    async with app.run_test(size=SIZE) as pilot:
        await start_payment(pilot, "1250")
        assert ENTER_PIN in screen_text(app)
        await enter(pilot, ENABLED_PIN)
        assert app.flow is not None
        view = app.flow.view
        assert view.stage is Stage.RESULT and view.success is True and view.keep
        text = screen_text(app)
        assert AUTHORISED in text
        assert AMOUNT in text
        assert f"{BALANCE_AFTER}1268.00 元" in text
        assert RECEIPT_TERMINAL in text
        assert "卡号 A14***182  李**" in text
        await pilot.press("escape")  # a receipt: only 确认 closes it
        await settle(pilot)
        assert app.flow is not None and app.flow.view.keep
        await confirm(pilot)
        assert isinstance(app.screen, MenuScreen) and app.flow is None
    other = SqliteHost(db)
    try:
        assert settled_rows(other, ssn_of(profile)) == [
            (1250, 126800, f"{INSTITUTION}/310000000001")
        ]
        holder = other.holder(ssn_of(profile))
        assert holder is not None and holder.balance_fen == 128050 - 1250
        with other.atomic() as sql:
            [(setl_id,)] = sql.rows(
                "SELECT setl_id FROM settlements WHERE ssn = ?", (ssn_of(profile),)
            )
        assert f"结算号 {setl_id}" in text  # the receipt named the settlement
    finally:
        other.close()
