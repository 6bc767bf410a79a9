"""Shared fixtures. The PC/SC stack is real: pcscd + vpcd + pyscard, never a mock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pcsc_stack as stack_module
import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def _own_user_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test touches a person's files: default card, host database, outlet log go here
    (subprocesses inherit it)."""
    monkeypatch.setenv("SHEBAO_POS_HOME", str(tmp_path_factory.mktemp("home")))


def _unavailable(reason: str) -> None:
    """Skip, except under CI=true, where a missing PC/SC stack is a failure."""
    if IN_CI:
        pytest.fail(f"PC/SC stack required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"PC/SC stack not available: {reason}")


@pytest.fixture(scope="session")
def pcsc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack_module.PcscStack]:
    reason = stack_module.missing()
    if reason:
        _unavailable(reason)
    stack = stack_module.PcscStack(tmp_path_factory.mktemp("pcsc"))
    try:
        stack.start()
    except (RuntimeError, TimeoutError, OSError) as e:
        stack.close()
        _unavailable(str(e))
    yield stack
    stack.close()


@pytest.fixture
def served(pcsc_stack: stack_module.PcscStack):
    """Serve card files; every card started by a test is stopped after it."""
    started: list[stack_module.ServedCard] = []

    def serve(path: Path, slot: int = 0, *extra: str, wait: bool = True):
        card = pcsc_stack.serve(path, slot, *extra, wait=wait)
        started.append(card)
        return card

    yield serve
    for card in started:
        card.stop()
        pcsc_stack.wait_removed(card.reader)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "pcsc_stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pcsc)
