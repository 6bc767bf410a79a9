"""A terminal's side of the platform's transactions: envelopes out, answers in.

`InsuranceClient` builds each request in the platform's envelope (message id, device,
operator, time, sign-in number) and sends it over a Transport: in process to the embedded
host, or over HTTP to `pos-host serve` (host/transport.py). It never retries a message on
its own; what to do when no answer came is the caller's decision (a settlement is
reversed, host/client.py's `reverse`, with the message id `settle` returned).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from host.api import HostError
from host.transport import Transport
from host.wire import WireError, fen_of, yuan

DEFAULT_INSTITUTION = "H31010100001"  # a test pharmacy (12 characters, as msgid needs)
DEFAULT_INSTITUTION_NAME = "测试药店"
PLAIN_PURCHASE = "XZZZZZZZZZZ0000"  # ours: the catalogue code of an amount without items


class PlatformRefused(HostError):
    """infcode -1: the platform's err_msg, and what kind of refusal (err_type, ours)."""

    def __init__(self, kind: str, message: str, output: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.output = output or {}


@dataclass(frozen=True)
class Person:
    psn_no: str
    name: str
    certno: str
    insutype: str
    balance_fen: int
    phone: str | None


@dataclass(frozen=True)
class Settlement:
    """A 2101 (setl_id empty) or 2102 answer's split, in fen."""

    msgid: str  # the message that asked for it: a 2601 names it
    setl_id: str
    mdtrt_id: str
    psn_no: str
    time: str
    medfee_fen: int
    fund_fen: int  # hifp_pay (and any other fund)
    acct_fen: int
    cash_fen: int
    balance_after_fen: int


@dataclass(frozen=True)
class Cancellation:
    setl_id: str  # the cancellation's own id
    balance_after_fen: int


@dataclass(frozen=True)
class Statement:
    balanced: bool
    description: str
    host_totals: dict[str, Any] = field(default_factory=dict)


def _amount(doc: dict[str, Any], name: str) -> int:
    try:
        return fen_of(doc.get(name, 0), name)
    except WireError:
        raise HostError(f"the host sent an unusable {name}; check the host") from None


class InsuranceClient:
    def __init__(
        self,
        transport: Transport,
        *,
        device: str,
        operator: str = "clerk",
        institution: str = DEFAULT_INSTITUTION,
        institution_name: str = DEFAULT_INSTITUTION_NAME,
        region: str = "310100",
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
    ) -> None:
        self.transport = transport
        self.device = device
        self.operator = operator
        self.institution = institution
        self.institution_name = institution_name
        self.region = region
        self.clock = clock
        self._sequence = 0
        self._second = ""
        self._lock = threading.Lock()
        self._sign_no = ""
        self._signed_day: dt.date | None = None

    # --- envelopes ------------------------------------------------------------------------

    def new_msgid(self) -> str:
        """Institution (12) + time (14) + a sequence number (4): 30 characters.

        The sequence is at least the tenth of a millisecond within the second: a terminal
        restarted within the same second (its counter lost) starts above every number the
        earlier run used, unless that run sent faster than one message a 0.1 ms."""
        with self._lock:
            for _ in range(3000):
                now = self.clock()
                second = f"{now:%Y%m%d%H%M%S}"
                tick = now.microsecond // 100
                if second != self._second:
                    self._second, self._sequence = second, tick
                    break
                if self._sequence < 9999:
                    self._sequence = max(self._sequence + 1, tick)
                    break
                time.sleep(0.001)  # this second's numbers are spent: the next second's
            else:
                raise HostError("the clock stands still: no new message id; check the clock")
            sequence = self._sequence
        return f"{self.institution[:12]:<12}{second}{sequence:04d}"

    def envelope(
        self, infno: str, data: dict[str, Any], msgid: str | None = None
    ) -> dict[str, Any]:
        return {
            "infno": infno,
            "msgid": msgid or self.new_msgid(),
            "mdtrtarea_admvs": self.region,
            "insuplc_admdvs": "",
            "recer_sys_code": "YBXT",
            "dev_no": self.device,
            "dev_safe_info": "",
            "cainfo": "",
            "signtype": "",
            "infver": "V1.0",
            "opter_type": "1",
            "opter": self.operator,
            "opter_name": self.operator,
            "inf_time": f"{self.clock():%Y-%m-%d %H:%M:%S}",
            "fixmedins_code": self.institution,
            "fixmedins_name": self.institution_name,
            "sign_no": self._sign_no,
            "input": data,
        }

    def call(self, infno: str, data: dict[str, Any], msgid: str | None = None) -> dict[str, Any]:
        """One message; its output, or PlatformRefused. HostUnreachable and NoAnswer (the
        transport's) pass through: the caller decides."""
        answer = self.transport.send(self.envelope(infno, data, msgid))
        code = answer.get("infcode")
        if code in (0, "0"):
            output = answer.get("output")
            return output if isinstance(output, dict) else {}
        message = answer.get("err_msg")
        kind = answer.get("err_type")
        output = answer.get("output")
        raise PlatformRefused(
            kind if isinstance(kind, str) else "",
            message if isinstance(message, str) and message else f"the host refused {infno}",
            output if isinstance(output, dict) else None,
        )

    # --- 9001 --------------------------------------------------------------------------------

    def sign_in(self) -> str:
        output = self.call("9001", {"signIn": {"opter_no": self.operator, "mac": "", "ip": ""}})
        node = output.get("signinoutb")
        sign_no = node.get("sign_no") if isinstance(node, dict) else None
        if not isinstance(sign_no, str) or not sign_no:
            raise HostError("the host's sign-in answer has no sign_no; check the host")
        self._sign_no, self._signed_day = sign_no, self.clock().date()
        return sign_no

    def signed_in(self) -> None:
        """Once a day, before the first transaction that needs it."""
        if not self._sign_no or self._signed_day != self.clock().date():
            self.sign_in()

    def _signed_call(self, infno: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A transaction that needs a sign-in; a host that forgot ours (a new database, a
        new day) gets a new sign-in and the transaction once more, as a new message."""
        self.signed_in()
        msgid = self.new_msgid()
        try:
            return msgid, self.call(infno, data, msgid)
        except PlatformRefused as e:
            if e.kind != "sign_in":
                raise
        self.sign_in()
        msgid = self.new_msgid()
        return msgid, self.call(infno, data, msgid)

    # --- 1101 --------------------------------------------------------------------------------

    def person(self, certno: str, card_number: str = "", card_sn: str = "") -> Person:
        data = {
            "mdtrt_cert_type": "03" if card_number else "02",
            "mdtrt_cert_no": card_number or certno,
            "card_sn": card_sn,
            "begntime": "",
            "psn_cert_type": "01",
            "certno": certno,
            "psn_name": "",
        }
        output = self.call("1101", {"data": data})
        base = output.get("baseinfo")
        insu = output.get("insuinfo")
        first = insu[0] if isinstance(insu, list) and insu else insu
        if not isinstance(base, dict) or not isinstance(first, dict):
            raise HostError("the host's person answer is incomplete; check the host")
        extra = base.get("expContent")
        phone = extra.get("phone") if isinstance(extra, dict) else None
        return Person(
            str(base.get("psn_no", "")),
            str(base.get("psn_name", "")),
            str(base.get("certno", "")),
            str(first.get("insutype", "")),
            _amount(first, "balc"),
            phone if isinstance(phone, str) and phone else None,
        )

    # --- 2101 / 2102 -------------------------------------------------------------------------

    def _bill(self, person: Person, amount_fen: int, card_number: str) -> dict[str, Any]:
        amount = yuan(amount_fen)
        return {
            "druginfo": {
                "psn_no": person.psn_no,
                "mdtrt_cert_type": "03",
                "mdtrt_cert_no": card_number,
                "begntime": f"{self.clock():%Y-%m-%d %H:%M:%S}",
                "medfee_sumamt": amount,
                "insutype": person.insutype,
                "acct_used_flag": "1",
                "med_type": "41",
            },
            "drugdetail": [
                {
                    "feedetl_sn": "1",
                    "fee_ocur_time": f"{self.clock():%Y-%m-%d %H:%M:%S}",
                    "med_list_codg": PLAIN_PURCHASE,
                    "medins_list_codg": "0001",
                    "det_item_fee_sumamt": amount,
                    "cnt": Decimal(1),
                    "pric": amount,
                }
            ],
        }

    def presettle(self, person: Person, amount_fen: int, card_number: str) -> Settlement:
        msgid, output = self._signed_call("2101", self._bill(person, amount_fen, card_number))
        return self._settlement(msgid, output)

    def settle(self, person: Person, amount_fen: int, card_number: str, msgid: str) -> Settlement:
        """The settlement under the message id the caller chose (and stored first, so a
        lost answer can be reversed). No retry of a sign-in here: a new message id would
        be a second settlement the caller has not recorded."""
        output = self.call("2102", self._bill(person, amount_fen, card_number), msgid)
        return self._settlement(msgid, output)

    @staticmethod
    def _settlement(msgid: str, output: dict[str, Any]) -> Settlement:
        info = output.get("setlinfo")
        if not isinstance(info, dict):
            raise HostError("the host's settlement answer has no setlinfo; check the host")
        return Settlement(
            msgid,
            str(info.get("setl_id", "")),
            str(info.get("mdtrt_id", "")),
            str(info.get("psn_no", "")),
            str(info.get("setl_time", "")),
            _amount(info, "medfee_sumamt"),
            _amount(info, "fund_pay_sumamt"),
            _amount(info, "acct_pay"),
            _amount(info, "psn_cash_pay"),
            _amount(info, "balc"),
        )

    # --- 2103 / 2601 ---------------------------------------------------------------------------

    def cancel(self, setl_id: str, mdtrt_id: str, psn_no: str, msgid: str) -> Cancellation:
        """2103 under the message id the caller chose and stored first (as settle)."""
        data = {"data": {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": psn_no}}
        output = self.call("2103", data, msgid)
        info = output.get("setlinfo")
        if not isinstance(info, dict):
            raise HostError("the host's cancellation answer has no setlinfo; check the host")
        balc = info.get("balc", 0)
        return Cancellation(str(info.get("setl_id", "")), fen_of(balc, "balc"))

    def reverse(self, psn_no: str, omsgid: str, oinfno: str = "2102") -> None:
        """2601: the message `omsgid` is undone, or never takes effect if it comes later."""
        self.call("2601", {"data": {"psn_no": psn_no, "omsgid": omsgid, "oinfno": oinfno}})

    # --- 3201 / 3202 ----------------------------------------------------------------------------

    def totals(
        self,
        day: dt.date,
        medfee_fen: int,
        fund_fen: int,
        acct_fen: int,
        count: int,
        *,
        insutype: str = "",
        own_only: bool = True,
    ) -> Statement:
        data: dict[str, Any] = {
            "insutype": insutype,
            "clr_type": "41",
            "setl_optins": self.region,
            "stmt_begndate": day.isoformat(),
            "stmt_enddate": day.isoformat(),
            "medfee_sumamt": yuan(medfee_fen),
            "fund_pay_sumamt": yuan(fund_fen),
            "acct_pay": yuan(acct_fen),
            "fixmedins_setl_cnt": count,
        }
        if own_only:
            data["dev_no"] = self.device
        output = self.call("3201", {"data": data})
        info = output.get("stmtinfo")
        if not isinstance(info, dict):
            raise HostError("the host's reconciliation answer has no stmtinfo; check the host")
        totals = output.get("totals")
        return Statement(
            info.get("stmt_rslt") == "0",
            str(info.get("stmt_rslt_dscr", "")),
            totals if isinstance(totals, dict) else {},
        )

    def details(
        self, day: dt.date, rows: list[dict[str, Any]], *, own_only: bool = True
    ) -> list[dict[str, Any]]:
        """3202 with the details inline (ours): the settlements that differ."""
        data: dict[str, Any] = {
            "setl_optins": self.region,
            "file_qury_no": "",
            "stmt_begndate": day.isoformat(),
            "stmt_enddate": day.isoformat(),
            "medfee_sumamt": yuan(sum(fen_of(r["medfee_sumamt"], "x") for r in rows)),
            "fund_pay_sumamt": yuan(sum(fen_of(r["fund_pay_sumamt"], "x") for r in rows)),
            "cash_payamt": yuan(0),
            "fixmedins_setl_cnt": len(rows),
            "details": rows,
        }
        if own_only:
            data["dev_no"] = self.device
        output = self.call("3202", {"data": data})
        results = output.get("results")
        return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []
