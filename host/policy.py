"""How a pharmacy bill is split between the pooled fund (统筹), the personal account
(个人账户) and cash, per insurance type (insutype): a small JSON policy file.

    {"insutypes": {
        "310": {"name": "职工基本医疗保险",
                "pool": {"ratio": "0.70", "deductible": "0.00", "items": ["X", "Z"]},
                "shortfall": "cash"},
        "*":   {"name": "…", "pool": null, "shortfall": "refuse"}}}

The order is the platform's: the items the pooled fund covers (by catalogue code prefix;
`["*"]` for all, `[]` for none) make the amount within policy (inscp_scp_amt); the rest
is fully self-paid (fulamt_ownpay_amt). Of the covered amount, the deductible
(act_pay_dedc) is the holder's; the pooled fund pays `ratio` of the rest, rounded down to
the fen (hifp_pay). The personal account pays what is left as far as its balance goes
(acct_pay, when the holder uses it). What is still left is cash (psn_cash_pay), or, with
`"shortfall": "refuse"`, the payment is refused and nothing moves.

The embedded default pays a plain purchase from the personal account alone and refuses
when the balance is short: what the host did before the platform's transactions.
Ours, not the platform's: a deductible per settlement (the platform keeps a yearly one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path

from cardio.errors import Exit
from host.api import HostError


class PolicyError(HostError):
    """A policy file that cannot be used: what was given, so exit 2."""

    exit_code = Exit.USAGE


POOL_FUND = "310100"  # fund_pay_type: the employees' pooled fund
RESIDENT_POOL_FUND = "390100"
ACCOUNT_FUND = "310200"


@dataclass(frozen=True)
class Pool:
    ratio: Decimal  # 0 to 1
    deductible_fen: int
    items: tuple[str, ...]  # catalogue code prefixes; "*" for all

    def covers(self, code: str) -> bool:
        return any(p == "*" or code.startswith(p) for p in self.items)


@dataclass(frozen=True)
class Rule:
    name: str
    pool: Pool | None
    cash_for_shortfall: bool


@dataclass(frozen=True)
class Line:
    """One dispensed line of the bill: its catalogue code and its total in fen."""

    code: str
    fen: int


@dataclass(frozen=True)
class Split:
    medfee_fen: int
    inscp_fen: int  # within policy
    fulamt_ownpay_fen: int
    dedc_fen: int
    hifp_fen: int
    acct_fen: int
    cash_fen: int
    ratio: Decimal
    refused: bool  # short of balance under a "refuse" rule: nothing may move

    @property
    def fund_fen(self) -> int:
        return self.hifp_fen

    @property
    def psn_part_fen(self) -> int:
        return self.medfee_fen - self.fund_fen


@dataclass(frozen=True)
class Policy:
    rules: dict[str, Rule]

    def rule(self, insutype: str) -> Rule:
        return self.rules.get(insutype) or self.rules["*"]

    def split(self, insutype: str, lines: list[Line], balance_fen: int, use_account: bool) -> Split:
        rule = self.rule(insutype)
        total = sum(x.fen for x in lines)
        covered = sum(x.fen for x in lines if rule.pool and rule.pool.covers(x.code))
        ratio = rule.pool.ratio if rule.pool else Decimal(0)
        dedc = min(covered, rule.pool.deductible_fen) if rule.pool else 0
        hifp = int((Decimal(covered - dedc) * ratio).to_integral_value(ROUND_DOWN))
        left = total - hifp
        acct = min(left, balance_fen) if use_account else 0
        cash = left - acct
        refused = cash > 0 and not rule.cash_for_shortfall
        return Split(total, covered, total - covered, dedc, hifp, acct, cash, ratio, refused)


DEFAULT = Policy({"*": Rule("基本医疗保险", None, cash_for_shortfall=False)})


def load(path: Path) -> Policy:
    """A policy file, or a HostError naming what is wrong in it."""
    try:
        doc = json.loads(Path(path).read_text("utf-8"), parse_float=Decimal)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PolicyError(
            f"{path}: not a usable policy file ({type(e).__name__}); give a JSON policy file"
        ) from None
    types = doc.get("insutypes") if isinstance(doc, dict) else None
    if not isinstance(types, dict) or not types:
        raise PolicyError(f'{path}: the policy has no "insutypes" object; add one')
    rules = {str(k): _rule(path, str(k), v) for k, v in types.items()}
    rules.setdefault("*", DEFAULT.rules["*"])
    return Policy(rules)


def _rule(path: Path, insutype: str, doc: object) -> Rule:
    def bad(what: str) -> HostError:
        return PolicyError(f"{path}: insurance type {insutype}: {what}; correct the policy file")

    if not isinstance(doc, dict):
        raise bad("is not an object")
    name = doc.get("name", insutype)
    shortfall = doc.get("shortfall", "refuse")
    if not isinstance(name, str) or shortfall not in ("cash", "refuse"):
        raise bad('needs a text "name" and "shortfall" of "cash" or "refuse"')
    pool_doc = doc.get("pool")
    if pool_doc is None:
        return Rule(name, None, shortfall == "cash")
    if not isinstance(pool_doc, dict):
        raise bad('"pool" is not an object or null')
    try:
        ratio = Decimal(str(pool_doc.get("ratio", "0")))
        deductible = Decimal(str(pool_doc.get("deductible", "0")))
    except InvalidOperation:
        raise bad("the pool's ratio or deductible is not a number") from None
    items = pool_doc.get("items", ["*"])
    if not (ratio.is_finite() and 0 <= ratio <= 1):
        raise bad("the pool's ratio must be from 0 to 1")
    whole_fen = deductible.is_finite() and deductible == deductible.quantize(Decimal("0.01"))
    if not (whole_fen and deductible >= 0):
        raise bad("the pool's deductible must be yuan at or above 0, at most two decimals")
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise bad('the pool\'s "items" must be a list of catalogue code prefixes')
    return Rule(name, Pool(ratio, int(deductible * 100), tuple(items)), shortfall == "cash")
