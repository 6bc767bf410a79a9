"""One error family (cardio.errors) and one way a command ends on it (cardio.usage)."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil

import pytest

import cardio
import host
import terminal
from cardio import usage
from cardio.errors import CardioError, Exit, UsageError

# Exceptions that never reach a person: the card's status word on its way to the
# dispatcher, the vpcd bridge's framing and stop signals, the worker's wrapper.
INTERNAL = {
    "cardio.sw.CardError",
    "cardio.vpcd.FrameError",
    "cardio.vpcd.Stop",
    "cardio.outlet._Unusable",
    "terminal.worker.WorkFailed",
    # Control flow, never shown: a refusal becomes an answer, a collision a second run,
    # a settlement without an answer the flow's "reversed" line.
    "host.platform.Refused",
    "host.store.Conflict",
    "terminal.settlement.NotThrough",
}
# What a person gave that cannot be used: exit 2.
USAGE = {
    "cardio.errors.UsageError",
    "host.policy.PolicyError",
    "cardio.card.state.CardFileError",
    "cardio.card.profiles.UnknownProfileError",
    "cardio.card.store.CardPathError",
    "cardio.apdu.HexError",
    "cardio.pin.PinFormatError",
    "cardio.resources.UnusableFileError",
    "cardio.issuer.IssuerFileError",
    "cardio.psam.state.PsamFileError",
}


def project_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (cardio, host, terminal):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == info.name:
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


def test_every_error_a_person_sees_is_a_cardio_error() -> None:
    found = project_exceptions()
    assert found.keys() >= INTERNAL
    outside = sorted(
        name
        for name, cls in found.items()
        if name not in INTERNAL and not issubclass(cls, CardioError)
    )
    assert outside == []


def test_usage_errors_exit_2_and_the_rest_exit_1() -> None:
    found = project_exceptions()
    assert found.keys() >= USAGE
    for name, cls in found.items():
        if name in INTERNAL:
            continue
        assert cls.exit_code == (Exit.USAGE if name in USAGE else Exit.FAILED), name  # type: ignore[attr-defined]


def test_the_exit_codes() -> None:
    assert [int(e) for e in Exit] == [0, 1, 2, 130]


def test_an_error_without_a_message_says_its_default() -> None:
    assert str(CardioError()) == CardioError.default
    assert str(UsageError("the --db path is empty; give one")) == "the --db path is empty; give one"


def run(body, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = usage.run_command("prog", body, io.StringIO())
    return code, capsys.readouterr().err.splitlines()


def raises(error: BaseException):
    def body() -> int:
        raise error

    return body


@pytest.mark.parametrize(
    ("error", "code", "start"),
    [
        (
            UsageError("bad option\nsecond line; fix it"),
            Exit.USAGE,
            "prog: bad option\\nsecond line; fix it",
        ),
        (
            CardioError("the reader failed; try again"),
            Exit.FAILED,
            "prog: the reader failed; try again",
        ),
        (
            FileNotFoundError(2, "No such file or directory", "/x/y"),
            Exit.FAILED,
            "prog: /x/y: No such file or directory; check the path",
        ),
        (EOFError(), Exit.FAILED, "prog: the input ended"),
        (KeyboardInterrupt(), Exit.INTERRUPTED, "prog: interrupted"),
        (
            RuntimeError("PIN 123456 leaked?"),
            Exit.FAILED,
            "prog: unexpected error (RuntimeError at ",
        ),
    ],
    ids=["usage", "failed", "oserror", "eof", "ctrl-c", "bug"],
)
def test_run_command_ends_every_failure_on_one_line(
    error: BaseException, code: Exit, start: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, lines = run(raises(error), capsys)
    assert got == code
    assert len(lines) == 1
    assert lines[0].startswith(start)
    assert "123456" not in lines[0]


def test_run_command_returns_the_body_s_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(lambda: 0, capsys) == (0, [])
    assert run(lambda: 3, capsys) == (3, [])
