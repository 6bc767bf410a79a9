"""Helpers for tests/test_platform.py: a terminal that talks to host/platform.py through
the wire (as over HTTP), a settable clock, and reads of the store's rows."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from host import wire
from host.platform import Platform
from host.store import Row, Sql, Store, psn_no_of

Message = dict[str, Any]

INSTITUTION = "H31010100001"
CHINA = dt.timezone(dt.timedelta(hours=8))
DAY_ONE = dt.datetime(2026, 11, 30, 10, 0, 0, tzinfo=CHINA)

# Seeded holders (fixtures/holders/holders.json): ID number and balance in fen.
LI = "310101197911020480"  # 李秀英, 310, 1280.50 yuan
ZHANG = "310104198503122174"  # 张伟, 310, 500.00 yuan
ZHOU = "310106197012050397"  # 周志强, 310, 50.00 yuan
WU = "310107198805211200"  # 吴敏, 310, 800.00 yuan
ZHENG = "310113199010102758"  # 郑浩, 310, 500.00 yuan
UNKNOWN = "310101200001010011"

_serial = itertools.count(1)  # message ids: unique across terminals and threads


class Clock:
    """The platform's clock, moved by the test."""

    def __init__(self, when: dt.datetime = DAY_ONE) -> None:
        self.now = when

    def __call__(self) -> dt.datetime:
        return self.now

    def next_day(self) -> None:
        self.now += dt.timedelta(days=1)

    @property
    def day(self) -> str:
        return self.now.date().isoformat()


def new_msgid() -> str:
    """fixmedins_code(12) + 18 digits: the platform's 30 characters."""
    return f"{INSTITUTION}{next(_serial):018d}"


def over_wire(platform: Platform, request: Mapping[str, Any]) -> Message:
    """One request and its answer as bytes, the way `pos-host serve` carries them."""
    answer = platform.handle(wire.loads(wire.dumps(request)))
    parsed: Message = wire.loads(wire.dumps(answer))
    return parsed


@dataclass
class Terminal:
    platform: Platform
    dev_no: str = "POS-1"
    fixmedins_code: str = INSTITUTION
    sign_no: str = ""
    sent: list[Message] = field(default_factory=list)

    def request(
        self, infno: str, data: Mapping[str, Any], msgid: str | None = None, **extra: Any
    ) -> Message:
        request: Message = {
            "infno": infno,
            "msgid": msgid or new_msgid(),
            "mdtrtarea_admvs": "310100",
            "fixmedins_code": self.fixmedins_code,
            "dev_no": self.dev_no,
            "opter": "clerk-1",
            "inf_time": "2026-11-30 10:00:00",
            "sign_no": self.sign_no,
            "input": dict(data),
        }
        request.update(extra)
        return request

    def send(
        self, infno: str, data: Mapping[str, Any], msgid: str | None = None, **extra: Any
    ) -> Message:
        request = self.request(infno, data, msgid, **extra)
        self.sent.append(request)
        return over_wire(self.platform, request)

    @property
    def last_msgid(self) -> str:
        return str(self.sent[-1]["msgid"])

    def sign_in(self) -> str:
        answer = self.send("9001", {"signIn": {"opter_no": "clerk-1", "mac": "", "ip": "::1"}})
        assert answer["infcode"] == 0, answer
        self.sign_no = str(answer["output"]["signinoutb"]["sign_no"])
        return self.sign_no

    def person(self, ssn: str) -> Message:
        return self.send("1101", by_id(ssn))

    def psn_no(self, ssn: str) -> str:
        answer = self.person(ssn)
        assert answer["infcode"] == 0, answer
        return str(answer["output"]["baseinfo"]["psn_no"])

    def settle(self, bill_input: Mapping[str, Any], msgid: str | None = None) -> Message:
        return self.send("2102", bill_input, msgid)

    def cancel(self, settled: Message, psn_no: str | None = None) -> Message:
        info = settled["output"]["setlinfo"]
        return self.send(
            "2103",
            {
                "data": {
                    "setl_id": info["setl_id"],
                    "mdtrt_id": info["mdtrt_id"],
                    "psn_no": psn_no or info["psn_no"],
                }
            },
        )

    def reverse(self, psn_no: str, omsgid: str, oinfno: str = "2102") -> Message:
        return self.send("2601", {"data": {"psn_no": psn_no, "omsgid": omsgid, "oinfno": oinfno}})


def by_card(ssn: str) -> Message:
    return {
        "data": {
            "mdtrt_cert_type": "03",
            "mdtrt_cert_no": "A12345678",
            "card_sn": "0123456789ABCDEF",
            "psn_cert_type": "01",
            "certno": ssn,
            "psn_name": "",
        }
    }


def by_id(ssn: str) -> Message:
    return {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": ssn, "psn_cert_type": "01"}}


def bill(
    psn_no: str,
    lines: Sequence[tuple[str, str]] = (("X0001", "12.50"),),
    total: str | None = None,
    *,
    insutype: str = "310",
    acct_used_flag: str = "1",
) -> Message:
    """A pharmacy bill: (catalogue code, line total in yuan) lines; the sum by default."""
    amounts = [Decimal(fee) for _, fee in lines]
    return {
        "druginfo": {
            "psn_no": psn_no,
            "mdtrt_cert_type": "03",
            "mdtrt_cert_no": "A12345678",
            "medfee_sumamt": Decimal(total) if total is not None else sum(amounts, Decimal(0)),
            "insutype": insutype,
            "acct_used_flag": acct_used_flag,
            "med_type": "41",
        },
        "drugdetail": [
            {
                "feedetl_sn": str(i + 1),
                "med_list_codg": code,
                "det_item_fee_sumamt": amount,
                "cnt": 1,
                "pric": amount,
            }
            for i, ((code, _), amount) in enumerate(zip(lines, amounts, strict=True))
        ],
    }


def counter(store: Store, dev_no: str = "POS-1", clock: Clock | None = None) -> Terminal:
    """A terminal signed in on a new engine over `store` (the default policy)."""
    terminal = Terminal(Platform(store, clock=clock or Clock()), dev_no=dev_no)
    terminal.sign_in()
    return terminal


def pay(terminal: Terminal, ssn: str, amount: str, msgid: str | None = None) -> Message:
    """A 2102 for the holder (insured under 310): one line of `amount` yuan."""
    return terminal.settle(bill(psn_no_of(ssn), (("X0001", amount),)), msgid)


# --- the store's rows ------------------------------------------------------------------


def balance(store: Store, ssn: str) -> int:
    with store.atomic() as sql:
        row = sql.one("SELECT balance_fen FROM holders WHERE ssn = ?", (ssn,))
    assert row is not None and type(row[0]) is int, row
    return row[0]


def settlements(store: Store) -> list[Row]:
    """(setl_id, msgid, sender, status, acct_fen, day), oldest first."""
    with store.atomic() as sql:
        return sql.rows(
            "SELECT setl_id, msgid, sender, status, acct_fen, day FROM settlements "
            "ORDER BY setl_time, setl_id"
        )


def status_of(store: Store, setl_id: str) -> str:
    with store.atomic() as sql:
        row = sql.one("SELECT status FROM settlements WHERE setl_id = ?", (setl_id,))
    assert row is not None, setl_id
    return str(row[0])


def stored_messages(store: Store) -> int:
    with store.atomic() as sql:
        row = sql.one("SELECT COUNT(*) FROM messages")
    assert row is not None
    return int(str(row[0]))


def money_total(store: Store) -> int:
    """Balances plus what settled settlements took from accounts: never changes."""
    with store.atomic() as sql:
        balances = sql.one("SELECT COALESCE(SUM(balance_fen), 0) FROM holders")
        taken = sql.one(
            "SELECT COALESCE(SUM(acct_fen), 0) FROM settlements WHERE status = 'settled'"
        )
    assert balances is not None and taken is not None
    return int(str(balances[0])) + int(str(taken[0]))


def set_lost(store: Store, ssn: str, lost: bool = True) -> None:
    with store.atomic() as sql:
        assert sql.run("UPDATE holders SET lost = ? WHERE ssn = ?", (int(lost), ssn)) == 1


# --- a store whose units of work can be paused at a statement ---------------------------


class _HookedSql:
    def __init__(self, inner: Sql, hook: Callable[[str], None]) -> None:
        self.inner = inner
        self.hook = hook
        self.lock = inner.lock

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        self.hook(sql)
        return self.inner.rows(sql, params)

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        self.hook(sql)
        return self.inner.one(sql, params)

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        self.hook(sql)
        return self.inner.run(sql, params)


class HookedStore:
    """The store, with `hook(statement)` called before each statement of a unit of work."""

    def __init__(self, inner: Store, hook: Callable[[str], None]) -> None:
        self.inner = inner
        self.hook = hook
        self.where = inner.where

    def prepare(self) -> None:
        self.inner.prepare()

    @contextmanager
    def atomic(self) -> Iterator[Sql]:
        with self.inner.atomic() as sql:
            yield _HookedSql(sql, self.hook)

    def close(self) -> None:
        self.inner.close()


class PauseOnce:
    """A hook that stops the unit of work of one thread at the first statement containing
    `marker`, until the test lets it go on: the interleaving is the test's, not luck's."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.thread: threading.Thread | None = None
        self.reached = threading.Event()
        self.go_on = threading.Event()

    def __call__(self, statement: str) -> None:
        if (
            threading.current_thread() is self.thread
            and self.marker in statement
            and not self.reached.is_set()
        ):
            self.reached.set()
            assert self.go_on.wait(10), "the test never let the paused unit of work go on"
