"""The pharmacy terminal against a real `pos-host serve` (a child process on 127.0.0.1,
port 0, its SQLite --db in tmp_path, or a PostgreSQL database): the person (1101), the
pre-settlement (2101) before the PIN, the settlement (2102) under a pending reversal,
the reversal (2601) of a lost answer, and the recovery of what a crash left pending.

Faults are the server's own (`--faults drop-reply=1`, `delay=S`). As they hit every
message, the settlement alone is sent to a faulty server on the same database (a
transport that routes by infno, host_server_helpers.Routed), or the terminal's client is
pointed at it once the split is shown. The terminal runs as the app under Pilot (what the
screen says) or as its core without Textual (terminal.worker's execute/deliver), always
with terminal/cli.py's open_host and its journal and day-book in the user data folder
(SHEBAO_POS_HOME of the test, tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from host_server_helpers import (
    ROOT,
    HostDb,
    HostServer,
    Routed,
    closed_url,
    start_server,
    wait_for,
)
from terminal_helpers import (
    AFTER_UPGRADE,
    ENABLED_PIN,
    UPGRADE_DATE,
    card_state,
    file_bytes,
    holders,
    issuer_keys,
    make_card,
    screen_text,
    settle,
    start_payment,
)
from terminal_helpers import enter as enter_digits
from tmux_helpers import Tmux

from cardio.readers.virtual import VirtualReader
from cardio.resources import user_dir
from host.transport import HttpTransport
from terminal import strings
from terminal.app import Options, PosApp
from terminal.cli import load_phones, open_host
from terminal.equipment import Equipment
from terminal.flow.commands import Command, ReadCard
from terminal.flow.pharmacy import PharmacyFlow, Purpose
from terminal.flow.view import Stage
from terminal.rules import Settings
from terminal.settlement import PlatformLink
from terminal.worker import deliver, execute

TERMINAL = "POS-0042"
SIZE = (80, 24)
PROFILE = "employee-enabled"  # PIN enabled, 1280.50 yuan in the personal account
SSN = holders()[PROFILE]["ssn"]
START_BALANCE = 128050
CARD_NUMBER = "A14933182"
QUICK_WAITS = (0.0, 0.05, 0.1)  # the reversal's tries, shortened for tests


def text(key: str, **params: object) -> str:
    return strings.text("zh", key, **params)


SPLIT_1250 = text("split", fund="0.00", account="12.50", cash="0.00")  # the default policy
HOLDER_PAYS_1250 = text("holder_pays", amount="12.50")
ENTER_PIN = text("enter_pin")


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def host_db(tmp_path: Path) -> Iterator[HostDb]:
    """The servers' SQLite database, tmp_path/host.db, seeded; read by the test."""
    db = HostDb(str(tmp_path / "host.db"))
    yield db
    db.close()


@pytest.fixture
def servers(tmp_path: Path, host_db: HostDb) -> Iterator[Callable[..., HostServer]]:
    """`serve(*options, db=...)`: a `pos-host --db DB serve` (default: host_db's);
    each is stopped with SIGTERM at the end, which must exit 0 without a traceback."""
    started: list[HostServer] = []

    def serve(*options: str, db: str | None = None) -> HostServer:
        server = start_server(db or host_db.db, tmp_path / f"server{len(started)}", *options)
        started.append(server)
        return server

    yield serve
    codes = [server.stop() for server in started]
    for server, code in zip(started, codes, strict=True):
        assert code == 0, server.log()
        assert "Traceback" not in server.log(), server.log()


@pytest.fixture
def pg_db(pg_url: str) -> HostDb:
    """A fresh PostgreSQL database (tests/pg_fixtures.py), read through the host's store."""
    return HostDb(pg_url)


@pytest.fixture
def links() -> Iterator[Callable[..., PlatformLink]]:
    """`link(url, timeout)`: the terminal's link to `pos-host serve` at url, as
    `pos-terminal --host URL --host-timeout T` opens it (terminal/cli.open_host)."""
    made: list[PlatformLink] = []

    def link(url: str, timeout: float = 5.0) -> PlatformLink:
        made.append(open_host(None, TERMINAL, url=url, timeout=timeout))
        made[-1].waits = QUICK_WAITS
        return made[-1]

    yield link
    for each in made:
        each.client.transport.close()


def journal_folder() -> Path:
    """Where the terminal's pending reversals are (terminal/cli.link_over)."""
    return user_dir() / "pending" / TERMINAL


def journal_files() -> list[str]:
    folder = journal_folder()
    return sorted(os.listdir(folder)) if folder.exists() else []


def assert_nothing_moved(host_db: HostDb) -> None:
    """No settlement, the balance as seeded, nothing left to reverse."""
    assert host_db.settlements() == []
    assert host_db.balance(SSN) == START_BALANCE
    assert journal_files() == []


def settings() -> Settings:
    return Settings(upgrade_date=UPGRADE_DATE, today=AFTER_UPGRADE)


# --- the terminal without Textual ---------------------------------------------------------


class Pad:
    """A payment flow run with the terminal's core (terminal.worker), as the app's card
    worker does, over the real reader and the HTTP link."""

    def __init__(self, card: Path, link: PlatformLink) -> None:
        self.equipment = Equipment(
            VirtualReader(card), host=link, keys=issuer_keys(), terminal_id=TERMINAL
        )
        self.new_flow()

    def new_flow(self) -> None:
        """The next payment on the same pad (and reader)."""
        self.flow = PharmacyFlow(Purpose.PAY, settings(), settles=True, terminal_id=TERMINAL)
        self.sent: list[str] = []

    def run(self, command: Command | None) -> None:
        while command is not None:
            self.sent.append(type(command).__name__)
            if isinstance(command, ReadCard):
                self.flow.reading()
            result, present = execute(self.equipment, command)
            command = deliver(self.flow, result, present)

    def pay(self, amount: str = "1250") -> None:
        self.run(self.flow.start())
        self.run(self.flow.entered(amount))

    def enter(self, digits: str) -> None:
        self.run(self.flow.entered(digits))

    @property
    def stage(self) -> Stage:
        return self.flow.view.stage

    @property
    def keys(self) -> list[str]:
        return [line.key for line in self.flow.view.lines]

    def shown(self) -> list[str]:
        return [strings.text("zh", x.key, **dict(x.params)) for x in self.flow.view.lines]


def paying(tmp_path: Path, link: PlatformLink) -> Pad:
    """A pad over a new card of PROFILE and `link`, a payment of 12.50 begun: at the PIN."""
    pad = Pad(make_card(tmp_path, PROFILE), link)
    pad.pay("1250")
    return pad


def http_app(card: Path, link: PlatformLink, trace: Path | None = None) -> PosApp:
    """`pos-terminal --card CARD --host URL --terminal-id POS-0042`, with fixed dates."""
    options = Options(
        settings(),
        trace_file=trace,
        phones=load_phones(None),
        host=link,
        keys=issuer_keys(),
        terminal_id=TERMINAL,
    )
    return PosApp(VirtualReader(card), options)


def only_settlement(db: HostDb) -> tuple[object, ...]:
    rows = db.settlements()
    assert len(rows) == 1, rows
    return rows[0]


# --- a payment over HTTP ------------------------------------------------------------------


@pytest.mark.slow
async def test_split_before_the_pin_then_a_receipt_with_the_settlement_id(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """Pilot: 2101's split and 个人支付 are on screen with the PIN prompt, below them; the
    host has written nothing yet. The PIN, then the receipt with the platform's
    settlement id; the host's database has exactly one settled row for this terminal,
    the balance is down by 12.50, the day-book has it and no reversal is pending."""
    server = servers()
    card = make_card(tmp_path, PROFILE)
    link = links(server.url)
    app = http_app(card, link)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await start_payment(pilot, "1250")
        assert app.flow is not None and app.flow.view.stage is Stage.PIN
        keys = [x.key for x in app.flow.view.lines]
        assert keys == ["amount", "split", "holder_pays", "enter_pin"]
        shown = screen_text(app)
        for phrase in (SPLIT_1250, HOLDER_PAYS_1250, ENTER_PIN, "金额 12.50 元"):
            assert phrase in shown
        assert shown.index(SPLIT_1250) < shown.index(ENTER_PIN)
        assert shown.index(HOLDER_PAYS_1250) < shown.index(ENTER_PIN)
        assert host_db.settlements() == []  # a pre-settlement writes nothing
        assert host_db.balance(SSN) == START_BALANCE
        await enter_digits(pilot, ENABLED_PIN)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is True
        setl_id, msgid, status, acct_fen, sender = only_settlement(host_db)
        shown = screen_text(app)
        assert text("authorised") in shown
        assert text("receipt_setl", setl_id=setl_id) in shown
        assert text("balance_after", amount="1268.00") in shown
        assert SPLIT_1250 in shown
    assert (status, acct_fen) == ("settled", 1250)
    assert str(sender).rsplit("/", 1)[-1] == TERMINAL  # the device, behind its institution
    assert host_db.balance(SSN) == START_BALANCE - 1250
    assert journal_files() == []
    entries = link.todays(str(setl_id)[-6:])
    assert [(e.setl_id, e.msgid, e.acct_fen) for e in entries] == [(setl_id, msgid, 1250)]
    assert card_state(card).tries_left == 6


# --- a lost answer to the settlement ------------------------------------------------------


@pytest.mark.slow
async def test_a_lost_answer_is_reversed_and_nothing_is_paid(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """Pilot. 9001/1101/2101 at a healthy host; the 2102 at a second server on the same
    database that settles it and never answers (drop-reply=1): after --host-timeout the
    terminal reverses it (2601 at the healthy one) and says so; the host's row ends
    'reversed' with the balance as before; the journal is empty again."""
    healthy = servers()
    lossy = servers("--faults", "drop-reply=1", "--faults-seed", "7")
    card = make_card(tmp_path, PROFILE)
    link = links(healthy.url)
    app = http_app(card, link)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await start_payment(pilot, "1250")
        assert app.flow is not None and app.flow.view.stage is Stage.PIN
        routed = Routed(
            HttpTransport(healthy.url, timeout=5.0),
            {"2102": HttpTransport(lossy.url, timeout=1.0)},
        )
        link.client.transport = routed
        await enter_digits(pilot, ENABLED_PIN)
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is False
        assert [x.key for x in app.flow.view.lines] == ["reversed", "amount", "not_debited"]
        shown = screen_text(app)
        assert text("reversed") in shown
        assert text("not_debited") in shown
        assert text("authorised") not in shown
    assert routed.sent == ["2102", "2601"]
    setl_id, msgid, status, acct_fen, _ = only_settlement(host_db)
    assert status == "reversed"  # it was settled, then undone
    assert host_db.balance(SSN) == START_BALANCE
    assert journal_files() == []
    assert link.todays("") == []  # never in the day-book: no answer came
    assert f"injected fault drop-reply: infno=2102 msgid={msgid}" in lossy.log()


@pytest.mark.slow
def test_a_settlement_the_host_refused_leaves_nothing_pending(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """The 2102 answered infcode -1 without being handled (error=1): a refusal, not a lost
    answer: no reversal is sent, nothing is pending, nothing moved."""
    healthy = servers()
    failing = servers("--faults", "error=1")
    link = links(healthy.url)
    pad = paying(tmp_path, link)
    routed = Routed(
        HttpTransport(healthy.url, timeout=5.0), {"2102": HttpTransport(failing.url, timeout=5.0)}
    )
    link.client.transport = routed
    pad.enter(ENABLED_PIN)
    assert pad.stage is Stage.RESULT
    assert pad.keys == ["settle_failed", "amount"]
    assert routed.sent == ["2102"]
    assert_nothing_moved(host_db)


@pytest.mark.slow
def test_a_reversal_whose_answer_is_lost_too_is_sent_again_under_its_msgid(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """The 2102's answer is lost, and so is the first 2601's (both handled at the host):
    the terminal sends the same 2601 (same msgid) again, the host answers it as before
    (the first answer, replayed) and the flow says reversed; refunded exactly once."""
    healthy = servers()
    lossy = servers("--faults", "drop-reply=1")
    link = links(healthy.url)
    pad = paying(tmp_path, link)
    routed = Routed(
        HttpTransport(healthy.url, timeout=5.0),
        {
            "2102": HttpTransport(lossy.url, timeout=1.0),
            "2601": [HttpTransport(lossy.url, timeout=1.0), HttpTransport(healthy.url, 5.0)],
        },
    )
    link.client.transport = routed
    pad.enter(ENABLED_PIN)
    assert pad.keys == ["reversed", "amount", "not_debited"]
    assert routed.sent == ["2102", "2601", "2601"]
    assert routed.msgids[1] == routed.msgids[2]  # one reversal, sent twice
    _, _, status, _, _ = only_settlement(host_db)
    assert status == "reversed"
    assert host_db.balance(SSN) == START_BALANCE  # refunded once, not twice
    assert journal_files() == []


@pytest.mark.slow
def test_a_reversal_refused_by_a_passing_host_fault_is_tried_again(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """Was a bug, fixed (terminal/settlement.py _reverse, host/server.py error_answer): the 2102's
    answer is lost; the first 2601 meets a passing host fault (`--faults error=1`:
    infcode -1 "injected fault", not handled; the server's own refusals carry no
    err_type). The terminal takes any refusal but kind "host_error" as final: it stops
    at once, logs "a person must look", and tells the holder the reversal is pending,
    while the next try (the same host, a moment later) would have reversed it. A
    refusal the terminal cannot place should be tried again like a lost answer."""
    healthy = servers()
    lossy = servers("--faults", "drop-reply=1")
    faulty = servers("--faults", "error=1")
    link = links(healthy.url)
    pad = paying(tmp_path, link)
    routed = Routed(
        HttpTransport(healthy.url, timeout=5.0),
        {
            "2102": HttpTransport(lossy.url, timeout=1.0),
            "2601": [HttpTransport(faulty.url, 5.0), HttpTransport(healthy.url, 5.0)],
        },
    )
    link.client.transport = routed
    pad.enter(ENABLED_PIN)
    assert routed.sent == ["2102", "2601", "2601"], "the reversal was not tried again"
    assert pad.keys == ["reversed", "amount", "not_debited"]
    _, _, status, _, _ = only_settlement(host_db)
    assert status == "reversed"
    assert host_db.balance(SSN) == START_BALANCE
    assert journal_files() == []


class Mangled:
    """The real host's answers, with the settlement's (2102) setlinfo lost on the way
    back, as a broken proxy would: the host settled, the terminal cannot read how."""

    def __init__(self, inner: HttpTransport) -> None:
        self.inner = inner

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = self.inner.send(request)
        if request.get("infno") == "2102" and isinstance(answer.get("output"), dict):
            answer["output"].pop("setlinfo", None)
        return answer

    def close(self) -> None:
        self.inner.close()


def test_an_unreadable_settlement_answer_is_reversed_not_called_undebited(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """Was a bug, fixed (terminal/settlement.py _settle_once): the host settled (infcode 0) but its
    answer cannot be read (no setlinfo: InsuranceClient._settlement raises a plain
    HostError). _settle_once lets it through untouched: the pending reversal stays, and
    the flow says 结算失败，未扣款 (settle_failed) although the money is debited until the
    next payment or start reverses it. Like an answer that is not JSON
    (host/transport.py), an unusable answer is no answer: reverse now, say so."""
    server = servers()
    link = links(server.url)
    pad = paying(tmp_path, link)
    link.client.transport = Mangled(HttpTransport(server.url, timeout=5.0))
    pad.enter(ENABLED_PIN)
    assert pad.stage is Stage.RESULT
    _, _, status, _, _ = only_settlement(host_db)
    shown_keys = pad.keys
    left_pending = journal_files()
    assert (status, shown_keys, left_pending) == (
        "reversed",
        ["reversed", "amount", "not_debited"],
        [],
    ), f"shown {shown_keys}, host row {status!r}, still pending {left_pending}"
    assert host_db.balance(SSN) == START_BALANCE


# --- a reversal that cannot be confirmed --------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("later", ["recover", "next_payment"])
def test_an_unconfirmed_reversal_stays_pending_until_the_host_is_back(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
    later: str,
) -> None:
    """The 2102 reaches a host that settles it and never answers; that host then goes
    away (SIGTERM) before any answer: the 2601s find nobody. The flow says the reversal
    is pending, the journal keeps its file (0600 in a 0700 folder) and the money is still
    debited. With a host back on the database, recover() (or the next payment's
    pre-settlement) reverses it: the journal is empty, the balance restored."""
    first = servers()
    lossy = servers("--faults", "drop-reply=1")
    link = links(first.url)
    pad = paying(tmp_path, link)
    assert pad.stage is Stage.PIN
    first.stop()  # only the lossy one is left
    link.client.transport = HttpTransport(lossy.url, timeout=30.0)
    worker = threading.Thread(target=pad.enter, args=(ENABLED_PIN,))
    worker.start()
    try:
        wait_for(lambda: len(host_db.settlements()) == 1)  # settled; its answer held back
        assert pad.stage is Stage.SETTLING
        assert lossy.stop() == 0  # the host goes: the held connection is closed unanswered
    finally:
        worker.join(30)
    assert not worker.is_alive()
    assert pad.stage is Stage.RESULT
    assert pad.keys == ["reversal_pending", "amount", "not_debited"]
    assert text("reversal_pending") in pad.shown()
    _, msgid, status, _, _ = only_settlement(host_db)
    assert status == "settled"
    assert host_db.balance(SSN) == START_BALANCE - 1250
    assert journal_files() == [f"{msgid}.json"]
    assert stat.S_IMODE(journal_folder().stat().st_mode) == 0o700
    assert stat.S_IMODE((journal_folder() / f"{msgid}.json").stat().st_mode) == 0o600
    assert [p.msgid for p in link.journal.pending()] == [msgid]

    back = servers()
    link.client.transport = HttpTransport(back.url, timeout=5.0)
    if later == "recover":
        assert link.recover() == 0
    else:
        pad.new_flow()
        pad.pay("700")  # the pre-settlement first reverses what is pending
        assert pad.stage is Stage.PIN
        assert pad.keys == ["amount", "split", "holder_pays", "enter_pin"]
    assert journal_files() == []
    _, _, status, _, _ = only_settlement(host_db)
    assert status == "reversed"
    assert host_db.balance(SSN) == START_BALANCE


# --- a terminal killed while its settlement was at the host -------------------------------

KILLED_TERMINAL = r"""
import sys
from host.transport import HttpTransport
from terminal.cli import open_host

url, slow_url, ssn, card = sys.argv[1:5]
link = open_host(None, "POS-0042", url=url, timeout=60)
person = link.person(ssn, card)
link.presettle(person, 1250, card)
link.client.transport = HttpTransport(slow_url, timeout=60)  # the 2102's answer is slow
print("settling", flush=True)
link.settle(person, 1250, card)
print("settled", flush=True)
"""


@pytest.mark.slow
async def test_a_settlement_left_by_a_killed_terminal_is_reversed_at_the_next_start(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """A terminal process (the terminal's own open_host and PlatformLink) is killed with
    SIGKILL while its 2102, already settled at the host, waits for a delayed answer
    (delay=4). Its pending reversal is on disk; the next terminal start (the app's
    recovery worker at mount) reverses it: the host's row is 'reversed', the balance
    back, the journal empty, and the terminal is on its menu."""
    healthy = servers()
    slow = servers("--faults", "delay=4")
    terminal = subprocess.Popen(
        [sys.executable, "-c", KILLED_TERMINAL, healthy.url, slow.url, SSN, CARD_NUMBER],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(host_db.settlements()) == 1, timeout=30)
        os.kill(terminal.pid, signal.SIGKILL)
    finally:
        if terminal.poll() is None:
            terminal.kill()
        out, err = terminal.communicate(timeout=10)
    assert terminal.returncode == -signal.SIGKILL, err
    assert "settled" not in out.split()  # killed before the answer
    _, msgid, status, _, _ = only_settlement(host_db)
    assert status == "settled"
    assert host_db.balance(SSN) == START_BALANCE - 1250
    assert journal_files() == [f"{msgid}.json"]

    card = make_card(tmp_path, PROFILE)
    app = http_app(card, links(healthy.url))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)  # the recovery worker started at mount
        assert app.flow is None
        assert text("menu_pay") in screen_text(app)
    assert journal_files() == []
    _, _, status, _, _ = only_settlement(host_db)
    assert status == "reversed"
    assert host_db.balance(SSN) == START_BALANCE


# --- refusals before the PIN --------------------------------------------------------------


async def test_no_host_at_the_address_ends_before_the_pin(
    tmp_path: Path, links: Callable[..., PlatformLink]
) -> None:
    """Nothing listens at --host (HostUnreachable before any message): the payment ends
    after the card read with the host-unavailable line; no PIN asked, nothing pending,
    nothing in the day-book, the card untouched."""
    card = make_card(tmp_path, PROFILE)
    before = file_bytes(card)
    trace = tmp_path / "trace.log"
    app = http_app(card, links(closed_url()), trace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await start_payment(pilot, "1250")
        assert app.flow is not None and app.flow.view.stage is Stage.RESULT
        assert app.flow.view.success is False
        assert [x.key for x in app.flow.view.lines] == ["host_unavailable", "amount"]
        shown = screen_text(app)
        assert text("host_unavailable") in shown
        assert ENTER_PIN not in shown
    assert not [x for x in trace.read_text("utf-8").splitlines() if x.startswith("> 00 20")]
    assert file_bytes(card) == before
    assert journal_files() == []
    assert not (user_dir() / "daybook" / TERMINAL).exists() or not any(
        (user_dir() / "daybook" / TERMINAL).iterdir()
    )


def test_a_host_gone_after_the_split_moves_nothing(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """The split was shown, then the host stops before the PIN is typed: the 2102 cannot
    be sent (HostUnreachable), so nothing is pending and the flow says the settlement
    failed, nothing debited."""
    server = servers()
    pad = paying(tmp_path, links(server.url))
    assert pad.stage is Stage.PIN
    assert server.stop() == 0
    pad.enter(ENABLED_PIN)
    assert pad.stage is Stage.RESULT
    assert pad.keys == ["settle_failed", "amount"]
    assert journal_files() == []
    assert host_db.settlements() == []
    assert host_db.balance(SSN) == START_BALANCE


def test_insufficient_balance_is_refused_at_the_pre_settlement(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """2000.00 yuan on 1280.50: the 2101 is refused, the balance shown, before any PIN:
    no Verify is sent, the tries are untouched, nothing moves at the host."""
    server = servers()
    card = make_card(tmp_path, PROFILE)
    tries = card_state(card).tries_left
    pad = Pad(card, links(server.url))
    pad.pay("200000")
    assert pad.stage is Stage.RESULT
    assert pad.sent == ["ReadCard", "Presettle"]
    assert pad.keys == ["insufficient", "amount"]
    assert pad.shown() == [text("insufficient", balance="1280.50"), "金额 2000.00 元"]
    assert card_state(card).tries_left == tries
    assert_nothing_moved(host_db)


@pytest.mark.slow
def test_a_card_reported_lost_at_the_desk_is_refused_at_card_read(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """`pos-host report-loss` on the serving host's database while a holder is at the PIN
    prompt: the 2102 is refused (lost), nothing pending, nothing moved. The next payment
    stops at the card read (1101 says lost): no pre-settlement, no PIN."""
    server = servers()
    pad = paying(tmp_path, links(server.url))
    assert pad.stage is Stage.PIN
    desk = subprocess.run(
        [sys.executable, "-m", "host.cli", "--db", server.db, "report-loss", "--ssn", SSN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert desk.returncode == 0, desk.stderr
    assert desk.stdout.startswith("reported lost: ")
    pad.enter(ENABLED_PIN)
    assert pad.stage is Stage.RESULT
    assert pad.keys == ["lost"]
    assert journal_files() == []
    assert host_db.settlements() == []

    pad.new_flow()
    pad.pay("1250")
    assert pad.stage is Stage.RESULT
    assert pad.sent == ["ReadCard"]
    assert pad.keys == ["lost"]
    assert_nothing_moved(host_db)


# --- the command line ---------------------------------------------------------------------


def pos_terminal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "terminal.cli", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--host", "ftp://127.0.0.1:8765"], "is not an address"),
        (["--host", "127.0.0.1:8765"], "is not an address"),
        (["--host", "http://"], "is not an http address"),
        (["--host", "http://127.0.0.1:8765", "--no-host"], "--host goes alone"),
        (["--host", "http://127.0.0.1:8765", "--host-db", "h.db"], "--host goes alone"),
        (["--host", "http://127.0.0.1:8765", "--host-timeout", "0"], "above 0 seconds"),
    ],
)
def test_host_options_refused_in_one_line(tmp_path: Path, args: list[str], phrase: str) -> None:
    """Exit 2 and one `pos-terminal: ...` line; no app started, nothing written."""
    card = make_card(tmp_path, PROFILE)
    done = pos_terminal("--card", str(card), *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pos-terminal: ")
    assert phrase in lines[0]
    assert "Traceback" not in done.stderr


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_payment_against_a_postgresql_host(
    tmp_path: Path,
    pg_db: HostDb,
    servers: Callable[..., HostServer],
    links: Callable[..., PlatformLink],
) -> None:
    """`pos-host --db postgresql://... serve`: the split before the PIN, the receipt's
    settlement id is the database's one settled row, and the balance is down by 12.50;
    then a lost answer on the same database is reversed."""
    server = servers(db=pg_db.db)
    link = links(server.url)
    pad = paying(tmp_path, link)
    assert pad.stage is Stage.PIN
    assert pad.shown()[1:3] == [SPLIT_1250, HOLDER_PAYS_1250]
    assert pg_db.settlements() == []
    pad.enter(ENABLED_PIN)
    assert pad.stage is Stage.RESULT and pad.flow.view.success is True
    setl_id, _, status, acct_fen, sender = only_settlement(pg_db)
    assert (status, acct_fen) == ("settled", 1250)
    assert str(sender).rsplit("/", 1)[-1] == TERMINAL  # the device, behind its institution
    assert text("receipt_setl", setl_id=setl_id) in pad.shown()
    assert pg_db.balance(SSN) == START_BALANCE - 1250
    assert journal_files() == []

    lossy = servers("--faults", "drop-reply=1", db=pg_db.db)
    pad.new_flow()
    pad.pay("700")
    link.client.transport = Routed(
        HttpTransport(server.url, timeout=5.0), {"2102": HttpTransport(lossy.url, timeout=1.0)}
    )
    pad.enter(ENABLED_PIN)
    assert pad.keys == ["reversed", "amount", "not_debited"]
    statuses = sorted(str(row[2]) for row in pg_db.settlements())
    assert statuses == ["reversed", "settled"]
    assert pg_db.balance(SSN) == START_BALANCE - 1250
    assert journal_files() == []


# --- the host's SQLite beside a desk command ----------------------------------------------


@pytest.mark.slow
def test_a_desk_command_beside_a_serving_host_does_not_kill_it(
    tmp_path: Path, links: Callable[..., PlatformLink]
) -> None:
    """Was a bug, fixed (host/sqlite.py): `pos-host serve` on a SQLite --db while the desk
    opens the same
    database (what `pos-host report-loss`, `balance`, `history`, `reconcile` do: a
    SqliteHost opened and closed). SqliteHost.__init__ opens and closes the -shm and -wal
    files after its connection is open (`_companions_private`, line 144), which drops
    the process's POSIX locks SQLite holds on them; the desk's open then thinks it is
    alone, truncates the -shm under the server's mapping, and the server dies of SIGBUS
    (exit -7) in the middle of the terminals' payments. Here the terminal asks for the
    person (1101) over and over while the desk opens the database 200 times."""
    from host.sqlite import SqliteHost, seed_file

    db = tmp_path / "desk.db"
    server = start_server(str(db), tmp_path / "server")
    link = links(server.url, timeout=5.0)
    stop = threading.Event()
    failures: list[BaseException] = []

    def terminal() -> None:
        try:
            while not stop.is_set():
                assert link.person(SSN, CARD_NUMBER) is not None
        except BaseException as e:  # the server died under it
            failures.append(e)

    worker = threading.Thread(target=terminal)
    worker.start()
    try:
        for _ in range(200):
            desk = SqliteHost(db, seed=seed_file())
            desk.holder(SSN)
            desk.close()
            if server.proc.poll() is not None:
                break
    finally:
        stop.set()
        worker.join(30)
        alive = server.proc.poll() is None
        code = server.stop()
    assert alive, f"pos-host serve died with {code} while the desk opened its database"
    assert code == 0
    assert failures == []


# --- two terminals with one id ---------------------------------------------------------------


@pytest.mark.slow
def test_a_second_terminal_with_the_same_id_never_reverses_a_settlement_in_flight(
    tmp_path: Path,
    servers: Callable[..., HostServer],
    host_db: HostDb,
    links: Callable[..., PlatformLink],
) -> None:
    """Was a bug, fixed (terminal/settlement.py, terminal/journal.py): two `pos-terminal` runs with
    one terminal id (the default POS-0001 of every terminal without a PSAM) in one user
    data folder share the journal user_dir()/pending/<id>. Terminal A's 2102 is at the
    host, settled, its answer on the way (delay=2); terminal B starts a payment, and its
    pre-settlement's recover() takes A's pending file for a crash leftover and reverses
    A's settlement. A then shows the receipt of a settlement the host has reversed: the
    holder has the goods and the money back. The journal should be held by one terminal
    (a lock, as the card file has) or its in-flight entries skipped."""
    healthy = servers()
    slow = servers("--faults", "delay=2")
    link_a = links(healthy.url)
    pad_a = Pad(make_card(tmp_path, PROFILE), link_a)
    pad_a.pay("1250")
    assert pad_a.stage is Stage.PIN
    link_a.client.transport = HttpTransport(slow.url, timeout=10.0)
    worker = threading.Thread(target=pad_a.enter, args=(ENABLED_PIN,))
    worker.start()
    try:
        wait_for(lambda: len(host_db.settlements()) == 1)  # settled; A waits for the answer
        assert len(journal_files()) == 1
        pad_b = Pad(make_card(tmp_path, "disabled", name="b.json"), links(healthy.url))
        pad_b.pay("100")  # B: 1101, then recover() and 2101
        assert pad_b.sent == ["ReadCard", "Presettle"]
    finally:
        worker.join(30)
    assert pad_a.stage is Stage.RESULT
    assert pad_a.flow.view.success is True  # A printed a receipt
    setl_id, _, status, _, _ = only_settlement(host_db)
    assert text("receipt_setl", setl_id=setl_id) in pad_a.shown()
    assert status == "settled", "B reversed the settlement A showed a receipt for"
    assert host_db.balance(SSN) == START_BALANCE - 1250


# --- the real pos-terminal in a real terminal (tmux) --------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("tmux_available")
def test_real_pos_terminal_killed_mid_settlement_then_restarted(
    tmp_path: Path, servers: Callable[..., HostServer], host_db: HostDb
) -> None:
    """`pos-terminal --card C --host URL` in tmux: the split and 个人支付 above the PIN
    prompt; the PIN; the 2102 settles at a host that answers late (delay=1.5) and the
    terminal is killed (SIGKILL) before the answer. Its pending reversal is on disk. A new
    `pos-terminal --host` on a healthy host reverses it at start; then a payment there
    ends on the receipt whose 结算号 is the host's one settled row, and a receipt file."""
    healthy = servers()
    slow = servers("--faults", "delay=1.5")
    card = make_card(tmp_path, PROFILE)
    common = ["--card", str(card), "--terminal-id", TERMINAL, "--host-timeout", "30"]
    term = Tmux([sys.executable, "-m", "terminal.cli", *common, "--host", slow.url])
    try:
        term.wait_for("1  消费", "已插卡")
        term.type("1")
        term.wait_for("请输入金额")
        term.type("1250")
        term.wait_for("12.50 元")
        term.keys("Enter")
        shown = term.wait_for(SPLIT_1250, HOLDER_PAYS_1250, ENTER_PIN, timeout=30)
        assert shown.index(HOLDER_PAYS_1250) < shown.index(ENTER_PIN)
        pid = int(term._tmux("display-message", "-p", "-t", "pos", "#{pane_pid}").strip())
        term.type(ENABLED_PIN)
        term.keys("Enter")
        wait_for(lambda: len(host_db.settlements()) == 1, timeout=30)
        os.kill(pid, signal.SIGKILL)
    finally:
        term.close()
    _, msgid, status, _, _ = only_settlement(host_db)
    assert status == "settled"
    assert journal_files() == [f"{msgid}.json"]
    assert host_db.balance(SSN) == START_BALANCE - 1250

    receipts = tmp_path / "rc"
    term = Tmux(
        [
            sys.executable,
            "-m",
            "terminal.cli",
            *common,
            "--host",
            healthy.url,
            "--receipts",
            str(receipts),
        ]
    )
    try:
        term.wait_for("1  消费", "已插卡")
        wait_for(lambda: journal_files() == [], timeout=30)  # reversed at start
        assert [row[2] for row in host_db.settlements()] == ["reversed"]
        assert host_db.balance(SSN) == START_BALANCE
        term.type("1")
        term.wait_for("请输入金额")
        term.type("700")
        term.wait_for("7.00 元")
        term.keys("Enter")
        term.wait_for(ENTER_PIN)
        term.type(ENABLED_PIN)
        term.keys("Enter")
        shown = term.wait_for(text("authorised"), "结算号 S", timeout=30)
    finally:
        term.close()
    settled = [row for row in host_db.settlements() if row[2] == "settled"]
    assert len(settled) == 1
    assert text("receipt_setl", setl_id=settled[0][0]) in shown
    assert host_db.balance(SSN) == START_BALANCE - 700
    files = sorted(receipts.iterdir())
    assert len(files) == 1
    assert f"结算号 Settlement  {settled[0][0]}" in files[0].read_text("utf-8")
    assert journal_files() == []
