"""The host's database on PostgreSQL (`--db postgresql://…`), for a chain's many counters.

The same tables and SQL as SQLite (host/store.py), through psycopg 3. Each unit of work
runs on a connection of a small pool, READ COMMITTED: balances are changed by compare-and-
set (`… WHERE balance_fen = <what was read>`), so two counters paying for one holder at once
never lose an update; the loser's unit is run again (store.Conflict), as is one that meets
the same message id committed meanwhile.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardio.errors import UsageError
from cardio.identity import mask_id
from host.api import Holder, HostError, checked_text
from host.store import PLATFORM_SCHEMA, Conflict, Row, holder_rows

if TYPE_CHECKING:
    import psycopg

HOLDERS = """CREATE TABLE IF NOT EXISTS holders (
    ssn         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    phone       TEXT,
    scheme      TEXT NOT NULL,
    balance_fen BIGINT NOT NULL CHECK (balance_fen >= 0),
    lost        INTEGER NOT NULL DEFAULT 0 CHECK (lost IN (0, 1))
)"""

POOL_SIZE = 16
_CONNECT_TIMEOUT = 10


def is_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def _shown(url: str) -> str:
    """The URL without a password, for messages."""
    head, sep, tail = url.partition("://")
    userinfo, at, rest = tail.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{head}{sep}{user}@{rest}"


class PostgresStore:
    def __init__(self, url: str, *, seed: Path | None = None) -> None:
        try:
            import psycopg  # (optional: pip install 'shebao-pos[postgres]')
        except ImportError:
            raise HostError(
                "PostgreSQL needs psycopg; install it with pip install 'psycopg[binary]'"
            ) from None
        self.url = url
        self.where = _shown(url)
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
            if "port" in params:
                int(str(params["port"]))
        except (psycopg.ProgrammingError, ValueError):
            raise UsageError(
                f"{self.where} is not a usable PostgreSQL URL; give one such as "
                "postgresql://user@127.0.0.1:5432/dbname"
            ) from None
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._all: list[psycopg.Connection[Any]] = []
        self._slots = threading.BoundedSemaphore(POOL_SIZE)
        self._lock = threading.Lock()
        self._closed = False
        with self.atomic() as sql:
            sql.run("SELECT pg_advisory_xact_lock(727272)")  # two hosts starting at once
            sql.run(HOLDERS)
            for statement in PLATFORM_SCHEMA:
                sql.run(statement)
            empty = sql.one("SELECT NOT EXISTS (SELECT 1 FROM holders)")
        if empty and empty[0] and seed is not None:
            self.seed(seed)

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        try:
            conn = psycopg.connect(self.url, connect_timeout=_CONNECT_TIMEOUT)
        except psycopg.OperationalError as e:
            lines = [x.strip() for x in str(e).splitlines() if x.strip()]
            reason = lines[0].rsplit(": ", 1)[-1].strip() if lines else type(e).__name__
            raise HostError(
                f"cannot reach the PostgreSQL database {self.where} ({reason}); "
                "check that it runs and the URL is right"
            ) from None
        except psycopg.ProgrammingError:
            raise HostError(
                f"{self.where} is not a usable PostgreSQL URL; give postgresql://user@host/db"
            ) from None
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise HostError("the host database is closed; open it again")
        self._slots.acquire()
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            if conn.closed or conn.broken:
                conn = self._connect()
            try:
                yield conn
            finally:
                if conn.broken or conn.closed:
                    with self._lock:
                        self._all = [c for c in self._all if c is not conn]
                else:
                    self._idle.put(conn)
        finally:
            self._slots.release()

    @contextmanager
    def atomic(self) -> Iterator[_PgSql]:
        import psycopg
        from psycopg import errors

        with self._connection() as conn:
            try:
                with conn.transaction():
                    yield _PgSql(conn)
            except (errors.UniqueViolation, errors.SerializationFailure, errors.DeadlockDetected):
                raise Conflict("another unit of work got there first") from None
            except psycopg.OperationalError as e:
                raise HostError(
                    f"the PostgreSQL database {self.where} failed ({type(e).__name__}); "
                    "check that it runs, then try again"
                ) from None
            except psycopg.Error as e:
                raise HostError(
                    f"the PostgreSQL database {self.where} refused a change "
                    f"({type(e).__name__}); nothing was changed"
                ) from None

    def prepare(self) -> None:
        """The tables are made when the store opens."""

    def seed(self, path: Path) -> int:
        """Holders from the same JSON file as SQLite's (host/store.py holder_rows)."""
        rows = holder_rows(path)
        with self.atomic() as sql:
            for row in rows:
                sql.run(
                    "INSERT INTO holders (ssn, name, phone, scheme, balance_fen) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    row,
                )
        return len(rows)

    # --- the desk's commands (host/cli.py), as SqliteHost has them -------------------------

    def holder(self, ssn: str) -> Holder | None:
        ssn = checked_text("social security number", ssn).upper()
        with self.atomic() as sql:
            row = sql.one(_HOLDER + "WHERE ssn = ?", (ssn,))
        return None if row is None else _holder_of(row)

    def set_lost(self, ssn: str, lost: bool) -> tuple[Holder, bool]:
        ssn = checked_text("social security number", ssn).upper()
        with self.atomic() as sql:
            row = sql.one(_HOLDER + "WHERE ssn = ? FOR UPDATE", (ssn,))
            if row is None:
                raise HostError(
                    f"no holder with social security number {mask_id(ssn)}; check the number"
                )
            holder = _holder_of(row)
            if holder.lost == lost:
                return holder, False
            sql.run("UPDATE holders SET lost = ? WHERE ssn = ?", (int(lost), ssn))
        return dataclasses.replace(holder, lost=lost), True

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_HOLDER = "SELECT ssn, name, phone, scheme, balance_fen, lost FROM holders "


def _holder_of(row: Row) -> Holder:
    ssn, name, phone, scheme, fen, lost = row
    return Holder(
        str(ssn),
        str(name),
        None if phone is None else str(phone),
        str(scheme),
        int(str(fen)),
        bool(lost),
    )


class _PgSql:
    """host/store.py's Sql over one psycopg connection inside its transaction."""

    lock = " FOR UPDATE"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    @staticmethod
    def _pg(sql: str) -> str:
        # The store's SQL has `?` placeholders and never a literal `?` or `%`.
        return sql.replace("%", "%%").replace("?", "%s")

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        with self.conn.cursor() as cur:
            cur.execute(self._pg(sql), params)
            return [tuple(r) for r in cur.fetchall()]

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        with self.conn.cursor() as cur:
            cur.execute(self._pg(sql), params)
            row = cur.fetchone()
            return None if row is None else tuple(row)

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        with self.conn.cursor() as cur:
            cur.execute(self._pg(sql), params)
            return cur.rowcount
