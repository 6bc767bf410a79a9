"""Driving pcsc-tools' `scriptor` from tests (tests/test_third_party.py and
tests/test_reload_scriptor.py): a missing tool is `pcsc_stack.unavailable` (a failure
under CI=true)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pcsc_stack import unavailable


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(
            f"{name} is not installed (Debian package "
            f"{'pcsc-tools' if name == 'scriptor' else 'opensc'})"
        )
    assert path is not None
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)


def parse_scriptor(stdout: str) -> tuple[list[str], list[bytes]]:
    """('> ' command lines, responses) of scriptor's output.

    A response starts on a '< ' line and may wrap every 16 bytes; the line holding
    ' : ' (the SW's meaning) ends it, and its last two bytes before ' : ' are SW1 SW2.
    """
    commands: list[str] = []
    responses: list[bytes] = []
    current: list[str] | None = None
    for line in stdout.splitlines():
        if current is None:
            if line.startswith("> "):
                commands.append(line[2:].strip())
            elif line.startswith("< "):
                current = [line[2:]]
        else:
            current.append(line)
        if current is not None and " : " in current[-1]:
            current[-1] = current[-1].split(" : ", 1)[0]
            responses.append(bytes.fromhex(" ".join(current)))
            current = None
    assert current is None, f"unfinished response in scriptor output:\n{stdout}"
    return commands, responses


def run_scriptor(reader: str, apdus: list[str], folder: Path) -> tuple[str, list[bytes]]:
    """scriptor's output and the responses it shows, for these APDUs in a script file
    sent to `reader` (a name with spaces is one argument: no shell)."""
    script = folder / "apdus.txt"
    script.write_text("".join(apdu + "\n" for apdu in apdus))
    result = run(tool("scriptor"), "-r", reader, str(script))
    assert result.returncode == 0, result.stdout + result.stderr
    commands, responses = parse_scriptor(result.stdout)
    assert commands == apdus, result.stdout
    return result.stdout, responses
