"""`cardio record` and `cardio replay` (cardio/record.py, cardio/replay.py, docs/record.md).

A pharmacy payment is driven with the terminal's own flow (tests/flow_driver.py) on a
virtual card whose reader writes the terminal's trace lines; the trace becomes a
session script, which replays against the same card with no difference, against a
copy with one changed record with exactly that record, and runs under pcsc-tools'
scriptor through pcscd.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import socket
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from flow_driver import Worker
from pcsc_stack import slot_name
from scriptor_helpers import run, tool

from cardio import record, replay
from cardio.card import profiles, store
from cardio.card.state import KEY_TRY_LIMIT
from cardio.issuer import KeyName
from cardio.readers.virtual import VirtualReader
from cardio.record import StepKind
from terminal.flow.pharmacy import Purpose
from terminal.rules import Settings

PIN = "802613"  # employee-enabled's (fixtures/README.md)
PIN_HEX = ("80 26 13", "802613")
UPGRADE = dt.date(2025, 4, 13)
AFTER = Settings(upgrade_date=UPGRADE, today=UPGRADE + dt.timedelta(days=1))
GET_CHALLENGE = "00 84 00 00 08"


def pay(card: Path) -> list[str]:
    """A payment of 12.50 with the PIN, on `card`: the terminal's trace lines."""
    lines: list[str] = []
    reader = VirtualReader(card, trace=lines.append)
    try:
        worker = Worker(reader)
        flow = worker.start(Purpose.PAY, AFTER)
        worker.enter(flow, PIN)
        assert worker.sent == ["ReadCard", "Verify"] and flow.view.success is True
    finally:
        reader.close()
    return lines


@pytest.fixture
def session(tmp_path: Path) -> tuple[Path, Path]:
    """(card file, session script) of a recorded payment, recorded from the trace file."""
    card = tmp_path / "card.json"
    profiles.new_card("employee-enabled", card)
    trace = tmp_path / "trace.log"
    trace.write_text("\n".join(pay(card)) + "\n# api 0 ok\n", "utf-8")
    script = tmp_path / "session.apdu"
    assert record.main(["--from-trace", str(trace), "--out", str(script)]) == 0
    return card, script


def cli(module: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def replay_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return cli("cardio.replay", *argv)


# --- the format -----------------------------------------------------------------------------


def test_a_recorded_payment_is_a_scriptor_file_with_answers_and_volatile_bytes(session) -> None:
    _, script = session
    text = script.read_text("utf-8")
    lines = text.splitlines()
    assert lines[0] == record.HEADER and lines[1] == "reset"
    assert stat.S_IMODE(script.stat().st_mode) == 0o600
    assert "exit" not in text.lower()
    for line in lines:
        # scriptor's rules: comments at column 0, an APDU single-spaced hex
        assert (
            line.startswith("#")
            or line == "reset"
            or re.fullmatch(r"[0-9A-F]{2}( [0-9A-F]{2})*", line)
        ), line
    challenge = lines.index(GET_CHALLENGE)
    assert re.fullmatch(r"#< (\.\. ){8}90 00", lines[challenge + 1])
    internal = next(i for i, line in enumerate(lines) if line.startswith("00 88 00 00 10"))
    assert re.fullmatch(r"#< (\.\. ){8}90 00", lines[internal + 1])
    assert "#< 07 09 41 31 34 39 33 33 31 38 32 90 00" in lines  # EF05 07: kept as is
    assert any(line.startswith("#auth 00 82 00 84 10 ") for line in lines)  # RK1DF04
    assert "#pin 00 20 00 00 03 ** ** **" in lines
    assert "# api 0 ok" in lines
    steps = record.load(str(script))
    assert [s.kind for s in steps].count(StepKind.PIN) == 1
    assert steps[0].kind is StepKind.RESET


def test_replay_against_the_same_build_shows_no_difference_and_leaves_the_card(session) -> None:
    card, script = session
    before = card.read_bytes()
    done = replay_cli(str(script), "--card", str(card), "--pin", PIN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "20 commands, 20 answers compared: no differences"
    assert "skipped" not in done.stdout
    assert card.read_bytes() == before  # a temporary copy took the writes (VERIFY's)
    assert not any(p in done.stdout + done.stderr for p in PIN_HEX)


def test_a_trace_of_two_card_sessions_replays_as_two(tmp_path: Path) -> None:
    """pos-terminal --trace appends; each power-up is a `reset ATR` line in it, so the
    second session's PIN status (not verified: a new session) replays as recorded."""
    card = tmp_path / "card.json"
    profiles.new_card("employee-enabled", card)
    lines = pay(card)
    second = VirtualReader(card, trace=lines.append)
    try:
        second.connect()
        second.transmit(bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF00"))
        assert second.transmit(bytes.fromhex("00200000")) == bytes.fromhex("63C6")
    finally:
        second.close()
    assert sum(line.startswith("reset 3B") for line in lines) == 2  # one per session
    trace = tmp_path / "trace.log"
    script = tmp_path / "two.apdu"
    trace.write_text("\n".join(lines) + "\n", "utf-8")
    assert record.main(["--from-trace", str(trace), "--out", str(script)]) == 0
    assert script.read_text("utf-8").count("\nreset\n") == 2
    done = replay_cli(str(script), "--card", str(card), "--pin", PIN)
    assert done.returncode == 0, done.stdout + done.stderr
    # the same trace without its session marks runs both sessions as one: a difference
    merged = tmp_path / "merged.log"
    merged.write_text("\n".join(x for x in lines if not x.startswith("reset")) + "\n", "utf-8")
    one = tmp_path / "one.apdu"
    assert record.main(["--from-trace", str(merged), "--out", str(one)]) == 0
    differs = replay_cli(str(one), "--card", str(card), "--pin", PIN)
    assert differs.returncode == 1 and "63 C6" in differs.stdout


def test_without_pin_the_verify_is_skipped_and_said_once(session) -> None:
    card, script = session
    done = replay_cli(str(script), "--card", str(card))
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = [line for line in done.stdout.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "give --pin" in skipped[0]


def test_the_pin_can_come_from_standard_input(session) -> None:
    card, script = session
    done = cli("cardio.replay", str(script), "--card", str(card), "--pin", "-", stdin=PIN + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped" not in done.stdout and PIN not in done.stdout


def test_a_different_atr_after_a_reset_is_a_difference(tmp_path: Path) -> None:
    card = tmp_path / "card.json"
    profiles.new_card("employee-new", card)
    script = _script(
        tmp_path,
        f"{record.HEADER}\nreset\n#atr 3B 00\n00 A4 00 00 02 3F 00\n#< 6F 04 83 02 3F 00 90 00\n",
    )
    done = replay_cli(script, "--card", str(card))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "line 2 reset (ATR)\n  expected 3B 00\n  got      3B " in done.stdout, done.stdout
    assert done.stdout.splitlines()[-1] == "1 command, 1 answer compared: 1 difference"


def test_a_card_pulled_mid_replay_stops_it_with_what_came_so_far(session) -> None:
    card, script = session
    steps = record.load(str(script))
    reader = VirtualReader(card)
    try:
        sent = 0
        original = reader.transmit_raw

        def pulled_after_five(apdu: bytes) -> bytes:
            nonlocal sent
            sent += 1
            if sent == 6:
                reader.remove()
            return original(apdu)

        reader.transmit_raw = pulled_after_five  # type: ignore[method-assign]
        outcome = replay.Replayer(reader).run(steps, reader.connect())
    finally:
        reader.close()
    assert outcome.stopped is not None and outcome.stopped.startswith("#6 (line ")
    assert outcome.compared == 5 and not outcome.differences
    out = io.StringIO()
    assert replay.report(outcome, out) == 1
    assert "stopped at #6" in out.getvalue()


def test_keep_writes_to_the_card_file_and_spends_no_try(session) -> None:
    card, script = session
    before = store.read(card)
    done = replay_cli(str(script), "--card", str(card), "--pin", PIN, "--keep")
    assert done.returncode == 0, done.stdout + done.stderr
    after = store.read(card)
    assert after.tries_left == before.tries_left == before.try_limit
    # EXTERNAL AUTHENTICATE was recomputed over this run's challenge: no key try spent
    assert after.tries_of(KeyName.RK1DF04) == KEY_TRY_LIMIT


def _changed_copy(source: Path, folder: Path, **changes: object) -> Path:
    copy = folder / "changed.json"
    store.create(copy, store.read(source).with_(**changes))
    return copy


def test_replay_against_a_card_with_one_changed_ef05_record_shows_exactly_it(
    session, tmp_path: Path
) -> None:
    card, script = session
    state = store.read(card)
    copy = _changed_copy(card, tmp_path, card=replace(state.card, card_number="A14933183"))
    done = replay_cli(str(script), "--card", str(copy), "--pin", PIN)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert out[-1] == "20 commands, 20 answers compared: 1 difference"
    (head,) = [line for line in out if line.startswith("#")]
    assert re.fullmatch(r"#6 \(line \d+\) 00 B2 07 00 0B", head), head
    at = out.index(head)
    assert out[at + 1] == "  expected 07 09 41 31 34 39 33 33 31 38 32 90 00"
    assert out[at + 2] == "  got      07 09 41 31 34 39 33 33 31 38 33 90 00"


def test_replay_against_a_card_with_one_changed_ef06_record_shows_exactly_it(
    session, tmp_path: Path
) -> None:
    card, script = session
    state = store.read(card)
    born = dt.date(1979, 11, 3)
    copy = _changed_copy(card, tmp_path, holder=replace(state.holder, birth_date=born))
    done = replay_cli(str(script), "--card", str(copy), "--pin", PIN)
    assert done.returncode == 1, done.stdout + done.stderr
    heads = [line for line in done.stdout.splitlines() if line.startswith("#")]
    assert len(heads) == 1 and heads[0].endswith("00 B2 0D 00 06"), done.stdout
    assert "  got      0D 04 19 79 11 03 90 00" in done.stdout


def test_replay_with_a_wrong_pin_shows_the_verify(session) -> None:
    card, script = session
    done = replay_cli(str(script), "--card", str(card), "--pin", "111111")
    assert done.returncode == 1
    assert "#pin" not in done.stdout and "00 20 00 00 03 ** ** **" in done.stdout
    assert "  expected 90 00" in done.stdout and "  got      63 C5" in done.stdout
    assert "111111" not in done.stdout and "11 11 11" not in done.stdout
    assert store.read(card).tries_left == store.read(card).try_limit  # the copy's try


def test_a_psam_session_replays_with_its_cipher_answers_volatile(tmp_path: Path) -> None:
    """The terminal's PSAM side of a card check: CIPHER DATA (masked, `#secret`) and the
    GET RESPONSEs that fetch its output are not sent again; the rest matches."""
    from cardio.issuer import fixture_issuer
    from cardio.keysource import PsamKeySource
    from cardio.protocol import SocialSecurityCard
    from cardio.psam import state as psam_state
    from cardio.psam import store as psam_store

    psam = tmp_path / "psam.json"
    psam_store.create(psam, psam_state.make(fixture_issuer(), "310000000001"))
    card = tmp_path / "card.json"
    profiles.new_card("employee-enabled", card)
    lines: list[str] = []
    psam_reader = VirtualReader(psam, shared_psam=True, trace=lines.append)
    card_reader = VirtualReader(card)
    try:
        psam_reader.connect()
        keys = PsamKeySource(psam_reader)
        keys.start()
        card_reader.connect()
        assert SocialSecurityCard(card_reader).read_info(keys).ssn is not None
    finally:
        card_reader.close()
        psam_reader.close()
    out = recorded(lines)
    assert any(line.startswith("#secret 80 FA") for line in out)
    # CLA BF has the secure-messaging bits: masked by the trace's rule, never sent again
    assert any(line.startswith("#secret BF DE") for line in out)
    script = tmp_path / "psam.apdu"
    script.write_text("\n".join(out) + "\n", "utf-8")
    done = replay_cli(str(script), "--card", str(psam))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GET RESPONSEs of commands not sent" in done.stdout


# --- PINs are never written ---------------------------------------------------------------


def test_pin_digits_never_reach_the_script_even_from_an_unmasked_trace(tmp_path: Path) -> None:
    trace = tmp_path / "raw.log"
    trace.write_text(
        "> 00 20 00 00 03 80 26 13\n< 90 00\n"  # a hand-made trace, PIN in the clear
        "> 80 5E 01 00 07 80 26 13 FF 59 20 46\n< 90 00\n"
        "> 84 24 00 01 14 " + " ".join(["AB"] * 20) + "\n< 90 00\n"
        "> 00 20 00 00 03 80 26 **\n< 90 00\n",  # half masked: the rule masks the rest
        "utf-8",
    )
    script = tmp_path / "s.apdu"
    assert record.main(["--from-trace", str(trace), "--out", str(script)]) == 0
    text = script.read_text("utf-8")
    for secret in (*PIN_HEX, "80 26", "59 20 46", "AB AB"):
        assert secret not in text
    assert text.count("#pin 00 20 00 00 03 ** ** **\n") == 2
    assert "#secret 80 5E 01 00 07 ** ** ** FF ** ** **" in text
    assert "#secret 84 24 00 01 14 " in text


def test_the_trace_of_a_payment_and_its_script_hold_no_pin(session, tmp_path: Path) -> None:
    for path in (tmp_path / "trace.log", session[1]):
        text = path.read_text("utf-8")
        assert not any(p in text for p in PIN_HEX), path


# --- the recorder ---------------------------------------------------------------------------


def recorded(lines: list[str]) -> list[str]:
    out: list[str] = []
    record.record_lines(lines, out.append, name="t")
    return out


def test_a_watch_stream_keeps_its_resets_and_atr_and_a_volatile_get_response() -> None:
    out = recorded(
        [
            "reset 3B 6D 00 00",
            "> 00 88 00 00 10 " + " ".join(["01"] * 16),
            "< 61 08",
            "> 00 C0 00 00 08",
            "< 11 22 33 44 55 66 77 88 90 00",
            "> 00 B0 00 00 02",
            "< 12 34 90 00",
            "reset",
            "> 80 FA 00 00 10 " + " ".join(["02"] * 16),
            "< ** ** 90 00",
            "> 00 A4 00 00 02 3F 00",
        ]
    )
    assert out == [
        record.HEADER,
        "reset",
        "#atr 3B 6D 00 00",
        "00 88 00 00 10 " + " ".join(["01"] * 16),
        "#< 61 08",
        "00 C0 00 00 08",
        "#< " + " ".join([".."] * 8) + " 90 00",  # the cryptogram, fetched
        "00 B0 00 00 02",
        "#< 12 34 90 00",
        "reset",
        "#secret 80 FA 00 00 10 " + " ".join(["**"] * 16),
        "#< .. .. 90 00",
        "00 A4 00 00 02 3F 00",
        "# no answer was recorded",
    ]


def test_a_watchs_first_atr_line_is_the_sessions_start() -> None:
    """A watch that began with the card in says which (`atr`): the script's first reset
    carries it, so a replay compares it; a later `atr` line is only a note."""
    out: list[str] = []
    record.record_lines(
        ["atr 3B 6D 00", "> 00 84 00 00 08", "< 01 02 90 00", "atr 3B 6D 01"],
        out.append,
        name="t",
    )
    assert out == [record.HEADER, "reset", "#atr 3B 6D 00", GET_CHALLENGE, "#< .. .. 90 00",
                   "# atr 3B 6D 01"]  # fmt: skip


def test_an_empty_answer_is_recorded_as_none() -> None:
    out = recorded(["> 00 B0 00 00 02", "< ", "> 00 A4 00 00 02 3F 00", "<"])
    assert out[2:] == [
        "00 B0 00 00 02",
        "# no answer was recorded",
        "# the card gave an empty answer (pulled out?)",
        "00 A4 00 00 02 3F 00",
        "# no answer was recorded",
        "# the card gave an empty answer (pulled out?)",
    ]


def test_a_note_with_exit_in_it_is_neutralised() -> None:
    out = recorded(["# api -1 card exit", "> 00 84 00 00 08", "< 90 00"])
    assert "exit" not in "\n".join(out).lower()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["< 90 00"], "an answer with no command"),
        (["> 00 A4"], "at least 4 bytes"),
        (["> 00 A4 04 0G"], "'0G' is not a hex byte"),
        (["hello"], "is not a trace line"),
        (["> 00 84 00 00 08", "< 90"], "status word"),
    ],
)
def test_bad_trace_lines_are_named(lines: list[str], message: str) -> None:
    with pytest.raises(record.RecordFileError, match=message):
        recorded(lines)


def fake_control(path: Path, stream: bytes) -> tuple[threading.Thread, list[bytes]]:
    """A control socket at `path` that answers one client's request with `stream`, then
    closes; what it was asked."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    asked: list[bytes] = []

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                asked.append(conn.recv(100))
                conn.sendall(stream)

    thread = threading.Thread(target=serve)
    thread.start()
    return thread, asked


LIVE = (
    b"ok watching slot 1\nreset 3B 6D 00\n> 00 84 00 00 08\n< 01 02 90 00\n"
    b"> 00 20 00 00 03 802613\n"  # not understood: left out, text and all
    b"# fault sw=20:6983: answered 69 83 unexecuted\n"
)


def test_record_from_the_control_socket_watch_stream(tmp_path: Path, capsys) -> None:
    """`--control PATH --slot N`: `watch N` asked, lines recorded until serve's end line."""
    path = tmp_path / "ctl"
    thread, asked = fake_control(path, LIVE + b"end cardio serve stopped\n")
    script = tmp_path / "live.apdu"
    try:
        assert record.main(["--control", str(path), "--slot", "1", "--out", str(script)]) == 0
    finally:
        thread.join(10)
    assert asked == [b"watch 1\n"]
    assert script.read_text("utf-8").splitlines() == [
        record.HEADER,
        "reset",
        "#atr 3B 6D 00",
        GET_CHALLENGE,
        "#< .. .. 90 00",
        "# line 4 of the stream was not understood: left out",
        "# fault sw=20:6983: answered 69 83 unexecuted",
    ]
    assert "recorded 1 command into" in capsys.readouterr().out


def test_a_live_stream_cut_short_is_said_in_the_script_and_the_exit(tmp_path: Path, capsys) -> None:
    """No `end` line: serve dropped a watcher that fell behind (or died). The script keeps
    what came, says where it was cut, and the exit is 1."""
    path = tmp_path / "ctl"
    thread, _ = fake_control(path, LIVE)
    script = tmp_path / "live.apdu"
    try:
        assert record.main(["--control", str(path), "--slot", "1", "--out", str(script)]) == 1
    finally:
        thread.join(10)
    lines = script.read_text("utf-8").splitlines()
    assert lines[3:5] == [GET_CHALLENGE, "#< .. .. 90 00"]
    assert lines[-1].startswith("# cut: the live stream stopped here")
    err = capsys.readouterr().err
    assert "was cut" in err and "holds the first 1 command" in err
    assert len(err.strip().splitlines()) == 1


def test_a_line_cut_short_at_the_end_of_a_stream_is_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "ctl"
    thread, _ = fake_control(path, b"ok watching slot 0\nreset 3B 00\n> 00 A4 04 00 0F 73 78")
    script = tmp_path / "live.apdu"
    try:
        assert record.main(["--control", str(path), "--out", str(script)]) == 1
    finally:
        thread.join(10)
    text = script.read_text("utf-8")
    assert "00 A4" not in text  # half a command would be sent by scriptor
    assert text.splitlines()[-1].startswith("# cut")


def test_a_bad_trace_line_leaves_no_script(tmp_path: Path) -> None:
    trace = tmp_path / "trace.log"
    trace.write_text("> 00 84 00 00 08\n< 01 02 90 00\nnonsense\n", "utf-8")
    script = tmp_path / "s.apdu"
    done = cli("cardio.record", "--from-trace", str(trace), "--out", str(script))
    assert done.returncode == 2 and "trace.log:3" in done.stderr
    assert not script.exists()


@pytest.mark.parametrize("stream", [None, b"error there is no slot 5; slots go from 0 to 0\n"])
def test_a_watch_refused_or_unreachable_leaves_no_script(
    tmp_path: Path, stream: bytes | None
) -> None:
    path = tmp_path / "ctl"
    thread = fake_control(path, stream)[0] if stream is not None else None
    script = tmp_path / "live.apdu"
    try:
        done = cli("cardio.record", "--control", str(path), "--slot", "5", "--out", str(script))
    finally:
        if thread is not None:
            thread.join(10)
    assert done.returncode == 1, done.stderr
    assert ("no slot 5" if stream else "no cardio serve listens") in done.stderr
    assert not script.exists()  # so the retry needs no --force


def test_record_refuses_a_control_path_too_long_for_a_socket(tmp_path: Path) -> None:
    done = cli("cardio.record", "--control", "/tmp/" + "x" * 200, "--out", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "at most 107 bytes" in done.stderr and "(None)" not in done.stderr


# --- bad input: one line, exit 2 ------------------------------------------------------------


def _script(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.apdu"
    path.write_text(text, "utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("00 A4 04 00\n", "not a session script"),
        ("# cardio-record 9\n", "cardio-record 9 script"),
        ("# cardio-record 1\n# exit here\n", "holds 'exit'"),
        ("# cardio-record 1\n00 A4  04 00\n", "is not an APDU"),
        ("# cardio-record 1\n#< 90 00\n", "no command before it"),
        ("# cardio-record 1\n00 A4 04 00\n#< XX 90 00\n", "neither a hex byte nor"),
        ("# cardio-record 1\n00 A4 04 00\n#< 90 ..\n", "status word"),
        ("# cardio-record 1\n00 20 00 00 03 12 34 56\n", "a PIN or MAC command in the clear"),
        ("", "is empty"),
    ],
)
def test_bad_scripts_are_one_line_and_exit_2(tmp_path: Path, text: str, message: str) -> None:
    card = tmp_path / "card.json"
    profiles.new_card("employee-new", card)
    done = replay_cli(_script(tmp_path, text), "--card", str(card))
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr
    assert done.stderr.startswith("cardio: ") and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{script}"], "one of the arguments --card --reader is required"),
        (["{script}", "--card", "{card}", "--pin", "12ab56"], "a PIN is exactly 6 digits"),
        (["{script}", "--reader", "0", "--keep"], "--keep is for --card"),
        (["{script}", "--card", "{card}", "--test-keys"], "--test-keys is for --reader"),
        (["{script}", "--card", "{card}", "--psam", "p.json"], "--psam is for --reader"),
        (["{script}", "--reader", "0", "--psam", "p", "--test-keys"], "not both"),
        (["{folder}", "--card", "{card}"], "is a folder"),
        (["/dev/null", "--card", "{card}"], "is not a regular file"),
        (["{folder}/none.apdu", "--card", "{card}"], "cannot be read"),
        (["{script}", "--card", "{folder}/none.json"], "no such card file"),
        (["{script}", "--card", ""], "empty"),
    ],
)
def test_bad_replay_options_are_one_line(tmp_path: Path, session, argv, message) -> None:
    card, script = session
    values = {"script": script, "card": card, "folder": tmp_path}
    done = replay_cli(*(a.format(**values) for a in argv))
    assert done.returncode in (1, 2), done.stderr
    if "no such card file" not in message:  # a missing card is what happened: exit 1
        assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr
    assert "12ab56" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "{out}"], "give --from-trace TRACE, or --control PATH"),
        (["--out", "{out}", "--from-trace", "{trace}", "--control", "x"], "not both"),
        (["--out", "{script}", "--from-trace", "{trace}"], "already exists; add --force"),
        (["--out", "{out}", "--from-trace", "{folder}"], "is a folder"),
        (["--out", "{out}", "--from-trace", "{script}"], "is not a trace line"),
        (["--out", "", "--from-trace", "{trace}"], "--out path is empty"),
        (["--from-trace", "{trace}"], "the following arguments are required: --out"),
    ],
)
def test_bad_record_options_are_one_line_and_exit_2(tmp_path: Path, session, argv, message) -> None:
    _, script = session
    values = {
        "script": script,
        "trace": tmp_path / "trace.log",
        "out": tmp_path / "new.apdu",
        "folder": tmp_path,
    }
    done = cli("cardio.record", *(a.format(**values) for a in argv))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "new.apdu").exists() or "not a trace line" in message


def test_force_replaces_the_script_and_keeps_it_private(tmp_path: Path, session) -> None:
    _, script = session
    os.chmod(script, 0o644)
    done = cli(
        "cardio.record",
        "--out",
        str(script),
        "--from-trace",
        str(tmp_path / "trace.log"),
        "--force",
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(script.stat().st_mode) == 0o600


# --- through pcscd ----------------------------------------------------------------------


def test_scriptor_runs_a_recorded_payment_through_pcscd_skipping_the_masked_lines(
    session, served
) -> None:
    card, script = session
    served(card, 0)
    done = run(tool("scriptor"), "-r", slot_name(0), str(script))
    assert done.returncode == 0, done.stdout + done.stderr
    # its `> RESET` answer is `< OK: ATR`; each APDU's the response and its meaning
    commands = [line[2:].strip() for line in done.stdout.splitlines() if line.startswith("> ")]
    plain = [s for s in record.load(str(script)) if s.kind in (StepKind.APDU, StepKind.RESET)]
    assert commands == ["RESET" if s.kind is StepKind.RESET else s.shown for s in plain]
    # all 9000 but DF04's read, which the skipped EXTERNAL AUTHENTICATE would have opened
    assert done.stdout.count(" : Normal processing.") == len(plain) - 2, done.stdout
    assert done.stdout.count("< 69 82 : ") == 1, done.stdout
    assert not any(c.startswith(("00 20", "00 82")) for c in commands)  # skipped: comments
    assert store.read(card).tries_of(KeyName.RK1DF04) == KEY_TRY_LIMIT  # no stale cryptogram


@pytest.mark.pcsc
def test_replay_through_pcscd_with_the_test_keys_shows_no_difference(session, served) -> None:
    card, script = session
    served(card, 0)
    done = replay_cli(str(script), "--reader", slot_name(0), "--pin", PIN, "--test-keys")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith("no differences")
    without = replay_cli(str(script), "--reader", slot_name(0), "--pin", PIN)
    assert without.returncode == 1  # the DF04 read needs RK1DF04, which was skipped
    assert "EXTERNAL AUTHENTICATEs (no key" in without.stdout
    assert store.read(card).tries_of(KeyName.RK1DF04) == KEY_TRY_LIMIT


def test_replay_through_pcscd_with_a_psam_shows_no_difference(
    session, served, tmp_path: Path
) -> None:
    card, script = session
    psam = tmp_path / "psam.json"
    made = cli("cardio.cli", "card", "new", "--profile", "psam", str(psam))
    assert made.returncode == 0, made.stderr
    served(card, 0)
    done = replay_cli(str(script), "--reader", slot_name(0), "--pin", PIN, "--psam", str(psam))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped" not in done.stdout
