"""The terminal's pending reversals (terminal/journal.py) and its message ids
(host/client.py new_msgid): what the reversal of a lost answer rests on."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from host.api import HostError
from host.client import InsuranceClient
from host.transport import EmbeddedTransport
from terminal.journal import Journal, Pending


def test_a_pending_file_is_private_and_durable_and_holds_what_a_reversal_needs(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pending" / "POS-1"
    journal = Journal(folder)
    journal.add(Pending("M1", "P310101197911020480", "2103", "S1"))
    path = folder / "M1.json"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    journal.release("M1")  # as after a reversal that could not be confirmed
    assert Journal(folder).pending() == [Pending("M1", "P310101197911020480", "2103", "S1")]
    journal.remove("M1")
    assert not path.exists() and Journal(folder).pending() == []


def test_a_settlement_in_flight_is_never_taken_for_a_crash_leftover(tmp_path: Path) -> None:
    """Two terminals with one id: the second's recovery skips what the first still waits
    for, in this process or another; once the first lets go, it is there to reverse."""
    first, second = Journal(tmp_path), Journal(tmp_path)
    first.add(Pending("M1", "P1"))
    assert second.pending() == [] and first.pending() == []
    first.release("M1")
    assert [p.msgid for p in second.pending()] == ["M1"]


def test_a_killed_terminals_file_is_found(tmp_path: Path) -> None:
    """The lock goes with the process: a file nobody holds is a leftover to reverse."""
    pid = os.fork()
    if pid == 0:  # the child adds and dies without removing
        Journal(tmp_path).add(Pending("M9", "P9"))
        os._exit(0)
    os.waitpid(pid, 0)
    assert [p.msgid for p in Journal(tmp_path).pending()] == ["M9"]


def test_a_damaged_file_is_skipped_and_kept(tmp_path: Path) -> None:
    (tmp_path / "M2.json").write_text("{not json")
    journal = Journal(tmp_path)
    journal.add(Pending("M3", "P3"))
    journal.release("M3")
    assert [p.msgid for p in Journal(tmp_path).pending()] == ["M3"]
    assert (tmp_path / "M2.json").exists()  # kept for a person to look at


def test_a_message_id_of_anything_but_letters_and_digits_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Journal(tmp_path).add(Pending("../x", "P"))


def client(clock: object) -> InsuranceClient:
    return InsuranceClient(EmbeddedTransport(lambda r: r), device="POS-1", clock=clock)  # type: ignore[arg-type]


def test_message_ids_are_30_characters_and_never_repeat_in_a_burst() -> None:
    c = InsuranceClient(EmbeddedTransport(lambda r: r), device="POS-1")
    ids = [c.new_msgid() for _ in range(12000)]  # more than one second's 10000 numbers
    assert len(set(ids)) == len(ids)
    assert {len(i) for i in ids} == {30} and all(i.startswith("H31010100001") for i in ids)


def test_a_restart_within_the_second_starts_above_the_earlier_numbers() -> None:
    """The sequence is at least the 0.1 ms tick within the second: a new run (its counter
    lost) in the same second starts past what an earlier run used at an earlier tick."""
    t = dt.datetime(2026, 11, 30, 12, 0, 0, 100_000)
    earlier = client(lambda: t)
    used = [earlier.new_msgid() for _ in range(50)]
    later = client(lambda: t + dt.timedelta(microseconds=20_000))
    assert later.new_msgid() not in used
    assert later.new_msgid()[-4:] > used[-1][-4:]


def test_a_clock_that_stands_still_is_an_error_not_a_repeat() -> None:
    t = dt.datetime(2026, 11, 30, 12, 0, 0, 999_900)
    c = client(lambda: t)
    assert c.new_msgid().endswith("9999")
    with pytest.raises(HostError):
        c.new_msgid()
