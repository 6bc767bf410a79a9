"""A real terminal for tests: tmux (UTF-8, 80x24) running a command, its screen read
with capture-pane; the `tmux_available` fixture (a failure under CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable

import pytest

WAIT = 20.0
STEADY = 0.5  # how long a screen must stay put to count as settled


class Tmux:
    def __init__(self, command: list[str]) -> None:
        self.socket = f"shebao-{uuid.uuid4().hex[:8]}"
        env_cmd = ["env", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TERM=xterm-256color", *command]
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "pos",
            "-x",
            "80",
            "-y",
            "24",
            " ".join(_quote(c) for c in env_cmd),
        )

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-u", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "pos")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "pos", *keys)

    def type(self, digits: str) -> None:
        self.keys(*digits)

    def wait_for(self, *phrases: str, timeout: float = WAIT) -> str:
        return self.wait_until(
            lambda shown: all(p in shown for p in phrases), phrases, timeout=timeout
        )

    def wait_until(
        self, ok: Callable[[str], bool], what: object = "the expected screen", timeout: float = WAIT
    ) -> str:
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if ok(shown):
                return shown
            time.sleep(0.1)
        raise AssertionError(f"never showed {what}; the screen was:\n{shown}")

    def stays(self, *phrases: str, seconds: float = STEADY) -> None:
        """The phrases stay on screen for `seconds` (keys sent before are handled by then)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            shown = self.screen()
            if not all(p in shown for p in phrases):
                raise AssertionError(f"{phrases} went away; the screen was:\n{shown}")
            time.sleep(0.1)

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
