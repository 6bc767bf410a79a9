"""Shared helpers for the terminal's Pilot and snapshot tests (docs/terminal-rules.md).

Cards are made from profiles into a test's tmp_path; the app runs on a VirtualReader over
that file with fixed dates, so nothing on screen depends on the clock. As `pos-terminal`
runs by default, the app has a settlement host: a SqliteHost on a database of its own in
the test's tmp_path, seeded with the fixture holders (what terminal/cli.open_host opens).
A payment then goes on to SETTLING and ends on a receipt, or a refusal. `host=None` is
the `--no-host` configuration: a payment ends at the card's authorisation.
"""

from __future__ import annotations

import datetime as dt
import enum
import io
import json
from pathlib import Path

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import RichLog, Static

from cardio.card import profiles, store
from cardio.card.state import CardState
from cardio.issuer import fixture_issuer
from cardio.keysource import KeySource, MasterKeySource
from cardio.model import Algorithm
from cardio.readers.virtual import VirtualReader
from cardio.resources import data_dir
from host.platform import Platform
from host.sqlite import SqliteHost, seed_file
from host.transport import EmbeddedTransport
from terminal.app import Options, PosApp
from terminal.cli import embedded_link, load_phones
from terminal.rules import Settings

INITIAL_PIN = "123456"  # fixtures/README.md: INITIAL cards
ENABLED_PIN = "802613"  # fixtures/README.md: employee-enabled (and locked before it locked)
NEW_PIN = "384950"  # passes S15 for every fixture holder
OTHER_PIN = "947261"  # another good one, for a second change

UPGRADE_DATE = dt.date(2024, 4, 13)  # S8: the seed's April 13
AFTER_UPGRADE = dt.date(2024, 6, 1)
ON_UPGRADE = UPGRADE_DATE
BEFORE_UPGRADE = dt.date(2024, 4, 12)
SNAPSHOT_TODAY = dt.date(2024, 6, 1)


def holders() -> dict[str, dict[str, str]]:
    """fixtures/holders/holders.json by profile name."""
    doc = json.loads((data_dir("holders") / "holders.json").read_text("utf-8"))
    return {h["profile"]: h for h in doc["holders"]}


def make_card(tmp_path: Path, profile: str, name: str = "c.json") -> Path:
    path = tmp_path / name
    profiles.new_card(profile, path)
    return path


HOST_DB = "host.db"  # the host's database, in the test's tmp_path (beside the card)


def issuer_keys() -> KeySource:
    """The terminal's key source in tests: the fixture issuer's masters, computing what a
    PSAM holding them gives (tests/test_psam.py proves the two agree)."""
    return MasterKeySource(fixture_issuer(), fixture_issuer(Algorithm.DES))


class Default(enum.Enum):
    """make_app's defaults: a fresh SqliteHost beside the card file; issuer_keys()."""

    HOST = enum.auto()
    KEYS = enum.auto()


def new_host(folder: Path) -> SqliteHost:
    """The settlement host `pos-terminal` opens (terminal/cli.open_host): a SqliteHost
    seeded from the fixture holders, on `folder`/host.db (the same database for every
    call with that folder, as for every terminal run with one --host-db)."""
    return SqliteHost(folder / HOST_DB, seed=seed_file())


def make_app(
    card: Path,
    *,
    lang: str = "zh",
    today: dt.date = AFTER_UPGRADE,
    upgrade_date: dt.date = UPGRADE_DATE,
    inserted: bool = True,
    trace_file: Path | None = None,
    host: SqliteHost | None | Default = Default.HOST,
    terminal_id: str = "POS-0001",
    receipts: Path | None = None,
    reader: VirtualReader | None = None,
    keys: KeySource | None | Default = Default.KEYS,
) -> PosApp:
    """The app `pos-terminal --card CARD` is, with fixed dates: by default with a settlement
    host, `new_host(card.parent)` (a payment is debited and ends on a receipt; the host is
    `host_of(app)`). `host=None`: the `--no-host` configuration, where a payment ends at
    the card's authorisation (no debit, no receipt, no loss check). `reader`: another
    reader over the card (default a VirtualReader, `inserted` or not)."""
    settings = Settings(upgrade_date=upgrade_date, today=today)
    if keys is Default.KEYS:
        keys = issuer_keys()
    if host is Default.HOST:
        host = new_host(card.parent)
    options = Options(
        settings,
        lang=lang,
        trace_file=trace_file,
        phones=load_phones(None),
        host=None if host is None else embedded_link(host, terminal_id),
        keys=keys,
        terminal_id=terminal_id,
        receipts=receipts,
    )
    return PosApp(reader if reader is not None else VirtualReader(card, inserted=inserted), options)


def host_of(app: PosApp) -> SqliteHost:
    """The app's settlement host's database (make_app's SqliteHost), to read it."""
    link = app.options.host
    assert link is not None
    transport = link.client.transport
    assert isinstance(transport, EmbeddedTransport), transport
    platform = transport._handle.__self__  # type: ignore[attr-defined]
    assert isinstance(platform, Platform) and isinstance(platform.store, SqliteHost)
    return platform.store


def balance_fen(app_or_host: PosApp | SqliteHost, profile: str) -> int:
    """The holder's personal account balance at the host, in fen."""
    host = host_of(app_or_host) if isinstance(app_or_host, PosApp) else app_or_host
    holder = host.holder(holders()[profile]["ssn"])
    assert holder is not None, profile
    return holder.balance_fen


def settled_rows(host: SqliteHost, ssn: str) -> list[tuple[int, int, str]]:
    """The holder's settlements that stand at the host: (bill, balance after, sender), in
    the order they were made."""
    with host.atomic() as sql:
        rows = sql.rows(
            "SELECT medfee_fen, balc_fen, sender FROM settlements WHERE ssn = ? "
            "AND status = 'settled' ORDER BY setl_time, rowid",
            (ssn,),
        )
    return [(int(str(a)), int(str(b)), str(c)) for a, b, c in rows]


def card_state(card: Path) -> CardState:
    return store.read(card)


def file_bytes(card: Path) -> bytes:
    return card.read_bytes()


# --- what the screen shows --------------------------------------------------------------


def _widget_text(widget: Static) -> str:
    return str(widget.render())


def rendered_text(app: PosApp) -> str:
    """The screen as the terminal draws it (80x24 in these tests), background screens too."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


def screen_text(app: PosApp) -> str:
    """All the text the current screen shows.

    First the content of each displayed Static (the message lines, the entry, the title),
    unwrapped so that a long phrase is found whole, and the lines of a visible trace pane;
    then the screen as drawn. A phrase is "on screen" when it is in here; a PIN is "never
    shown" when it is in neither part.
    """
    screen = app.screen
    parts: list[str] = []
    for widget in screen.query(Static):
        if widget.display and widget.region.area > 0:
            parts.append(_widget_text(widget))
    for log in screen.query(RichLog):
        if log.display:
            parts.extend("".join(seg.text for seg in strip) for strip in log.lines)
    parts.append("=" * 20)
    parts.append(rendered_text(app))
    return "\n".join(parts)


def trace_pane_lines(app: PosApp) -> list[str]:
    """The pane's entries; a long APDU wraps, so its continuation rows are joined back."""
    log = app.screen.query_one("#trace", RichLog)
    rows = ["".join(seg.text for seg in strip).rstrip() for strip in log.lines]
    entries: list[str] = []
    for row in rows:
        new = row.startswith(("> ", "< ", "# "))  # an APDU, or a `# api` line
        if entries and not new and entries[-1].startswith(("> ", "< ")):
            entries[-1] = f"{entries[-1]} {row.strip()}"
        else:
            entries.append(row)
    return entries


def entry_text(app: PosApp) -> str:
    """What the entry line shows: `* * * _ _ _` for a PIN, `12.50 元` for an amount."""
    return str(app.screen.query_one("#entry", Static).render())


# --- driving the pad -----------------------------------------------------------------------


async def settle(pilot: Pilot) -> None:
    """Let card workers finish and their answers reach the screen (answers may start more).

    A pause returns once the app has handled every message (pilot_waits.py); a worker
    not yet started counts as unfinished, as a running one does.
    """
    app = pilot.app
    for _ in range(20):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if all(w.is_finished for w in app.workers):
            return


async def type_digits(pilot: Pilot, digits: str) -> None:
    await pilot.press(*digits)


async def enter(pilot: Pilot, digits: str) -> None:
    """Type digits, press Enter, and wait for whatever the card had to do."""
    await pilot.press(*digits, "enter")
    await settle(pilot)


async def start_payment(pilot: Pilot, amount: str = "1250") -> None:
    """Menu 1, an amount in fen, Enter: the card is read."""
    await pilot.press("1")
    await settle(pilot)
    await enter(pilot, amount)


async def forced_change(pilot: Pilot, new: str = NEW_PIN) -> None:
    """On the forced change screen: the new PIN twice."""
    await enter(pilot, new)
    await enter(pilot, new)


async def toggle_card(pilot: Pilot) -> None:
    """F2 on a virtual card: insert or remove it, and let the app hear of it."""
    await pilot.press("f2")
    await settle(pilot)


async def confirm(pilot: Pilot) -> None:
    """Enter (确认) where nothing is typed: a card without PIN's amount, a result."""
    await pilot.press("enter")
    await settle(pilot)


async def cancel(pilot: Pilot) -> None:
    """Escape in a transaction: the brief 交易已取消 notice (it swallows digits), then
    确认 back to the menu."""
    app = pilot.app
    await pilot.press("escape")
    await settle(pilot)
    flow = app.flow
    assert flow is not None and flow.view.brief, "Escape did not show the cancel notice"
    assert flow.view.lines[0].key == "cancelled"
    await pilot.press("enter")
    await settle(pilot)
