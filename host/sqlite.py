"""The embedded settlement host: one SQLite database file (stdlib sqlite3).

A debit is one SQL transaction (BEGIN IMMEDIATE ... COMMIT), idempotent by its
transaction id: a retry after a crash or a timeout finds the first answer and never
debits twice. WAL with synchronous=FULL: a committed payment survives a crash.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cardio.identity import mask_id
from host.api import Debit, DebitStatus, Holder, HostError, Transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS holders (
    ssn         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    phone       TEXT,
    scheme      TEXT NOT NULL,
    balance_fen INTEGER NOT NULL CHECK (balance_fen >= 0),
    lost        INTEGER NOT NULL DEFAULT 0 CHECK (lost IN (0, 1))
);
CREATE TABLE IF NOT EXISTS transactions (
    txn_id            TEXT PRIMARY KEY,
    terminal_id       TEXT NOT NULL,
    card_number       TEXT NOT NULL,
    ssn               TEXT NOT NULL,
    amount_fen        INTEGER NOT NULL CHECK (amount_fen > 0),
    time              TEXT NOT NULL,
    status            TEXT NOT NULL,
    balance_after_fen INTEGER
);
CREATE INDEX IF NOT EXISTS transactions_by_ssn ON transactions (ssn, time);
"""


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


class SqliteHost:
    def __init__(self, path: Path, *, seed: Path | None = None) -> None:
        """Open (or make) the database; a new one is seeded from `seed` (holders JSON)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._guard():
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            empty = self._db.execute("SELECT NOT EXISTS (SELECT 1 FROM holders)").fetchone()[0]
        # Seeded while it has no holders: a first start killed before seeding is mended.
        if empty and seed is not None:
            self.seed(seed)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """A damaged file is a HostError with what to do, wherever it shows up."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as e:
            raise HostError(f"{self.path}: not a usable host database ({e}); move it away "
                            "and a new one will be made") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # also when COMMIT itself failed
                    self._db.execute("ROLLBACK")
                raise

    def seed(self, path: Path) -> int:
        """Holders from a JSON file ({"holders": [{ssn, name, phone, scheme, balance_fen}]})."""
        doc = json.loads(Path(path).read_text("utf-8"))
        rows = [(h["ssn"], h["name"], h.get("phone"), h["scheme"], int(h["balance_fen"]))
                for h in doc["holders"]]
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO holders (ssn, name, phone, scheme, balance_fen) "
                "VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    # --- reads ----------------------------------------------------------------------

    def holder(self, ssn: str) -> Holder | None:
        with self._guard():
            row = self._db.execute(
                "SELECT ssn, name, phone, scheme, balance_fen, lost FROM holders WHERE ssn = ?",
                (ssn.upper(),)).fetchone()
        if row is None:
            return None
        return Holder(row[0], row[1], row[2], row[3], row[4], bool(row[5]))

    def history(self, ssn: str) -> list[Transaction]:
        with self._guard():
            rows = self._db.execute(
                "SELECT txn_id, terminal_id, card_number, ssn, amount_fen, time, status, "
                "balance_after_fen FROM transactions WHERE ssn = ? ORDER BY time, rowid",
                (ssn.upper(),)).fetchall()
        return [Transaction(r[0], r[1], r[2], r[3], r[4], r[5], DebitStatus(r[6]), r[7])
                for r in rows]

    def total_fen(self) -> tuple[int, int]:
        """(sum of balances, sum of debited amounts): their sum never changes."""
        balances = self._db.execute("SELECT COALESCE(SUM(balance_fen), 0) FROM holders")
        debited = self._db.execute(
            "SELECT COALESCE(SUM(amount_fen), 0) FROM transactions WHERE status = 'DEBITED'")
        return balances.fetchone()[0], debited.fetchone()[0]

    # --- writes ---------------------------------------------------------------------

    def debit(self, txn_id: str, terminal_id: str, card_number: str, ssn: str,
              amount_fen: int) -> Debit:
        if type(amount_fen) is not int or amount_fen <= 0:
            raise HostError("an amount is a whole number of fen above 0; enter it again")
        ssn = ssn.upper()
        with self._transaction() as db:
            earlier = db.execute(
                "SELECT status, amount_fen, balance_after_fen, time, ssn FROM transactions "
                "WHERE txn_id = ?", (txn_id,)).fetchone()
            if earlier is not None:
                if (earlier[1], earlier[4]) != (amount_fen, ssn):
                    raise HostError(f"transaction {txn_id} was already used for another payment; "
                                    "start a new payment")
                return Debit(txn_id, DebitStatus(earlier[0]), earlier[1], earlier[2],
                             earlier[3], replayed=True)
            row = db.execute("SELECT balance_fen, lost FROM holders WHERE ssn = ?",
                             (ssn,)).fetchone()
            if row is None:
                status, after = DebitStatus.UNKNOWN_HOLDER, None
            elif row[1]:
                status, after = DebitStatus.LOST, row[0]
            elif row[0] < amount_fen:
                status, after = DebitStatus.INSUFFICIENT, row[0]
            else:
                status, after = DebitStatus.DEBITED, row[0] - amount_fen
                db.execute("UPDATE holders SET balance_fen = ? WHERE ssn = ?", (after, ssn))
            stamp = now()
            db.execute(
                "INSERT INTO transactions (txn_id, terminal_id, card_number, ssn, amount_fen, "
                "time, status, balance_after_fen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (txn_id, terminal_id, card_number, ssn, amount_fen, stamp, status.value, after))
        return Debit(txn_id, status, amount_fen, after, stamp)

    def _set_lost(self, ssn: str, lost: bool) -> Holder:
        with self._transaction() as db:
            changed = db.execute("UPDATE holders SET lost = ? WHERE ssn = ?",
                                 (int(lost), ssn.upper())).rowcount
        if not changed:
            raise HostError(f"no holder with social security number {mask_id(ssn.upper())}; "
                            "check the number")
        holder = self.holder(ssn)
        if holder is None:  # pragma: no cover - just updated
            raise HostError("the holder vanished; try again")
        return holder

    def report_loss(self, ssn: str) -> Holder:
        """S18: a verbal loss report needs the ID or social security number, no PIN."""
        return self._set_lost(ssn, True)

    def cancel_loss(self, ssn: str) -> Holder:
        return self._set_lost(ssn, False)
