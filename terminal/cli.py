"""`pos-terminal`: the command line. Parses the options, builds the reader, the host and
the app (terminal/app.py), and runs it; a start-up problem is one line and an exit status
(cardio.errors.Exit: 2 for what was given, a path or a file's content; 1 for the rest).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cardio.card import store
from cardio.errors import Exit, UsageError
from cardio.psam_source import open_psam
from cardio.readers.virtual import VirtualReader
from cardio.resources import open_private_log, private_folders, read_small_file, user_dir
from cardio.usage import OneLineParser, run_command
from terminal.app import DEFAULT_TIMEOUT, Options, PosApp
from terminal.equipment import DEFAULT_CARD_TIMEOUT, OutletSetup
from terminal.rules import Settings

# Imported only when needed: the card profiles (to make the default card), the host's
# SQLite (by open_host), the outlet (--outlet), PC/SC (--reader).
if TYPE_CHECKING:
    from cardio.keysource import KeySource
    from cardio.readers.base import Reader
    from host.store import Store
    from host.transport import Transport
    from terminal.settlement import PlatformLink

DEFAULT_PROFILE = "employee-new"
NO_PSAM_ID = "POS-0001"  # a terminal without a PSAM has no terminal number of its own
DEFAULT_UPGRADE_DATE = dt.date(2020, 4, 13)  # S8: in the past, so the upgrade is in force


def default_card() -> Path:
    """The embedded default: a virtual employee-new card in the user data folder."""
    folder = user_dir() / "cards"
    private_folders(folder)
    path = folder / f"{DEFAULT_PROFILE}.json"
    if not path.exists():
        from cardio.card import profiles

        profiles.new_card(DEFAULT_PROFILE, path)
    return path


def load_phones(path: Path | None) -> dict[str, str]:
    """Holders' phone numbers by social security number (S15's phone rule)."""
    if path is None:
        from cardio.resources import data_dir

        path = data_dir("holders") / "holders.json"
        if not path.exists():
            return {}
    text = read_small_file(path, "holders file")
    try:
        doc = json.loads(text)
        holders = doc.get("holders") if isinstance(doc, dict) else None
        if not isinstance(holders, list) or not all(isinstance(h, dict) for h in holders):
            raise ValueError
        phones = {h["ssn"]: h["phone"] for h in holders if h.get("phone") is not None}
        if not all(isinstance(v, str) for pair in phones.items() for v in pair):
            raise ValueError
        return phones
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise UsageError(
            f"{path}: not a holders file (JSON with a list 'holders' of "
            "objects with text 'ssn' and 'phone'); fix it or leave --holders out"
        ) from None


def start_log(path: Path) -> None:
    """Where the terminal's own log goes (host, outlet, card file problems): Textual owns
    the screen and stderr while it runs."""
    handler = logging.StreamHandler(open_private_log(path))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def receipts_folder(text: str) -> Path:
    """--receipts: a folder we can write into, checked before the first payment."""
    if not text:
        raise UsageError("the --receipts folder is empty; give a folder name")
    path = Path(text)
    try:
        private_folders(path)
    except OSError as e:
        raise UsageError(
            f"{path} cannot be made a receipts folder ({e.strerror}); give a folder you can write"
        ) from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{path} is not a folder you can write; give another --receipts")
    return path


def terminal_id(text: str) -> str:
    """--terminal-id: printed on receipts and stored with every debit."""
    if not (0 < len(text) <= 32 and text.isascii() and all(c.isalnum() or c in "-_" for c in text)):
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a terminal id: 1 to 32 letters, digits, '-' or '_'"
        )
    return text


def seconds(text: str) -> float:
    """A number of seconds, 0 or more (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"seconds must be from 0 to 86400, not {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="pos-terminal", description="Pharmacy PIN pad.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--card", metavar="PATH", help="a card file (virtual card)")
    where.add_argument("--reader", metavar="NAME|INDEX", help="a PC/SC reader")
    psam = p.add_mutually_exclusive_group()
    psam.add_argument(
        "--psam",
        metavar="FILE|READER",
        help="the PSAM each card is checked with (a PSAM file, or the PC/SC reader "
        "holding one; default: a virtual PSAM beside the default card)",
    )
    psam.add_argument(
        "--no-psam",
        action="store_true",
        help="no PSAM: cards are not checked for authenticity (and a 3.00 card's "
        "holder data and the insurance scheme cannot be read)",
    )
    p.add_argument(
        "--upgrade-date",
        metavar="YYYY-MM-DD",
        type=dt.date.fromisoformat,
        default=DEFAULT_UPGRADE_DATE,
        help="the system upgrade date (S8)",
    )
    p.add_argument("--lang", choices=("zh", "en"), default="zh")
    p.add_argument("--trace", metavar="FILE", type=Path, help="append the APDU trace here")
    p.add_argument("--holders", metavar="FILE", type=Path, help="holders' phones (JSON)")
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        help="how long a prompt or result waits for the holder before going back "
        f"to idle (default {DEFAULT_TIMEOUT:g}; 0: no limit, for demos)",
    )
    p.add_argument(
        "--card-timeout",
        metavar="SECONDS",
        type=seconds,
        default=DEFAULT_CARD_TIMEOUT,
        help="how long a card command may take before the card is reported as "
        f"not responding (default {DEFAULT_CARD_TIMEOUT:g}; 0: no limit)",
    )
    p.add_argument("--quiet", action="store_true", help="no bell on errors")
    p.add_argument(
        "--log",
        metavar="FILE",
        type=Path,
        help="the terminal's own log (default: pos-terminal.log in the user data "
        "folder); never a PIN",
    )
    outlet = p.add_argument_group("service outlet")
    outlet.add_argument(
        "--outlet",
        action="store_true",
        help="the service outlet's operations (reset, restore, cancel, activate)",
    )
    keys = outlet.add_mutually_exclusive_group()
    keys.add_argument(
        "--key",
        metavar="FILE",
        type=Path,
        help="issuer master-key file (mode 600) instead of the PSAM",
    )
    keys.add_argument(
        "--test-key", action="store_true", help="the fixture cards' public test issuer's keys"
    )
    outlet.add_argument("--operator", default=None, help="who operates (for the outlet log)")
    outlet.add_argument("--outlet-log", metavar="FILE", type=Path, help="the outlet log")
    settle = p.add_argument_group("settlement")
    settle.add_argument(
        "--host",
        metavar="URL",
        default=None,
        help="the settlement host's address, such as http://127.0.0.1:8765 "
        "(pos-host serve); default: the embedded host",
    )
    settle.add_argument(
        "--host-timeout",
        metavar="SECONDS",
        type=seconds,
        default=10.0,
        help="how long a host's answer may take before the terminal reverses the "
        "settlement (default 10)",
    )
    settle.add_argument(
        "--host-db",
        metavar="PATH",
        type=Path,
        help="the settlement host's database (default: user data folder)",
    )
    settle.add_argument(
        "--no-host",
        action="store_true",
        help="no settlement host: a payment ends once the card has "
        "authorised it (no debit, no receipt, no loss check)",
    )
    settle.add_argument(
        "--terminal-id",
        default=None,
        type=terminal_id,
        help="this terminal's id (1 to 32 letters, digits, '-', '_'; default: the "
        f"PSAM's terminal number, {NO_PSAM_ID} without a PSAM)",
    )
    settle.add_argument(
        "--receipts", metavar="DIR", help="also write each receipt as a text file here"
    )
    args = p.parse_args(argv)
    if args.no_host and args.host_db is not None:
        p.error("--no-host and --host-db cannot go together; give one of them")
    if args.host is not None and (args.no_host or args.host_db is not None):
        p.error("--host goes alone: not with --no-host or --host-db")
    if args.host is not None and not args.host.startswith(("http://", "https://")):
        p.error(f"--host {args.host!r} is not an address; give one such as http://127.0.0.1:8765")
    if args.outlet and args.no_psam and not (args.key or args.test_key):
        p.error("--outlet --no-psam needs the issuer's keys: --key FILE (or --test-key)")
    return args


def open_host(
    db: Path | None, terminal_id: str, *, url: str | None = None, timeout: float = 10.0
) -> PlatformLink:
    """The terminal's link to the platform: `pos-host serve` at `url`, or the embedded
    host on its SQLite database."""
    if url is not None:
        from host.transport import HttpTransport

        return link_over(HttpTransport(url, timeout=timeout), terminal_id)
    from host.sqlite import SqliteHost, default_db, seed_file

    return embedded_link(SqliteHost(db or default_db(), seed=seed_file()), terminal_id)


def embedded_link(store: Store, terminal_id: str) -> PlatformLink:
    """The embedded host (host/platform.py over `store`), in process."""
    from host.platform import Platform
    from host.transport import EmbeddedTransport

    return link_over(EmbeddedTransport(Platform(store).handle), terminal_id)


def link_over(transport: Transport, terminal_id: str) -> PlatformLink:
    """A client with this terminal's id; its pending reversals and its day-book in the
    user data folder."""
    from host.client import InsuranceClient
    from host.daybook import DayBook
    from terminal.journal import Journal
    from terminal.settlement import PlatformLink

    client = InsuranceClient(transport, device=terminal_id)
    return PlatformLink(
        client,
        Journal(user_dir() / "pending" / terminal_id),
        DayBook(user_dir() / "daybook" / terminal_id),
    )


def outlet_setup(args: argparse.Namespace, psam: KeySource | None) -> OutletSetup | None:
    if not args.outlet:
        return None
    import getpass

    from cardio import outlet

    key: KeySource
    if args.test_key:
        key = outlet.fixture_master_key()
    elif args.key is not None:
        key = outlet.load_key(args.key)
    elif psam is not None:
        key = psam
    else:  # parse_args refused this
        raise UsageError("the outlet needs the issuer's keys: --psam, --key FILE or --test-key")
    log = args.outlet_log or outlet.default_log()
    outlet.OutletLog(log).check_writable()  # before the first holder, not after
    return OutletSetup(key, args.operator or getpass.getuser(), log)


def build(args: argparse.Namespace) -> PosApp:
    """The app for these arguments; raises ReaderError / StoreError with a clear message."""
    settings = Settings(upgrade_date=args.upgrade_date)  # today: read at each decision
    psam = None if args.no_psam else open_psam(args.psam)
    terminal_id = args.terminal_id or (psam.terminal_number() if psam is not None else NO_PSAM_ID)
    options = Options(
        settings,
        lang=args.lang,
        trace_file=args.trace,
        phones=load_phones(args.holders),
        outlet=outlet_setup(args, psam),
        host=None
        if args.no_host
        else open_host(args.host_db, terminal_id, url=args.host, timeout=args.host_timeout),
        keys=psam,
        terminal_id=terminal_id,
        receipts=receipts_folder(args.receipts) if args.receipts is not None else None,
        timeout=args.timeout,
        card_timeout=args.card_timeout,
        quiet=args.quiet,
    )
    reader: Reader
    if args.reader is not None:
        from cardio.readers import pcsc

        reader = pcsc.PcscReader(pcsc.resolve(args.reader))
    else:
        reader = VirtualReader(
            store.card_path(args.card) if args.card is not None else default_card()
        )
    return PosApp(reader, options)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def start() -> int:
        app = build(args)
        start_log(args.log or user_dir() / "pos-terminal.log")
        app.run()
        return Exit.OK

    return run_command("pos-terminal", start)


if __name__ == "__main__":
    sys.exit(main())
