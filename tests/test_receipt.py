"""One receipt, two renderings: the result screen's lines and the --receipts file."""

from __future__ import annotations

from host.api import Debit, DebitStatus
from terminal.flow.receipt import Receipt
from terminal.strings import text

DEBIT = Debit("a1b2c3d4-txn", DebitStatus.DEBITED, 1250, 126800, "2024-06-01T10:30:00+08:00")


def shown(receipt: Receipt, lang: str) -> list[str]:
    return [text(lang, ln.key, **dict(ln.params)) for ln in receipt.lines()]


def test_screen_and_file_carry_the_same_facts_masked() -> None:
    receipt = Receipt.of("POS-0001", "a1b2c3d4-txn", "A93456742", "张三丰", DEBIT)
    screen = "\n".join(shown(receipt, "zh"))
    file = receipt.text()
    for fact in ("POS-0001", "A93***742", "张**", "12.50", "1268.00"):
        assert fact in screen, fact
        assert fact in file, fact
    for hidden in ("A93456742", "张三丰"):
        assert hidden not in screen and hidden not in file
    assert "2024-06-01 10:30:00" in screen
    assert "2024-06-01T10:30:00+08:00" in file
    assert "a1b2c3d4-txn" in file
    assert receipt.file_name() == "receipt-2024-06-01T103000-a1b2c3d4.txt"


def test_a_card_without_number_or_name_shows_dashes() -> None:
    receipt = Receipt.of("POS-0001", "t", None, None, DEBIT)
    assert (receipt.card, receipt.name) == ("-", "-")
    assert "卡号 Card          -" in receipt.text()
