"""The tester's findings, each a test that failed before its fix.

1. The trace of the outlet's PIN reset showed the MAC over the new PIN: with the card's
   challenge (in the same trace) and the issuer key, the PIN falls to brute force. Every
   data byte of a PIN- or MAC-bearing command is masked, wherever APDUs are printed (now
   84 24 00 01 14: the encrypted PIN block and the MAC).
2. An existing outlet log or host database kept a wide mode while personal data went
   into it; an outlet log was written through a symlink; a fifo, folder or device as the
   outlet log was not refused before the card.
3. Usage errors printed argparse's whole usage block: now one line.
4. Small messages: a key that is a folder or a pipe, a host database that is a pipe,
   full-width ID digits, a cancel-loss with no loss report, undecodable bytes in a path.
"""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cardio.card import profiles
from cardio.card.card import VirtualCard
from cardio.cli import main as cardio_main
from cardio.outlet import (
    KeyFileError,
    Operation,
    Outlet,
    OutletError,
    OutletLog,
    fixture_master_key,
    load_key,
)
from cardio.readers.virtual import VirtualReader
from cardio.trace import command_line
from cardio.usage import OneLineParser, one_line
from cardio.vpcd import Bridge
from host.api import HostError
from host.sqlite import SqliteHost

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "holders" / "holders.json"
LOCKED_SSN = "310106197012050397"
ENABLED_SSN = "310101197911020480"
ZHANG = "310104198503122174"
NEW_PIN = "592046"
OPERATOR = "counter-3"


def run(
    module: str, *args: str | bytes | os.PathLike[str], stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="backslashreplace",
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def cardio(
    *args: str | bytes | os.PathLike[str], stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run("cardio.cli", *args, stdin=stdin, cwd=cwd)


def pos_host(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return run("host.cli", *args)


def one_line_error(
    done: subprocess.CompletedProcess[str], code: int, prog: str, *words: str
) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{prog}: ") and done.stderr.count("\n") == 1, done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def new_card(folder: Path, profile: str) -> Path:
    path = folder / f"{profile}.json"
    profiles.new_card(profile, path)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- 1: the MAC over a PIN never shows -------------------------------------------------------

# 84 24 00 01 14: 16 bytes of encrypted PIN block, then the MAC (the bytes are made up)
CRYPTOGRAM = bytes.fromhex("592046AA3B5CBF011223344556677888")
RESET = bytes.fromhex("8424000114") + CRYPTOGRAM + bytes.fromhex("AA3B5CBF")
RESET_LINE = "> 84 24 00 01 14" + " **" * 20


def test_the_outlet_reset_traced_in_process_hides_pin_and_mac(tmp_path: Path) -> None:
    """What the terminal's trace file and F12 pane get: Reader.trace lines."""
    card = new_card(tmp_path, "locked")
    trace: list[str] = []
    sent: list[bytes] = []

    class Keeping(VirtualReader):
        def _exchange(self, apdu: bytes) -> bytes:
            sent.append(bytes(apdu))
            return super()._exchange(apdu)

    reader = Keeping(card, trace=trace.append)
    try:
        desk = Outlet(
            reader, fixture_master_key(), operator=OPERATOR, log=OutletLog(tmp_path / "outlet.log")
        )
        assert desk.run(Operation.RESET_PIN, LOCKED_SSN, NEW_PIN).ok
    finally:
        reader.close()
    (raw,) = [a for a in sent if a[0] == 0x84]
    assert raw[:5] == RESET[:5] and len(raw) == len(RESET)
    (line,) = [t for t in trace if t.startswith("> 84 ")]
    assert line == RESET_LINE
    text = "\n".join(trace)
    assert raw[-4:].hex(" ").upper() not in text  # the MAC
    assert raw[5:21].hex(" ").upper() not in text  # the encrypted PIN block
    for i in range(5, 21, 4):  # nor any 4 bytes of it
        assert raw[i : i + 4].hex(" ").upper() not in text


@pytest.mark.parametrize("how", ["send", "script"])
def test_cardio_send_and_script_hide_the_mac(tmp_path: Path, how: str) -> None:
    card = new_card(tmp_path, "locked")
    if how == "send":
        done = cardio("send", "--card", card, "00 84 00 00 08", RESET.hex(" "))
    else:
        script = tmp_path / "reset.apdu"
        script.write_text(f"00 84 00 00 08\n{RESET.hex(' ')}\n", "utf-8")
        done = cardio("script", "--card", card, script)
    assert done.returncode == 0, done.stderr
    assert RESET_LINE in done.stdout.splitlines()
    assert "< 69 82" in done.stdout.splitlines()  # no PUK authentication in this session
    assert "AA 3B 5C BF" not in done.stdout and "59 20 46" not in done.stdout


def test_cardio_serve_verbose_hides_the_mac(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cardio.card import store

    card = VirtualCard(store.read(new_card(tmp_path, "locked")))
    bridge = Bridge(card, verbose=True)
    with caplog.at_level(logging.INFO, logger="cardio"):
        bridge.answer(RESET)
    assert RESET_LINE in caplog.messages
    assert "AA 3B 5C BF" not in caplog.text


@pytest.mark.parametrize(
    "apdu",
    [
        "84 5E 00 00 07 59 20 46 AA 3B 5C BF",  # the tester's line (the old reset)
        "84 24 00 01 14" + " 59 20 46 AA" * 4 + " AA 3B 5C BF",  # reset, restore: PIN block
        "84 24 00 01 04 AA 3B 5C BF",  # cancel: MAC-bearing
        "84 24 00 00 04 AA 3B 5C BF",  # unblock
        "84 18 00 00 04 AA 3B 5C BF",  # activate
        "84 24 00 01 15" + " 59 20 46 AA" * 4 + " AA 3B 5C BF",  # wrong Lc
        "84 24 00 01" + " 59 20 46 AA" * 4 + " AA 3B 5C BF",  # Lc forgotten
        "84 24 00 01 00 00 14" + " 59 20 46 AA" * 4 + " AA 3B 5C BF",  # extended length
        "84 24 00 01 14" + " 59 20 46 AA" * 4 + " AA 3B 5C BF 00",  # with Le
    ],
)
def test_no_byte_after_the_header_of_an_outlet_command_shows(apdu: str) -> None:
    line = command_line(bytes.fromhex(apdu.replace(" ", "")))
    assert line.startswith("> " + apdu[:11] + " ")
    assert "AA" not in line and "59" not in line and "3B" not in line


# --- 2: private files -------------------------------------------------------------------------


def outlet_activate(tmp_path: Path, log: Path | str) -> subprocess.CompletedProcess[str]:
    card = new_card(tmp_path, "employee-enabled")
    return cardio(
        "outlet",
        "cancel-pin",
        "--card",
        card,
        "--id",
        ENABLED_SSN,
        "--test-key",
        "--operator",
        OPERATOR,
        "--log",
        log,
    )


def test_an_existing_wide_outlet_log_is_made_0600(tmp_path: Path) -> None:
    log = tmp_path / "wide.log"
    log.touch()
    log.chmod(0o644)
    done = outlet_activate(tmp_path, log)
    assert done.returncode == 0, done.stderr
    assert mode(log) == 0o600
    assert ENABLED_SSN[:4] in log.read_text("utf-8")  # the lines went in


def test_an_outlet_log_we_cannot_make_private_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone else's 0644 log: fchmod fails (EPERM); refused, the card untouched."""
    card = new_card(tmp_path, "employee-enabled")
    before = card.read_bytes()
    log = tmp_path / "theirs.log"
    log.write_text("")
    log.chmod(0o644)

    def not_yours(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", not_yours)
    reader = VirtualReader(card)
    try:
        desk = Outlet(reader, fixture_master_key(), operator=OPERATOR, log=OutletLog(log))
        with pytest.raises(OutletError) as caught:
            desk.run(Operation.CANCEL_PIN, ENABLED_SSN)
    finally:
        reader.close()
    monkeypatch.undo()
    message = str(caught.value)
    assert "can be read by others" in message and "chmod 600" in message
    assert "nothing was sent to the card" in message and "\n" not in message
    assert log.read_text() == "" and mode(log) == 0o644
    assert card.read_bytes() == before


def test_an_outlet_log_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("someone's file\n")
    victim.chmod(0o644)
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    card = new_card(tmp_path, "employee-enabled")
    before = card.read_bytes()
    done = cardio(
        "outlet", "cancel-pin", "--card", card, "--id", ENABLED_SSN, "--test-key", "--log", link
    )
    one_line_error(done, 1, "cardio", "symbolic link", "nothing was sent to the card")
    assert victim.read_text() == "someone's file\n" and mode(victim) == 0o644
    assert card.read_bytes() == before


def test_a_dangling_outlet_log_symlink_is_refused_and_nothing_made(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made-by-us.txt")
    done = outlet_activate(tmp_path, link)
    one_line_error(done, 1, "cardio", "symbolic link")
    assert not (tmp_path / "made-by-us.txt").exists()


def _fifo(tmp_path: Path) -> tuple[Path, str]:
    os.mkfifo(tmp_path / "pipe.log")
    return tmp_path / "pipe.log", "named pipe"


def _folder(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs", "is a folder"


def _dev_full(tmp_path: Path) -> tuple[Path, str]:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    return Path("/dev/full"), "a device"


@pytest.mark.parametrize("make", [_fifo, _folder, _dev_full], ids=["fifo", "folder", "dev-full"])
def test_an_outlet_log_that_is_no_regular_file_is_refused_before_the_card(
    tmp_path: Path, make
) -> None:
    log, words = make(tmp_path)
    card = new_card(tmp_path, "locked")
    before = card.read_bytes()
    done = cardio(
        "outlet",
        "reset-pin",
        "--card",
        card,
        "--id",
        LOCKED_SSN,
        "--test-key",
        "--log",
        log,
        stdin=f"{NEW_PIN}\n{NEW_PIN}\n",
    )
    one_line_error(done, 1, "cardio", str(log), words, "nothing was sent to the card")
    assert card.read_bytes() == before
    # in process too, through check_writable: nothing reaches the reader
    with pytest.raises(OutletError, match=words):
        OutletLog(log).check_writable()


def test_an_existing_wide_host_database_and_its_wal_are_made_0600(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    db.touch()
    db.chmod(0o644)
    done = pos_host("--db", db, "balance", "--ssn", ZHANG)
    assert done.returncode == 0, done.stderr
    assert mode(db) == 0o600
    # a -wal and -shm left by an earlier run, with a wide mode
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("UPDATE holders SET balance_fen = balance_fen")
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    wal.chmod(0o644)
    shm.chmod(0o644)
    db.chmod(0o644)
    host = SqliteHost(db, seed=SEED)
    try:
        assert (mode(db), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    finally:
        host.close()
        con.close()


def test_a_host_database_we_cannot_make_private_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "theirs.db"
    db.touch()
    db.chmod(0o644)

    def not_yours(path: object, mode: int, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    # By path: the host never opens and closes its database to change its mode (that
    # would drop SQLite's locks of another connection in this process).
    monkeypatch.setattr(os, "chmod", not_yours)
    with pytest.raises(HostError) as caught:
        SqliteHost(db, seed=SEED)
    monkeypatch.undo()
    assert "can be read by others" in str(caught.value) and "chmod 600" in str(caught.value)
    assert db.read_bytes() == b""  # nobody's data went in


# --- 3: usage errors are one line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        ([], "pos-host"),
        (["balance"], "pos-host balance"),
        (["frobnicate"], "pos-host"),
        (["balance", "--ssn", ZHANG, "--bogus"], "pos-host"),
    ],
)
def test_pos_host_usage_errors_are_one_line(argv: list[str], prog: str) -> None:
    done = pos_host(*argv)
    one_line_error(done, 2, prog, f"; see {prog} --help")
    assert "usage:" not in done.stderr and done.stdout == ""


def test_cardio_card_new_missing_argument_is_one_line_with_its_prog(tmp_path: Path) -> None:
    done = cardio("card", "new", cwd=tmp_path)
    one_line_error(done, 2, "cardio card new", "--profile", "see cardio card new --help")


def test_one_line_parser_is_an_argument_parser_and_its_subparsers_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = OneLineParser(prog="tool", description="d")
    assert isinstance(parser, __import__("argparse").ArgumentParser)
    sub = parser.add_subparsers(dest="c", required=True)
    child = sub.add_parser("go")
    child.add_argument("--n", type=int, required=True)
    assert isinstance(child, OneLineParser)
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["go", "--n", "x\n\x1b[2J"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert err.startswith("tool go: argument --n: invalid int value")
    assert err.endswith("; see tool go --help\n")


# --- 4: messages ------------------------------------------------------------------------------


def test_a_key_that_is_a_folder_or_a_pipe_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "adir"
    folder.mkdir()
    with pytest.raises(KeyFileError, match="is a folder") as caught:
        load_key(folder)
    assert "chmod" not in str(caught.value)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(KeyFileError, match="not a regular file .a named pipe.") as caught:
        load_key(tmp_path / "fifo")
    assert "chmod" not in str(caught.value)
    done = cardio(
        "outlet", "activate", "--card", tmp_path / "c.json", "--id", ZHANG, "--key", folder
    )
    one_line_error(done, 1, "cardio", "is a folder", "--key")


def test_a_host_database_that_is_a_pipe_says_so(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = pos_host("--db", fifo, "balance", "--ssn", ZHANG)
    one_line_error(done, 1, "pos-host", "not a regular file", "named pipe")
    assert "disk I/O" not in done.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]


def test_full_width_id_digits_are_named(tmp_path: Path) -> None:
    wide = ZHANG.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789"})
    done = pos_host("--db", tmp_path / "h.db", "balance", "--ssn", wide)
    one_line_error(done, 2, "pos-host", "ASCII digits")
    assert "check digit" not in done.stderr


def test_superscript_digits_are_no_traceback(tmp_path: Path) -> None:
    """'²'.isdigit() is True but int('²') fails: refused as not ASCII."""
    done = pos_host("--db", tmp_path / "h.db", "balance", "--ssn", "²" + ZHANG[1:])
    one_line_error(done, 2, "pos-host", "ASCII digits")


def test_cancel_loss_without_a_loss_report_says_so(tmp_path: Path) -> None:
    done = pos_host("--db", tmp_path / "h.db", "cancel-loss", "--ssn", ZHANG)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no loss report to cancel: ")
    assert "works again" not in done.stdout


def test_an_undecodable_byte_in_a_path_is_shown_as_an_escape(tmp_path: Path) -> None:
    name = os.fsencode(tmp_path) + b"/bad\xff.json"
    made = cardio("card", "new", "--profile", "employee-new", name)
    assert made.returncode == 0, made.stderr
    assert "bad\\xff.json" in made.stdout and "udcff" not in made.stdout
    again = cardio("card", "new", "--profile", "employee-new", name)
    one_line_error(again, 1, "cardio", "bad\\xff.json", "already exists")
    assert "udcff" not in again.stderr


def test_one_line_escapes() -> None:
    assert one_line(os.fsdecode(b"bad\xff.json")) == "bad\\xff.json"
    assert one_line("a\nb\x1b[2J") == "a\\nb\\x1b[2J"
    assert one_line("张伟 ok") == "张伟 ok"


def test_an_undecodable_byte_in_cardio_messages_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = os.fsdecode(os.fsencode(tmp_path) + b"/missing\xfe.json")
    assert cardio_main(["card", "show", path], out=io.StringIO()) != 0
    err = capsys.readouterr().err
    assert "missing\\xfe.json" in err and "udcfe" not in err
