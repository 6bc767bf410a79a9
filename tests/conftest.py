"""Shared fixtures. The PC/SC stack is real: pcscd + vpcd + pyscard, never a mock."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pcsc_stack as stack_module
import pilot_waits
import pytest

pytest_plugins = ["pg_fixtures", "tmux_helpers"]
PCSC_GROUP = "pcsc"  # pytest-xdist: all PC/SC tests on one worker, around one pcscd


def pytest_configure(config: pytest.Config) -> None:
    why = pilot_waits.install()
    if why is not None:
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(f"Pilot tests use Textual's own waits and frames: {why}"),
            stacklevel=2,
        )


@pytest.fixture(autouse=True)
def _own_user_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test touches a person's files: default card, host database, outlet log go here
    (subprocesses inherit it)."""
    monkeypatch.setenv("SHEBAO_POS_HOME", str(tmp_path_factory.mktemp("home")))


_session_stack: list[stack_module.PcscStack] = []  # the session's one stack, once made
_stack_failed: list[str] = []  # why it could not start, once it could not


@pytest.fixture(scope="session")
def _pcsc_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack_module.PcscStack]:
    reason = stack_module.missing()
    if reason:
        stack_module.unavailable(reason)
    stack = stack_module.PcscStack(tmp_path_factory.mktemp("pcsc"))
    _session_stack.append(stack)
    yield stack
    stack.close()


@pytest.fixture
def pcsc_stack(_pcsc_session: stack_module.PcscStack) -> stack_module.PcscStack:
    """pcscd + vpcd, started for the first PC/SC test and stopped after the last of a run
    of them (pytest_runtest_teardown), so that the machine's pcscd is not held longer."""
    stack = _pcsc_session
    if _stack_failed:
        stack_module.unavailable(_stack_failed[0])
    if not stack.started:
        try:
            waited = stack.start()
        except (RuntimeError, TimeoutError, OSError) as e:
            stack.close()
            _stack_failed.append(str(e))
            stack_module.unavailable(str(e))
        if waited > 1:
            warnings.warn(
                f"waited {waited:.0f} s for the machine's pcscd: another test run "
                f"held {stack_module.MACHINE_LOCK}",
                stacklevel=1,
            )
    return stack


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


@pytest.fixture
def snap_compare(snap_compare):
    """pytest-textual-snapshot's, with the screenshot taken once no key of the pad is lit
    (pilot_waits.py): what it shows does not depend on how fast the machine is."""

    def compare(app, *args, run_before=None, **kwargs):
        async def steps(pilot):
            if run_before is not None:
                await run_before(pilot)
            await pilot_waits.lights_out(pilot)

        return snap_compare(app, *args, run_before=steps, **kwargs)

    return compare


def _uses_pcsc(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("pcsc") is not None


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads xdist_group
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """PC/SC tests: marked `pcsc`, run one after the other, first; under xdist one group,
    which one worker runs. The machine has one pcscd (pcsc_stack.py locks it for a run):
    a second worker's stack would wait for the first one's. The group is the largest unit
    of work, so --dist loadgroup hands it out first."""
    for item in items:
        if "pcsc_stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pcsc)
        if _uses_pcsc(item):
            item.add_marker(pytest.mark.xdist_group(PCSC_GROUP))
    items.sort(key=lambda item: not _uses_pcsc(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After the last PC/SC test of a run of them, stop pcscd and let another run have it."""
    try:
        return (yield)
    finally:
        if _uses_pcsc(item) and not _uses_pcsc(nextitem):
            for stack in _session_stack:
                stack.close()
