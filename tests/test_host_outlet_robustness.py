"""Robustness of the settlement host and the outlet log, against what a person can do.

- `pos-host` never shows a traceback: a bad --db path, a folder it may not write, a name
  too long, a file that is not SQLite, a row edited by hand: one line on stderr
  ("pos-host: what is wrong; what to do"), a non-zero exit, and no file changed.
- An outlet operation that cannot be logged is not done: the intent line ("started") is
  on disk before the first command that may change the card (the PUK's EXTERNAL
  AUTHENTICATE, whose try counter the card writes), the result line after.
- Personal data is private: the host database (and its -wal/-shm) 0600, the outlet log
  0600, in folders made 0700 (folders that already existed are left alone).
- The host's desk methods check the number at the boundary: one HostError each, nothing
  written.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from platform_helpers import counter, pay

from cardio.card import profiles, store
from cardio.card.state import PinState
from cardio.outlet import Operation, Outlet, OutletError, OutletLog, fixture_master_key
from cardio.readers.virtual import VirtualReader
from cardio.resources import HOME_VARIABLE
from host.api import HostError
from host.sqlite import SqliteHost

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "holders" / "holders.json"
POS_HOST = Path(sys.executable).parent / "pos-host"

ZHANG = "310104198503122174"  # 张伟, 500.00 yuan
ZHANG_MASKED = "3101**********2174"
LI = "310101197911020480"
LOCKED_SSN = "310106197012050397"  # the "locked" card profile's holder
NEW_PIN = "592046"
OPERATOR = "counter-3"
COMMANDS = ["balance", "history", "report-loss", "cancel-loss"]


# --- helpers -----------------------------------------------------------------------------


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under `roots`: files by mode and bytes, folders by mode (a
    folder's mtime moves when SQLite makes and removes its -wal; that is no change)."""
    seen: dict[str, tuple] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs:
                path = Path(folder) / name
                seen[str(path)] = ("folder", stat.S_IMODE(path.lstat().st_mode))
            for name in files:
                path = Path(folder) / name
                info = path.lstat()
                data = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
                seen[str(path)] = ("file", stat.S_IMODE(info.st_mode), info.st_mtime_ns, data)
    return seen


def unprivileged() -> list[str]:
    """A prefix that makes folder modes bite: root ignores them unless it drops its
    capabilities (setpriv)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, and no setpriv to drop the capabilities")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--"]


def pos_host(
    *args: str, home: Path | None = None, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    if home is not None:
        env[HOME_VARIABLE] = str(home)
    return subprocess.run(
        [*(prefix or []), str(POS_HOST), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("pos-host: ") and done.stderr.count("\n") == 1, done.stderr
    assert ";" in done.stderr, "the line says what to do after the ';'"
    for word in words:
        assert word in done.stderr, (word, done.stderr)


@pytest.fixture
def home() -> Path:
    return Path(os.environ[HOME_VARIABLE])


@pytest.fixture
def restore_modes(tmp_path: Path) -> Iterator[list[Path]]:
    """Folders a test makes read-only get their mode back, so tmp_path can be removed."""
    changed: list[Path] = []
    yield changed
    for path in changed:
        path.chmod(0o700)


# --- 13: pos-host and a bad database path ------------------------------------------------


def _empty(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    return ["--db", ""], 2, ("empty", "--db")


def _a_folder(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    (tmp / "data").mkdir()
    return ["--db", str(tmp / "data")], 1, ("is a folder", "give the path of a database file")


def _under_a_file(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    (tmp / "somefile").write_text("not a folder\n")
    return ["--db", str(tmp / "somefile" / "host.db")], 1, ("is a file, not a folder",)


def _deeper_under_a_file(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    (tmp / "somefile").write_text("not a folder\n")
    return ["--db", str(tmp / "somefile" / "more" / "host.db")], 1, ("not a folder",)


def _read_only_folder(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    folder = tmp / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    ro.append(folder)
    return ["--db", str(folder / "host.db")], 1, ("permission denied",)


def _read_only_folder_below(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    folder = tmp / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    ro.append(folder)
    return ["--db", str(folder / "new" / "host.db")], 1, ("permission denied",)


def _read_only_folder_of_a_db(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    folder = tmp / "ro"
    folder.mkdir()
    SqliteHost(folder / "host.db", seed=SEED).close()
    folder.chmod(0o500)  # SQLite cannot make the -wal and -shm files next to it
    ro.append(folder)
    return ["--db", str(folder / "host.db")], 1, ("cannot be opened for writing", "folder")


def _name_too_long(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    return ["--db", str(tmp / ("x" * 300 + ".db"))], 1, ("too long",)


def _folder_name_too_long(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    # "new" could be made, the next one not: "new" must not stay behind
    return ["--db", str(tmp / "new" / ("d" * 300) / "host.db")], 1, ("too long",)


def _path_too_long(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    deep = tmp.joinpath(*["d" * 200] * 25)  # 5000 characters: beyond PATH_MAX
    return ["--db", str(deep / "host.db")], 1, ("too long",)


def _not_sqlite(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    (tmp / "host.db").write_text("holders: 张伟 500.00\n" * 300, "utf-8")
    (tmp / "host.db").chmod(0o600)  # a wider mode would be made 0600, a change
    return ["--db", str(tmp / "host.db")], 1, ("not a usable host database", "move it away")


def _empty_sqlite_header(tmp: Path, ro: list[Path]) -> tuple[list[str], int, tuple[str, ...]]:
    (tmp / "host.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000)
    (tmp / "host.db").chmod(0o600)
    return ["--db", str(tmp / "host.db")], 1, ("host database",)


BAD_PATHS: dict[str, Callable[[Path, list[Path]], tuple[list[str], int, tuple[str, ...]]]] = {
    "empty": _empty,
    "a-folder": _a_folder,
    "under-a-file": _under_a_file,
    "deeper-under-a-file": _deeper_under_a_file,
    "read-only-folder": _read_only_folder,
    "read-only-folder-below": _read_only_folder_below,
    "read-only-folder-of-a-db": _read_only_folder_of_a_db,
    "name-too-long": _name_too_long,
    "folder-name-too-long": _folder_name_too_long,
    "path-too-long": _path_too_long,
    "not-sqlite": _not_sqlite,
    "broken-sqlite": _empty_sqlite_header,
}


@pytest.mark.parametrize("case", list(BAD_PATHS))
def test_pos_host_bad_db_path_is_one_line_and_changes_nothing(
    tmp_path: Path, home: Path, restore_modes: list[Path], case: str
) -> None:
    args, code, words = BAD_PATHS[case](tmp_path, restore_modes)
    prefix = unprivileged() if restore_modes else []
    before = snapshot(tmp_path, home)
    for command in ("balance", "report-loss"):
        done = pos_host(*args, command, "--ssn", ZHANG, prefix=prefix)
        assert_one_line(done, code, *words)
        assert ZHANG not in done.stderr
        assert snapshot(tmp_path, home) == before


def test_pos_host_user_data_folder_that_is_a_file(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("a file\n")
    before = snapshot(tmp_path)
    done = pos_host("balance", "--ssn", ZHANG, home=not_a_folder)
    assert_one_line(done, 1, "not a folder")
    assert snapshot(tmp_path) == before


# --- 13: rows edited by hand ----------------------------------------------------------------

# The host's schema without its constraints: a database made or edited by hand.
LOOSE_SCHEMA = "CREATE TABLE holders (ssn, name, phone, scheme, balance_fen, lost);"


def loose_db(path: Path) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=WAL")  # as the host makes it: opening changes nothing
        con.executescript(LOOSE_SCHEMA)
        doc = json.loads(SEED.read_text("utf-8"))
        con.executemany(
            "INSERT INTO holders VALUES (?, ?, ?, ?, ?, 0)",
            [
                (h["ssn"], h["name"], h["phone"], h["scheme"], h["balance_fen"])
                for h in doc["holders"]
            ],
        )
        con.commit()
    finally:
        con.close()
    path.chmod(0o600)  # as the host keeps it: a wider mode would be made 0600, a change


def edit(path: Path, sql: str, *params: object, unchecked: bool = False) -> None:
    con = sqlite3.connect(path)
    try:
        if unchecked:  # what a person with the sqlite3 shell can do
            con.execute("PRAGMA ignore_check_constraints = ON")
        assert con.execute(sql, params).rowcount == 1
        con.commit()
    finally:
        con.close()


def rowid_of(path: Path, table: str, column: str, value: str) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute(
            f"SELECT rowid FROM {table} WHERE {column} = ?",  # noqa: S608
            (value,),
        ).fetchone()[0]
    finally:
        con.close()


HOLDER_ROWS = {
    # case: (SQL on ZHANG's row, words the error has)
    "balance-is-text": ("UPDATE holders SET balance_fen = 'lots' WHERE ssn = ?", "balance"),
    "balance-is-null": ("UPDATE holders SET balance_fen = NULL WHERE ssn = ?", "balance"),
    "balance-has-a-fraction": ("UPDATE holders SET balance_fen = 12.5 WHERE ssn = ?", "balance"),
    "balance-below-zero": ("UPDATE holders SET balance_fen = -1 WHERE ssn = ?", "balance"),
    "name-is-null": ("UPDATE holders SET name = NULL WHERE ssn = ?", "name"),
    "phone-is-a-number": ("UPDATE holders SET phone = 13812345678 WHERE ssn = ?", "phone"),
    "scheme-is-null": ("UPDATE holders SET scheme = NULL WHERE ssn = ?", "scheme"),
    "lost-is-7": ("UPDATE holders SET lost = 7 WHERE ssn = ?", "lost flag"),
    "lost-is-null": ("UPDATE holders SET lost = NULL WHERE ssn = ?", "lost flag"),
    "lost-is-text": ("UPDATE holders SET lost = 'yes' WHERE ssn = ?", "lost flag"),
}


@pytest.mark.parametrize("case", list(HOLDER_ROWS))
def test_a_holder_row_that_does_not_parse_is_one_line_naming_it(
    tmp_path: Path, home: Path, case: str
) -> None:
    db = tmp_path / "host.db"
    loose_db(db)
    sql, word = HOLDER_ROWS[case]
    edit(db, sql, ZHANG)
    rowid = rowid_of(db, "holders", "ssn", ZHANG)
    before = snapshot(tmp_path, home)
    for command in COMMANDS:
        done = pos_host(command, "--ssn", ZHANG, "--db", str(db))
        assert_one_line(
            done,
            1,
            str(db),
            f"holders row {rowid}",
            ZHANG_MASKED,
            word,
            "correct or delete that row",
        )
        assert ZHANG not in done.stderr and "张伟" not in done.stderr
        assert snapshot(tmp_path, home) == before, command
    assert pos_host("balance", "--ssn", LI, "--db", str(db)).returncode == 0  # others work


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("UPDATE holders SET balance_fen = 'lots' WHERE ssn = ?", "balance"),  # passes >= 0
        ("UPDATE holders SET lost = 7 WHERE ssn = ?", "lost flag"),
    ],
)
def test_the_hosts_own_schema_edited_by_hand(
    tmp_path: Path, home: Path, sql: str, word: str
) -> None:
    db = tmp_path / "host.sqlite3"
    SqliteHost(db, seed=SEED).close()
    edit(db, sql, ZHANG, unchecked=True)
    before = snapshot(tmp_path, home)
    for command in COMMANDS:
        done = pos_host(command, "--ssn", ZHANG, "--db", str(db))
        assert_one_line(done, 1, "holders row", ZHANG_MASKED, word)
    assert snapshot(tmp_path, home) == before


def test_a_settlement_against_a_row_that_does_not_parse_moves_nothing(tmp_path: Path) -> None:
    """The engine refuses a 2102 for a holder whose row does not parse (host_data), and
    changes no balance and records no settlement; the others still pay."""
    db = tmp_path / "host.db"
    loose_db(db)
    edit(db, "UPDATE holders SET balance_fen = 'lots' WHERE ssn = ?", ZHANG)
    host = SqliteHost(db)
    try:
        pos = counter(host)
        before = rows(db)
        answer = pay(pos, ZHANG, "1.00")
        assert (answer["infcode"], answer["err_type"]) == (-1, "host_data")
        assert ZHANG not in answer["err_msg"] and ZHANG_MASKED in answer["err_msg"]
        assert rows(db) == before
        assert pay(pos, LI, "1.00")["infcode"] == 0
    finally:
        host.close()


# --- 17: private files --------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_host_database_and_its_journal_are_0600_in_0700_folders(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "new" / "deeper" / "host.sqlite3"
    host = SqliteHost(db, seed=SEED)
    try:
        assert pay(counter(host), ZHANG, "1.00")["infcode"] == 0
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists()  # while it is open
        assert (mode(db), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    finally:
        host.close()
    assert mode(tmp_path / "new") == 0o700
    assert mode(tmp_path / "new" / "deeper") == 0o700
    assert mode(db) == 0o600


def test_a_folder_that_already_existed_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    SqliteHost(shared / "host.sqlite3", seed=SEED).close()
    assert mode(shared) == 0o755
    assert mode(shared / "host.sqlite3") == 0o600


def test_the_default_user_data_folder_is_made_0700(tmp_path: Path) -> None:
    home = tmp_path / "not-yet" / "shebao-pos"
    done = pos_host("balance", "--ssn", ZHANG, home=home)
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "not-yet") == 0o700
    assert mode(home) == 0o700
    assert mode(home / "host.sqlite3") == 0o600
    assert sorted(p.name for p in home.iterdir()) == ["host.sqlite3"]  # -wal, -shm gone


def test_outlet_log_is_0600_in_0700_folders(tmp_path: Path, umask: int) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    existing.chmod(0o755)
    log = existing / "audit" / "2025" / "outlet.log"
    card = new_card(tmp_path, "employee-enabled")
    outcome = run_outlet(card, log, Operation.CANCEL_PIN, "310101197911020480")
    assert not isinstance(outcome, BaseException), outcome
    assert mode(log) == 0o600
    assert mode(existing / "audit") == mode(existing / "audit" / "2025") == 0o700
    assert mode(existing) == 0o755


# --- 16: an outlet operation that cannot be logged is not done --------------------------


def new_card(tmp_path: Path, profile: str) -> Path:
    path = tmp_path / f"{profile}.json"
    profiles.new_card(profile, path)
    return path


class FullLog(OutletLog):
    """An outlet log whose disk is full once `full` is set: every line fails with ENOSPC,
    as os.write does then. (/dev/full cannot stand in: a log that is a device, or a
    symlink, is refused before anything is written.)"""

    def __init__(self, path: Path, *, full: bool = False) -> None:
        super().__init__(path)
        self.full = full

    def _append(self, line: bytes) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super()._append(line)


class DiskFillsUp(VirtualReader):
    """Just before the MAC-protected command reaches the card, the outlet log's disk is
    full."""

    def __init__(self, card_path: Path, log: FullLog) -> None:
        self.log = log
        self.sent: list[bytes] = []
        super().__init__(card_path)

    def _exchange(self, apdu: bytes) -> bytes:
        if apdu[:1] == b"\x84":  # CLA 84: the protected command (GET CHALLENGE is 00 84)
            self.log.full = True
        self.sent.append(bytes(apdu))
        return super()._exchange(apdu)


def run_outlet(
    card: Path,
    log: Path | OutletLog,
    operation: Operation,
    ssn: str,
    new_pin: str | None = None,
    reader: Callable[[Path], VirtualReader] = VirtualReader,
) -> object:
    r = reader(card)
    try:
        desk = Outlet(
            r,
            fixture_master_key(),
            operator=OPERATOR,
            log=log if isinstance(log, OutletLog) else OutletLog(log),
        )
        try:
            return desk.run(operation, ssn, new_pin)
        except Exception as e:  # the test inspects it
            return e
    finally:
        r.close()


def lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text("utf-8").splitlines()]


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a tmpfs of its own, filled up; skips where mounting is not allowed."""
    point = tmp_path / "full"
    point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        (point / "outlet.log").touch(0o600)  # there before the disk filled up
        with suppress(OSError), (point / "filler").open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=False)


def test_a_full_disk_before_the_card_command_sends_nothing(tmp_path: Path) -> None:
    card = new_card(tmp_path, "locked")
    before = card.read_bytes()
    log = FullLog(tmp_path / "outlet.log", full=True)
    trace: list[str] = []

    def traced(path: Path) -> VirtualReader:
        return VirtualReader(path, trace=trace.append)

    outcome = run_outlet(card, log, Operation.RESET_PIN, LOCKED_SSN, NEW_PIN, traced)
    assert isinstance(outcome, OutletError), repr(outcome)
    message = str(outcome)
    assert "outlet log" in message and "nothing was sent to the card" in message
    assert "No space left on device" in message
    assert "\n" not in message and NEW_PIN not in message
    assert card.read_bytes() == before  # still locked, PIN unchanged, PUK's tries too
    assert trace  # the card was read, and checked (INTERNAL AUTHENTICATE changes nothing)
    assert any(line.startswith("> 00 88 00 00 10 ") for line in trace)
    assert not any(line.startswith(("> 84 ", "> 00 84 ", "> 00 82 ")) for line in trace)


def test_a_full_disk_log_through_the_cli_is_one_line_and_the_card_unchanged(
    tmp_path: Path, full_disk: Path
) -> None:
    card = new_card(tmp_path, "locked")
    before = card.read_bytes()
    log = full_disk / "outlet.log"
    env = dict(os.environ, PYTHONUTF8="1", PYTHONIOENCODING="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cardio.cli",
            "outlet",
            "reset-pin",
            "--card",
            str(card),
            "--id",
            LOCKED_SSN,
            "--test-key",
            "--operator",
            OPERATOR,
            "--log",
            str(log),
        ],
        input=f"{NEW_PIN}\n{NEW_PIN}\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "nothing was sent to the card" in done.stderr
    assert "No space left on device" in done.stderr
    assert card.read_bytes() == before


def test_a_disk_full_after_the_card_command_leaves_the_intent_line(tmp_path: Path) -> None:
    card = new_card(tmp_path, "locked")
    real = tmp_path / "outlet.log"
    log = FullLog(real)
    outcome = run_outlet(
        card, log, Operation.RESET_PIN, LOCKED_SSN, NEW_PIN, lambda path: DiskFillsUp(path, log)
    )
    assert isinstance(outcome, OutletError), repr(outcome)
    message = str(outcome)
    assert "started on the card" in message and '"started" line' in message
    assert "9000" in message  # what to write down by hand
    assert "No space left on device" in message
    assert "\n" not in message and NEW_PIN not in message
    state = store.read(card)  # the card did change: the intent line says so
    assert state.pin_state is PinState.ENABLED and state.pin.matches(NEW_PIN)
    (intent,) = lines(real)
    assert intent["result"] == "started"
    assert intent["operation"] == "reset-pin" and intent["operator"] == OPERATOR
    assert intent["card_number"] == state.card.card_number
    assert str(intent["op"]) in message
    assert NEW_PIN not in real.read_text("utf-8")


def test_the_intent_line_is_written_before_the_command(tmp_path: Path) -> None:
    """What the log holds at the moment the first GET CHALLENGE, the PUK's EXTERNAL
    AUTHENTICATE (the card writes its try counter) and the protected command reach the
    card: the intent line, and only it. The card's check (INTERNAL AUTHENTICATE) comes
    before the intent: it changes nothing, and a card that fails it is only refused."""
    card = new_card(tmp_path, "locked")
    log = tmp_path / "outlet.log"
    seen: list[tuple[bytes, list[dict[str, object]]]] = []

    class Watching(VirtualReader):
        def _exchange(self, apdu: bytes) -> bytes:
            if apdu[:1] == b"\x84" or apdu[:2] in (b"\x00\x84", b"\x00\x82", b"\x00\x88"):
                logged = lines(log) if log.exists() and log.stat().st_size else []
                seen.append((bytes(apdu[:4]), logged))
            return super()._exchange(apdu)

    outcome = run_outlet(card, log, Operation.RESET_PIN, LOCKED_SSN, NEW_PIN, Watching)
    assert not isinstance(outcome, BaseException), repr(outcome)
    headers = ("00880000", "00840000", "00820006", "00840000", "84240001")
    assert [header for header, _ in seen] == [bytes.fromhex(h) for h in headers]
    assert seen[0][1] == []  # the card's check: nothing logged yet
    intent = seen[1][1][0]
    assert all(logged == [intent] for _, logged in seen[1:])
    assert intent["result"] == "started" and intent["operation"] == "reset-pin"
    assert intent["holder_id"] == "3101**********0397"
    intent_again, result = lines(log)
    assert intent_again == intent
    assert str(result["result"]).startswith("9000") and result["op"] == intent["op"]
    assert NEW_PIN not in log.read_text("utf-8")


def test_a_refusal_before_the_card_command_has_no_intent_line(tmp_path: Path) -> None:
    card = new_card(tmp_path, "locked")
    before = card.read_bytes()
    log = tmp_path / "outlet.log"
    outcome = run_outlet(card, log, Operation.RESET_PIN, LOCKED_SSN, "111111")  # S15
    assert isinstance(outcome, OutletError)
    (only,) = lines(log)
    assert str(only["result"]).startswith("refused")
    assert card.read_bytes() == before
    assert "111111" not in log.read_text("utf-8")


def test_a_counterfeit_card_refused_when_the_log_is_full_says_nothing_was_sent(
    tmp_path: Path,
) -> None:
    """The card fails the check and the refusal cannot be logged: the log's error (nothing
    was sent to the card) and the card file as it was, its PUK's tries too."""
    card = new_card(tmp_path, "counterfeit")
    before = card.read_bytes()
    log = FullLog(tmp_path / "outlet.log", full=True)
    trace: list[str] = []

    def traced(path: Path) -> VirtualReader:
        return VirtualReader(path, trace=trace.append)

    outcome = run_outlet(card, log, Operation.CANCEL_PIN, "310109198306141933", reader=traced)
    assert isinstance(outcome, OutletError), repr(outcome)
    assert "nothing was sent to the card" in str(outcome)
    assert "No space left on device" in str(outcome)
    assert card.read_bytes() == before
    assert not any(line.startswith(("> 84 ", "> 00 84 ", "> 00 82 ")) for line in trace)


def test_a_torn_last_line_does_not_swallow_the_next(tmp_path: Path) -> None:
    """A full disk may cut a line short; the next line still starts on its own line."""
    card = new_card(tmp_path, "employee-enabled")
    log = tmp_path / "outlet.log"
    log.write_bytes(b'{"time": "2025-03-01T09:00:00+08:00", "operator": "x", "res')
    outcome = run_outlet(card, log, Operation.CANCEL_PIN, "310101197911020480")
    assert not isinstance(outcome, BaseException), repr(outcome)
    torn, *rest = log.read_text("utf-8").splitlines()
    assert torn.endswith('"res')
    assert [json.loads(line)["result"].split()[0] for line in rest] == ["started", "9000"]


def test_outlet_log_errors_are_outlet_errors(tmp_path: Path) -> None:
    """Front ends report an OutletError as one line: the log's own errors are ones too."""
    log = OutletLog(tmp_path / "somefile" / "outlet.log")
    (tmp_path / "somefile").write_text("a file\n")
    with pytest.raises(OutletError, match="cannot be written"):
        log.check_writable()
    with pytest.raises(OutletError, match="nothing was sent"):
        log.record(OPERATOR, Operation.ACTIVATE, None, "refused: test")


# --- 18: the desk's methods check their input ---------------------------------------------


def rows(db: Path) -> tuple[list[tuple], list[tuple]]:
    """The holders and the engine's settlements, as they are on disk."""
    con = sqlite3.connect(db)
    try:
        return (
            con.execute("SELECT rowid, * FROM holders ORDER BY rowid").fetchall(),
            con.execute("SELECT rowid, * FROM settlements ORDER BY rowid").fetchall(),
        )
    finally:
        con.close()


@pytest.fixture
def host_db(tmp_path: Path) -> Iterator[tuple[SqliteHost, Path]]:
    db = tmp_path / "host.sqlite3"
    host = SqliteHost(db, seed=SEED)
    try:
        assert pay(counter(host), ZHANG, "2.50")["infcode"] == 0
        yield host, db
    finally:
        host.close()


BAD_SSNS = [
    (None, "is missing"),
    ("", "is empty"),
    (" ", "is empty"),
    (310104198503122174, "must be text"),
    (b"310104198503122174", "must be text"),
    (["310104198503122174"], "must be text"),
    ("3101\udcff", "has characters that are not text"),
]


@pytest.mark.parametrize("method", ["holder", "report_loss", "cancel_loss"])
@pytest.mark.parametrize(("ssn", "words"), BAD_SSNS, ids=[repr(s)[:20] for s, _ in BAD_SSNS])
def test_ssn_is_checked_and_nothing_written(host_db, method: str, ssn: object, words: str) -> None:
    host, db = host_db
    before = rows(db)
    with pytest.raises(HostError, match=f"social security number {words}"):
        getattr(host, method)(ssn)
    assert rows(db) == before
