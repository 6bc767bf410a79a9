"""The real app in a real terminal: tmux (UTF-8, 80x24) runs `pos-terminal --card`, a
holder types through a forced change and a payment, and capture-pane reads the screen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tmux_helpers import Tmux

from cardio.card import profiles, store
from cardio.card.state import PinState
from cardio.resources import data_dir

pytestmark = pytest.mark.slow  # a real terminal (tmux): waits until the screen stays put

NEW_PIN = "802613"  # passes S15 for the employee-new holder (born 1985-03-12)


def test_forced_change_then_payment_in_a_real_terminal(tmp_path: Path, tmux_available: None):
    card = tmp_path / "card.json"
    profiles.new_card("employee-new", card)
    term = Tmux([sys.executable, "-m", "terminal.cli", "--card", str(card)])
    seen: list[str] = []
    try:
        seen.append(term.wait_for("1  消费", "2  修改密码", "3  卡片信息", "已插卡"))
        term.type("1")
        seen.append(term.wait_for("请输入金额"))
        term.type("1250")
        seen.append(term.wait_for("12.50 元"))
        term.keys("Enter")
        seen.append(term.wait_for("请修改初始密码", "请输入新密码"))
        term.type(NEW_PIN)
        seen.append(term.wait_for("* * * * * *"))
        term.keys("Enter")
        seen.append(term.wait_for("请再次输入新密码"))
        term.type(NEW_PIN)
        term.keys("Enter")
        seen.append(term.wait_for("密码修改成功", "消费授权成功", "金额 12.50 元"))
        term.keys("Enter")
        seen.append(term.wait_for("1  消费"))

        # S11: the changed card is never forced again; the payment asks for the PIN.
        term.type("1")
        term.type("800")
        term.keys("Enter")
        seen.append(term.wait_for("请输入密码", "金额 8.00 元"))
        assert "请修改初始密码" not in seen[-1]
        term.type(NEW_PIN)
        term.keys("Enter")
        seen.append(term.wait_for("消费授权成功", "金额 8.00 元"))
    finally:
        term.close()
    state = store.read(card)
    assert state.pin_state is PinState.ENABLED
    assert state.pin.matches(NEW_PIN)
    assert (state.tries_left, state.try_limit) == (6, 6)
    assert all(NEW_PIN not in screen for screen in seen)  # digits never on screen


# --- what a holder can never miss: a changed PIN, a debit, a pulled card, the clock -------------

PAY_AMOUNT = "1250"  # 12.50 yuan


def _pos_terminal(card: Path, *extra: str) -> Tmux:
    return Tmux([sys.executable, "-m", "terminal.cli", "--card", str(card), *extra])


def _ssn_of(profile: str) -> str:
    doc = json.loads((data_dir("holders") / "holders.json").read_text("utf-8"))
    return next(h["ssn"] for h in doc["holders"] if h["profile"] == profile)


def _debits(ssn: str) -> list[str]:
    """The holder's settlements that stand, as `pos-host history` (same SHEBAO_POS_HOME)
    lists them."""
    home = Path(os.environ["SHEBAO_POS_HOME"])
    assert (home / "host.sqlite3").is_file(), "the app's host database is not in SHEBAO_POS_HOME"
    pos_host = Path(sys.executable).parent / "pos-host"
    out = subprocess.run(
        [str(pos_host), "history", "--ssn", ssn],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return [row for row in out.splitlines() if " SETTLED " in row]


def _start_payment(term: Tmux) -> None:
    term.wait_for("1  消费", "已插卡")
    term.type("1")
    term.wait_for("请输入金额")
    term.type(PAY_AMOUNT)
    term.wait_for("12.50 元")
    term.keys("Enter")


def test_a_pin_change_is_shown_whether_or_not_the_card_stays(tmp_path: Path, tmux_available: None):
    card = tmp_path / "card.json"
    profiles.new_card("employee-new", card)
    term = _pos_terminal(card)
    try:
        _start_payment(term)
        term.wait_for("请修改初始密码", "请输入新密码")
        term.type(NEW_PIN)
        term.wait_for("* * * * * *")
        term.keys("Enter")
        term.wait_for("请再次输入新密码")
        term.type(NEW_PIN)
        term.wait_for("* * * * * *")
        term.keys("Enter", "F2")  # the card is pulled while the change and debit run
        term.wait_until(
            lambda s: "密码修改成功" in s and ("消费授权成功" in s or "卡片已拔出" in s),
            "密码修改成功 with the receipt or with 卡片已拔出",
        )
        shown = term.wait_for("未插卡")  # the pull has landed; the screen is what stays
        debited = "消费授权成功" in shown
        assert "密码修改成功" in shown
        if debited:
            assert "金额 12.50 元" in shown and "个人账户余额" in shown
            assert "卡片已拔出" not in shown and "未扣款" not in shown
        else:
            assert "卡片已拔出" in shown and "未扣款" in shown
        assert NEW_PIN not in shown
    finally:
        term.close()
    assert len(_debits(_ssn_of("employee-new"))) == (1 if debited else 0), shown
    state = store.read(card)
    assert state.pin_state is PinState.ENABLED
    assert state.pin.matches(NEW_PIN)


def test_a_debit_is_never_hidden_by_escape(tmp_path: Path, tmux_available: None):
    card = tmp_path / "card.json"
    profiles.new_card("disabled", card)
    term = _pos_terminal(card)
    try:
        _start_payment(term)
        term.wait_for("未启用密码", "请核对金额，按 确认 付款")
        term.keys("Enter", "Escape")
        receipt = ("消费授权成功", "金额 12.50 元", "个人账户余额 787.50 元")
        term.wait_for(*receipt)
        term.stays(*receipt)
        term.keys("Escape")
        term.stays(*receipt)
        term.keys("Enter")
        shown = term.wait_for("1  消费")
        assert "消费授权成功" not in shown
    finally:
        term.close()
    debits = _debits(_ssn_of("disabled"))
    assert len(debits) == 1, debits
    assert "12.50" in debits[0]


def test_pin_digits_typed_after_a_pull_go_nowhere(tmp_path: Path, tmux_available: None):
    card = tmp_path / "card.json"
    profiles.new_card("employee-enabled", card)  # PIN 802613 (fixtures/README.md)
    term = _pos_terminal(card)
    try:
        _start_payment(term)
        term.wait_for("请输入密码", "金额 12.50 元")
        term.type(NEW_PIN[:2])
        term.wait_for("* *")
        term.keys("F2")
        term.type(NEW_PIN[2:])
        shown = term.wait_for("卡片已拔出", "未扣款", "未插卡")
        term.stays("卡片已拔出", "未扣款")
        shown = term.screen()
        assert "请输入金额" not in shown
        assert NEW_PIN[2:] not in shown and "请输入密码" not in shown
        term.keys("Enter")
        shown = term.wait_for("1  消费", "请插入社会保障卡")
        assert "请输入金额" not in shown
    finally:
        term.close()
    assert _debits(_ssn_of("employee-enabled")) == []
    state = store.read(card)
    assert (state.tries_left, state.try_limit) == (6, 6)  # no PIN reached the card


def test_an_unattended_prompt_times_out(tmp_path: Path, tmux_available: None):
    card = tmp_path / "card.json"
    profiles.new_card("employee-enabled", card)
    term = _pos_terminal(card, "--timeout", "1")
    try:
        term.wait_for("1  消费", "已插卡")
        started = time.monotonic()
        term.type("1")
        term.wait_for("请输入金额")
        shown = term.wait_for("1  消费", "操作超时", timeout=5.0)
        waited = time.monotonic() - started
        assert "请输入金额" not in shown
        assert 1.0 <= waited < 5.0, waited
    finally:
        term.close()


def test_escape_cancels_and_the_card_is_asked_back(tmp_path: Path, tmux_available: None):
    card = tmp_path / "card.json"
    profiles.new_card("employee-enabled", card)
    term = _pos_terminal(card)
    try:
        _start_payment(term)
        term.wait_for("请输入密码")
        term.type(NEW_PIN[:3])
        term.wait_for("* * *")
        term.keys("Escape")
        shown = term.wait_for("交易已取消", "请取回卡片", "1  消费")
        assert "请插入社会保障卡" not in shown
        term.keys("F2")
        shown = term.wait_for("请插入社会保障卡", "未插卡")
        assert "请取回卡片" not in shown

        # a result screen asks for the card too, and a pull takes the terminal back to idle
        term.keys("F2")
        term.wait_for("已插卡")
        term.type("3")
        term.wait_for("社会保障号码", "请取回卡片", "按 确认 返回")
        term.keys("F2")
        shown = term.wait_for("1  消费", "请插入社会保障卡", "未插卡")
        assert "请取回卡片" not in shown and "社会保障号码" not in shown
    finally:
        term.close()
    assert _debits(_ssn_of("employee-enabled")) == []
    state = store.read(card)
    assert (state.tries_left, state.try_limit) == (6, 6)


def test_quit_asked_right_after_enter_on_a_result(tmp_path: Path, tmux_available: None):
    """Ctrl+Q typed right after 确认 on a result screen asks 退出终端？ (it was lost when the
    screen change that Enter made replaced the question)."""
    card = tmp_path / "card.json"
    profiles.new_card("employee-enabled", card)
    term = Tmux([sys.executable, "-m", "terminal.cli", "--card", str(card)])
    try:
        term.wait_for("1  消费", "已插卡")
        term.type("3")
        term.wait_for("密码剩余次数: 6", "请取回卡片")
        term.keys("Enter", "C-q")
        term.wait_for("退出终端？")
        term.keys("Escape")
        shown = term.wait_until(lambda screen: "退出终端？" not in screen, "the question gone")
        assert "1  消费" in shown
    finally:
        term.close()
