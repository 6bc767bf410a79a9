"""The host desk's platform commands: the database a `--db` names (a SQLite path or a
PostgreSQL URL), `serve` and `reconcile`."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TextIO

from cardio.errors import Exit, UsageError
from host.api import HostError, format_fen
from host.platform import Platform
from host.store import Sql, Store


def open_store(db: str | None) -> Store:
    """`--db`: a PostgreSQL URL, a SQLite file, or (None) the embedded default file."""
    from host.sqlite import SqliteHost, default_db, seed_file

    if db is not None and not db.strip():
        raise UsageError(
            "the --db path is empty; give the host database's path or a postgresql:// URL, "
            "or leave --db out for the default one"
        )
    if db is not None and db.startswith(("postgresql://", "postgres://")):
        from host.postgres import PostgresStore

        return PostgresStore(db, seed=seed_file())
    return SqliteHost(Path(db) if db is not None else default_db(), seed=seed_file())


def open_platform(db: str | None, policy: Path | None = None) -> Platform:
    from host import policy as policies

    rules = policies.load(policy) if policy is not None else policies.DEFAULT
    return Platform(open_store(db), rules)


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from host.server import parse_faults, parse_listen, run_serve

    parse_listen(args.listen)  # what was given is checked before a database is made
    if args.faults is not None:
        parse_faults(args.faults, args.faults_seed)
    platform = open_platform(args.db, args.policy)
    try:
        return run_serve(args, platform.handle)
    finally:
        platform.store.close()


def _day(text: str) -> dt.date:
    try:
        if len(text) != len("2026-11-30"):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--date {text!r} is not a date; give one such as 2026-11-30") from None


def _daybook_folder(text: str) -> Path:
    """A terminal's day-book folder; its name is the terminal's id (daybook/<id>)."""
    folder = Path(text).resolve()
    if not folder.is_dir():
        raise UsageError(f"{text} is not a day-book folder; give a terminal's daybook/<id>")
    return folder


def cmd_reconcile(args: argparse.Namespace, out: TextIO) -> int:
    """The day's settlements per terminal as the host has them; with --daybook, each
    terminal's own record checked against them as the platform does (3201, then 3202
    when the totals differ). Exit 0 when every terminal given is balanced."""
    day = _day(args.date) if args.date is not None else dt.date.today()
    institution = args.institution.strip()
    if not institution or len(institution) > 30:
        raise UsageError("--institution needs the pharmacy's code, 1 to 30 characters")
    folders = [_daybook_folder(f) for f in args.daybook or ()]
    platform = open_platform(args.db)
    try:
        _print_host_totals(platform, day, institution, out)
        balanced = True
        for folder in folders:
            balanced &= _check_daybook(platform, day, institution, folder, out)
    finally:
        platform.store.close()
    return Exit.OK if balanced else Exit.FAILED


def _print_host_totals(platform: Platform, day: dt.date, institution: str, out: TextIO) -> None:
    with platform.store.atomic() as sql:
        rows = sql.rows(
            "SELECT sender, status, COUNT(*), SUM(medfee_fen), SUM(hifp_fen), SUM(acct_fen), "
            "SUM(cash_fen) FROM settlements WHERE day = ? AND fixmedins_code = ? "
            "GROUP BY sender, status ORDER BY sender, status",
            (day.isoformat(), institution),
        )
    print(f"{day.isoformat()}  institution {institution}", file=out)
    if not rows:
        print("no settlements", file=out)
    for sender, status, count, medfee, fund, acct, cash in rows:
        print(
            f"{sender!s:<16} {status!s:<9} {count!s:>6}  total {format_fen(_int(medfee)):>12}  "
            f"fund {format_fen(_int(fund)):>10}  account {format_fen(_int(acct)):>10}  "
            f"cash {format_fen(_int(cash)):>10}",
            file=out,
        )


def _int(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return int(str(value))  # PostgreSQL's SUM of BIGINT is a numeric


def _check_daybook(
    platform: Platform, day: dt.date, institution: str, folder: Path, out: TextIO
) -> bool:
    from host.client import InsuranceClient
    from host.daybook import DayBook
    from host.transport import EmbeddedTransport

    terminal = folder.name  # the terminal's id: pos-terminal keeps daybook/<id>/
    client = InsuranceClient(
        EmbeddedTransport(platform.handle), device=terminal, institution=institution
    )
    book = DayBook(folder)
    totals = book.totals(day)
    statement = client.totals(
        day, totals.medfee_fen, totals.fund_fen, totals.acct_fen, totals.count
    )
    word = "balanced" if statement.balanced else "NOT balanced"
    print(f"3201 {terminal}: {word} ({totals.count} settlements in its day-book)", file=out)
    if statement.balanced:
        return True
    print(f"  the host: {statement.description}", file=out)
    for row in client.details(day, book.rows(day)):
        print(f"  3202 {row.get('setl_id')}: {row.get('memo')}", file=out)
    return False


def settlements_of(store: Store, ssn: str) -> list[str]:
    """The holder's settlements through the platform, one line each (time, terminal,
    status, bill, account share, balance after, settlement id)."""
    with store.atomic() as sql:
        if not _has_settlements(sql):
            return []  # an older database the platform has not opened yet
        rows = sql.rows(
            "SELECT setl_time, sender, status, medfee_fen, acct_fen, balc_fen, setl_id "
            "FROM settlements WHERE ssn = ? ORDER BY setl_time, setl_id",
            (ssn,),
        )
    lines = []
    for time, sender, status, medfee, acct, balc, setl_id in rows:
        fen = [_row_amount(store, setl_id, v) for v in (medfee, acct, balc)]
        lines.append(
            f"{time!s}  {sender!s:<10} {str(status).upper():<14} {format_fen(fen[0]):>10}  "
            f"account {format_fen(fen[1]):>10}  balance {format_fen(fen[2]):>10}  {setl_id!s}"
        )
    return lines


def _row_amount(store: Store, setl_id: object, value: object) -> int:
    """A settlement row's amount; a row edited by hand is one line naming it."""
    if type(value) is int:
        return value
    raise HostError(
        f"{store.where}: the settlement row {str(setl_id)[:30]!r} has an amount that is not "
        "a whole number of fen; correct or delete that row, or restore the database"
    )


def _has_settlements(sql: Sql) -> bool:
    try:
        sql.one("SELECT 1 FROM settlements WHERE 1 = 0")
    except Exception:  # noqa: BLE001 - "no such table", in each database's words
        return False
    return True
