"""The embedded settlement host: one SQLite database file (stdlib sqlite3).

Each unit of work of the platform engine (host/platform.py) is one SQL transaction
(BEGIN IMMEDIATE ... COMMIT). WAL with synchronous=FULL: a committed settlement survives
a crash. A `transactions` table left by the account debit of older versions is never
read, changed or dropped.

The file holds personal data: it must be a regular file, and it and its -wal and -shm
are made 0600 on every open (an existing wider file too; one we may not change is
refused), in folders made 0700. Every holder row read is checked, so a hand-edited row
is a HostError naming that row, never a traceback.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType

from cardio.identity import mask_id
from cardio.resources import file_kind, private_folders
from host.api import Holder, HostError, checked_text
from host.store import PLATFORM_SCHEMA, Conflict, Row, holder_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS holders (
    ssn         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    phone       TEXT,
    scheme      TEXT NOT NULL,
    balance_fen INTEGER NOT NULL CHECK (balance_fen >= 0),
    lost        INTEGER NOT NULL DEFAULT 0 CHECK (lost IN (0, 1))
);
"""

FILE_MODE = 0o600
_COMPANIONS = ("-wal", "-shm", "-journal")  # SQLite's files beside the database

HOLDER_BY_SSN = (
    "SELECT rowid, ssn, name, phone, scheme, balance_fen, lost FROM holders WHERE ssn = ?"
)

# SQLite's primary result codes (the low byte of sqlite_errorcode)
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 13, 14


def default_db() -> Path:
    """The embedded host's database: the user data folder (what `make run` uses)."""
    from cardio.resources import user_dir

    return user_dir() / "host.sqlite3"


def seed_file() -> Path:
    """The test holders a new database is seeded with."""
    from cardio.resources import data_dir

    return data_dir("holders") / "holders.json"


def _os_reason(e: OSError) -> str:
    """What went wrong with a path, and what to do, for a person."""
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return "a part of that path is a file, not a folder; give a path inside a folder"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; give a path you may write, in a folder you may write"
    if e.errno == errno.EROFS:
        return "the disk is read-only; give a path on a writable disk"
    if e.errno == errno.ENAMETOOLONG:
        return "the name is too long; give a shorter path"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full; free some space and try again"
    if e.errno == errno.ENOENT:
        return "a part of that path does not exist; check the path"
    return f"{e.strerror or e}; check the path"


class SqliteHost:
    def __init__(self, path: Path, *, seed: Path | None = None) -> None:
        """Open (or make) the database; a new one is seeded from `seed` (holders JSON).

        If it cannot be opened, nothing is left behind: no new folder, no new file.
        """
        self.path = Path(path)
        self.where = str(self.path)
        self._db: sqlite3.Connection | None = None
        # One connection for every thread (pos-host serve runs requests in a pool):
        # one unit of work at a time, as SQLite writes anyway.
        self._lock = threading.RLock()
        made_folders: list[Path] = []
        made_file = False
        try:
            made_folders, made_file = self._prepare()
            with self._guard():
                self._db = sqlite3.connect(
                    self.path, isolation_level=None, timeout=10, check_same_thread=False
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(SCHEMA)
                empty = self._db.execute("SELECT NOT EXISTS (SELECT 1 FROM holders)").fetchone()[0]
            # Seeded while it has no holders: a first start killed before seeding is mended.
            if empty and seed is not None:
                self.seed(seed)
            self._companions_private()  # made by SQLite just now: with the database's mode
        except BaseException:
            self._undo(made_folders, made_file)
            raise

    def _prepare(self) -> tuple[list[Path], bool]:
        """The folders and the file, made private; each problem a HostError."""
        if os.path.isdir(self.path):
            raise HostError(
                f"{self.path}: not a usable host database (it is a folder); "
                f"give the path of a database file, such as "
                f"{self.path / 'host.sqlite3'}"
            )
        self._refuse_special(self.path)  # before SQLite meets a fifo: "disk I/O error"
        try:
            made_folders = private_folders(self.path.parent)
        except OSError as e:
            raise self._path_error(e) from None
        except ValueError:  # a NUL character in the path
            raise HostError(f"{self.path!r} is not a usable path; give another") from None
        made_file = False
        # O_NONBLOCK: a fifo put there meanwhile does not hang us; it is refused below.
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
        try:
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
                made_file = True
                os.close(fd)  # new: nobody holds a lock on it yet
            except FileExistsError:
                # Never opened and closed here: on Linux, closing any descriptor of a file
                # drops every lock this process holds on it, SQLite's too (another host in
                # this process, pos-host serve beside a desk command), and a process that
                # then thinks it is alone truncates the -shm under the others' mapping.
                self._private_by_path(self.path)
                if not os.access(self.path, os.R_OK | os.W_OK):
                    raise PermissionError(
                        errno.EACCES, "permission denied", str(self.path)
                    ) from None
            self._companions_private()  # left by an earlier run, perhaps with a wider mode
        except OSError as e:
            self._undo(made_folders, made_file)
            raise self._path_error(e) from None
        except ValueError:
            self._undo(made_folders, made_file)
            raise HostError(f"{self.path!r} is not a usable path; give another") from None
        except HostError:
            self._undo(made_folders, made_file)
            raise
        return made_folders, made_file

    @staticmethod
    def _not_regular(path: Path, mode: int) -> HostError:
        return HostError(
            f"{path}: not a usable host database (it is not a regular file but "
            f"{file_kind(mode)}); give the path of a database file"
        )

    def _refuse_special(self, path: Path) -> None:
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            return  # not there yet, or a bad path: told when it is opened
        if not stat.S_ISREG(mode):
            raise self._not_regular(path, mode)

    def _private_if_there(self, path: Path) -> None:
        try:
            self._private_by_path(path)
        except FileNotFoundError:
            return

    def _private_by_path(self, path: Path) -> None:
        """Exactly 0600 and a regular file: the database holds every holder's name, ID and
        phone, so a file made 0644 by hand or by an older version is made private before
        anything is written to it; one we may not change is refused. By the path (stat and
        chmod), never by a descriptor: see _prepare."""
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise self._not_regular(path, info.st_mode)
        if stat.S_IMODE(info.st_mode) != FILE_MODE:
            try:
                os.chmod(path, FILE_MODE)
            except PermissionError:
                raise HostError(
                    f"{path} can be read by others and is not yours to make "
                    f"private; ask its owner to chmod 600 it, or give another "
                    "--db path"
                ) from None

    def _companions_private(self) -> None:
        """SQLite's -wal, -shm and -journal, 0600 like the database: they hold its rows."""
        try:
            for suffix in _COMPANIONS:
                self._private_if_there(Path(f"{self.path}{suffix}"))
        except OSError as e:
            raise self._path_error(e) from None

    def _path_error(self, e: OSError) -> HostError:
        return HostError(f"cannot use {self.path} as the host database: {_os_reason(e)}")

    def _undo(self, made_folders: list[Path], made_file: bool) -> None:
        """Remove what a failed open made, so a failure changes nothing on disk."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if made_file:
            for suffix in ("", *_COMPANIONS):
                with suppress(OSError):
                    os.unlink(f"{self.path}{suffix}")
        for folder in reversed(made_folders):
            with suppress(OSError):
                folder.rmdir()

    def __enter__(self) -> SqliteHost:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _sqlite_error(self, e: sqlite3.Error) -> HostError:
        code = getattr(e, "sqlite_errorcode", 0) & 0xFF
        if code == _SQLITE_FULL:
            return HostError(
                f"{self.path}: the host database cannot grow, the disk is full "
                f"({e}); free some space and try again"
            )
        if code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN):
            return HostError(
                f"{self.path}: the host database cannot be opened for writing "
                f"({e}); check that you may write it and its folder, or give "
                "another path"
            )
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return HostError(
                f"{self.path}: the host database is busy in another program "
                f"({e}); try again in a moment"
            )
        if code == _SQLITE_IOERR:
            return HostError(
                f"{self.path}: the host database could not be read or written "
                f"({e}); check the disk, then try again"
            )
        if isinstance(e, sqlite3.IntegrityError):
            return HostError(
                f"{self.path}: the host database refused the change ({e}) and "
                "nothing was changed; check its rows, then try again"
            )
        return HostError(
            f"{self.path}: not a usable host database ({e}); move it away "
            "and a new one will be made"
        )

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """A damaged or unreachable file is a HostError with what to do, wherever it shows."""
        try:
            with self._lock:
                yield
        except sqlite3.Error as e:
            raise self._sqlite_error(e) from None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise HostError("the host database is closed; open it again")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._conn
        with self._guard():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # also when COMMIT itself failed
                    db.execute("ROLLBACK")
                raise

    def prepare(self) -> None:
        """The platform's tables (the same for PostgreSQL, host/store.py), made when the
        platform engine first opens the database: the desk's read-only commands on an
        older database still change nothing."""
        with self._transaction() as db:
            for statement in PLATFORM_SCHEMA:
                db.execute(statement)

    @contextmanager
    def atomic(self) -> Iterator[_SqliteSql]:
        """One unit of work of the platform engine (host/store.py's Store)."""
        with self._transaction() as db:
            yield _SqliteSql(db)

    def seed(self, path: Path) -> int:
        """Holders from a JSON file ({"holders": [{ssn, name, phone, scheme, balance_fen}]})."""
        rows = holder_rows(path)
        with self.atomic() as sql:
            sql.db.executemany(
                "INSERT OR IGNORE INTO holders (ssn, name, phone, scheme, balance_fen) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    # --- rows as they are read: each checked ----------------------------------------

    def _bad_row(self, table: str, rowid: object, label: str, what: str) -> HostError:
        return HostError(
            f"{self.path}: the {table} row {rowid} ({label}) {what}; correct or "
            "delete that row, or restore the host database from a backup"
        )

    def _holder_of(self, row: tuple[object, ...]) -> Holder:
        rowid, ssn, name, phone, scheme, fen, lost = row
        label = (
            f"holder {mask_id(ssn)}"
            if isinstance(ssn, str) and ssn
            else "a holder without a number"
        )

        def bad(what: str) -> HostError:
            return self._bad_row("holders", rowid, label, what)

        if not isinstance(ssn, str) or not ssn:
            raise bad("has no social security number as text")
        if not isinstance(name, str) or not name:
            raise bad("has no name as text")
        if phone is not None and not isinstance(phone, str):
            raise bad("has a phone number that is not text")
        if not isinstance(scheme, str) or not scheme:
            raise bad("has no scheme as text")
        if type(fen) is not int or fen < 0:
            raise bad("has a balance that is not a whole number of fen at or above 0")
        if type(lost) is not int or lost not in (0, 1):
            raise bad("has a lost flag that is neither 0 nor 1")
        return Holder(ssn, name, phone, scheme, fen, bool(lost))

    # --- reads ----------------------------------------------------------------------

    def holder(self, ssn: str) -> Holder | None:
        ssn = checked_text("social security number", ssn).upper()
        with self._guard():
            row = self._conn.execute(HOLDER_BY_SSN, (ssn,)).fetchone()
        return None if row is None else self._holder_of(row)

    # --- writes ---------------------------------------------------------------------

    def set_lost(self, ssn: str, lost: bool) -> tuple[Holder, bool]:
        """The holder's card reported lost (True) or back in use (False): the holder as it
        is now, and whether this changed it (False: it already was)."""
        ssn = checked_text("social security number", ssn).upper()
        with self._transaction() as db:
            row = db.execute(HOLDER_BY_SSN, (ssn,)).fetchone()
            if row is None:
                raise HostError(
                    f"no holder with social security number {mask_id(ssn)}; check the number"
                )
            holder = self._holder_of(row)  # a row that does not parse is not changed
            if holder.lost == lost:
                return holder, False
            db.execute("UPDATE holders SET lost = ? WHERE ssn = ?", (int(lost), ssn))
        return dataclasses.replace(holder, lost=lost), True

    def report_loss(self, ssn: str) -> Holder:
        """S18: a verbal loss report needs the ID or social security number, no PIN."""
        return self.set_lost(ssn, True)[0]

    def cancel_loss(self, ssn: str) -> Holder:
        return self.set_lost(ssn, False)[0]


class _SqliteSql:
    """host/store.py's Sql over one SQLite connection inside its transaction."""

    lock = ""  # BEGIN IMMEDIATE and the host's lock: one unit of work at a time

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self.db.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        row: Row | None = self.db.execute(sql, params).fetchone()
        return row

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        try:
            return self.db.execute(sql, params).rowcount
        except sqlite3.IntegrityError as e:
            if "UNIQUE" in str(e):  # the same key written first by a unit before this one
                raise Conflict(str(e)) from None
            raise
