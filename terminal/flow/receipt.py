"""A payment's receipt, made once from the host's answer and shown two ways: as the
result screen's lines and as the text file `--receipts` keeps. Card number and name are
masked in both; a PIN never reaches a receipt."""

from __future__ import annotations

from dataclasses import dataclass

from cardio import identity
from host.api import format_fen
from host.client import Settlement
from terminal.flow.view import Line, Tone, line


def split_line(fund_fen: int, acct_fen: int, cash_fen: int) -> Line:
    """统筹 / 个账 / 现金: how a bill splits, on every screen that shows one."""
    return line(
        "split",
        fund=format_fen(fund_fen),
        account=format_fen(acct_fen),
        cash=format_fen(cash_fen),
    )


@dataclass(frozen=True)
class Receipt:
    terminal_id: str
    time: str  # the platform's settlement time, yyyy-MM-dd HH:mm:ss
    setl_id: str  # the platform's settlement id: what a cancellation (2103) names
    card: str  # masked
    name: str  # masked, or "-"
    amount_fen: int
    fund_fen: int
    acct_fen: int
    cash_fen: int
    balance_fen: int

    @classmethod
    def of(
        cls,
        terminal_id: str,
        settlement: Settlement,
        card_number: str | None,
        name: str | None,
    ) -> Receipt:
        s = settlement
        return cls(
            terminal_id,
            s.time,
            s.setl_id,
            identity.mask_card_number(card_number) if card_number else "-",
            identity.mask_name(name) if name else "-",
            s.medfee_fen,
            s.fund_fen,
            s.acct_fen,
            s.cash_fen,
            s.balance_after_fen,
        )

    @property
    def shown_time(self) -> str:
        """2024-06-01 10:30:00: the local time as the platform wrote it."""
        return self.time[:19].replace("T", " ")

    def lines(self) -> tuple[Line, ...]:
        """What the result screen shows after the payment's earlier lines."""
        return (
            line("authorised", Tone.OK),
            line("amount", amount=format_fen(self.amount_fen)),
            split_line(self.fund_fen, self.acct_fen, self.cash_fen),
            line("balance_after", amount=format_fen(self.balance_fen)),
            line("receipt_setl", setl_id=self.setl_id),
            line("receipt_terminal", terminal=self.terminal_id, time=self.shown_time),
            line("receipt_card", card=self.card, name=self.name),
        )

    def text(self) -> str:
        """The receipt file, in both languages."""
        return (
            "\n".join(
                [
                    "社会保障卡 消费凭条 / Social security card payment receipt",
                    f"终端 Terminal      {self.terminal_id}",
                    f"时间 Time          {self.time}",
                    f"结算号 Settlement  {self.setl_id}",
                    f"卡号 Card          {self.card}",
                    f"姓名 Name          {self.name}",
                    f"金额 Amount        {format_fen(self.amount_fen)} 元",
                    f"统筹 Pooled fund   {format_fen(self.fund_fen)} 元",
                    f"个账 Account       {format_fen(self.acct_fen)} 元",
                    f"现金 Cash          {format_fen(self.cash_fen)} 元",
                    f"余额 Balance       {format_fen(self.balance_fen)} 元",
                ]
            )
            + "\n"
        )

    def file_name(self) -> str:
        stamp = self.time[:19].replace(":", "").replace(" ", "T")
        return f"receipt-{stamp}-{self.setl_id[-8:]}.txt"
