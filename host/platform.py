"""The settlement host as the medical-insurance platform: numbered transactions in the
platform's envelope, over a Store (SQLite or PostgreSQL, host/store.py).

`Platform.handle(request) -> answer` takes one envelope (infno, msgid, dev_no,
fixmedins_code, opter, inf_time, sign_no, input) and gives the platform's answer
(infcode 0 or -1, inf_refmsgid, refmsg_time, respond_time, err_msg, output). It never
raises for what a client sends: a bad message is an answer with infcode -1.

Every transaction runs as one unit of work, and its answer is stored with it under the
sender's message id, so the same message id again gets the first answer, byte for byte:
a 2102 retried after a lost answer never settles twice. A reversal (2601) that arrives
before the message it reverses leaves the answer that message will get: refused. docs/host.md
has the fields and our choices.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cardio.identity import mask_id
from cardio.model import Scheme
from host import wire
from host.api import HostError
from host.policy import (
    ACCOUNT_FUND,
    DEFAULT,
    POOL_FUND,
    RESIDENT_POOL_FUND,
    Line,
    Policy,
    Split,
)
from host.store import Conflict, Sql, Store, psn_no_of, ssn_of
from host.wire import WireError, fen_of, yuan

Message = dict[str, Any]

SETTLE = "2102"
CANCEL = "2103"
REVERSIBLE = (SETTLE, CANCEL)
MED_TYPE_PHARMACY = "41"  # 定点药店购药
CLR_TYPE = "41"  # ours: the platform's code list was not found; clients copy it back
CLR_WAY = "1"
BALANCED, UNBALANCED = "0", "1"  # stmt_rslt: ours, as above
MAX_BILL_FEN = 10**10 - 1  # ours: 99,999,999.99 yuan, far above any pharmacy bill
MAX_LINES = 1000
MAX_TRIES = 50  # a unit of work run again after a Conflict: far more than collisions need


class Refused(Exception):
    """A transaction the platform refuses: infcode -1 with this message and kind."""

    def __init__(self, kind: str, message: str, output: Message | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.output = output or {}


@dataclass(frozen=True)
class Envelope:
    infno: str
    msgid: str
    sender: str  # the institution and its device (sender_of)
    fixmedins_code: str
    opter: str
    sign_no: str
    mdtrtarea_admvs: str
    input: Mapping[str, Any]


def _text(doc: Mapping[str, Any], name: str, *, required: bool = True, limit: int = 100) -> str:
    value = doc.get(name)
    if value is None or value == "":
        if required:
            raise Refused("bad_request", f"{name} is missing; send it")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Refused("bad_request", f"{name} must be text")
    text = str(value)
    if len(text) > limit:
        raise Refused("bad_request", f"{name} is longer than {limit} characters; send it shorter")
    return text


def _node(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    if not isinstance(value, dict):
        raise Refused("bad_request", f"input.{name} is missing or not an object; send it")
    return value


def envelope_of(request: Mapping[str, Any]) -> Envelope:
    infno = _text(request, "infno", limit=6)
    msgid = _text(request, "msgid", limit=30)
    fixmedins = _text(request, "fixmedins_code", limit=30)
    device = _text(request, "dev_no", required=False)
    sender = sender_of(fixmedins, device)
    data = request.get("input")
    if not isinstance(data, dict):
        raise Refused("bad_request", "input is missing or not an object; send the input")
    return Envelope(
        infno,
        msgid,
        sender,
        fixmedins,
        _text(request, "opter", limit=30),
        _text(request, "sign_no", required=False, limit=40),
        _text(request, "mdtrtarea_admvs", required=False, limit=6),
        data,
    )


def sender_of(fixmedins_code: str, device: str) -> str:
    """Who sent a message: message ids are unique per terminal, and two pharmacies may
    both have a counter named POS-1. A client without a device number is its institution."""
    return f"{fixmedins_code}/{device}" if device else fixmedins_code


def _digest(request: Mapping[str, Any]) -> str:
    """What makes two messages with one message id the same message: number and input."""
    body = wire.dumps({"infno": request.get("infno"), "input": request.get("input")})
    return hashlib.sha256(body).hexdigest()


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S") + f"{when.microsecond // 1000:03d}"


def _time(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


def local_now() -> dt.datetime:
    return dt.datetime.now().astimezone()


@dataclass(frozen=True)
class Person:
    ssn: str
    name: str
    phone: str | None
    insutype: str
    balance_fen: int
    lost: bool
    psn_no: str


_BALANCE = "SELECT balance_fen FROM holders WHERE ssn = ?"
_PERSON = "SELECT ssn, name, phone, scheme, balance_fen, lost FROM holders "


def _person_of(row: tuple[object, ...] | None) -> Person | None:
    if row is None:
        return None
    ssn, name, phone, insutype, fen, lost = row
    if not (isinstance(ssn, str) and isinstance(name, str) and isinstance(insutype, str)):
        raise Refused("host_data", "a holder's row in the host database is damaged")
    if type(fen) is not int or fen < 0 or lost not in (0, 1):
        raise Refused("host_data", f"the holder {mask_id(ssn)}'s row is damaged")
    phone = phone if isinstance(phone, str) else None
    return Person(ssn, name, phone, insutype, fen, bool(lost), psn_no_of(ssn))


class Platform:
    def __init__(
        self,
        store: Store,
        policy: Policy = DEFAULT,
        *,
        region: str = "310100",
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.store = store
        store.prepare()
        self.policy = policy
        self.region = region  # the platform's own area: inf_refmsgid, setl_optins
        self.clock = clock or (lambda: local_now())  # looked up at each call: tests fix it
        self._handlers: dict[str, Callable[[Sql, Envelope, dt.datetime], Message]] = {
            "9001": self._sign_in,
            "1101": self._person,
            "2101": self._presettle,
            SETTLE: self._settle,
            CANCEL: self._cancel,
            "2601": self._reverse,
            "3201": self._totals,
            "3202": self._details,
        }

    # --- the envelope -----------------------------------------------------------------

    def handle(self, request: Mapping[str, Any]) -> Message:
        received = self.clock()
        try:
            env = envelope_of(request)
            if env.infno not in self._handlers:
                raise Refused("bad_request", f"transaction {env.infno} is not offered here")
            return self._once(request, env, received)
        except Refused as e:
            return self._answer(received, -1, e.output, str(e), e.kind)
        except WireError as e:
            return self._answer(received, -1, {}, str(e), "bad_request")
        except HostError as e:  # the database: the client may try again
            return self._answer(received, -1, {}, str(e), "host_error")

    def _once(self, request: Mapping[str, Any], env: Envelope, received: dt.datetime) -> Message:
        digest = _digest(request)
        for attempt in range(MAX_TRIES):
            try:
                with self.store.atomic() as sql:
                    earlier = sql.one(
                        "SELECT digest, answer FROM messages WHERE sender = ? AND msgid = ?",
                        (env.sender, env.msgid),
                    )
                    if earlier is not None:
                        return self._replay(earlier, digest, env)
                    answer = self._run(sql, env, received)
                    sql.run(
                        "INSERT INTO messages (sender, msgid, infno, digest, answer, received) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            env.sender,
                            env.msgid,
                            env.infno,
                            digest,
                            wire.dumps(answer).decode("utf-8"),
                            received.isoformat(),
                        ),
                    )
                    return answer
            except Conflict:
                # Two counters on one holder: wait a random moment, so they part ways.
                time.sleep(random.random() * 0.002 * (attempt + 1))
                continue
        raise HostError("the host is too busy to record this message; send it again")

    def _replay(self, earlier: tuple[object, ...], digest: str, env: Envelope) -> Message:
        first_digest, stored = earlier
        if first_digest not in (digest, REVERSED_FIRST):
            raise Refused(
                "msgid_reused",
                f"message id {env.msgid} was already used for another message; "
                "send each message with a new message id",
            )
        answer: Message = wire.loads(str(stored))
        return answer

    def _run(self, sql: Sql, env: Envelope, received: dt.datetime) -> Message:
        # Handlers refuse before they write: a refusal is stored like a success (the same
        # message again is refused the same way), and nothing else of it is.
        try:
            output = self._handlers[env.infno](sql, env, received)
        except Refused as e:
            return self._answer(received, -1, e.output, str(e), e.kind)
        except WireError as e:
            return self._answer(received, -1, {}, str(e), "bad_request")
        return self._answer(received, 0, output, "", "")

    def _answer(
        self, received: dt.datetime, code: int, output: Message, error: str, kind: str
    ) -> Message:
        answer: Message = {
            "infcode": code,
            "inf_refmsgid": f"{self.region}{received:%Y%m%d%H%M%S}{random_digits(10)}",
            "refmsg_time": _stamp(received),
            "respond_time": _stamp(self.clock()),
            "err_msg": error,
            "warn_msg": "",
            "output": output,
        }
        if kind:
            answer["err_type"] = kind  # ours: what kind of refusal, for a program to act on
        return answer

    # --- 9001 sign-in -------------------------------------------------------------------

    def _sign_in(self, sql: Sql, env: Envelope, now: dt.datetime) -> Message:
        sign_in = _node(env.input, "signIn")
        opter = _text(sign_in, "opter_no", limit=20)
        sign_no = secrets.token_hex(16)
        sql.run(
            "INSERT INTO signins (sign_no, sender, opter, day, time) VALUES (?, ?, ?, ?, ?)",
            (sign_no, env.sender, opter, now.date().isoformat(), _time(now)),
        )
        return {"signinoutb": {"sign_time": _time(now), "sign_no": sign_no}}

    def _signed_in(self, sql: Sql, env: Envelope, now: dt.datetime) -> None:
        row = sql.one("SELECT sender, day FROM signins WHERE sign_no = ?", (env.sign_no,))
        if not env.sign_no or row is None or row[0] != env.sender:
            raise Refused("sign_in", "this terminal has not signed in; sign in (9001) first")
        if row[1] != now.date().isoformat():
            raise Refused("sign_in", "this terminal's sign-in is from another day; sign in again")

    # --- 1101 the person --------------------------------------------------------------------

    def _person(self, sql: Sql, env: Envelope, now: dt.datetime) -> Message:
        data = _node(env.input, "data")
        cert_type = _text(data, "mdtrt_cert_type", limit=3)
        certno = _text(data, "certno", required=False, limit=50)
        if cert_type == "02":
            certno = _text(data, "mdtrt_cert_no", limit=50)
        if not certno:
            raise Refused("bad_request", "certno is missing; send the holder's ID number")
        person = _person_of(sql.one(_PERSON + "WHERE ssn = ?", (certno.upper(),)))
        if person is None:
            raise Refused("unknown_person", f"no insured person with ID {mask_id(certno)}")
        if person.lost and cert_type == "03":
            raise Refused("lost", "this social security card was reported lost; it cannot be used")
        return {
            "baseinfo": {
                "psn_no": person.psn_no,
                "psn_cert_type": "01",
                "certno": person.ssn,
                "psn_name": person.name,
                "gend": _gender(person.ssn),
                "naty": "01",
                "brdy": _birth(person.ssn),
                "age": _age(person.ssn, now.date()),
                "expContent": {"phone": person.phone or ""},  # ours: S15 needs the phone
            },
            "insuinfo": [
                {
                    "balc": yuan(person.balance_fen),
                    "insutype": person.insutype,
                    "psn_type": "11",
                    "psn_insu_stas": "1",
                    "psn_insu_date": "",
                    "paus_insu_date": "",
                    "cvlserv_flag": "0",
                    "insuplc_admdvs": person.ssn[:6],
                    "emp_name": "",
                }
            ],
            "idetinfo": [],
        }

    # --- 2101 / 2102 the bill ------------------------------------------------------------

    def _bill(self, sql: Sql, env: Envelope, now: dt.datetime) -> tuple[Person, Split, str]:
        self._signed_in(sql, env, now)
        info = _node(env.input, "druginfo")
        psn_no = _text(info, "psn_no", limit=30)
        ssn = ssn_of(psn_no)
        row = sql.one(_PERSON + "WHERE ssn = ?" + sql.lock, (ssn,)) if ssn else None
        person = _person_of(row)
        if person is None:
            raise Refused("unknown_person", f"no insured person numbered {psn_no}")
        if person.lost:
            raise Refused("lost", "this social security card was reported lost; it cannot be used")
        insutype = _text(info, "insutype", required=False, limit=6) or person.insutype
        if insutype != person.insutype:
            raise Refused(
                "bad_request", f"the person is insured under {person.insutype}, not {insutype}"
            )
        total = fen_of(info.get("medfee_sumamt"), "medfee_sumamt")
        lines = _lines(env.input.get("drugdetail"))
        if sum(x.fen for x in lines) != total:
            raise Refused(
                "bad_request",
                "medfee_sumamt is not the sum of the lines' det_item_fee_sumamt; send them equal",
            )
        if total <= 0:
            raise Refused("bad_request", "medfee_sumamt must be above 0")
        if total > MAX_BILL_FEN:
            raise Refused(
                "bad_request", f"medfee_sumamt above {yuan(MAX_BILL_FEN)} yuan cannot be settled"
            )
        use_account = _text(info, "acct_used_flag", required=False, limit=1) != "0"
        split = self.policy.split(insutype, lines, person.balance_fen, use_account)
        if split.refused:
            raise Refused(
                "insufficient",
                f"the personal account holds {yuan(person.balance_fen)} yuan, less than "
                f"{yuan(split.acct_fen + split.cash_fen)}; nothing was paid",
                {"setlinfo": {"balc": yuan(person.balance_fen)}},
            )
        return person, split, insutype

    def _presettle(self, sql: Sql, env: Envelope, now: dt.datetime) -> Message:
        person, split, insutype = self._bill(sql, env, now)
        after = person.balance_fen - split.acct_fen
        return self._settlement_output(person, split, insutype, after, now, "", "", env)

    def _settle(self, sql: Sql, env: Envelope, now: dt.datetime) -> Message:
        person, split, insutype = self._bill(sql, env, now)
        after = person.balance_fen - split.acct_fen
        if split.acct_fen:
            changed = sql.run(
                "UPDATE holders SET balance_fen = ? WHERE ssn = ? AND balance_fen = ?",
                (after, person.ssn, person.balance_fen),
            )
            if changed != 1:  # paid by another terminal meanwhile: split again
                raise Conflict(person.psn_no)
        setl_id = _new_id("S", now)
        mdtrt_id = _new_id("M", now)
        sql.run(
            "INSERT INTO settlements (setl_id, mdtrt_id, psn_no, ssn, sender, msgid, "
            "fixmedins_code, insutype, medfee_fen, inscp_fen, ownpay_fen, dedc_fen, hifp_fen, "
            "acct_fen, cash_fen, balc_fen, setl_time, day, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'settled')",
            (
                setl_id,
                mdtrt_id,
                person.psn_no,
                person.ssn,
                env.sender,
                env.msgid,
                env.fixmedins_code,
                insutype,
                split.medfee_fen,
                split.inscp_fen,
                split.fulamt_ownpay_fen,
                split.dedc_fen,
                split.hifp_fen,
                split.acct_fen,
                split.cash_fen,
                after,
                _time(now),
                now.date().isoformat(),
            ),
        )
        return self._settlement_output(person, split, insutype, after, now, setl_id, mdtrt_id, env)

    def _settlement_output(
        self,
        person: Person,
        split: Split,
        insutype: str,
        balance_after: int,
        now: dt.datetime,
        setl_id: str,
        mdtrt_id: str,
        env: Envelope,
    ) -> Message:
        setlinfo: Message = {
            "mdtrt_id": mdtrt_id,
            "psn_no": person.psn_no,
            "psn_name": person.name,
            "psn_cert_type": "01",
            "certno": person.ssn,
            "gend": _gender(person.ssn),
            "naty": "01",
            "brdy": _birth(person.ssn),
            "age": _age(person.ssn, now.date()),
            "insutype": insutype,
            "psn_type": "11",
            "cvlserv_flag": "0",
            "setl_time": _time(now),
            "mdtrt_cert_type": "03",
            "med_type": MED_TYPE_PHARMACY,
            **_amounts(split, balance_after),
            "medins_setl_id": env.msgid,
            "clr_optins": self.region,
            "clr_way": CLR_WAY,
            "clr_type": CLR_TYPE,
        }
        if setl_id:
            setlinfo = {"setl_id": setl_id, **setlinfo}
        return {
            "setlinfo": setlinfo,
            "setldetail": _funds(split, insutype),
            "detlcutinfo": [],
        }

    # --- 2103 cancellation ------------------------------------------------------------------

    def _cancel(self, sql: Sql, env: Envelope, now: dt.datetime) -> Message:
        self._signed_in(sql, env, now)
        data = _node(env.input, "data")
        setl_id = _text(data, "setl_id", limit=30)
        psn_no = _text(data, "psn_no", limit=30)
        mdtrt_id = _text(data, "mdtrt_id", required=False, limit=30)
        row = sql.one(_SETTLEMENT + "WHERE setl_id = ?" + sql.lock, (setl_id,))
        if row is None or row[2] != psn_no or (mdtrt_id and row[1] != mdtrt_id):
            raise Refused("not_found", f"no settlement {setl_id} of this person; check the id")
        settled = _Settled.of(row)
        if settled.fixmedins_code != env.fixmedins_code:
            raise Refused("not_found", f"settlement {setl_id} is another institution's")
        if settled.status != "settled":
            raise Refused("not_settled", f"settlement {setl_id} was already {settled.status}")
        if settled.day != now.date().isoformat():
            raise Refused(
                "not_today", f"settlement {setl_id} is not today's; only today's can be cancelled"
            )
        cancel_id = _new_id("C", now)
        _end(sql, settled, "settled", "cancelled", env, cancel_id)
        balance = self._refund(sql, settled)
        return {
            "setlinfo": {
                "mdtrt_id": settled.mdtrt_id,
                "setl_id": cancel_id,
                "clr_optins": self.region,
                "setl_time": _time(now),
                "medfee_sumamt": yuan(-settled.medfee_fen),
                "fulamt_ownpay_amt": yuan(-settled.ownpay_fen),
                "inscp_scp_amt": yuan(-settled.inscp_fen),
                "act_pay_dedc": yuan(-settled.dedc_fen),
                "hifp_pay": yuan(-settled.hifp_fen),
                "fund_pay_sumamt": yuan(-settled.hifp_fen),
                "psn_pay": yuan(-(settled.acct_fen + settled.cash_fen)),
                "acct_pay": yuan(-settled.acct_fen),
                "cash_payamt": yuan(-settled.cash_fen),
                "balc": yuan(balance),
                "medins_setl_id": env.msgid,
            },
            "setldetail": [],
        }

    def _balance(self, sql: Sql, settled: _Settled) -> int:
        row = sql.one(_BALANCE + sql.lock, (settled.ssn,))
        if row is None or type(row[0]) is not int:
            raise Refused("host_data", "the holder of this settlement is gone from the host")
        return row[0]

    def _move(self, sql: Sql, settled: _Settled, before: int, after: int) -> None:
        """The holder's balance from `before` to `after`, or Conflict if it moved meanwhile."""
        if (
            before != after
            and sql.run(
                "UPDATE holders SET balance_fen = ? WHERE ssn = ? AND balance_fen = ?",
                (after, settled.ssn, before),
            )
            != 1
        ):
            raise Conflict(settled.ssn)

    def _refund(self, sql: Sql, settled: _Settled) -> int:
        """The personal account gets back what the settlement took; the balance after."""
        balance = self._balance(sql, settled)
        self._move(sql, settled, balance, balance + settled.acct_fen)
        return balance + settled.acct_fen

    # --- 2601 reversal ------------------------------------------------------------------------

    def _reverse(self, sql: Sql, env: Envelope, now: dt.datetime) -> Message:
        data = _node(env.input, "data")
        psn_no = _text(data, "psn_no", limit=30)
        omsgid = _text(data, "omsgid", limit=30)
        oinfno = _text(data, "oinfno", limit=6)
        if oinfno not in REVERSIBLE:
            raise Refused("bad_request", f"transaction {oinfno} cannot be reversed here")
        first = sql.one(
            "SELECT infno, digest FROM messages WHERE sender = ? AND msgid = ?",
            (env.sender, omsgid),
        )
        if first is None:
            # Not arrived (yet): whenever it comes, it gets this refusal and does nothing.
            refusal = self._answer(
                now, -1, {}, f"message {omsgid} was reversed before it arrived", "reversed"
            )
            sql.run(
                "INSERT INTO messages (sender, msgid, infno, digest, answer, received) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    env.sender,
                    omsgid,
                    oinfno,
                    REVERSED_FIRST,
                    wire.dumps(refusal).decode(),
                    now.isoformat(),
                ),
            )
            return {}
        if first[0] != oinfno:
            raise Refused("bad_request", f"message {omsgid} was a {first[0]}, not a {oinfno}")
        by = (
            "sender = ? AND msgid = ?"
            if oinfno == SETTLE
            else "ended_sender = ? AND ended_msgid = ?"
        )
        row = sql.one(_SETTLEMENT + "WHERE " + by + sql.lock, (env.sender, omsgid))
        if row is None:
            return {}  # it was refused: nothing moved, nothing to undo
        settled = _Settled.of(row)
        if settled.psn_no != psn_no:
            raise Refused("bad_request", f"message {omsgid} was for another person")
        if oinfno == SETTLE and settled.status == "settled":
            _end(sql, settled, "settled", "reversed", env, None)
            self._refund(sql, settled)
        elif oinfno == CANCEL and settled.status == "cancelled":
            balance = self._balance(sql, settled)
            if balance < settled.acct_fen:
                raise Refused(
                    "insufficient",
                    "the refund of this cancellation was spent; it cannot be reversed",
                )
            _end(sql, settled, "cancelled", "settled", None, None)
            self._move(sql, settled, balance, balance - settled.acct_fen)
        return {}

    # --- 3201 / 3202 reconciliation ---------------------------------------------------------

    def _period(self, data: Mapping[str, Any]) -> tuple[str, str]:
        begin = _date(_text(data, "stmt_begndate", limit=10), "stmt_begndate")
        end = _date(_text(data, "stmt_enddate", limit=10), "stmt_enddate")
        if end < begin:
            raise Refused("bad_request", "stmt_enddate is before stmt_begndate")
        return begin, end

    def settled_rows(
        self, sql: Sql, fixmedins_code: str, begin: str, end: str, insutype: str, dev_no: str
    ) -> list[_Settled]:
        query = _SETTLEMENT + (
            "WHERE fixmedins_code = ? AND day >= ? AND day <= ? AND status = 'settled'"
        )
        params: list[object] = [fixmedins_code, begin, end]
        if insutype:
            query += " AND insutype = ?"
            params.append(insutype)
        if dev_no:
            query += " AND sender = ?"
            params.append(sender_of(fixmedins_code, dev_no))
        return [_Settled.of(r) for r in sql.rows(query + " ORDER BY setl_time, setl_id", params)]

    def _totals(self, sql: Sql, env: Envelope, now: dt.datetime) -> Message:
        data = _node(env.input, "data")
        begin, end = self._period(data)
        insutype = _text(data, "insutype", required=False, limit=6)
        dev_no = _text(data, "dev_no", required=False)  # ours: one counter's own share
        rows = self.settled_rows(sql, env.fixmedins_code, begin, end, insutype, dev_no)
        theirs = (
            fen_of(data.get("medfee_sumamt"), "medfee_sumamt"),
            fen_of(data.get("fund_pay_sumamt"), "fund_pay_sumamt"),
            fen_of(data.get("acct_pay"), "acct_pay"),
            _count(data.get("fixmedins_setl_cnt")),
        )
        ours = (
            sum(r.medfee_fen for r in rows),
            sum(r.hifp_fen for r in rows),
            sum(r.acct_fen for r in rows),
            len(rows),
        )
        same = theirs == ours
        return {
            "stmtinfo": {
                "setl_optins": _text(data, "setl_optins", required=False, limit=6) or self.region,
                "stmt_rslt": BALANCED if same else UNBALANCED,
                "stmt_rslt_dscr": (
                    "balanced"
                    if same
                    else f"the host has {ours[3]} settlements, {yuan(ours[0])} yuan in all, "
                    f"{yuan(ours[1])} from the fund, {yuan(ours[2])} from accounts"
                ),
            },
            # ours: the host's side, so a terminal can print both
            "totals": {
                "medfee_sumamt": yuan(ours[0]),
                "fund_pay_sumamt": yuan(ours[1]),
                "acct_pay": yuan(ours[2]),
                "cash_payamt": yuan(sum(r.cash_fen for r in rows)),
                "fixmedins_setl_cnt": ours[3],
            },
        }

    def _details(self, sql: Sql, env: Envelope, now: dt.datetime) -> Message:
        """Ours: the detail rows come inline (`details`) and so do the rows that differ
        (`results`); the platform passes both as files (9101 / 9102)."""
        data = _node(env.input, "data")
        begin, end = self._period(data)
        dev_no = _text(data, "dev_no", required=False)
        details = data.get("details")
        if not isinstance(details, list):
            raise Refused("bad_request", "input.data.details (the settlements) is missing; send it")
        theirs: dict[str, tuple[int, int, int]] = {}
        for item in details:
            if not isinstance(item, dict):
                raise Refused("bad_request", "each of input.data.details must be an object")
            theirs[_text(item, "setl_id", limit=30)] = (
                fen_of(item.get("medfee_sumamt"), "medfee_sumamt"),
                fen_of(item.get("fund_pay_sumamt"), "fund_pay_sumamt"),
                fen_of(item.get("acct_pay"), "acct_pay"),
            )
        found = self.settled_rows(sql, env.fixmedins_code, begin, end, "", dev_no)
        rows = {r.setl_id: r for r in found}
        results: list[Message] = []
        for setl_id in sorted(set(theirs) | set(rows)):
            row = rows.get(setl_id)
            mine = (row.medfee_fen, row.hifp_fen, row.acct_fen) if row else None
            if mine == theirs.get(setl_id):
                continue
            memo = (
                "not settled at the host"
                if row is None
                else "not in the institution's details"
                if setl_id not in theirs
                else "amounts differ"
            )
            results.append(
                {
                    "setl_id": setl_id,
                    "psn_no": row.psn_no if row else "",
                    "mdtrt_id": row.mdtrt_id if row else "",
                    "msgid": row.msgid if row else "",
                    "stmt_rslt": UNBALANCED,
                    "memo": memo,
                    "medfee_sumamt": yuan(row.medfee_fen) if row else None,
                    "fund_pay_sumamt": yuan(row.hifp_fen) if row else None,
                    "acct_pay": yuan(row.acct_fen) if row else None,
                }
            )
        query_no = _new_id("F", now)
        return {
            "fileinfo": {
                "file_qury_no": query_no,
                "filename": f"{query_no}.txt",
                "dld_endtime": _time(now + dt.timedelta(days=1)),
            },
            "stmt_rslt": BALANCED if not results else UNBALANCED,
            "results": results,
        }


def _end(
    sql: Sql,
    settled: _Settled,
    was: str,
    becomes: str,
    by: Envelope | None,
    cancel_id: str | None,
) -> None:
    """The settlement's status, first and guarded: a unit that finds it changed since it
    read it (another reversal or cancellation at once) is run again, never refunds twice.
    Refusals come before this: after it, the unit only writes."""
    changed = sql.run(
        "UPDATE settlements SET status = ?, ended_msgid = ?, ended_sender = ?, "
        "cancel_setl_id = ? WHERE setl_id = ? AND status = ?",
        (
            becomes,
            by.msgid if by else None,
            by.sender if by else None,
            cancel_id,
            settled.setl_id,
            was,
        ),
    )
    if changed != 1:
        raise Conflict(settled.setl_id)


REVERSED_FIRST = "reversed-before-arrival"  # a messages row's digest: matches any message

_BY_SETTLE = "WHERE sender = ? AND msgid = ?"
_BY_CANCEL = "WHERE ended_sender = ? AND ended_msgid = ?"
_SETTLEMENT = (
    "SELECT setl_id, mdtrt_id, psn_no, ssn, sender, msgid, fixmedins_code, insutype, "
    "medfee_fen, inscp_fen, ownpay_fen, dedc_fen, hifp_fen, acct_fen, cash_fen, balc_fen, "
    "setl_time, day, status FROM settlements "
)


@dataclass(frozen=True)
class _Settled:
    setl_id: str
    mdtrt_id: str
    psn_no: str
    ssn: str
    sender: str
    msgid: str
    fixmedins_code: str
    insutype: str
    medfee_fen: int
    inscp_fen: int
    ownpay_fen: int
    dedc_fen: int
    hifp_fen: int
    acct_fen: int
    cash_fen: int
    balc_fen: int
    setl_time: str
    day: str
    status: str

    @classmethod
    def of(cls, row: tuple[object, ...]) -> _Settled:
        texts, amounts, tail = row[:8], row[8:16], row[16:]
        if not all(isinstance(v, str) for v in (*texts, *tail)) or not all(
            type(v) is int for v in amounts
        ):
            raise Refused("host_data", f"the settlement row {str(row[0])[:30]} is damaged")
        return cls(*row)  # type: ignore[arg-type]


def _lines(value: object) -> list[Line]:
    if not isinstance(value, list) or not value:
        raise Refused("bad_request", "input.drugdetail is missing or empty; send the bill's lines")
    if len(value) > MAX_LINES:
        raise Refused("bad_request", f"a bill has at most {MAX_LINES} lines; split it")
    lines = []
    for item in value:
        if not isinstance(item, dict):
            raise Refused("bad_request", "each line of input.drugdetail must be an object")
        code = _text(item, "med_list_codg", limit=50)
        fen = fen_of(item.get("det_item_fee_sumamt"), "det_item_fee_sumamt")
        if fen > MAX_BILL_FEN:
            raise Refused(
                "bad_request", f"a line above {yuan(MAX_BILL_FEN)} yuan cannot be settled"
            )
        lines.append(Line(code, fen))
    return lines


def _amounts(split: Split, balance_after: int) -> Message:
    return {
        "medfee_sumamt": yuan(split.medfee_fen),
        "fulamt_ownpay_amt": yuan(split.fulamt_ownpay_fen),
        "overlmt_selfpay": yuan(0),
        "preselfpay_amt": yuan(0),
        "inscp_scp_amt": yuan(split.inscp_fen),
        "act_pay_dedc": yuan(split.dedc_fen),
        "hifp_pay": yuan(split.hifp_fen),
        "pool_prop_selfpay": split.ratio.quantize(Decimal("0.0001")),
        "cvlserv_pay": yuan(0),
        "hifes_pay": yuan(0),
        "hifmi_pay": yuan(0),
        "hifob_pay": yuan(0),
        "maf_pay": yuan(0),
        "oth_pay": yuan(0),
        "fund_pay_sumamt": yuan(split.fund_fen),
        "psn_part_amt": yuan(split.psn_part_fen),
        "acct_pay": yuan(split.acct_fen),
        "psn_cash_pay": yuan(split.cash_fen),
        "balc": yuan(balance_after),
        "acct_mulaid_pay": yuan(0),
    }


def _funds(split: Split, insutype: str) -> list[Message]:
    funds = []
    if split.hifp_fen:
        code = RESIDENT_POOL_FUND if insutype == Scheme.RESIDENT_MEDICAL else POOL_FUND
        funds.append(
            {
                "fund_pay_type": code,
                "inscp_scp_amt": yuan(split.inscp_fen),
                "crt_payb_lmt_amt": yuan(split.hifp_fen),
                "fund_payamt": yuan(split.hifp_fen),
                "fund_pay_type_name": "统筹基金",
                "setl_proc_info": "",
            }
        )
    if split.acct_fen:
        funds.append(
            {
                "fund_pay_type": ACCOUNT_FUND,
                "inscp_scp_amt": yuan(split.medfee_fen),
                "crt_payb_lmt_amt": yuan(split.acct_fen),
                "fund_payamt": yuan(split.acct_fen),
                "fund_pay_type_name": "个人账户",
                "setl_proc_info": "",
            }
        )
    return funds


def _new_id(kind: str, now: dt.datetime) -> str:
    """A settlement (S), visit (M), cancellation (C) or file (F) id: 30 characters."""
    return f"{kind}{now:%Y%m%d%H%M%S}{random_digits(15)}"


def random_digits(n: int) -> str:
    return f"{secrets.randbelow(10**n):0{n}d}"


def _date(text: str, name: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise Refused("bad_request", f"{name} must be a date such as 2026-11-30") from None


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Refused("bad_request", "fixmedins_setl_cnt must be a whole number")
    try:
        count = int(value)
    except ValueError:
        raise Refused("bad_request", "fixmedins_setl_cnt must be a whole number") from None
    if count < 0:
        raise Refused("bad_request", "fixmedins_setl_cnt must be at or above 0")
    return count


def _gender(ssn: str) -> str:
    return "1" if len(ssn) == 18 and ssn[16].isdigit() and int(ssn[16]) % 2 else "2"


def _birth(ssn: str) -> str:
    digits = ssn[6:14]
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])).isoformat()
    except ValueError:
        return ""


def _age(ssn: str, today: dt.date) -> int:
    born = _birth(ssn)
    if not born:
        return 0
    b = dt.date.fromisoformat(born)
    return today.year - b.year - ((today.month, today.day) < (b.month, b.day))
