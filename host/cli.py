"""`pos-host`: the settlement host's desk. Loss reports and voice queries need no PIN (S18)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from cardio import identity
from cardio.errors import Exit, UsageError
from cardio.usage import OneLineParser, run_command
from host.api import Holder, HostError, format_fen
from host.client import DEFAULT_INSTITUTION
from host.postgres import PostgresStore
from host.sqlite import SqliteHost


def open_host(db: str | None) -> SqliteHost | PostgresStore:
    """The host database `--db` names: a SQLite file, or a postgresql:// URL."""
    from host.desk import open_store

    store = open_store(db)
    assert isinstance(store, (SqliteHost, PostgresStore))
    return store


def _ssn(args: argparse.Namespace) -> str:
    number = (args.ssn or args.id or "").strip().upper()
    problem = identity.id_problem(number)
    if problem:
        raise UsageError(f"the number {problem}; give the 18-character ID / social security number")
    return number


def _card_of(holder: Holder) -> str:
    return f"the card of {identity.mask_name(holder.name)} ({identity.mask_id(holder.ssn)})"


def cmd_report_loss(args: argparse.Namespace, out: TextIO) -> int:
    ssn = _ssn(args)
    with open_host(args.db) as host:
        holder, changed = host.set_lost(ssn, True)
    if changed:
        print(f"reported lost: {_card_of(holder)} is now refused at every terminal", file=out)
    else:
        print(
            f"already reported lost: {_card_of(holder)} is refused at every terminal; "
            "nothing changed",
            file=out,
        )
    return Exit.OK


def cmd_cancel_loss(args: argparse.Namespace, out: TextIO) -> int:
    """Exit 0 also when there was no loss report: the card works, as the holder wants."""
    ssn = _ssn(args)
    with open_host(args.db) as host:
        holder, changed = host.set_lost(ssn, False)
    if changed:
        print(f"loss report cancelled: {_card_of(holder)} works again", file=out)
    else:
        print(
            f"no loss report to cancel: {_card_of(holder)} was not reported lost and "
            "works; nothing changed",
            file=out,
        )
    return Exit.OK


def _holder(host: SqliteHost | PostgresStore, ssn: str) -> Holder:
    holder = host.holder(ssn)
    if holder is None:
        raise HostError(
            f"no holder with social security number {identity.mask_id(ssn)}; check the number"
        )
    return holder


def cmd_balance(args: argparse.Namespace, out: TextIO) -> int:
    ssn = _ssn(args)
    with open_host(args.db) as host:
        holder = _holder(host, ssn)
    state = "reported lost" if holder.lost else "in use"
    print(
        f"{identity.mask_name(holder.name)} ({identity.mask_id(holder.ssn)}): personal "
        f"account balance {format_fen(holder.balance_fen)} yuan; card {state}",
        file=out,
    )
    return Exit.OK


def cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    ssn = _ssn(args)
    from host.desk import settlements_of

    with open_host(args.db) as host:
        holder = _holder(host, ssn)
        settled = settlements_of(host, holder.ssn)
    if not settled:
        print("no payments yet", file=out)
    for line in settled:
        print(line, file=out)
    return Exit.OK


DB_HELP = "host database: a SQLite file or a postgresql:// URL (default: user data folder)"


def build_parser() -> argparse.ArgumentParser:
    from host import desk
    from host.server import add_serve_arguments

    parser = OneLineParser(prog="pos-host", description="The settlement host's desk.")
    parser.add_argument("--db", metavar="PATH|URL", help=DB_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="the platform's transactions over HTTP")
    add_serve_arguments(serve)
    serve.add_argument(
        "--policy", metavar="FILE", type=Path, help="the split policy (JSON; docs/host.md)"
    )
    serve.add_argument("--db", metavar="PATH|URL", default=argparse.SUPPRESS, help=DB_HELP)
    serve.set_defaults(func=desk.cmd_serve)
    reconcile = sub.add_parser("reconcile", help="a day's settlements per terminal; 3201/3202")
    reconcile.add_argument("--date", metavar="YYYY-MM-DD", help="the day (default: today)")
    reconcile.add_argument(
        "--institution",
        metavar="CODE",
        default=DEFAULT_INSTITUTION,
        help=f"the pharmacy's institution code (default {DEFAULT_INSTITUTION})",
    )
    reconcile.add_argument(
        "--daybook",
        metavar="FOLDER",
        action="append",
        help="a terminal's day-book folder (its user data folder's daybook/<id>), checked "
        "with 3201 and 3202; may be given more than once",
    )
    reconcile.add_argument("--db", metavar="PATH|URL", default=argparse.SUPPRESS, help=DB_HELP)
    reconcile.set_defaults(func=desk.cmd_reconcile)
    for name, func, text in (
        ("report-loss", cmd_report_loss, "verbal loss report (no PIN)"),
        ("cancel-loss", cmd_cancel_loss, "cancel a loss report"),
        ("balance", cmd_balance, "voice query of the balance (no PIN)"),
        ("history", cmd_history, "the holder's payments"),
    ):
        p = sub.add_parser(name, help=text)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--ssn", metavar="N", help="social security number")
        who.add_argument("--id", metavar="N", help="ID number (the same 18 characters)")
        p.add_argument("--db", metavar="PATH|URL", default=argparse.SUPPRESS, help=DB_HELP)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Every failure is one `pos-host: <what>; <what to do>` line on stderr: exit 2 for
    bad input (argparse's too), 1 for anything else; never a traceback."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    return run_command("pos-host", lambda: func(args, out), out)


if __name__ == "__main__":
    sys.exit(main())
