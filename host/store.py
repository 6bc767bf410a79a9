"""What the platform engine (host/platform.py) needs of a database, SQLite or PostgreSQL:
one atomic unit of work at a time, and plain SQL with `?` placeholders that both run.

A unit of work that collides with another (the same message id twice at once, a balance
changed under it, PostgreSQL's serialization failure) raises `Conflict`; the engine then
runs the whole unit again, so a collision is never an error the terminal sees.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from cardio.identity import mask_id
from host.api import MAX_FEN, HostError

Row = tuple[object, ...]

# Both databases: BIGINT for fen (PostgreSQL's INTEGER is 32 bits), TEXT for the rest.
PLATFORM_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
        sender   TEXT NOT NULL,
        msgid    TEXT NOT NULL,
        infno    TEXT NOT NULL,
        digest   TEXT NOT NULL,
        answer   TEXT NOT NULL,
        received TEXT NOT NULL,
        PRIMARY KEY (sender, msgid))""",
    """CREATE TABLE IF NOT EXISTS signins (
        sign_no TEXT PRIMARY KEY,
        sender  TEXT NOT NULL,
        opter   TEXT NOT NULL,
        day     TEXT NOT NULL,
        time    TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS settlements (
        setl_id        TEXT PRIMARY KEY,
        mdtrt_id       TEXT NOT NULL,
        psn_no         TEXT NOT NULL,
        ssn            TEXT NOT NULL,
        sender         TEXT NOT NULL,
        msgid          TEXT NOT NULL,
        fixmedins_code TEXT NOT NULL,
        insutype       TEXT NOT NULL,
        medfee_fen     BIGINT NOT NULL,
        inscp_fen      BIGINT NOT NULL,
        ownpay_fen     BIGINT NOT NULL,
        dedc_fen       BIGINT NOT NULL,
        hifp_fen       BIGINT NOT NULL,
        acct_fen       BIGINT NOT NULL,
        cash_fen       BIGINT NOT NULL,
        balc_fen       BIGINT NOT NULL,
        setl_time      TEXT NOT NULL,
        day            TEXT NOT NULL,
        status         TEXT NOT NULL,
        ended_msgid    TEXT,
        ended_sender   TEXT,
        cancel_setl_id TEXT)""",
    "CREATE INDEX IF NOT EXISTS settlements_by_day ON settlements (day, fixmedins_code)",
)


class Conflict(Exception):
    """Another unit of work got there first: run this one again from the start."""


class Sql(Protocol):
    """The unit of work's statements; placeholders are `?`."""

    # Appended to a SELECT of rows the unit will change: PostgreSQL's " FOR UPDATE" makes
    # a second counter wait its turn instead of colliding; SQLite's units never overlap.
    lock: str

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None: ...

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a write; the number of rows it changed."""
        ...


class Store(Protocol):
    where: str  # the database, as a person would name it in a message

    def prepare(self) -> None:
        """Make the platform's tables if they are not there yet."""
        ...

    def atomic(self) -> AbstractContextManager[Sql]:
        """One unit of work: all of it is committed, or none of it."""
        ...

    def close(self) -> None: ...


def one_value(sql: Sql, query: str, params: Sequence[object] = ()) -> object:
    row = sql.one(query, params)
    return None if row is None else row[0]


PSN_PREFIX = "P"


def psn_no_of(ssn: str) -> str:
    """The platform's person number for a holder. Ours: the ID number behind a prefix, so
    no table maps them (the platform's own numbers are opaque keys; clients treat them so,
    and the same answer carries the ID as certno anyway)."""
    return PSN_PREFIX + ssn.upper()


def ssn_of(psn_no: str) -> str | None:
    return psn_no[len(PSN_PREFIX) :] if psn_no.startswith(PSN_PREFIX) else None


HolderRow = tuple[str, str, str | None, str, int]


def holder_rows(path: Path) -> list[HolderRow]:
    """The holders a new database is seeded with, from a JSON file
    ({"holders": [{ssn, name, phone, scheme, balance_fen}]}), each checked."""
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
        rows = [
            (h["ssn"].upper(), h["name"], h.get("phone"), h["scheme"], int(h["balance_fen"]))
            for h in doc["holders"]
        ]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise HostError(
            f"{path}: not a usable holders file ({type(e).__name__}); give a JSON file of holders"
        ) from None
    for ssn, name, phone, scheme, fen in rows:
        if (
            not all(isinstance(v, str) and v for v in (ssn, name, scheme))
            or not (phone is None or isinstance(phone, str))
            or not 0 <= fen <= MAX_FEN
        ):
            raise HostError(
                f"{path}: the holder {mask_id(str(ssn))} is not usable; "
                "correct it in the holders file"
            )
    return rows
