"""The real app in a real terminal: tmux (UTF-8, 80x24) runs `pos-terminal --card`, a
holder types through a forced change and a payment, and capture-pane reads the screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cardio.card import profiles, store
from cardio.card.state import PinState

NEW_PIN = "802613"  # passes S15 for the employee-new holder (born 1985-03-12)
WAIT = 20.0


class Tmux:
    def __init__(self, command: list[str]) -> None:
        self.socket = f"shebao-{uuid.uuid4().hex[:8]}"
        env_cmd = ["env", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TERM=xterm-256color", *command]
        self._tmux("new-session", "-d", "-s", "pos", "-x", "80", "-y", "24",
                   " ".join(_quote(c) for c in env_cmd))

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-u", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "pos")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "pos", *keys)

    def type(self, digits: str) -> None:
        self.keys(*digits)

    def wait_for(self, *phrases: str) -> str:
        deadline = time.monotonic() + WAIT
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if all(p in shown for p in phrases):
                return shown
            time.sleep(0.1)
        raise AssertionError(f"never showed {phrases}; the screen was:\n{shown}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture
def tmux_available() -> None:
    if shutil.which("tmux") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("tmux is required under CI=true (make test installs it)")
        pytest.skip("tmux is not installed")


def test_forced_change_then_payment_in_a_real_terminal(tmp_path: Path, tmux_available: None):
    card = tmp_path / "card.json"
    profiles.new_card("employee-new", card)
    term = Tmux([sys.executable, "-m", "terminal.app", "--card", str(card)])
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
