"""A payment's receipt, made once from the host's answer and shown two ways: as the
result screen's lines and as the text file `--receipts` keeps. Card number and name are
masked in both; a PIN never reaches a receipt."""

from __future__ import annotations

from dataclasses import dataclass

from cardio import identity
from host.api import Debit, format_fen
from terminal.flow.view import Line, Tone, line


@dataclass(frozen=True)
class Receipt:
    terminal_id: str
    time: str  # the host's time of the debit, ISO 8601 with its offset
    txn_id: str
    card: str  # masked
    name: str  # masked, or "-"
    amount_fen: int
    balance_fen: int

    @classmethod
    def of(
        cls,
        terminal_id: str,
        txn_id: str,
        card_number: str | None,
        name: str | None,
        debit: Debit,
    ) -> Receipt:
        return cls(
            terminal_id,
            debit.time,
            txn_id,
            identity.mask_card_number(card_number) if card_number else "-",
            identity.mask_name(name) if name else "-",
            debit.amount_fen,
            debit.balance_after_fen or 0,
        )

    @property
    def shown_time(self) -> str:
        """2024-06-01 10:30:00: the local time as the host wrote it, without its offset."""
        return self.time[:19].replace("T", " ")

    def lines(self) -> tuple[Line, ...]:
        """What the result screen shows after the payment's earlier lines."""
        return (
            line("authorised", Tone.OK),
            line("amount", amount=format_fen(self.amount_fen)),
            line("balance_after", amount=format_fen(self.balance_fen)),
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
                    f"交易号 Transaction {self.txn_id}",
                    f"卡号 Card          {self.card}",
                    f"姓名 Name          {self.name}",
                    f"金额 Amount        {format_fen(self.amount_fen)} 元",
                    f"余额 Balance       {format_fen(self.balance_fen)} 元",
                ]
            )
            + "\n"
        )

    def file_name(self) -> str:
        return f"receipt-{self.time[:19].replace(':', '')}-{self.txn_id[:8]}.txt"
